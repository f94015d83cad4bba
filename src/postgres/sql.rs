//! Every SQL statement pgcd builds from a spec, built here and nowhere
//! else: identifiers go through [`ident`], literals through [`literal`],
//! role attributes and setting names are checked against a closed
//! vocabulary. A [`Statement`] carries the text to run and the text to log,
//! in which a password is masked.

use crate::state::actual::ROLE_FLAGS;

/// One statement: what runs, and what the task log shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The SQL sent to the server.
    pub sql: String,
    /// The SQL as logged (secrets masked).
    pub shown: String,
}

impl Statement {
    /// A statement holding no secret: shown as it runs.
    pub(crate) fn plain(sql: String) -> Self {
        Self {
            shown: sql.clone(),
            sql,
        }
    }
}

/// Why a statement cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// A role attribute outside PostgreSQL's vocabulary.
    #[error("unknown role attribute {0:?}")]
    Attribute(String),
    /// A setting name that is not a PostgreSQL parameter name.
    #[error("invalid setting name {0:?}")]
    SettingName(String),
    /// A NUL byte, which no PostgreSQL string may hold.
    #[error("a name or value holds a NUL byte")]
    Nul,
}

/// A quoted identifier: `"a""b"` for `a"b`.
pub fn ident(name: &str) -> Result<String, SqlError> {
    if name.contains('\0') {
        return Err(SqlError::Nul);
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A quoted literal: `'it''s'` for `it's` (standard_conforming_strings is on
/// in every supported version, so a backslash is an ordinary character).
pub fn literal(value: &str) -> Result<String, SqlError> {
    if value.contains('\0') {
        return Err(SqlError::Nul);
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// A role attribute clause (`LOGIN`, `NOCREATEDB`), checked against the
/// attributes PostgreSQL knows.
fn attribute(clause: &str) -> Result<&str, SqlError> {
    let bare = clause.strip_prefix("NO").unwrap_or(clause);
    if ROLE_FLAGS.contains(&bare) {
        Ok(clause)
    } else {
        Err(SqlError::Attribute(clause.to_string()))
    }
}

fn attributes(clauses: &[String]) -> Result<String, SqlError> {
    let checked: Result<Vec<&str>, _> = clauses.iter().map(|c| attribute(c)).collect();
    Ok(checked?.join(" "))
}

/// `CREATE ROLE name WITH attrs [PASSWORD '...']`; the log shows `'********'`.
pub fn create_role(
    name: &str,
    attrs: &[String],
    password: Option<&str>,
) -> Result<Statement, SqlError> {
    let head = format!("CREATE ROLE {} WITH {}", ident(name)?, attributes(attrs)?);
    let head = head.trim_end().to_string();
    Ok(match password {
        Some(p) => Statement {
            sql: format!("{head} PASSWORD {}", literal(p)?),
            shown: format!("{head} PASSWORD '********'"),
        },
        None => Statement::plain(head),
    })
}

/// `ALTER ROLE name WITH PASSWORD '...'`; the log shows `'********'`.
pub fn set_password(name: &str, password: &str) -> Result<Statement, SqlError> {
    let head = format!("ALTER ROLE {} WITH", ident(name)?);
    Ok(Statement {
        sql: format!("{head} PASSWORD {}", literal(password)?),
        shown: format!("{head} PASSWORD '********'"),
    })
}

/// `ALTER ROLE name WITH clauses`.
pub fn alter_role(name: &str, clauses: &[String]) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER ROLE {} WITH {}",
        ident(name)?,
        attributes(clauses)?
    )))
}

/// `GRANT role TO member`.
pub fn grant(role: &str, member: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "GRANT {} TO {}",
        ident(role)?,
        ident(member)?
    )))
}

/// `CREATE DATABASE name OWNER owner`.
pub fn create_database(name: &str, owner: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "CREATE DATABASE {} OWNER {}",
        ident(name)?,
        ident(owner)?
    )))
}

/// `ALTER DATABASE name OWNER TO owner`.
pub fn alter_database_owner(name: &str, owner: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER DATABASE {} OWNER TO {}",
        ident(name)?,
        ident(owner)?
    )))
}

/// `CREATE EXTENSION IF NOT EXISTS name [VERSION 'v'] CASCADE`.
pub fn create_extension(name: &str, version: Option<&str>) -> Result<Statement, SqlError> {
    let version = match version {
        Some(v) => format!(" VERSION {}", literal(v)?),
        None => String::new(),
    };
    Ok(Statement::plain(format!(
        "CREATE EXTENSION IF NOT EXISTS {}{version} CASCADE",
        ident(name)?
    )))
}

/// `DROP EXTENSION IF EXISTS name [CASCADE]`; without `CASCADE`
/// PostgreSQL refuses while anything depends on the extension.
pub fn drop_extension(name: &str, cascade: bool) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "DROP EXTENSION IF EXISTS {}{}",
        ident(name)?,
        if cascade { " CASCADE" } else { "" }
    )))
}

/// `REASSIGN OWNED BY role TO owner; DROP OWNED BY role` (in the database
/// connected to): the role's objects go to `owner`, its privileges and
/// default privileges go.
pub fn disown(role: &str, owner: &str) -> Result<Statement, SqlError> {
    let (role, owner) = (ident(role)?, ident(owner)?);
    Ok(Statement::plain(format!(
        "REASSIGN OWNED BY {role} TO {owner}; DROP OWNED BY {role}"
    )))
}

/// `DROP ROLE IF EXISTS name`.
pub fn drop_role(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "DROP ROLE IF EXISTS {}",
        ident(name)?
    )))
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)`: only for pgcd's own
/// temporary database of a creation that did not finish.
pub fn drop_database_forced(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        ident(name)?
    )))
}

/// `ALTER DATABASE from RENAME TO to`.
pub fn rename_database(from: &str, to: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER DATABASE {} RENAME TO {}",
        ident(from)?,
        ident(to)?
    )))
}

/// `ALTER EXTENSION name UPDATE TO 'v'`.
pub fn update_extension(name: &str, version: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER EXTENSION {} UPDATE TO {}",
        ident(name)?,
        literal(version)?
    )))
}

/// `CREATE PUBLICATION name FOR ALL TABLES`.
pub fn create_publication_all(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "CREATE PUBLICATION {} FOR ALL TABLES",
        ident(name)?
    )))
}

/// A libpq connection string's parts.
pub struct Conninfo<'a> {
    /// Host address.
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Database.
    pub dbname: &'a str,
    /// User.
    pub user: &'a str,
    /// Password (masked in logs).
    pub password: &'a str,
    /// `application_name`.
    pub application_name: &'a str,
}

/// A libpq keyword value: single-quoted, `\` and `'` escaped.
fn conninfo_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Conninfo<'_> {
    /// The connection string with `password` in place of the real one
    /// (`"********"` for logs).
    /// The subscriber dials from inside its container, so the CA is the
    /// container's copy; the publisher's certificate must name `host`.
    pub(crate) fn render(&self, password: &str) -> String {
        format!(
            "host={} port={} dbname={} user={} password={} application_name={} {}",
            conninfo_value(self.host),
            self.port,
            conninfo_value(self.dbname),
            conninfo_value(self.user),
            conninfo_value(password),
            conninfo_value(self.application_name),
            crate::pki::verify_full_options(crate::pki::INSTANCE_CA_FILE)
        )
    }
}

/// `CREATE SUBSCRIPTION name CONNECTION '...' PUBLICATION publication WITH
/// (origin = none, copy_data = false, slot_name = name)`: changes that came
/// from another node are not sent on, so nothing loops.
pub fn create_subscription(
    name: &str,
    conn: &Conninfo,
    publication: &str,
) -> Result<Statement, SqlError> {
    // On the slot made beforehand on the publisher (`exec::replication`).
    subscription(name, conn, publication, ", create_slot = false")
}

/// [`create_subscription`] for a node joining the mesh: disabled, on the
/// slot made for it beforehand (so its start position can be set first).
pub fn create_subscription_on_slot(
    name: &str,
    conn: &Conninfo,
    publication: &str,
) -> Result<Statement, SqlError> {
    subscription(
        name,
        conn,
        publication,
        ", create_slot = false, enabled = false",
    )
}

fn subscription(
    name: &str,
    conn: &Conninfo,
    publication: &str,
    options: &str,
) -> Result<Statement, SqlError> {
    let tail = format!(
        "PUBLICATION {} WITH (origin = none, copy_data = false{options}, slot_name = {})",
        ident(publication)?,
        literal(name)?
    );
    Ok(Statement {
        sql: format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} {tail}",
            ident(name)?,
            literal(&conn.render(conn.password))?
        ),
        shown: format!(
            "CREATE SUBSCRIPTION {} CONNECTION {} {tail}",
            ident(name)?,
            literal(&conn.render("********"))?
        ),
    })
}

/// `ALTER SUBSCRIPTION name REFRESH PUBLICATION WITH (copy_data = false)`.
pub fn refresh_subscription(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER SUBSCRIPTION {} REFRESH PUBLICATION WITH (copy_data = false)",
        ident(name)?
    )))
}

/// `ALTER SUBSCRIPTION name ENABLE`.
pub fn enable_subscription(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER SUBSCRIPTION {} ENABLE",
        ident(name)?
    )))
}

/// Sets where subscription `name` starts in its publisher's stream: after
/// `lsn` (what the copy it was made with already holds).
pub fn advance_subscription_origin(name: &str, lsn: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "SELECT pg_replication_origin_advance('pg_' || oid, {}::pg_lsn) FROM pg_subscription \
         WHERE subname = {} AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        literal(lsn)?,
        literal(name)?
    )))
}

/// Every sequence outside pgcd's schema steps by `stride` and continues at
/// its next value `≡ offset (mod stride)` (a copied node's keys move to its
/// own residue).
pub fn align_all_sequences(offset: i64, stride: i64) -> Statement {
    Statement::plain(format!(
        "DO $pgcd$
DECLARE
  r record;
  v bigint;
BEGIN
  FOR r IN SELECT schemaname, sequencename, COALESCE(last_value, start_value - 1) AS cur
           FROM pg_catalog.pg_sequences WHERE schemaname <> 'pgcd' LOOP
    v := greatest(r.cur + 1, 1);
    v := v + ((({offset} - v % {stride}) % {stride}) + {stride}) % {stride};
    EXECUTE format('ALTER SEQUENCE %I.%I INCREMENT BY {stride}', r.schemaname, r.sequencename);
    PERFORM pg_catalog.setval(format('%I.%I', r.schemaname, r.sequencename)::regclass, v, false);
  END LOOP;
END
$pgcd$"
    ))
}

/// `ALTER SEQUENCE schema.name INCREMENT BY stride`.
pub fn alter_sequence_increment(
    schema: &str,
    name: &str,
    stride: i64,
) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "ALTER SEQUENCE {}.{} INCREMENT BY {stride}",
        ident(schema)?,
        ident(name)?
    )))
}

/// Installs pgcd's DDL replication in a database (idempotent): the node's
/// name as a per-database setting (not replicated), then `autoddl.sql`
/// (which says how it works), then its replication-role grants. Each DDL
/// statement run on this node — outside pgcd's own sessions and the apply
/// workers, and not about publications, subscriptions or the `pgcd` schema
/// — is logged once per transaction into `pgcd.ddl_log`, keyed by (node,
/// local id) so keys never collide across nodes, and replayed on the others
/// as the role that ran it.
pub fn install_autoddl(database: &str, node: &str) -> Result<Vec<Statement>, SqlError> {
    let role = ident(crate::state::names::REPLICATION_ROLE)?;
    let mut out = vec![
        Statement::plain(format!(
            "ALTER DATABASE {} SET pgcd.node = {}",
            ident(database)?,
            literal(node)?
        )),
        Statement::plain(format!("SET pgcd.node = {}", literal(node)?)),
    ];
    out.extend(sql_file(AUTODDL).map(Statement::plain));
    out.push(Statement::plain(format!(
        "GRANT EXECUTE ON FUNCTION pgcd.subscription_pause(text, boolean), \
         pgcd.subscription_position(text) TO {role}"
    )));
    Ok(out)
}

/// pgcd's DDL replication objects, one statement after each `-- statement` line.
const AUTODDL: &str = include_str!("autoddl.sql");

/// The statements of a `.sql` file: the chunks between `-- statement`
/// lines that hold more than comments.
fn sql_file(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n-- statement\n").filter_map(|chunk| {
        let code = chunk
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"));
        code.then(|| chunk.trim().to_string())
    })
}

/// `DROP SUBSCRIPTION name` (drops its slot on the publisher too).
pub fn drop_subscription(name: &str) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "DROP SUBSCRIPTION {}",
        ident(name)?
    )))
}

/// Detaches a subscription from its slot, for a publisher that is gone.
pub fn detach_subscription(name: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(vec![
        Statement::plain(format!("ALTER SUBSCRIPTION {} DISABLE", ident(name)?)),
        Statement::plain(format!(
            "ALTER SUBSCRIPTION {} SET (slot_name = NONE)",
            ident(name)?
        )),
    ])
}

/// Settings whose value is a list: each element is its own literal, or
/// PostgreSQL would take `'a,b'` for one element named `a,b`.
const LIST_SETTINGS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
    "search_path",
    "temp_tablespaces",
    "log_destination",
];

/// A parameter name: `work_mem`, `pg_stat_statements.max` (each part quoted).
fn setting_name(name: &str) -> Result<String, SqlError> {
    let valid = !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !valid {
        return Err(SqlError::SettingName(name.to_string()));
    }
    let parts: Result<Vec<String>, _> = name.split('.').map(ident).collect();
    Ok(parts?.join("."))
}

/// `ALTER SYSTEM SET name = value` (a list setting's elements each quoted).
pub fn alter_system(name: &str, value: &str) -> Result<Statement, SqlError> {
    let rendered = if LIST_SETTINGS.contains(&name) {
        let items: Result<Vec<String>, _> = value
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .map(literal)
            .collect();
        let items = items?;
        if items.is_empty() {
            "''".to_string()
        } else {
            items.join(", ")
        }
    } else {
        literal(value)?
    };
    Ok(Statement::plain(format!(
        "ALTER SYSTEM SET {} = {rendered}",
        setting_name(name)?
    )))
}

/// `CHECKPOINT`.
pub fn checkpoint() -> Statement {
    Statement::plain("CHECKPOINT".into())
}

/// What `pg_rewind` needs of the role it connects as (PostgreSQL's
/// documented list), so a former primary rewinds from the new one without
/// a superuser's password.
pub fn grant_rewind(role: &str) -> Result<Vec<Statement>, SqlError> {
    let r = ident(role)?;
    Ok([
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
    ]
    .iter()
    .map(|f| Statement::plain(format!("GRANT EXECUTE ON FUNCTION {f} TO {r}")))
    .collect())
}

/// `SELECT pg_reload_conf()`.
pub fn reload() -> Statement {
    Statement::plain("SELECT pg_reload_conf()".into())
}

/// A line of `postgresql.auto.conf` (written before the first start).
pub fn conf_line(name: &str, value: &str) -> Result<String, SqlError> {
    setting_name(name)?;
    if value.contains('\0') || value.contains('\n') {
        return Err(SqlError::Nul);
    }
    let value = if LIST_SETTINGS.contains(&name) {
        value
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        value.to_string()
    };
    Ok(format!(
        "{name} = '{}'",
        value.replace('\\', "\\\\").replace('\'', "''")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_literals_cannot_break_out() {
        assert_eq!(
            ident(r#"a"; DROP TABLE x; --"#).unwrap(),
            r#""a""; DROP TABLE x; --""#
        );
        assert_eq!(literal("it's").unwrap(), "'it''s'");
        assert_eq!(literal(r"a\'b").unwrap(), r"'a\''b'");
        assert_eq!(ident("a\0b"), Err(SqlError::Nul));
    }

    #[test]
    fn passwords_are_masked_in_the_log_only() {
        let s = create_role("app", &["LOGIN".into(), "INHERIT".into()], Some("s3'cret")).unwrap();
        assert_eq!(
            s.sql,
            r#"CREATE ROLE "app" WITH LOGIN INHERIT PASSWORD 's3''cret'"#
        );
        assert_eq!(
            s.shown,
            r#"CREATE ROLE "app" WITH LOGIN INHERIT PASSWORD '********'"#
        );
        assert!(!s.shown.contains("s3"));
        let p = set_password("app", "x").unwrap();
        assert!(!p.shown.contains("'x'"));
    }

    #[test]
    fn attributes_outside_the_vocabulary_are_refused() {
        assert_eq!(
            alter_role("app", &["NOCREATEDB".into()]).unwrap().sql,
            r#"ALTER ROLE "app" WITH NOCREATEDB"#
        );
        assert!(matches!(
            alter_role("app", &["LOGIN PASSWORD 'x'".into()]),
            Err(SqlError::Attribute(_))
        ));
    }

    #[test]
    fn list_settings_quote_each_element() {
        assert_eq!(
            alter_system("shared_preload_libraries", "pg_cron, pgaudit")
                .unwrap()
                .sql,
            r#"ALTER SYSTEM SET "shared_preload_libraries" = 'pg_cron', 'pgaudit'"#
        );
        assert_eq!(
            alter_system("pg_stat_statements.max", "1000").unwrap().sql,
            r#"ALTER SYSTEM SET "pg_stat_statements"."max" = '1000'"#
        );
        assert!(alter_system("work_mem = 1; DROP", "1").is_err());
        assert_eq!(conf_line("work_mem", "16MB").unwrap(), "work_mem = '16MB'");
        assert_eq!(
            conf_line("shared_preload_libraries", "a, b").unwrap(),
            "shared_preload_libraries = 'a,b'"
        );
    }

    #[test]
    fn subscriptions_mask_the_password_and_quote_the_conninfo() {
        let c = Conninfo {
            host: "10.0.0.2",
            port: 5432,
            dbname: "orders",
            user: "pgcd_replication",
            password: "p'w",
            application_name: "pgcd_sub_n2_to_n1",
        };
        let s = create_subscription("pgcd_sub_n2_to_n1", &c, "pgcd_all").unwrap();
        assert_eq!(
            s.sql,
            r#"CREATE SUBSCRIPTION "pgcd_sub_n2_to_n1" CONNECTION 'host=''10.0.0.2'' port=5432 dbname=''orders'' user=''pgcd_replication'' password=''p\''w'' application_name=''pgcd_sub_n2_to_n1'' sslmode=verify-full sslrootcert=/var/lib/pgcd/tls/ca.crt' PUBLICATION "pgcd_all" WITH (origin = none, copy_data = false, create_slot = false, slot_name = 'pgcd_sub_n2_to_n1')"#
        );
        assert!(s.shown.contains("password=''********''") && !s.shown.contains("p\\''w"));
    }

    #[test]
    fn the_autoddl_file_splits_into_its_statements() {
        let stmts = install_autoddl("shop", "n'1").unwrap();
        assert_eq!(
            stmts[0].sql,
            r#"ALTER DATABASE "shop" SET pgcd.node = 'n''1'"#
        );
        let texts: Vec<&str> = stmts.iter().map(|s| s.sql.as_str()).collect();
        assert!(texts.iter().all(|t| !t.contains("-- statement")));
        assert!(texts.contains(&"CREATE SCHEMA IF NOT EXISTS pgcd"));
        assert!(texts.last().unwrap().ends_with(r#"TO "pgcd_replication""#));
        let event = texts
            .iter()
            .position(|t| t.starts_with("CREATE EVENT TRIGGER"))
            .unwrap();
        let function = texts
            .iter()
            .position(|t| t.contains("FUNCTION pgcd.capture_ddl()"))
            .unwrap();
        assert!(function < event, "the trigger's function first");
    }

    #[test]
    fn extension_statements() {
        assert_eq!(
            create_extension("vector", Some("0.8.0")).unwrap().sql,
            r#"CREATE EXTENSION IF NOT EXISTS "vector" VERSION '0.8.0' CASCADE"#
        );
        assert_eq!(
            update_extension("vector", "0.8.1").unwrap().sql,
            r#"ALTER EXTENSION "vector" UPDATE TO '0.8.1'"#
        );
    }
}
