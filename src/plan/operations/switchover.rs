//! `Switchover` and `Failover`: a node's primary moves to one of its
//! standbys, in three phases fixed when the operation starts.
//!
//! A switchover hands over without losing a write: the old primary stops
//! only once the candidate has flushed its WAL (a checkpoint, a wait, a
//! fast shutdown that streams the rest), then the record names the
//! candidate, then the candidate is promoted. Until the old primary is
//! stopped nothing has changed, so a refused or failed first phase leaves
//! it serving. A manual failover promotes without the old primary's help:
//! refused while that primary is healthy, unless `force: true`; the old
//! primary is stopped first when its host answers.
//!
//! Afterwards the ordinary plan repoints the other standbys and rejoins
//! the old primary as a standby (`pg_rewind`).

use crate::plan::ha::{self, Choice, Strictness};
use crate::plan::steps::{Action, Step};
use crate::plan::Index;
use crate::spec::names::{HostId, NodeName};
use crate::spec::Database;
use crate::state::actual::InstanceRole;
use crate::state::names::standby_name;
use crate::state::operation::PhaseRecord;

use super::Outcome;

/// Which kind of move.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `Switchover`: the old primary hands over.
    Switchover,
    /// `Failover`, forced or not.
    Failover {
        /// `force: true`.
        force: bool,
    },
}

/// The phases of operation `id` moving `node`'s primary of `db`.
pub(super) fn phases(
    id: &str,
    db: &Database,
    index: &Index,
    node: &str,
    candidate: Option<&HostId>,
    kind: Kind,
) -> Outcome {
    let name = &db.database_name;
    let Some(spec) = db.nodes.iter().find(|n| n.name.as_str() == node) else {
        return Outcome::Refuse(format!("{name} has no node {node}"));
    };
    if spec.host_ids.len() < 2 {
        return Outcome::Refuse(format!(
            "{name}/{node} has one host: there is no standby to move its primary to"
        ));
    }
    let Some(rec) = ha::record(index, name, node) else {
        return Outcome::Wait(format!(
            "{name}/{node} has no recorded primary yet (it is recorded once the primary and a standby run)"
        ));
    };
    let old = &rec.host;
    let old_inst = index.instance(name, node, old);
    let old_live = ha::live(index, old);
    let healthy = old_live && ha::answers_as(old_inst, InstanceRole::Primary);
    let term = rec.term + 1;
    let (target, min_lsn, stop) = match kind {
        Kind::Switchover => {
            if !healthy {
                return Outcome::Refuse(format!(
                    "the primary of {name}/{node} on {old} does not answer: a switchover needs it (a Failover promotes without it)"
                ));
            }
            match switchover_candidate(db, spec, old, index, candidate) {
                Ok(c) => (c, None, None),
                Err(why) => return Outcome::Refuse(why),
            }
        }
        Kind::Failover { force } => {
            if healthy && !force {
                return Outcome::Refuse(format!(
                    "the primary of {name}/{node} on {old} is healthy: a manual failover is refused (a Switchover hands over without losing writes; force: true fails over anyway)"
                ));
            }
            let strictness = if force {
                Strictness::Forced
            } else {
                Strictness::Failover
            };
            match ha::choose(db, spec, old, index, candidate, strictness) {
                Choice::Promote(c, min) => {
                    let stop = old_live && old_inst.is_some_and(|i| i.container_exists);
                    (c, min, stop.then_some(Action::StopInstance))
                }
                Choice::Wait(why) => return Outcome::Wait(why),
                Choice::Refuse(why) => return Outcome::Refuse(why),
            }
        }
    };
    let why = match kind {
        Kind::Switchover => format!("switchover {id}"),
        Kind::Failover { .. } => format!("failover {id}"),
    };
    let stop = match kind {
        Kind::Switchover => Some(Action::StopForSwitchover {
            candidate_slot: standby_name(node, &target),
        }),
        Kind::Failover { .. } => stop,
    };
    let mut out = Vec::new();
    if let Some(action) = stop {
        let description = match &action {
            Action::StopInstance => format!("stop the old primary on {old} (fencing)"),
            _ => format!(
                "stop the primary on {old} once {target} has its WAL (checkpoint, fast shutdown)"
            ),
        };
        out.push(phase(
            id,
            db,
            &spec.name,
            old,
            "stop",
            description,
            action,
            true,
        ));
    }
    out.push(phase(
        id,
        db,
        &spec.name,
        &target,
        "record",
        format!("record {target} as {name}/{node}'s primary (term {term})"),
        Action::RecordPrimary {
            host: target.clone(),
            term,
            why,
        },
        false,
    ));
    out.push(phase(
        id,
        db,
        &spec.name,
        &target,
        "promote",
        format!("promote the standby on {target}"),
        Action::PromoteStandby { min_lsn },
        true,
    ));
    Outcome::Phases(out)
}

/// The standby a switchover hands over to: `wanted`, else the most
/// advanced; it must stream from the primary and lag it by no more than
/// `failover.maximum_lag`.
fn switchover_candidate(
    db: &Database,
    node: &crate::spec::database::NodeSpec,
    old: &HostId,
    index: &Index,
    wanted: Option<&HostId>,
) -> Result<HostId, String> {
    let name = db.database_name.as_str();
    let node_name = node.name.as_str();
    let primary = index.instance(name, node_name, old);
    let replicas = primary.map(|p| p.replicas.as_slice()).unwrap_or_default();
    let max_lag = crate::spec::database::FailoverPolicy::maximum_lag(db.failover.as_ref());
    let streaming = |h: &HostId| {
        replicas
            .iter()
            .find(|r| r.name == standby_name(node_name, h))
            .filter(|r| r.state == "streaming")
    };
    let pool: Vec<&HostId> = node
        .host_ids
        .iter()
        .filter(|h| *h != old && ha::live(index, h))
        .filter(|h| ha::answers_as(index.instance(name, node_name, h), InstanceRole::Standby))
        .collect();
    let target = match wanted {
        Some(w) if !pool.contains(&w) => {
            return Err(format!(
                "{w} is not a running standby of {name}/{node_name} on a live host"
            ))
        }
        Some(w) => w.clone(),
        None => pool
            .iter()
            .filter(|h| streaming(h).is_some())
            .min_by_key(|h| streaming(h).and_then(|r| r.lag_bytes).unwrap_or(i64::MAX))
            .map(|h| (*h).clone())
            .ok_or_else(|| {
                format!("no standby of {name}/{node_name} streams from the primary on {old}")
            })?,
    };
    let Some(row) = streaming(&target) else {
        return Err(format!(
            "the standby on {target} does not stream from the primary on {old}: not caught up"
        ));
    };
    let lag = row.lag_bytes.unwrap_or(0).max(0) as u64;
    if lag > max_lag {
        return Err(format!(
            "the standby on {target} lags the primary by {lag} bytes, more than failover.maximum_lag ({max_lag}): not caught up"
        ));
    }
    Ok(target)
}

/// One phase of one step.
#[allow(clippy::too_many_arguments)]
fn phase(
    id: &str,
    db: &Database,
    node: &NodeName,
    host: &HostId,
    what: &str,
    description: String,
    action: Action,
    disruptive: bool,
) -> PhaseRecord {
    let name = format!("{what}-{host}");
    let database = db.database_name.clone();
    let step = Step {
        id: format!("{database}/{node}/{host}/operation:{id}:{what}"),
        database,
        node: node.clone(),
        host: host.clone(),
        action,
        reason: format!("operation {id}: {description}"),
        disruptive,
        drift: false,
        depends_on: vec![],
        operation: None,
        impact: None,
    };
    super::one_step_phase(id, name, description, step)
}
