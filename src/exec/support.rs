//! What the step executor's SQL steps share: running statements with
//! their log lines, reading errors, the replication role and its password,
//! and aligning sequences to a node's key residue.

use crate::cluster::tasks::TaskContext;
use crate::postgres::sql::{self, Statement};
use std::time::Instant;

/// The smallest value above `current` that is `≡ offset (mod stride)`.
fn next_in_residue(current: i64, offset: i64, stride: i64) -> i64 {
    // Sequences start at 1 by default: never hand out 0 or less.
    let v = (current + 1).max(1);
    v + (offset - v.rem_euclid(stride)).rem_euclid(stride)
}

pub(crate) async fn replication_password(
    ctx: &TaskContext,
    database: &str,
) -> Result<String, String> {
    let entry = ctx
        .store
        .get(&crate::cluster::keys::replication_secret(database))
        .await
        .map_err(|e| format!("reading the replication secret: {e}"))?
        .ok_or("the leader has not made the replication secret yet")?;
    String::from_utf8(entry.value).map_err(|_| "the replication secret is not text".to_string())
}

/// The role standbys, subscribers and joining nodes connect as: LOGIN
/// REPLICATION, the cluster's password, and read access to all data, row
/// security included (a joining node copies every row, pg_cron's jobs too).
pub(crate) async fn ensure_replication_role(
    c: &tokio_postgres::Client,
    ctx: &TaskContext,
    password: &str,
) -> Result<(), String> {
    let role = crate::state::names::REPLICATION_ROLE;
    let exists = exists(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", &role).await?;
    let attributes = ["LOGIN".into(), "REPLICATION".into(), "BYPASSRLS".into()];
    let mut stmts = if exists {
        vec![
            sql::set_password(role, password).map_err(sql_err)?,
            sql::alter_role(role, &attributes).map_err(sql_err)?,
        ]
    } else {
        vec![sql::create_role(role, &attributes, Some(password)).map_err(sql_err)?]
    };
    stmts.push(sql::grant("pg_read_all_data", role).map_err(sql_err)?);
    run_sql(c, ctx, &stmts).await
}

/// Whether `sql` (a `SELECT 1 ... WHERE x = $1`) finds a row for `key`.
pub(crate) async fn exists(
    c: &tokio_postgres::Client,
    sql: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<bool, String> {
    c.query_opt(sql, &[key])
        .await
        .map(|r| r.is_some())
        .map_err(|e| db_error(&e))
}

pub(crate) async fn run_sql(
    client: &tokio_postgres::Client,
    ctx: &TaskContext,
    stmts: &[Statement],
) -> Result<(), String> {
    for s in stmts {
        let t = Instant::now();
        client
            .batch_execute(&s.sql)
            .await
            .map_err(|e| format!("{}: {}", s.shown, db_error(&e)))?;
        ctx.log(format!("sql: {} ({} ms)", s.shown, t.elapsed().as_millis()));
    }
    Ok(())
}

/// The server's message when there is one (tokio-postgres's Display hides it).
pub(crate) fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

pub(crate) fn sql_err(e: sql::SqlError) -> String {
    e.to_string()
}

/// Makes each sequence step by `stride` and continue at the next value
/// `≡ offset (mod stride)`.
pub(crate) async fn align_sequences(
    c: &tokio_postgres::Client,
    ctx: &TaskContext,
    offset: i64,
    stride: i64,
    sequences: &[String],
) -> Result<(), String> {
    for seq in sequences {
        let Some(row) = c
            .query_opt(
                "SELECT schemaname::text, sequencename::text, \
                 COALESCE(last_value, start_value - 1) FROM pg_sequences \
                 WHERE format('%I.%I', schemaname, sequencename) = $1",
                &[seq],
            )
            .await
            .map_err(|e| db_error(&e))?
        else {
            ctx.log(format!("sequence {seq} is gone"));
            continue;
        };
        let (schema, name, current): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let next = next_in_residue(current, offset, stride);
        let alter = sql::alter_sequence_increment(&schema, &name, stride).map_err(sql_err)?;
        run_sql(c, ctx, &[alter]).await?;
        c.execute(
            "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, false)",
            &[&schema, &name, &next],
        )
        .await
        .map_err(|e| format!("setval on {seq}: {}", db_error(&e)))?;
        ctx.log(format!(
            "sequence {seq}: next value {next} (≡ {offset} mod {stride})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::next_in_residue;

    #[test]
    fn keys_continue_in_the_nodes_residue() {
        assert_eq!(next_in_residue(0, 1, 16), 1);
        assert_eq!(next_in_residue(1, 1, 16), 17);
        assert_eq!(next_in_residue(5, 2, 16), 18);
        assert_eq!(next_in_residue(17, 2, 16), 18);
        assert_eq!(next_in_residue(-1, 16, 16), 16);
    }
}
