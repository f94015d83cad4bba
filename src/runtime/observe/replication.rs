//! Observing a database's replication: pgcd's publication and
//! subscriptions with their state, counters and last worker error, the DDL
//! log and its failures, or a Spock node's equivalents.

use super::texts;
use crate::runtime::docker::{ContainerInfo, Runtime};
use crate::state::actual::{DdlFailure, InstanceActual, SubscriptionActual};
use crate::state::names::publication_name;
use tokio_postgres::Client;

/// Reads the replication state of the database `db` of instance `c`.
pub(super) async fn read(
    rt: &Runtime,
    c: &ContainerInfo,
    db: &Client,
    out: &mut InstanceActual,
) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    out.publications = texts(db, "SELECT pubname::text FROM pg_publication ORDER BY 1").await?;
    out.subscriptions = db
        .query(
            "SELECT s.subname::text, s.subenabled, \
             EXISTS (SELECT 1 FROM pg_stat_subscription st \
                     WHERE st.subid = s.oid AND st.pid IS NOT NULL AND st.relid IS NULL), \
             EXISTS (SELECT 1 FROM pg_publication_tables t \
                     WHERE t.pubname = 'pgcd_all' \
                     AND format('%I.%I', t.schemaname, t.tablename)::regclass NOT IN \
                         (SELECT srrelid FROM pg_subscription_rel WHERE srsubid = s.oid)) \
             FROM pg_subscription s \
             WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| SubscriptionActual {
            name: r.get(0),
            enabled: r.get(1),
            running: r.get(2),
            stale: r.get(3),
            ..Default::default()
        })
        .collect();
    subscription_stats(db, &mut out.subscriptions).await?;
    // The log is read only while a link is down (its error counters never
    // go back to zero, so they cannot say whether the trouble is now).
    let troubled = out.subscriptions.iter().any(|s| s.enabled && !s.running);
    if troubled {
        match rt.log_tail(&c.id, 400).await {
            Ok(log) => {
                for s in &mut out.subscriptions {
                    s.last_error = last_worker_error(&log, &s.name);
                }
            }
            Err(e) => tracing::debug!(error = %e, "server log not read"),
        }
    }
    // Installed, and as this version of pgcd installs it.
    out.autoddl = db
        .query_opt(
            "SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgcd_capture_ddl' \
             AND to_regprocedure('pgcd.log_ddl(text,text)') IS NOT NULL",
            &[],
        )
        .await
        .map_err(err)?
        .is_some();
    if out.autoddl {
        out.ddl_rows = db
            .query_one("SELECT count(*) FROM pgcd.ddl_log", &[])
            .await
            .map(|r| r.get(0))
            .ok();
    }
    if db
        .query_one("SELECT to_regclass('pgcd.ddl_failures') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .get::<_, bool>(0)
    {
        out.ddl_failures = db
            .query(
                "SELECT origin, id, statement, error FROM pgcd.ddl_failures ORDER BY at, origin, id LIMIT 20",
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| DdlFailure {
                origin: r.get(0),
                id: r.get(1),
                statement: r.get(2),
                error: r.get(3),
            })
            .collect();
    }
    if exists_in(db, "SELECT 1 FROM pg_extension WHERE extname = 'spock'").await? {
        spock_state(db, out).await?;
    }
    Ok(())
}

/// The last `ERROR` a worker of subscription `sub` logged (with its
/// `DETAIL`), from a server log whose lines start with `%m [%p] ` (the
/// default `log_line_prefix`): a worker says which subscription it serves
/// when it starts, and its errors carry its process id.
pub fn last_worker_error(log: &str, sub: &str) -> Option<String> {
    let pid = |line: &str| -> Option<String> {
        let start = line.find(" [")? + 2;
        let end = start + line[start..].find(']')?;
        Some(line[start..end].to_string())
    };
    let started = format!("for subscription \"{sub}\"");
    let mut pids: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    let mut last_pid: Option<String> = None;
    for line in log.lines() {
        let Some(p) = pid(line) else { continue };
        if line.contains(&started) {
            if !pids.contains(&p) {
                pids.push(p.clone());
            }
            if let Some(i) = line.find("ERROR:") {
                last = Some(line[i + 6..].trim().to_string());
                last_pid = Some(p);
            }
            continue;
        }
        if !pids.contains(&p) {
            continue;
        }
        if let Some(i) = line.find("ERROR:") {
            last = Some(line[i + 6..].trim().to_string());
            last_pid = Some(p);
        } else if let Some(i) = line.find("DETAIL:") {
            if last_pid.as_deref() == Some(p.as_str()) {
                if let Some(l) = last.as_mut() {
                    l.push_str(" (");
                    l.push_str(line[i + 7..].trim());
                    l.push(')');
                }
            }
        }
    }
    last
}

/// Error and conflict counters of each subscription
/// (`pg_stat_subscription_stats`; its `confl_*` columns exist from
/// PostgreSQL 18 on, so the row is read as JSON).
async fn subscription_stats(c: &Client, subs: &mut [SubscriptionActual]) -> Result<(), String> {
    if subs.is_empty() {
        return Ok(());
    }
    let rows = c
        .query(
            "SELECT s.subname::text, to_jsonb(st)::text FROM pg_stat_subscription_stats st \
             JOIN pg_subscription s ON s.oid = st.subid",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in rows {
        let name: String = r.get(0);
        let Some(sub) = subs.iter_mut().find(|s| s.name == name) else {
            continue;
        };
        let Ok(serde_json::Value::Object(stats)) = serde_json::from_str(&r.get::<_, String>(1))
        else {
            continue;
        };
        let count = |k: &str| stats.get(k).and_then(|v| v.as_i64()).unwrap_or(0);
        sub.apply_errors = count("apply_error_count");
        sub.sync_errors = count("sync_error_count");
        sub.conflicts = stats
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("confl_")?.to_string(), v.as_i64()?)))
            .collect();
    }
    Ok(())
}

/// Whether `sql` returns a row.
async fn exists_in(c: &Client, sql: &str) -> Result<bool, String> {
    Ok(c.query_opt(sql, &[])
        .await
        .map_err(|e| e.to_string())?
        .is_some())
}

/// A Spock database in the terms of the mesh planner: the local Spock node
/// stands for the publication, Spock's subscriptions for pgcd's (enabled
/// unless `disabled`, running while `replicating`), AutoDDL for the DDL
/// capture. Written against Spock's documented interface; not run here.
async fn spock_state(db: &Client, out: &mut InstanceActual) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    let node = db
        .query_opt(
            "SELECT 1 FROM spock.node n JOIN spock.local_node l ON l.node_id = n.node_id \
             WHERE n.node_name = $1",
            &[&out.node.as_str()],
        )
        .await
        .map_err(err)?
        .is_some();
    if node && !out.publications.iter().any(|p| p == publication_name()) {
        out.publications.push(publication_name().to_string());
    }
    let status = crate::postgres::driver::spock_sub_status(None).map_err(|e| e.to_string())?;
    out.subscriptions = db
        .query(&status.sql, &[])
        .await
        .map_err(err)?
        .iter()
        .map(|r| {
            let state: String = r.get(1);
            SubscriptionActual {
                name: r.get(0),
                enabled: state != "disabled",
                running: state == "replicating",
                ..Default::default()
            }
        })
        .collect();
    out.autoddl = db
        .query_one(
            "SELECT coalesce(current_setting('spock.enable_ddl_replication', true), 'off') = 'on'",
            &[],
        )
        .await
        .map_err(err)?
        .get(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_worker_error;

    #[test]
    fn a_subscription_error_is_found_by_its_workers_process_id() {
        let log = "\
2026-12-01 08:00:00.000 UTC [41] LOG:  logical replication apply worker for subscription \"pgcd_sub_n1_to_n2\" has started
2026-12-01 08:00:00.100 UTC [42] LOG:  logical replication apply worker for subscription \"pgcd_sub_n3_to_n2\" has started
2026-12-01 08:00:01.000 UTC [41] ERROR:  duplicate key value violates unique constraint \"t_pkey\"
2026-12-01 08:00:01.000 UTC [41] DETAIL:  Key (id)=(1) already exists.
2026-12-01 08:00:01.000 UTC [41] CONTEXT:  processing remote data for replication origin \"pg_16393\"
2026-12-01 08:00:02.000 UTC [42] LOG:  something else
2026-12-01 08:00:03.000 UTC [50] ERROR:  relation \"x\" does not exist
";
        assert_eq!(
            last_worker_error(log, "pgcd_sub_n1_to_n2").as_deref(),
            Some("duplicate key value violates unique constraint \"t_pkey\" (Key (id)=(1) already exists.)")
        );
        assert_eq!(last_worker_error(log, "pgcd_sub_n3_to_n2"), None);
        assert_eq!(last_worker_error(log, "pgcd_sub_n9_to_n2"), None);
    }
}
