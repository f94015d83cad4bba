//! `GET /v1/databases/{name}/backups`: each node's backups as the agent of
//! its primary last listed them with `pgbackrest info` (under
//! `backups/<db>/<node>`), and the backup and archiving metrics `/metrics`
//! adds: `pgcd_archive_failures_total`, `pgcd_archive_last_archived_age_seconds`
//! (from each host's observation) and `pgcd_backup_last_good_age_seconds`.

use crate::api::escape_label;
use crate::api::{ApiError, ApiState};
use crate::backup::poll::NodeBackups;
use crate::cluster::keys;
use crate::cluster::store::Store;
use crate::state::observed::{parse_key, ObservedKey};
use crate::state::InstanceActual;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::fmt::Write as _;

/// The answer: the database and each node's listing.
#[derive(Debug, Serialize)]
pub struct Backups {
    /// The database.
    pub database: String,
    /// Each node's backups, by node name.
    pub nodes: Vec<NodeBackups>,
}

async fn listings(store: &Store, prefix: &str) -> Result<Vec<NodeBackups>, ApiError> {
    let (entries, _) = store.get_prefix(prefix).await?;
    let mut out: Vec<NodeBackups> = entries
        .iter()
        .filter_map(|e| match e.json() {
            Ok(b) => Some(b),
            Err(err) => {
                tracing::warn!(key = %e.key, error = %err, "skipping a backup listing that does not decode");
                None
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.database, &a.node).cmp(&(&b.database, &b.node)));
    Ok(out)
}

/// One database's backups; 404 for a database pgcd knows nothing of.
pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Backups>, ApiError> {
    if name.is_empty() || name.contains('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid database name",
        ));
    }
    let nodes = listings(&state.store, &keys::database_backups(&name)).await?;
    if nodes.is_empty()
        && state
            .store
            .get(&keys::database_status(&name))
            .await?
            .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no database {name}"),
        ));
    }
    Ok(Json(Backups {
        database: name,
        nodes,
    }))
}

fn age(now: chrono::DateTime<chrono::Utc>, at: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    Some((now - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
}

/// The backup and archiving metrics, read from etcd at scrape time; what
/// cannot be read is left out.
pub async fn metrics(store: &Store) -> String {
    let observed: Vec<InstanceActual> = match store.get_prefix_paged(keys::OBSERVED, 0).await {
        Ok((entries, _)) => entries
            .iter()
            .filter(|e| matches!(parse_key(&e.key), Some(ObservedKey::Instance(..))))
            .filter_map(|e| e.json().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    let backups = listings(store, keys::BACKUPS).await.unwrap_or_default();
    render(&observed, &backups, chrono::Utc::now())
}

/// Renders the metrics of these observations and listings at `now`.
pub fn render(
    observed: &[InstanceActual],
    backups: &[NodeBackups],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = String::new();
    let archiving = || {
        observed.iter().filter_map(|i| {
            let a = i
                .backup
                .archiver
                .as_ref()
                .filter(|_| i.backup.conf.is_some())?;
            let labels = format!(
                "database=\"{}\",node=\"{}\",host=\"{}\"",
                escape_label(&i.database),
                escape_label(&i.node),
                escape_label(&i.host)
            );
            Some((labels, a))
        })
    };
    let _ = writeln!(out, "# HELP pgcd_archive_failures_total WAL archiving attempts that failed (pg_stat_archiver.failed_count).");
    let _ = writeln!(out, "# TYPE pgcd_archive_failures_total counter");
    for (l, a) in archiving() {
        let _ = writeln!(out, "pgcd_archive_failures_total{{{l}}} {}", a.failed_count);
    }
    let _ = writeln!(out, "# HELP pgcd_archive_last_archived_age_seconds Seconds since the last WAL file was archived.");
    let _ = writeln!(out, "# TYPE pgcd_archive_last_archived_age_seconds gauge");
    for (l, a) in archiving() {
        if let Some(s) = a.last_archived_time.as_deref().and_then(|t| age(now, t)) {
            let _ = writeln!(out, "pgcd_archive_last_archived_age_seconds{{{l}}} {s}");
        }
    }
    let _ = writeln!(out, "# HELP pgcd_backup_last_good_age_seconds Seconds since the newest backup without errors of a node stopped.");
    let _ = writeln!(out, "# TYPE pgcd_backup_last_good_age_seconds gauge");
    for b in backups {
        if let Some(s) = b.last_good().and_then(|g| age(now, &g.stop)) {
            let _ = writeln!(
                out,
                "pgcd_backup_last_good_age_seconds{{database=\"{}\",node=\"{}\"}} {s}",
                escape_label(&b.database),
                escape_label(&b.node)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::info::BackupInfo;
    use crate::state::{ArchiverActual, BackupConfActual};

    #[test]
    fn archive_and_backup_ages_are_rendered_per_instance_and_node() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut i: crate::state::InstanceActual = serde_json::from_value(serde_json::json!({
            "database": "orders", "node": "n1", "host": "h1", "container_exists": true,
            "running": true, "version": "17.6", "port": 5432, "role": "primary",
            "settings": {}, "pending_restart": [], "database_exists": true, "owner": null,
            "roles": [], "extensions": [], "available_extensions": [], "data_dir_exists": true
        }))
        .unwrap();
        i.backup.conf = Some(BackupConfActual::default());
        i.backup.archiver = Some(ArchiverActual {
            archived_count: 9,
            last_archived_time: Some("2026-01-01T00:00:30Z".into()),
            failed_count: 2,
            ..Default::default()
        });
        let backups = vec![NodeBackups {
            database: "orders".into(),
            node: "n1".into(),
            backups: vec![BackupInfo {
                label: "F".into(),
                backup_type: "full".into(),
                repo: 1,
                start: "2026-01-01T00:00:00Z".into(),
                stop: "2026-01-01T00:00:10Z".into(),
                size: 1,
                delta: 1,
                repo_size: 1,
                repo_delta: 1,
                wal_start: None,
                wal_stop: None,
                lsn_start: None,
                lsn_stop: None,
                system_identifier: None,
                pg_version: None,
                prior: None,
                error: false,
            }],
            ..Default::default()
        }];
        let text = render(&[i], &backups, now);
        let l = "database=\"orders\",node=\"n1\",host=\"h1\"";
        assert!(
            text.contains(&format!("pgcd_archive_failures_total{{{l}}} 2\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "pgcd_archive_last_archived_age_seconds{{{l}}} 30\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(
                "pgcd_backup_last_good_age_seconds{database=\"orders\",node=\"n1\"} 50\n"
            ),
            "{text}"
        );
    }
}
