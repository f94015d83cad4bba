//! A backup schedule's progress (`reconcile/schedules/<db>/<node>/<id>`),
//! written by the leader in the same transaction that starts a scheduled
//! run's operation record: a scheduled time runs at most once, whichever
//! leader gets to it, and the times that passed with no run are counted,
//! never skipped silently.

use crate::spec::names::DatabaseName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many of a schedule's latest runs keep their operation records.
pub const KEEP_RUNS: usize = 5;

/// One schedule of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// The database.
    pub database: DatabaseName,
    /// The node.
    pub node: String,
    /// The schedule's id in `backup_config.schedules`.
    pub schedule: String,
    /// The expression the times below were computed from.
    pub cron_expression: String,
    /// When pgcd began following this expression: times before are not due.
    pub since: DateTime<Utc>,
    /// The latest scheduled time a run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_due: Option<DateTime<Utc>>,
    /// Runs started.
    #[serde(default)]
    pub runs: u64,
    /// Scheduled times that passed without a run (no leader then, or the
    /// database busy past the next time).
    #[serde(default)]
    pub missed: u64,
    /// The latest of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed: Option<DateTime<Utc>>,
    /// The operation ids of the latest runs, oldest first.
    #[serde(default)]
    pub recent: Vec<String>,
}

impl ScheduleRecord {
    /// `rec` (or a new record) followed from `now` on under
    /// `cron_expression`: a new schedule, or one whose expression changed.
    pub fn restarted(
        rec: Option<&ScheduleRecord>,
        database: &DatabaseName,
        node: &str,
        schedule: &str,
        cron_expression: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let mut r = rec.cloned().unwrap_or_else(|| ScheduleRecord {
            database: database.clone(),
            node: node.to_string(),
            schedule: schedule.to_string(),
            cron_expression: String::new(),
            since: now,
            last_due: None,
            runs: 0,
            missed: 0,
            last_missed: None,
            recent: Vec::new(),
        });
        r.cron_expression = cron_expression.to_string();
        r.since = now;
        r.last_due = None;
        r
    }

    /// Its key's tail: `<db>/<node>/<id>`.
    pub fn key(&self) -> String {
        format!("{}/{}/{}", self.database, self.node, self.schedule)
    }
}

/// The operation id of a scheduled run: `<db>.<node>.<id>.<time>`.
pub fn run_id(database: &str, node: &str, schedule: &str, due: DateTime<Utc>) -> String {
    format!(
        "{database}.{node}.{schedule}.{}",
        due.format("%Y%m%dt%H%M%Sz")
    )
}
