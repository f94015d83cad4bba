//! Restore rehearsals' records: what a node's backup held when it was taken
//! (`backup-figures/<db>/<node>`, written by the backup step right after
//! `pgbackrest backup` ends) and how the node's last rehearsal went
//! (`restore-checks/<db>/<node>`, written by the host that ran it). Plain
//! values; the conditions, the API and `/metrics` read them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many backups' figures a node keeps (the newest ones).
pub const KEEP_FIGURES: usize = 20;

/// What one database of an instance holds: the exact number of rows of its
/// permanent user tables (`count(*)` of each, summed) and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbFigures {
    /// The database.
    pub database: String,
    /// Its permanent user tables.
    pub tables: i64,
    /// Their rows, summed.
    pub rows: i64,
    /// `pg_database_size`, bytes.
    pub size: i64,
}

/// The source's figures of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFigures {
    /// The backup's label.
    pub label: String,
    /// When they were measured (RFC 3339), right after the backup ended.
    pub at: String,
    /// The WAL position then.
    pub lsn: String,
    /// Per database.
    pub databases: Vec<DbFigures>,
}

/// A node's backups' figures, newest last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFigures {
    /// By backup, newest last (at most [`KEEP_FIGURES`]).
    pub backups: Vec<BackupFigures>,
}

impl NodeFigures {
    /// Adds (or replaces) a backup's figures, keeping the newest ones.
    pub fn add(&mut self, f: BackupFigures) {
        self.backups.retain(|b| b.label != f.label);
        self.backups.push(f);
        while self.backups.len() > KEEP_FIGURES {
            self.backups.remove(0);
        }
    }

    /// The figures of a backup.
    pub fn of(&self, label: &str) -> Option<&BackupFigures> {
        self.backups.iter().find(|b| b.label == label)
    }
}

/// One database compared: the source's figures and the restored copy's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbCheck {
    /// The database.
    pub database: String,
    /// The restored copy's rows (permanent user tables).
    pub rows: i64,
    /// The source's, when they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_rows: Option<i64>,
    /// The restored copy's size, bytes.
    pub size: i64,
    /// The source's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_size: Option<i64>,
    /// They agree (rows exactly, sizes within the tolerance).
    pub ok: bool,
}

/// How a node's last restore rehearsal went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreCheck {
    /// The database.
    pub database: String,
    /// The node.
    pub node: String,
    /// The host that restored the backup.
    pub host: String,
    /// The rehearsal's operation id (`<db>.<node>._verify.<time>`).
    pub operation: String,
    /// The backup restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When the backup stopped (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_stop: Option<String>,
    /// When the rehearsal began and ended (RFC 3339).
    pub started_at: String,
    /// And ended.
    pub finished_at: String,
    /// The backup restored, the copy became consistent and every database
    /// matched its source.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RTO: seconds from the start of the restore to a consistent copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
    /// RPO: seconds from the backup's stop to the rehearsal's start (the
    /// age of the data a restore brings back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<f64>,
    /// Per database.
    #[serde(default)]
    pub databases: Vec<DbCheck>,
    /// Rehearsals that passed and failed so far.
    #[serde(default)]
    pub passed: u64,
    /// And failed.
    #[serde(default)]
    pub failed: u64,
}

/// The two sizes agree: the restored copy lacks or adds only what
/// PostgreSQL makes or drops on its own (the relation cache init file,
/// free space and visibility maps, unlogged tables' data): within 10% of
/// the source and 1 MiB.
pub fn sizes_agree(source: i64, restored: i64) -> bool {
    (source - restored).abs() <= source / 10 + (1 << 20)
}

/// Compares what the restored copy holds with the source's figures; a
/// database of the source missing from the copy is a mismatch, one the
/// source did not have (made after the figures) is compared with nothing.
pub fn compare(
    source: Option<&BackupFigures>,
    restored: &[DbFigures],
) -> (Vec<DbCheck>, Vec<String>) {
    let src: BTreeMap<&str, &DbFigures> = source
        .map(|s| {
            s.databases
                .iter()
                .map(|d| (d.database.as_str(), d))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut wrong = Vec::new();
    for r in restored {
        let s = src.get(r.database.as_str());
        let rows_ok = s.is_none_or(|s| s.rows == r.rows);
        let size_ok = s.is_none_or(|s| sizes_agree(s.size, r.size));
        if let Some(s) = s {
            if !rows_ok {
                wrong.push(format!(
                    "database {}: {} row(s) restored, the source had {}",
                    r.database, r.rows, s.rows
                ));
            }
            if !size_ok {
                wrong.push(format!(
                    "database {}: {} bytes restored, the source had {}",
                    r.database, r.size, s.size
                ));
            }
        }
        out.push(DbCheck {
            database: r.database.clone(),
            rows: r.rows,
            source_rows: s.map(|s| s.rows),
            size: r.size,
            source_size: s.map(|s| s.size),
            ok: rows_ok && size_ok,
        });
    }
    for name in src.keys() {
        if !restored.iter().any(|r| r.database == *name) {
            wrong.push(format!(
                "database {name} of the source is missing from the restored copy"
            ));
        }
    }
    (out, wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(db: &str, rows: i64, size: i64) -> DbFigures {
        DbFigures {
            database: db.into(),
            tables: 1,
            rows,
            size,
        }
    }

    #[test]
    fn rows_compare_exactly_and_sizes_within_the_tolerance() {
        let src = BackupFigures {
            label: "20260101-000000F".into(),
            databases: vec![fig("app", 100, 8_000_000), fig("other", 5, 7_000_000)],
            ..Default::default()
        };
        let (checks, wrong) = compare(
            Some(&src),
            &[fig("app", 100, 8_100_000), fig("other", 4, 7_000_000)],
        );
        assert!(checks[0].ok);
        assert!(!checks[1].ok);
        assert_eq!(
            wrong,
            ["database other: 4 row(s) restored, the source had 5"]
        );
        let (_, wrong) = compare(Some(&src), &[fig("app", 100, 20_000_000)]);
        assert_eq!(wrong.len(), 2, "{wrong:?}");
        assert!(wrong[1].contains("other of the source is missing"));
        let (checks, wrong) = compare(None, &[fig("app", 1, 1)]);
        assert!(checks[0].ok && wrong.is_empty() && checks[0].source_rows.is_none());
    }

    #[test]
    fn figures_keep_the_newest_backups() {
        let mut f = NodeFigures::default();
        for i in 0..(KEEP_FIGURES + 3) {
            f.add(BackupFigures {
                label: format!("l{i}"),
                ..Default::default()
            });
        }
        assert_eq!(f.backups.len(), KEEP_FIGURES);
        assert!(f.of("l0").is_none() && f.of(&format!("l{}", KEEP_FIGURES + 2)).is_some());
    }
}
