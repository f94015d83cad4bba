//! High availability in the plan: which instance of a node is its primary,
//! when a lost primary fails over, and to which standby. Pure.
//!
//! The authority is the node's record (`primaries/<db>/<node>`, see
//! `state::primary`): the planner makes the recorded host's instance the
//! primary and every other instance a standby of it. A record changes only
//! by a `RecordPrimary` step, which this module plans for a failover (and
//! `operations` for a switchover or a manual failover), always before the
//! promotion and only once the old primary cannot write: its host's lease
//! has expired (its agent fenced it before that), or it was stopped first.
//!
//! Which standby: the one that received the most WAL. With `synchronous:
//! true` every write acknowledged to a client is on at least one standby,
//! so a failover waits until every standby of the node answers and
//! reports a final position (its WAL receiver stopped), then promotes the
//! most advanced: no acknowledged write is lost. Without it, a standby
//! that lags the old primary's last known position by more than
//! `failover.maximum_lag` is never promoted automatically.

use super::instance::step;
use super::steps::{Action, Note, NoteKind, Plan, Step};
use super::Index;
use crate::spec::database::{FailoverPolicy, NodeSpec};
use crate::spec::names::{DatabaseName, HostId};
use crate::spec::Database;
use crate::state::actual::{InstanceActual, InstanceRole};
use crate::state::operation::OperationState;
use crate::state::primary::PrimaryRecord;
use chrono::{DateTime, Utc};

/// An agent that started less than this before a failover is decided may
/// not have observed its instances yet (a cluster starting cold): its
/// standbys are not compared until then.
const FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// The node's record, when it has one.
pub(super) fn record<'a>(index: &Index<'a>, db: &str, node: &str) -> Option<&'a PrimaryRecord> {
    index
        .actual
        .primaries
        .iter()
        .find(|r| r.database == db && r.node == node)
}

/// Whether a host's agent holds its lease.
pub(super) fn live(index: &Index, host: &str) -> bool {
    index.actual.host(host).is_some_and(|h| h.healthy)
}

/// Whether the instance answers as `role`.
pub(super) fn answers_as(i: Option<&InstanceActual>, role: InstanceRole) -> bool {
    i.is_some_and(|i| i.running && i.role == role)
}

/// Whether a switchover, a manual failover, an in-place restore, a Stop
/// or a Start of the database runs: it stops, starts or moves the primary
/// itself, and nothing here may interfere (a restoring or stopping
/// primary is down on purpose).
pub(super) fn moving(index: &Index, db: &str) -> bool {
    index.actual.operations.iter().any(|o| {
        o.state == OperationState::Running
            && o.database.as_deref() == Some(db)
            && matches!(
                o.kind.as_str(),
                "Switchover" | "Failover" | "Restore" | "Stop" | "Start"
            )
    })
}

/// A node with standbys and no record yet gets one (term 1): the instance
/// that runs as its primary, alone, or for a node none of whose instances
/// exists yet, the host its primary is created on. A node whose instances
/// exist and none answers as primary waits (the primary may be the
/// stopped one on any host); two primaries get no record: a person
/// decides which keeps its writes.
pub(super) fn first_record(
    db: &Database,
    node: &NodeSpec,
    primary: &HostId,
    index: &Index,
    out: &mut Plan,
) {
    let name = &db.database_name;
    if node.host_ids.len() < 2 || record(index, name, &node.name).is_some() {
        return;
    }
    let instances: Vec<&InstanceActual> = node
        .host_ids
        .iter()
        .filter_map(|h| index.instance(name, &node.name, h))
        .filter(|i| i.container_exists || i.data_dir_exists)
        .collect();
    let primaries: Vec<&&InstanceActual> = instances
        .iter()
        .filter(|i| answers_as(Some(i), InstanceRole::Primary))
        .collect();
    let host = match primaries.as_slice() {
        [] if instances.is_empty() => primary,
        [] => return,
        [p] => &p.host,
        many => {
            out.notes.push(Note {
                kind: NoteKind::Failover,
                database: name.clone(),
                message: format!(
                    "{name}/{}: {} instances run as primaries ({}); pgcd records none of them and changes none: a person decides which keeps its writes",
                    node.name,
                    many.len(),
                    many.iter().map(|i| i.host.as_str()).collect::<Vec<_>>().join(", ")
                ),
            });
            return;
        }
    };
    out.steps.push(step(
        (name, &node.name, host),
        "record-primary:t1",
        Action::RecordPrimary {
            host: host.clone(),
            term: 1,
            why: "first primary".into(),
        },
        format!(
            "{name}/{} has standbys: its primary on {host} is recorded, so that it can fail over",
            node.name
        ),
        Vec::new(),
    ));
}

/// Who to promote, or why not now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    /// This standby, which must have received at least this much WAL.
    Promote(HostId, Option<i64>),
    /// Not yet: what is awaited.
    Wait(String),
    /// Not this: why.
    Refuse(String),
}

/// How strict a choice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strictness {
    /// The old primary is gone (a failover): every rule.
    Failover,
    /// A person forced it (`force: true`): any running standby, the most
    /// advanced first, no lag rule.
    Forced,
}

/// Chooses the standby of `node` to promote in place of `old`'s instance:
/// `wanted` when given and allowed. See the module's rules.
pub(crate) fn choose(
    db: &Database,
    node: &NodeSpec,
    old: &HostId,
    index: &Index,
    wanted: Option<&HostId>,
    strictness: Strictness,
) -> Choice {
    let name = db.database_name.as_str();
    let node_name = node.name.as_str();
    let old_addr = index.actual.host(old).map(|h| h.address.as_str());
    let pool: Vec<(&HostId, &InstanceActual)> = node
        .host_ids
        .iter()
        .filter(|h| *h != old && live(index, h))
        .filter_map(|h| index.instance(name, node_name, h).map(|i| (h, i)))
        .filter(|(_, i)| answers_as(Some(i), InstanceRole::Standby))
        .collect();
    if let Some(w) = wanted {
        if !pool.iter().any(|(h, _)| *h == w) {
            return Choice::Refuse(format!(
                "{w} is not a running standby of {name}/{node_name} on a live host"
            ));
        }
    }
    if pool.is_empty() {
        return Choice::Wait(format!(
            "{name}/{node_name} has no running standby on a live host to promote"
        ));
    }
    let lsn = |i: &InstanceActual| i.wal.as_ref().and_then(|w| w.lsn).unwrap_or(0);
    let sync = node.synchronous == Some(true);
    if strictness == Strictness::Failover {
        if let Some(now) = index.now {
            if let Some((h, _)) = pool.iter().find(|(h, _)| {
                index
                    .actual
                    .host(h)
                    .and_then(|x| x.started_at)
                    .is_some_and(|t| {
                        now - t < chrono::Duration::from_std(FRESH).unwrap_or_default()
                    })
            }) {
                return Choice::Wait(format!(
                    "the agent on {h} started less than {}s ago; its standby's position is compared once it has reported",
                    FRESH.as_secs()
                ));
            }
        }
        if sync {
            let missing: Vec<&str> = node
                .host_ids
                .iter()
                .filter(|h| *h != old && !pool.iter().any(|(p, _)| p == h))
                .map(HostId::as_str)
                .collect();
            if !missing.is_empty() {
                return Choice::Wait(format!(
                    "{name}/{node_name} is synchronous and the standby on {} does not answer: it may hold writes acknowledged to clients that no other standby has (a Failover with force: true promotes anyway)",
                    missing.join(", ")
                ));
            }
        }
        // Positions are compared only once final: the WAL receiver has
        // stopped (the old primary is gone) or follows someone else.
        if pool.len() > 1 || sync {
            if let Some((h, _)) = pool.iter().find(|(_, i)| {
                i.wal
                    .as_ref()
                    .is_none_or(|w| w.receiving && w.upstream.as_deref() == old_addr)
            }) {
                return Choice::Wait(format!(
                    "the standby on {h} still streams from the lost primary; its final position is awaited"
                ));
            }
        }
    }
    let best = pool
        .iter()
        .max_by(|a, b| lsn(a.1).cmp(&lsn(b.1)).then_with(|| b.0.cmp(a.0)))
        .map(|(h, i)| (*h, lsn(i)));
    let Some((best_host, best_lsn)) = best else {
        return Choice::Wait(format!("{name}/{node_name} has no standby to promote"));
    };
    let max_lag =
        i64::try_from(FailoverPolicy::maximum_lag(db.failover.as_ref())).unwrap_or(i64::MAX);
    let (host, have) = match wanted {
        Some(w) => {
            let have = pool
                .iter()
                .find(|(h, _)| *h == w)
                .map_or(0, |(_, i)| lsn(i));
            if strictness == Strictness::Failover
                && have < best_lsn
                && (sync || best_lsn - have > max_lag)
            {
                return Choice::Refuse(format!(
                    "the standby on {w} has received {} bytes less WAL than the one on {best_host}; promoting it would lose them",
                    best_lsn - have
                ));
            }
            (w, have)
        }
        None => (best_host, best_lsn),
    };
    if strictness == Strictness::Forced {
        return Choice::Promote(host.clone(), None);
    }
    if sync {
        // Every acknowledged write is on the most advanced standby.
        return Choice::Promote(host.clone(), Some(best_lsn));
    }
    let old_lsn = index
        .instance(name, node_name, old)
        .and_then(|i| i.wal.as_ref())
        .and_then(|w| w.lsn);
    match old_lsn {
        Some(o) if o - have > max_lag => Choice::Refuse(format!(
            "the standby on {host} lags the old primary's last known position by {} bytes, more than failover.maximum_lag ({max_lag}); it is not promoted (a Failover with force: true promotes it)",
            o - have
        )),
        Some(o) => Choice::Promote(host.clone(), Some((o - max_lag).max(0))),
        None => Choice::Promote(host.clone(), None),
    }
}

/// Plans a failover of a node whose recorded primary is lost, when it is
/// due; returns whether the node is taken care of (its ordinary steps are
/// then not planned this pass).
///
/// Lost: its host's lease has expired (the agent fenced it), or its server
/// has not answered on a live host for `failover.grace` (it is stopped
/// first). Nothing happens while the database is suspended, automatic
/// failover is off, an operation moves its primary, or a Stop operation or
/// `state: stopped` stopped it.
pub(super) fn failover(
    db: &Database,
    node: &NodeSpec,
    rec: &PrimaryRecord,
    index: &Index,
    out: &mut Plan,
) -> bool {
    let name = &db.database_name;
    let node_name = &node.name;
    if db.suspend == Some(true) || moving(index, name) || !node.host_ids.contains(&rec.host) {
        return false;
    }
    // Stopped on purpose, with its node (a Stop stops a primary only so,
    // and `state: stopped` stops the whole node): nothing to fail over to,
    // and nothing lost.
    if node.state == Some(crate::spec::database::NodeState::Stopped)
        || index.stopped_by(name, node_name, &rec.host).is_some()
    {
        return false;
    }
    let old = &rec.host;
    let inst = index.instance(name, node_name, old);
    let host_live = live(index, old);
    if host_live {
        if inst.is_some_and(|i| i.running) || !inst.is_some_and(|i| i.container_exists) {
            return false;
        }
        let key = format!("{name}/{node_name}/{old}");
        let Some(since) = index.actual.down_since.get(&key) else {
            return false;
        };
        let grace = chrono::Duration::from_std(FailoverPolicy::grace(db.failover.as_ref()))
            .unwrap_or_default();
        let Some(now) = index.now else {
            return false;
        };
        let due: DateTime<Utc> = *since + grace;
        if now < due {
            out.wake_at = Some(out.wake_at.map_or(due, |w| w.min(due)));
            return false;
        }
    }
    let why_lost = if host_live {
        format!("its server on {old} has not answered for failover.grace")
    } else {
        format!("host {old} is lost (its lease expired)")
    };
    if !FailoverPolicy::automatic(db.failover.as_ref()) {
        out.notes.push(Note {
            kind: NoteKind::Failover,
            database: name.clone(),
            message: format!(
                "{name}/{node_name}: {why_lost}; automatic failover is off (failover.automatic: false): a Failover operation promotes a standby"
            ),
        });
        return true;
    }
    let term = rec.term + 1;
    match choose(db, node, old, index, None, Strictness::Failover) {
        Choice::Wait(why) | Choice::Refuse(why) => {
            out.notes.push(Note {
                kind: NoteKind::Failover,
                database: name.clone(),
                message: format!("{name}/{node_name}: {why_lost}; not failed over: {why}"),
            });
        }
        Choice::Promote(candidate, min_lsn) => {
            let steps = promotion(
                (name, node_name),
                old,
                &candidate,
                term,
                min_lsn,
                host_live,
                &format!("failover from {old}: {why_lost}"),
                "failover",
            );
            out.steps.extend(steps);
        }
    }
    true
}

/// The steps that move a node's primary from `old` to `candidate` at
/// `term`: stop the old one (when its host is alive), record, promote.
/// Step ids carry `what` and the term (`failover-record:t3`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn promotion(
    at: (&DatabaseName, &crate::spec::names::NodeName),
    old: &HostId,
    candidate: &HostId,
    term: u64,
    min_lsn: Option<i64>,
    stop_old: bool,
    why: &str,
    what: &str,
) -> Vec<Step> {
    let (db, node) = at;
    let mut out = Vec::new();
    let mut before = Vec::new();
    if stop_old {
        let s = step(
            (db, node, old),
            &format!("{what}-stop:t{term}"),
            Action::StopInstance,
            format!("{why}: the old primary is stopped before another is promoted"),
            Vec::new(),
        );
        before.push(s.id.clone());
        out.push(s);
    }
    let record = step(
        (db, node, candidate),
        &format!("{what}-record:t{term}"),
        Action::RecordPrimary {
            host: candidate.clone(),
            term,
            why: why.to_string(),
        },
        format!("{why}: {candidate} becomes {db}/{node}'s primary (term {term})"),
        before,
    );
    let promote = step(
        (db, node, candidate),
        &format!("{what}-promote:t{term}"),
        Action::PromoteStandby { min_lsn },
        format!("{why}: the standby on {candidate} is promoted"),
        vec![record.id.clone()],
    );
    out.push(record);
    out.push(promote);
    out
}

/// Whether a step belongs to a failover: it runs even while an operation
/// holds its database, and beside a batch already running there.
pub(crate) fn urgent(s: &Step) -> bool {
    s.id.contains("/failover-")
}
