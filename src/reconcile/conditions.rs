//! A database's status from what the reconciler knows of it: its spec, its
//! slice of the plan, what its worker is doing or last did, and what the
//! agents observed. A pure function, so every rule is tested by feeding it
//! values and comparing the conditions with a reviewed snapshot.
//!
//! kstatus conditions: `Reconciling` while steps run or wait, `Stalled`
//! when a step keeps failing or the same steps keep coming back, `Ready`
//! when the plan is empty, `Degraded` while a note says something is wrong
//! that pgcd cannot fix now, `Orphaned` for a database without a file.

use super::status::{
    ConditionType as C, DatabaseStatus, InstanceStatus, LinkStatus, OperationSummary, PlanRecord,
};
use super::worker::BatchOutcome;
use crate::plan::{NoteKind, Plan};
use crate::spec::database::DatabaseState;
use crate::spec::Database;
use crate::state::names::{standby_name, subscription_name};
use crate::state::operation::OperationState;
use crate::state::{Actual, InstanceActual, InstanceRole, ReplicaActual};
use std::collections::BTreeMap;

/// What the database's worker is doing.
#[derive(Debug, Clone, Copy)]
pub enum Activity<'a> {
    /// A batch of steps is being carried out.
    Applying,
    /// Nothing runs. `failed` is the last batch's failure while it stands,
    /// `repeating` whether the plan asks again for exactly the steps that
    /// last succeeded.
    Idle {
        /// The failure of the last batch, until a batch succeeds.
        failed: Option<&'a str>,
        /// The same steps succeeded and are asked for again.
        repeating: bool,
        /// The failure is held until the spec changes (a `scripts` list
        /// failed): its reason is `ScriptFailed`, not `StepFailed`.
        held: bool,
    },
}

/// Everything the status of one database is derived from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The database.
    pub name: &'a str,
    /// Its spec, when it has one.
    pub spec: Option<&'a Database>,
    /// The revision in force.
    pub revision: &'a str,
    /// Its slice of the plan (steps, notes, operations).
    pub plan: &'a Plan,
    /// The observed state (its hosts; the database's own parts are below).
    pub actual: &'a Actual,
    /// The database's instances.
    pub instances: &'a [&'a InstanceActual],
    /// The digest of its spec last carried out in full.
    pub applied: Option<&'a str>,
    /// Its worker.
    pub activity: Activity<'a>,
    /// A batch that ended since the last derivation (counted once: drift
    /// corrections, task ids).
    pub ended: Option<&'a BatchOutcome>,
    /// The time now (RFC 3339), for transition times.
    pub now: &'a str,
    /// Maintenance mode (`suspend`): steps that are not an operation's are
    /// held.
    pub suspended: bool,
}

/// The derived status.
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    /// The status to store, or `None`: deleted as instructed, nothing left
    /// to report (the status and the applied digest are removed).
    pub status: Option<DatabaseStatus>,
    /// The spec digest to record as carried out in full (Ready).
    pub applied: Option<String>,
}

/// Derives a database's status from `prev` (its last status) and `i`.
pub fn derive(prev: Option<&DatabaseStatus>, i: &Inputs) -> Derived {
    let instances = instances(i.actual, i.instances);
    if i.spec
        .is_some_and(|d| d.state == Some(DatabaseState::Absent))
        && instances.is_empty()
    {
        return Derived {
            status: None,
            applied: None,
        };
    }
    let mut st = prev
        .cloned()
        .unwrap_or_else(|| DatabaseStatus::new(i.name, i.now));
    st.observed_revision = Some(i.revision.to_string());
    st.instances = instances;
    (st.links, st.ddl_log) = mesh(i.instances, i.spec);
    st.operations = i
        .plan
        .operations
        .iter()
        .filter(|o| o.database.as_deref() == Some(i.name))
        .map(|o| OperationSummary {
            id: o.id.clone(),
            kind: o.kind.clone(),
            state: o.state,
            reason: o.reason.clone(),
        })
        .collect();
    st.restore_checks = restore_checks(i);
    let has_steps = !i.plan.steps.is_empty();
    if has_steps || !i.plan.notes.is_empty() || !i.plan.operations.is_empty() {
        let record = plan_record(i.revision, i.plan, i.now);
        // Kept as it is when only the time would change: an idle database
        // whose plan has notes is not written again every pass.
        let same = st.last_plan.as_ref().is_some_and(|p| {
            p.revision == record.revision
                && p.text == record.text
                && p.steps == record.steps
                && p.notes == record.notes
                && p.operations == record.operations
        });
        if !same {
            st.last_plan = Some(record);
        }
    }
    let orphaned: Vec<&str> = i
        .plan
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Orphaned && i.spec.is_none())
        .map(|n| n.message.as_str())
        .collect();
    let degraded: Vec<&str> = i
        .plan
        .notes
        .iter()
        .filter(|n| !(n.kind == NoteKind::Orphaned && i.spec.is_none()))
        // Informational: a note that scripts do not run again describes the
        // spec, not a fault of the database.
        .filter(|n| n.kind != NoteKind::Scripts)
        .map(|n| n.message.as_str())
        .collect();
    let now = i.now;
    let mut applied = None;
    // Steps held by maintenance mode: the plan has them, the worker runs none.
    let held = if i.suspended {
        i.plan
            .steps
            .iter()
            .filter(|s| s.operation.is_none())
            .count()
    } else {
        0
    };
    if let Some(last) = i.ended {
        st.tasks = last.outcomes.iter().flat_map(|o| o.tasks.clone()).collect();
        let drift: Vec<String> = last
            .outcomes
            .iter()
            .filter(|o| o.step.drift && o.error.is_none())
            .map(|o| o.step.reason.clone())
            .collect();
        if !drift.is_empty() {
            st.drift_corrections += drift.len() as u64;
            st.last_drift = drift;
        }
    }
    if !orphaned.is_empty() {
        st.set(C::Orphaned, true, "FileRemoved", orphaned.join("; "), now);
        st.set(
            C::Ready,
            false,
            "NotInSpec",
            "the database has no spec; its instances are kept as they are".into(),
            now,
        );
        st.set(C::Reconciling, false, "NotInSpec", String::new(), now);
    } else {
        st.set(C::Orphaned, false, "InSpec", String::new(), now);
        match i.activity {
            Activity::Idle { failed: None, .. } if held > 0 => {
                let msg = format!(
                    "suspended: {held} step(s) planned and held (pgcd plan shows them); set suspend: false to carry them out"
                );
                st.set(C::Ready, false, "Suspended", msg, now);
                st.set(C::Reconciling, false, "Suspended", String::new(), now);
            }
            Activity::Applying => {
                let n = i.plan.steps.len();
                st.set(
                    C::Reconciling,
                    true,
                    "Applying",
                    format!("carrying out {n} step(s) of revision {}", short(i.revision)),
                    now,
                );
                st.set(
                    C::Ready,
                    false,
                    "Reconciling",
                    "steps of this revision are being carried out".into(),
                    now,
                );
            }
            Activity::Idle {
                failed: Some(why),
                held,
                ..
            } => {
                let reason = if held { "ScriptFailed" } else { "StepFailed" };
                st.set(C::Stalled, true, reason, why.to_string(), now);
                st.set(C::Ready, false, reason, why.to_string(), now);
                st.set(C::Reconciling, false, reason, String::new(), now);
            }
            Activity::Idle {
                repeating: true, ..
            } if has_steps => {
                let msg =
                    "the same steps succeeded twice but the instance still differs from the spec"
                        .to_string();
                st.set(C::Stalled, true, "NotConverging", msg.clone(), now);
                st.set(C::Ready, false, "NotConverging", msg, now);
                st.set(C::Reconciling, false, "NotConverging", String::new(), now);
            }
            Activity::Idle { .. } if has_steps => {
                st.set(C::Stalled, false, "StepsSucceeded", String::new(), now);
                st.set(
                    C::Reconciling,
                    true,
                    "Verifying",
                    "steps succeeded; confirming the result".into(),
                    now,
                );
                st.set(
                    C::Ready,
                    false,
                    "Reconciling",
                    "steps of this revision are being carried out".into(),
                    now,
                );
            }
            Activity::Idle { .. } => {
                st.set(C::Stalled, false, "Applied", String::new(), now);
                st.set(C::Reconciling, false, "Applied", String::new(), now);
                st.set(
                    C::Ready,
                    true,
                    "Applied",
                    // Not the revision: `observed_revision` names it, and a
                    // message naming it would rewrite every status per commit.
                    "the spec in force is carried out".to_string(),
                    now,
                );
                if let Some(db) = i.spec {
                    let digest = crate::state::spec_digest(db);
                    if i.applied != Some(digest.as_str()) {
                        applied = Some(digest);
                    }
                }
            }
        }
    }
    if i.suspended {
        st.set(
            C::Suspended,
            true,
            "SuspendSet",
            "maintenance mode (suspend: true): no steps but committed operations', no drift correction, no automatic failover or scheduled backup; observation and status go on".into(),
            now,
        );
    } else if st.conditions.iter().any(|c| c.kind == C::Suspended) {
        st.set(C::Suspended, false, "Resumed", String::new(), now);
    }
    let unsupported: Vec<String> = st
        .operations
        .iter()
        .filter(|o| o.state == OperationState::Unsupported)
        .map(|o| o.reason.clone())
        .collect();
    let failed_checks: Vec<String> = st
        .restore_checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| {
            format!(
                "the restore rehearsal of {}/{} failed at {}{}: {}",
                c.database,
                c.node,
                c.finished_at,
                c.label
                    .as_deref()
                    .map(|l| format!(" (backup {l})"))
                    .unwrap_or_default(),
                c.reason.as_deref().unwrap_or("no reason recorded")
            )
        })
        .collect();
    if degraded.is_empty() && failed_checks.is_empty() {
        st.set(C::Degraded, false, "Healthy", String::new(), now);
    } else {
        let reason = if degraded.is_empty() {
            "RestoreCheckFailed"
        } else if unsupported.len() == degraded.len() && failed_checks.is_empty() {
            "OperationUnsupported"
        } else {
            "SeeNotes"
        };
        let messages: Vec<&str> = failed_checks
            .iter()
            .map(String::as_str)
            .chain(degraded.iter().copied())
            .collect();
        st.set(C::Degraded, true, reason, messages.join("; "), now);
    }
    Derived {
        status: Some(st),
        applied,
    }
}

/// The last rehearsal of each node of the database that still has
/// rehearsals in its spec (a check of a node whose `verify` is gone no
/// longer speaks for its backups).
fn restore_checks(i: &Inputs) -> Vec<crate::state::rehearsal::RestoreCheck> {
    let Some(db) = i.spec else {
        return Vec::new();
    };
    let mut out: Vec<_> = i
        .actual
        .restore_checks
        .iter()
        .filter(|c| c.database == i.name)
        .filter(|c| {
            db.nodes.iter().any(|n| {
                n.name.as_str() == c.node
                    && crate::plan::backup::config(db, n).is_some_and(|b| b.verify.is_some())
            })
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// Whether a status differs from another in anything but its write time
/// and its revision.
pub fn changed(a: Option<&DatabaseStatus>, b: &DatabaseStatus) -> bool {
    let Some(a) = a else {
        return true;
    };
    // The revision alone is no change: `status/revision` carries it.
    let mut a = a.clone();
    a.updated_at.clear();
    a.observed_revision = None;
    let mut b = b.clone();
    b.updated_at.clear();
    b.observed_revision = None;
    a != b
}

fn plan_record(revision: &str, plan: &Plan, now: &str) -> PlanRecord {
    PlanRecord {
        revision: Some(revision.to_string()),
        planned_at: now.to_string(),
        text: plan.to_string(),
        steps: plan.steps.clone(),
        notes: plan.notes.clone(),
        operations: plan.operations.clone(),
    }
}

fn instances(actual: &Actual, of_db: &[&InstanceActual]) -> Vec<InstanceStatus> {
    of_db
        .iter()
        .map(|i| {
            let lag = standby_lag(of_db, i);
            InstanceStatus {
                node: i.node.to_string(),
                host: i.host.to_string(),
                endpoint: format!(
                    "{}:{}",
                    actual.host(&i.host).map_or("?", |h| h.address.as_str()),
                    i.port
                ),
                role: i.role,
                lag_bytes: lag.and_then(|r| r.lag_bytes),
                lag_seconds: lag.and_then(|r| r.lag_seconds),
                streaming: lag.map(|r| r.state.clone()),
                state: if i.running {
                    "running"
                } else if i.container_exists {
                    "stopped"
                } else {
                    "missing"
                }
                .into(),
                version: i.version.clone(),
                archive: i.backup.conf.as_ref().and(i.backup.archiver.clone()),
            }
        })
        .collect()
}

/// The links and DDL log positions of a natively replicated database.
fn mesh(
    of_db: &[&InstanceActual],
    spec: Option<&Database>,
) -> (Vec<LinkStatus>, BTreeMap<String, i64>) {
    let mut links = Vec::new();
    let mut ddl = BTreeMap::new();
    let Some(db) = spec.filter(|d| crate::state::native_mesh(d)) else {
        return (links, ddl);
    };
    for i in of_db.iter().filter(|i| i.role == InstanceRole::Primary) {
        if let Some(rows) = i.ddl_rows {
            ddl.insert(i.node.to_string(), rows);
        }
        for n in db.nodes.iter().filter(|n| n.name != i.node) {
            let sub = subscription_name(&n.name, &i.node);
            let found = i.subscriptions.iter().find(|s| s.name == sub);
            let state = match found {
                Some(s) if s.enabled && s.running => "streaming",
                Some(s) if !s.enabled => "disabled",
                _ => "down",
            };
            // The publisher sees the link as a walsender named after it.
            let sender = of_db
                .iter()
                .filter(|p| p.node == n.name && p.role == InstanceRole::Primary)
                .flat_map(|p| p.replicas.iter())
                .find(|r| r.name == sub);
            links.push(LinkStatus {
                from: n.name.to_string(),
                to: i.node.to_string(),
                state: state.into(),
                lag_bytes: sender.and_then(|r| r.lag_bytes),
                lag_seconds: sender.and_then(|r| r.lag_seconds),
                apply_errors: found.map_or(0, |s| s.apply_errors),
                sync_errors: found.map_or(0, |s| s.sync_errors),
                conflicts: found.map(|s| s.conflicts.clone()).unwrap_or_default(),
                last_error: found.and_then(|s| s.last_error.clone()),
                subscription: sub,
            });
        }
    }
    links.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    (links, ddl)
}

/// What a standby's primary reports of it (`pg_stat_replication`).
fn standby_lag<'a>(
    of_db: &[&'a InstanceActual],
    standby: &InstanceActual,
) -> Option<&'a ReplicaActual> {
    if standby.role != InstanceRole::Standby {
        return None;
    }
    let name = standby_name(&standby.node, &standby.host);
    of_db
        .iter()
        .filter(|p| p.node == standby.node && p.role == InstanceRole::Primary)
        .flat_map(|p| p.replicas.iter())
        .find(|r| r.name == name)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
