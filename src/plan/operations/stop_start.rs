//! `Stop` and `Start`: one instance per phase, like `Restart`. A Stop
//! stops a node's standbys before its primary and refuses to stop a
//! primary without the rest of its running node (its standbys would be
//! left without one, and the node would fail over); a Start starts the
//! primary first.
//!
//! Their effect lasts: for each instance, the last Stop or Start that
//! succeeded on it (its phase for that instance) decides, and after a
//! Stop the rest of the planner keeps it stopped as if its node said
//! `state: stopped` (see [`stopped`]), until a Start covers it. Pure:
//! computed from the operations' records.

use super::restart::{is_primary, phase, targets};
use super::Outcome;
use crate::plan::steps::Action;
use crate::plan::Index;
use crate::spec::database::NodeState;
use crate::state::operation::PhaseState;
use crate::state::{Actual, InstanceActual};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};

/// The kind of a Stop operation, as its record names it.
pub(crate) const STOP: &str = "Stop";
/// The kind of a Start operation, as its record names it.
pub(crate) const START: &str = "Start";

/// Stops each targeted running instance, one per phase, a node's primary
/// last; refused when it would stop a primary but leave one of its node's
/// instances running.
pub(super) fn stop(
    id: &str,
    db: &crate::spec::Database,
    index: &Index,
    node: Option<&str>,
    host: Option<&str>,
) -> Outcome {
    let running = |i: &InstanceActual| i.container_exists && i.running;
    let chosen = targets(db, index, node, host, false, running);
    let keys: BTreeSet<(&str, &str)> = chosen
        .iter()
        .map(|i| (i.node.as_str(), i.host.as_str()))
        .collect();
    for p in chosen.iter().filter(|i| is_primary(db, index, i)) {
        let left: Vec<&str> = index
            .of_database(&db.database_name)
            .iter()
            .filter(|i| i.node == p.node && running(i))
            .filter(|i| !keys.contains(&(i.node.as_str(), i.host.as_str())))
            .map(|i| i.host.as_str())
            .collect();
        if !left.is_empty() {
            return Outcome::Refuse(format!(
                "{} is the primary of {}/{}, whose instance(s) on {} would keep running without it; a primary is stopped only with its whole node (a Stop with `node: {}` and no `host`); nothing was stopped",
                p.host,
                p.database,
                p.node,
                left.join(", "),
                p.node
            ));
        }
    }
    Outcome::Phases(
        chosen
            .into_iter()
            .map(|i| phase(id, i, Action::StopInstance, "stop"))
            .collect(),
    )
}

/// Starts each targeted stopped instance, one per phase, a node's primary
/// first. An instance whose node the spec says `state: stopped` is not
/// started (the spec would stop it again).
pub(super) fn start(
    id: &str,
    db: &crate::spec::Database,
    index: &Index,
    node: Option<&str>,
    host: Option<&str>,
) -> Outcome {
    let spec_stopped = |i: &InstanceActual| {
        db.nodes
            .iter()
            .any(|n| n.name == i.node && n.state == Some(NodeState::Stopped))
    };
    let stopped = |i: &InstanceActual| i.container_exists && !i.running && !spec_stopped(i);
    Outcome::Phases(
        targets(db, index, node, host, true, stopped)
            .into_iter()
            .map(|i| phase(id, i, Action::StartInstance, "start"))
            .collect(),
    )
}

/// When an instance's last Stop or Start phase ended, its operation's id,
/// and whether it was a Stop.
type Decision<'a> = (Option<DateTime<Utc>>, &'a str, bool);

/// The instances a Stop operation keeps stopped, by (database, node,
/// host), with that operation's id: those whose last succeeded phase of a
/// Stop or Start (by its end time, then its operation's id) was a Stop's.
/// Phases, not whole operations, decide: a Start cancelled after its
/// primary's phase leaves that primary started, a Stop failed after its
/// standby's phase leaves that standby stopped.
pub(crate) fn stopped(actual: &Actual) -> HashMap<(&str, &str, &str), &str> {
    let mut last: HashMap<(&str, &str, &str), Decision> = HashMap::new();
    let time = |t: Option<&str>| {
        t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    for rec in actual
        .operations
        .iter()
        .filter(|r| r.kind == STOP || r.kind == START)
    {
        let is_stop = rec.kind == STOP;
        for phase in rec
            .phases
            .iter()
            .filter(|p| p.state == PhaseState::Succeeded)
        {
            let at = time(phase.finished_at.as_deref()).or(time(rec.finished_at.as_deref()));
            for s in &phase.steps {
                if !matches!(s.action, Action::StopInstance | Action::StartInstance) {
                    continue;
                }
                let key = (s.database.as_str(), s.node.as_str(), s.host.as_str());
                let this = (at, rec.id.as_str(), is_stop);
                let later = last
                    .get(&key)
                    .is_none_or(|prev| (prev.0, prev.1) < (this.0, this.1));
                if later {
                    last.insert(key, this);
                }
            }
        }
    }
    last.into_iter()
        .filter(|(_, (_, _, is_stop))| *is_stop)
        .map(|(k, (_, id, _))| (k, id))
        .collect()
}

#[cfg(test)]
#[path = "stop_start_tests.rs"]
mod tests;
