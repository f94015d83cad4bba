//! Restore rehearsals (`backup_config.verify`): the leader starts a
//! `Verify` run of each node whose rehearsal time (UTC) has come: one phase,
//! one step on the chosen host that restores the node's newest backup into
//! a scratch instance and checks it (see `exec::rehearse`).
//!
//! The schedule machinery of `schedule.rs` carries it: a run's id names its
//! time (`<db>.<node>._verify.<time>`, `_verify` being no schedule id a spec
//! can have), and the record `reconcile/schedules/<db>/<node>/_verify`
//! advances in the transaction that makes the run, so each time runs at
//! most once across leaders; a late leader runs the latest time and counts
//! the others missed. Unlike a backup, a rehearsal does not touch the node:
//! it neither waits for the database's other steps nor holds it while it
//! runs. Pure.

use super::schedule::wake;
use super::{one_step_phase, OperationPlan, Transition};
use crate::plan::instance::primary_host;
use crate::plan::steps::Plan;
use crate::plan::Index;
use crate::spec::database::{DatabaseState, NodeSpec};
use crate::spec::names::HostId;
use crate::spec::{Database, Desired};
use crate::state::operation::OperationState;
use crate::state::schedule::{run_id, ScheduleRecord};
use crate::state::Actual;
use chrono::{DateTime, Utc};

/// The schedule id of a node's rehearsals in its record and run ids.
pub const VERIFY: &str = "_verify";
/// The operation kind of a rehearsal run.
pub const KIND: &str = "Verify";
/// At most this many passed times are counted at once.
const CAP: usize = 100_000;

/// The host that rehearses `node`'s restore: the spec's, else a live host of
/// the node that is not its primary, else the primary's. `Err` says what
/// it waits for.
pub(super) fn rehearsal_host<'a>(
    db: &'a Database,
    node: &'a NodeSpec,
    index: &Index,
    asked: Option<&'a HostId>,
) -> Result<&'a HostId, String> {
    let usable = |h: &HostId| index.actual.host(h).is_some_and(|a| a.healthy && a.docker);
    if let Some(h) = asked {
        return if usable(h) {
            Ok(h)
        } else {
            Err(format!(
                "waits until host {h} (backup_config.verify.host) is live with Docker"
            ))
        };
    }
    let primary = primary_host(&db.database_name, node, index);
    if let Some(h) = node
        .host_ids
        .iter()
        .find(|h| Some(*h) != primary && usable(h))
    {
        return Ok(h);
    }
    match primary {
        Some(p) if usable(p) => Ok(p),
        _ => Err(format!(
            "waits until a host of {}/{} is live with Docker",
            db.database_name, node.name
        )),
    }
}

/// Plans every node's rehearsals.
pub(super) fn plan(desired: &Desired, actual: &Actual, now: DateTime<Utc>, out: &mut Plan) {
    let index = Index::new(actual, Some(now));
    let mut dbs: Vec<_> = desired.databases.iter().collect();
    dbs.sort_by(|a, b| a.database_name.cmp(&b.database_name));
    for db in dbs {
        if db.state == Some(DatabaseState::Absent) || db.suspend == Some(true) {
            continue;
        }
        for node in &db.nodes {
            node_plan(db, node, actual, &index, now, out);
        }
    }
}

fn node_plan(
    db: &Database,
    node: &NodeSpec,
    actual: &Actual,
    index: &Index,
    now: DateTime<Utc>,
    out: &mut Plan,
) {
    let name = &db.database_name;
    let Some(cfg) = crate::plan::backup::config(db, node) else {
        return;
    };
    let Some(verify) = &cfg.verify else {
        return;
    };
    let Ok(cron) = crate::spec::parse_cron(&verify.cron_expression) else {
        return; // validation refused the revision already
    };
    let key = format!("{name}/{}/{VERIFY}", node.name);
    let rec = actual.schedules.iter().find(|r| r.key() == key);
    let mut p = OperationPlan {
        id: format!("{name}.{}.{VERIFY}", node.name),
        kind: KIND.into(),
        database: Some(name.clone()),
        state: OperationState::Scheduled,
        reason: String::new(),
        phases: Vec::new(),
        transition: None,
        not_before: None,
    };
    let rec = match rec {
        Some(r) if r.cron_expression == verify.cron_expression => r,
        _ => {
            let r = ScheduleRecord::restarted(
                rec,
                name,
                node.name.as_str(),
                VERIFY,
                &verify.cron_expression,
                now,
            );
            let next = cron.after(&now).next();
            p.not_before = next;
            p.reason = format!(
                "restore rehearsals of {name}/{} (\"{}\"): followed from now on",
                node.name, verify.cron_expression
            );
            p.transition = Some(Transition::Schedule {
                record: Box::new(r),
                phases: None,
                refused: None,
                prune: Vec::new(),
            });
            wake(out, next);
            out.operations.push(p);
            return;
        }
    };
    let base = rec.last_due.map_or(rec.since, |d| d.max(rec.since));
    let due: Vec<DateTime<Utc>> = cron
        .after(&base)
        .take_while(|t| *t <= now)
        .take(CAP)
        .collect();
    let Some(&latest) = due.last() else {
        wake(out, cron.after(&base).next());
        return;
    };
    wake(out, cron.after(&latest).next());
    p.not_before = Some(latest);
    // One rehearsal of a node at a time: a run still going holds the next.
    let running = rec.recent.iter().any(|id| {
        actual
            .operations
            .iter()
            .any(|o| o.id == *id && o.state == OperationState::Running)
    });
    let host = if running {
        Err("waits until the node's previous rehearsal ends".to_string())
    } else {
        rehearsal_host(db, node, index, verify.host.as_ref())
    };
    let host = match host {
        Ok(h) => h,
        Err(why) => {
            p.state = OperationState::Pending;
            p.reason = format!(
                "restore rehearsal of {name}/{} due at {} {why}",
                node.name,
                latest.to_rfc3339()
            );
            out.operations.push(p);
            return;
        }
    };
    let id = run_id(name, &node.name, VERIFY, latest);
    let Some(step) = crate::plan::backup::rehearse_step(db, node, host, &id, 1) else {
        return;
    };
    let phase = one_step_phase(
        &id,
        format!("rehearse-{}-{host}", node.name),
        format!(
            "restore the newest backup of {}/{} into a scratch instance on {host} and check it",
            name, node.name
        ),
        step,
    );
    let (next, missed, prune) = super::schedule::advance(rec, &due, &id, actual);
    p.id = id;
    p.state = OperationState::Running;
    p.reason = format!(
        "restore rehearsal of {name}/{} due at {} on {host}{}",
        node.name,
        latest.to_rfc3339(),
        if missed > 0 {
            format!(" ({missed} earlier time(s) missed)")
        } else {
            String::new()
        }
    );
    p.phases = super::phases_of(std::slice::from_ref(&phase));
    p.transition = Some(Transition::Schedule {
        record: Box::new(next),
        phases: Some(vec![phase]),
        refused: None,
        prune,
    });
    out.operations.push(p);
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
