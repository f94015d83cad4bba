//! The status of each database as the reconciler last saw it, stored under
//! `status/databases/<name>` and served by `GET /v1/databases[/{name}]`.
//!
//! Conditions follow kstatus: `Ready`, `Reconciling`, `Stalled`, `Degraded`
//! and `Orphaned`, each `true` or `false` with a machine reason and a message
//! a person reads. Plain values: no I/O here.

use crate::plan::{Note, Step};
use crate::state::InstanceRole;
use serde::{Deserialize, Serialize};

/// The kinds of condition, as kstatus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConditionType {
    /// Every instance runs as the spec says and the last plan was empty.
    Ready,
    /// Steps are being carried out.
    Reconciling,
    /// A step failed; later passes retry. The message names the step and error.
    Stalled,
    /// Running, but something is wrong that pgcd cannot fix now (a host down,
    /// an extension the image lacks, a standby not planned).
    Degraded,
    /// The database's file was removed; its instances are kept running.
    Orphaned,
    /// Maintenance mode (`suspend: true`, in its file or `pgcd.yaml`): its
    /// steps are planned and held; the condition's time says since when.
    Suspended,
}

impl ConditionType {
    /// The name as JSON and the status page show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
            Self::Degraded => "Degraded",
            Self::Orphaned => "Orphaned",
            Self::Suspended => "Suspended",
        }
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Which condition.
    #[serde(rename = "type")]
    pub kind: ConditionType,
    /// Whether it holds.
    pub status: bool,
    /// A CamelCase machine reason (`StepFailed`, `Applied`, `FileRemoved`).
    pub reason: String,
    /// What a person reads.
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
}

/// One instance as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The node.
    pub node: String,
    /// The host.
    pub host: String,
    /// `address:port` clients connect to.
    pub endpoint: String,
    /// Primary or standby (unknown when not running).
    pub role: InstanceRole,
    /// `running`, `stopped` or `missing`.
    pub state: String,
    /// `server_version` when running.
    pub version: Option<String>,
    /// For a standby: the primary's `pg_stat_replication` state (`streaming`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<String>,
    /// For a standby: WAL bytes the primary has that it has not replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// For a standby: replay lag, seconds (none when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Archiving (`pg_stat_archiver`): last archived and last failed WAL
    /// and their times, counts. Only where backups are configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<crate::state::ArchiverActual>,
}

/// One replication link of a natively replicated database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The node whose changes flow.
    pub from: String,
    /// The node receiving them.
    pub to: String,
    /// The subscription.
    pub subscription: String,
    /// `streaming` (enabled, apply worker running), `disabled` or `down`.
    pub state: String,
    /// WAL the publisher has that the subscriber has not applied, bytes
    /// (from the publisher's `pg_stat_replication`; none while not connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// `replay_lag` of the link, seconds (none when idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    /// Errors applying changes (`apply_error_count`).
    #[serde(default)]
    pub apply_errors: i64,
    /// Errors copying tables (`sync_error_count`).
    #[serde(default)]
    pub sync_errors: i64,
    /// Conflicts by kind (PostgreSQL 18 and later).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub conflicts: std::collections::BTreeMap<String, i64>,
    /// The last error its workers logged, when recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The plan of the last pass over a database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The revision (commit sha) planned from.
    pub revision: Option<String>,
    /// When it was planned (RFC 3339).
    pub planned_at: String,
    /// The plan as `pgcd plan` prints it.
    pub text: String,
    /// Its steps.
    pub steps: Vec<Step>,
    /// Its notes.
    pub notes: Vec<Note>,
    /// The database's operations not yet finished, with their phases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<crate::plan::operations::OperationPlan>,
}

/// The status of one database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    /// The database name.
    pub name: String,
    /// The revision whose spec this status describes.
    pub observed_revision: Option<String>,
    /// The conditions, in [`ConditionType`] order.
    pub conditions: Vec<Condition>,
    /// Its instances.
    pub instances: Vec<InstanceStatus>,
    /// The plan of the last pass that had steps or notes.
    pub last_plan: Option<PlanRecord>,
    /// Drift corrections carried out for this database since it was created.
    pub drift_corrections: u64,
    /// The last drift corrected, in words (`role app was missing`).
    #[serde(default)]
    pub last_drift: Vec<String>,
    /// Native replication: each link between nodes (publisher → subscriber).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkStatus>,
    /// Native replication: rows of the DDL log per node; equal counts mean
    /// every DDL change is in force on every node.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub ddl_log: std::collections::BTreeMap<String, i64>,
    /// Ids of the tasks of the last pass that ran steps.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The database's operations that have not finished, or that this
    /// cluster cannot carry out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<OperationSummary>,
    /// Each node's last restore rehearsal (`backup_config.verify`): when,
    /// ok or not and why, the backup, RTO and RPO.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_checks: Vec<crate::state::rehearsal::RestoreCheck>,
    /// A failure that is not retried until the database's spec changes
    /// (a `scripts` list that failed): kept here so a new leader holds it
    /// too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// When this record was written (RFC 3339).
    pub updated_at: String,
}

/// A failure held until the spec changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The digest of the spec it failed with ([`crate::state::spec_digest`]).
    pub spec: String,
    /// The failure, as the `Stalled` condition says it.
    pub failure: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// An operation as a database's status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationSummary {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Where it stands.
    pub state: crate::state::operation::OperationState,
    /// Why, in words.
    pub reason: String,
}

impl DatabaseStatus {
    /// The condition of this kind, when set.
    pub fn condition(&self, kind: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Whether the condition of this kind holds.
    pub fn is(&self, kind: ConditionType) -> bool {
        self.condition(kind).is_some_and(|c| c.status)
    }

    /// Sets a condition, keeping its transition time when `status` did not change.
    pub fn set(
        &mut self,
        kind: ConditionType,
        status: bool,
        reason: &str,
        message: String,
        now: &str,
    ) {
        let transition = match self.condition(kind) {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => now.to_string(),
        };
        self.conditions.retain(|c| c.kind != kind);
        self.conditions.push(Condition {
            kind,
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: transition,
        });
        self.conditions.sort_by_key(|c| c.kind);
    }

    /// A new status with no conditions yet.
    pub fn new(name: &str, now: &str) -> Self {
        Self {
            name: name.to_string(),
            observed_revision: None,
            conditions: Vec::new(),
            instances: Vec::new(),
            last_plan: None,
            drift_corrections: 0,
            last_drift: Vec::new(),
            links: Vec::new(),
            ddl_log: Default::default(),
            tasks: Vec::new(),
            operations: Vec::new(),
            restore_checks: Vec::new(),
            held: None,
            updated_at: now.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_unchanged() {
        let mut s = DatabaseStatus::new("orders", "t0");
        s.set(ConditionType::Ready, false, "Pending", "new".into(), "t1");
        s.set(ConditionType::Ready, false, "Pending", "still".into(), "t2");
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            "t1"
        );
        s.set(ConditionType::Ready, true, "Applied", "done".into(), "t3");
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            "t3"
        );
        assert!(s.is(ConditionType::Ready));
        s.set(
            ConditionType::Orphaned,
            false,
            "InSpec",
            String::new(),
            "t3",
        );
        let kinds: Vec<_> = s.conditions.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![ConditionType::Ready, ConditionType::Orphaned]);
    }
}

/// The reconciler's counters, kept in etcd by the leader so that they
/// survive a change of leader and every agent's `/metrics` can show them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcilerStats {
    /// The host of the leader that wrote this.
    pub leader: String,
    /// Passes run.
    pub passes: u64,
    /// The last pass's duration, seconds (observe + plan + apply).
    pub last_pass_seconds: f64,
    /// Sum of every pass's duration, seconds (with `passes`, a mean).
    pub pass_seconds_sum: f64,
    /// CPU time of this process during the last pass, seconds (the whole
    /// agent's, so it includes whatever else ran meanwhile).
    #[serde(default)]
    pub last_pass_cpu_seconds: f64,
    /// Steps in the last pass's plan.
    pub last_plan_steps: u64,
    /// Steps carried out that corrected drift.
    pub drift_corrections_total: u64,
    /// Steps that failed.
    pub apply_failures_total: u64,
    /// Steps carried out in all.
    pub steps_total: u64,
    /// Automatic failovers carried out (a new primary recorded).
    #[serde(default)]
    pub failovers_total: u64,
    /// When it was written (RFC 3339).
    pub updated_at: String,
}
