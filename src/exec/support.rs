//! What the step executor's SQL steps share: running statements with
//! their log lines, the replication role, its password and its connections
//! to other nodes (TLS when their server has it), and aligning sequences to
//! a node's key residue.

use super::error::{db_error, query_error, StepError};
use crate::cluster::tasks::TaskContext;
use crate::postgres::sql::{self, Statement};
use std::time::Instant;

/// The smallest value above `current` that is `≡ offset (mod stride)`.
fn next_in_residue(current: i64, offset: i64, stride: i64) -> i64 {
    // Sequences start at 1 by default: never hand out 0 or less.
    let v = (current + 1).max(1);
    v + (offset - v.rem_euclid(stride)).rem_euclid(stride)
}

/// The database's replication password, made once by the leader.
pub(crate) async fn replication_password(
    ctx: &TaskContext,
    database: &str,
) -> Result<String, StepError> {
    let entry = ctx
        .store
        .get(&crate::cluster::keys::replication_secret(database))
        .await
        .map_err(|e| StepError::ReplicationSecret(format!("reading the replication secret: {e}")))?
        .ok_or_else(|| {
            StepError::ReplicationSecret(
                "the leader has not made the replication secret yet".into(),
            )
        })?;
    let stored = String::from_utf8(entry.value)
        .map_err(|_| StepError::ReplicationSecret("the replication secret is not text".into()))?;
    crate::secrets::open_stored(&stored)
        .map_err(|e| StepError::ReplicationSecret(format!("opening the replication secret: {e}")))
}

/// The role standbys, subscribers and joining nodes connect as: LOGIN
/// REPLICATION, the cluster's password, and read access to all data, row
/// security included (a joining node copies every row, pg_cron's jobs too).
pub(crate) async fn ensure_replication_role(
    c: &tokio_postgres::Client,
    ctx: &TaskContext,
    password: &str,
) -> Result<(), StepError> {
    let role = crate::state::names::REPLICATION_ROLE;
    let exists = exists(c, "SELECT 1 FROM pg_roles WHERE rolname = $1", &role).await?;
    let attributes = ["LOGIN".into(), "REPLICATION".into(), "BYPASSRLS".into()];
    let mut stmts = if exists {
        vec![
            sql::set_password(role, password)?,
            sql::alter_role(role, &attributes)?,
        ]
    } else {
        vec![sql::create_role(role, &attributes, Some(password))?]
    };
    stmts.push(sql::grant("pg_read_all_data", role)?);
    // A former primary rewinds from the new one as this role.
    stmts.extend(sql::grant_rewind(role)?);
    run_sql(c, ctx, &stmts).await
}

/// Where an agent connects as the replication role: another node's
/// primary, and whether its server has TLS (then pgcd's `pg_hba.conf`
/// there admits the role over TLS only, `hostssl`).
pub(crate) struct ReplicationPeer<'a> {
    /// The primary's address (its certificate names it).
    pub address: &'a str,
    /// Its port.
    pub port: u16,
    /// Its server has TLS: the connection is TLS, verified like
    /// `sslmode=verify-full` against the cluster CA.
    pub tls: bool,
}

/// Connects to `dbname` on `to` as the replication role, with a 10 s
/// connect timeout; the connection runs in a task of its own. An error
/// names the address and whether TLS was asked for.
pub(crate) async fn replication_client(
    rt: &crate::runtime::docker::Runtime,
    to: &ReplicationPeer<'_>,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(to.address)
        .port(to.port)
        .user(crate::state::names::REPLICATION_ROLE)
        .password(password)
        .dbname(dbname)
        .application_name("pgcd")
        .connect_timeout(std::time::Duration::from_secs(10));
    let failed = |how: &str, e: &dyn std::fmt::Display| {
        format!("connecting to {}:{} ({how}): {e}", to.address, to.port)
    };
    if to.tls {
        let how = "TLS, verify-full against the cluster CA";
        let tls = crate::pki::postgres::verify_full(rt.pki()).map_err(|e| failed(how, &e))?;
        cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
        open(&cfg, tls)
            .await
            .map_err(|e| failed(how, &db_error(&e)))
    } else {
        // A server without TLS (the PostgreSQL 16 image) gets a plain
        // connection, as its `pg_hba.conf` expects (`host`).
        open(&cfg, tokio_postgres::NoTls)
            .await
            .map_err(|e| failed("no TLS: its server has none", &db_error(&e)))
    }
}

/// Connects with `tls` and drives the connection in a task of its own.
async fn open<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> Result<tokio_postgres::Client, tokio_postgres::Error>
where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    let (client, conn) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "replication-role connection closed");
        }
    });
    Ok(client)
}

/// Whether `sql` (a `SELECT 1 ... WHERE x = $1`) finds a row for `key`.
pub(crate) async fn exists(
    c: &tokio_postgres::Client,
    sql: &str,
    key: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<bool, StepError> {
    c.query_opt(sql, &[key])
        .await
        .map(|r| r.is_some())
        .map_err(query_error)
}

/// Runs statements in order, each logged as shown (secrets masked) with
/// its duration; the first failure stops the rest.
pub(crate) async fn run_sql(
    client: &tokio_postgres::Client,
    ctx: &TaskContext,
    stmts: &[Statement],
) -> Result<(), StepError> {
    for s in stmts {
        let t = Instant::now();
        client
            .batch_execute(&s.sql)
            .await
            .map_err(|e| StepError::Sql {
                statement: s.shown.clone(),
                message: db_error(&e),
            })?;
        ctx.log(format!("sql: {} ({} ms)", s.shown, t.elapsed().as_millis()));
    }
    Ok(())
}

/// Makes each sequence step by `stride` and continue at the next value
/// `≡ offset (mod stride)`.
pub(crate) async fn align_sequences(
    c: &tokio_postgres::Client,
    ctx: &TaskContext,
    offset: i64,
    stride: i64,
    sequences: &[String],
) -> Result<(), StepError> {
    for seq in sequences {
        let Some(row) = c
            .query_opt(
                "SELECT schemaname::text, sequencename::text, \
                 COALESCE(last_value, start_value - 1) FROM pg_sequences \
                 WHERE format('%I.%I', schemaname, sequencename) = $1",
                &[seq],
            )
            .await
            .map_err(query_error)?
        else {
            ctx.log(format!("sequence {seq} is gone"));
            continue;
        };
        let (schema, name, current): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let next = next_in_residue(current, offset, stride);
        let alter = sql::alter_sequence_increment(&schema, &name, stride)?;
        run_sql(c, ctx, &[alter]).await?;
        c.execute(
            "SELECT setval(format('%I.%I', $1::text, $2::text)::regclass, $3, false)",
            &[&schema, &name, &next],
        )
        .await
        .map_err(|e| StepError::Sql {
            statement: format!("setval on {seq}"),
            message: db_error(&e),
        })?;
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
