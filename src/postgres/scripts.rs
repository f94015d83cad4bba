//! The statements around a spec's `scripts`: the record that `post_init` ran
//! (`pgcd.scripts` in `postgres`, written in the scripts' own
//! transaction, so a list runs exactly once however often a step is
//! retried), and the scripts themselves, which are the user's SQL as
//! written: pgcd never builds them from parts.

use super::sql::{literal, SqlError, Statement};

/// The record of `scripts.post_init` (in the `postgres` database).
pub const POST_INIT: &str = "post_init";

/// Whether the record table exists (the observer asks before reading it).
pub const TABLE_EXISTS: &str = "SELECT to_regclass('pgcd.scripts') IS NOT NULL";

/// Finds the record of one list (`$1`: its name).
pub const RAN: &str = "SELECT 1 FROM pgcd.scripts WHERE script = $1";

/// The record table, made in the scripts' transaction when missing.
pub fn ensure_table() -> Statement {
    Statement::plain(
        "CREATE SCHEMA IF NOT EXISTS pgcd; \
         CREATE TABLE IF NOT EXISTS pgcd.scripts (script text PRIMARY KEY, \
         statements integer NOT NULL, ran_at timestamptz NOT NULL DEFAULT now()); \
         LOCK TABLE pgcd.scripts IN EXCLUSIVE MODE"
            .into(),
    )
}

/// Records that the list `script` of `statements` statements ran.
pub fn record(script: &str, statements: usize) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "INSERT INTO pgcd.scripts (script, statements) VALUES ({}, {statements})",
        literal(script)?
    )))
}

/// One statement of a script, run as the user wrote it.
pub fn user_statement(text: &str) -> Statement {
    Statement::plain(text.to_string())
}

/// The name a database is created under while its `post_database_create`
/// runs; renamed to `name` once they committed, so the database exists
/// under its name only with its scripts applied. Derived from the name
/// (at most 63 bytes, like every identifier).
pub fn creating_name(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("pgcd_creating_{}", &digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creating_name_is_short_and_stable() {
        let a = creating_name(&"x".repeat(63));
        assert_eq!(a.len(), 30);
        assert_eq!(a, creating_name(&"x".repeat(63)));
        assert_ne!(creating_name("shop"), creating_name("shop2"));
    }

    #[test]
    fn the_record_quotes_its_name() {
        assert_eq!(
            record("it's", 2).unwrap().sql,
            "INSERT INTO pgcd.scripts (script, statements) VALUES ('it''s', 2)"
        );
    }
}
