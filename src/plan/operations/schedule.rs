//! Backup schedules (`backup_config.schedules`): the leader starts a
//! `Backup` run of a node's primary when a scheduled time (UTC) has come.
//!
//! A run's operation id names its time (`<db>.<node>.<schedule>.<time>`),
//! and the schedule's record advances in the transaction that makes the
//! run's record, so each time runs at most once whichever leader gets to
//! it. A leader that comes late runs the latest time that passed, and
//! counts the earlier ones as missed (the record and a note say so): a
//! backup per time that passed would only pile up behind each other. A
//! schedule starts counting when pgcd first sees its expression. Pure.

use super::{backup, OperationPlan, Outcome, Transition};
use crate::plan::steps::{Note, NoteKind, Plan};
use crate::plan::Index;
use crate::spec::database::DatabaseState;
use crate::spec::names::DatabaseName;
use crate::spec::Desired;
use crate::state::operation::OperationState;
use crate::state::schedule::{run_id, ScheduleRecord, KEEP_RUNS};
use crate::state::Actual;
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// At most this many passed times are counted at once.
const CAP: usize = 100_000;

/// Plans every schedule of every node, after the operations of the spec.
pub(super) fn plan(
    desired: &Desired,
    actual: &Actual,
    now: DateTime<Utc>,
    busy: &BTreeSet<DatabaseName>,
    starting: &mut BTreeSet<DatabaseName>,
    out: &mut Plan,
) {
    let index = Index::new(actual, Some(now));
    let mut dbs: Vec<_> = desired.databases.iter().collect();
    dbs.sort_by(|a, b| a.database_name.cmp(&b.database_name));
    for db in dbs {
        if db.state == Some(DatabaseState::Absent) || db.suspend == Some(true) {
            continue;
        }
        let name = &db.database_name;
        for node in &db.nodes {
            let Some(cfg) = crate::plan::backup::config(db, node) else {
                continue;
            };
            for sched in &cfg.schedules {
                let Ok(cron) = crate::spec::parse_cron(&sched.cron_expression) else {
                    continue; // validation refused the revision already
                };
                let key = format!("{name}/{}/{}", node.name, sched.id);
                let rec = actual.schedules.iter().find(|r| r.key() == key);
                let mut p = OperationPlan {
                    id: format!("{name}.{}.{}", node.name, sched.id),
                    kind: "Backup".into(),
                    database: Some(name.clone()),
                    state: OperationState::Scheduled,
                    reason: String::new(),
                    phases: Vec::new(),
                    transition: None,
                    not_before: None,
                };
                let rec = match rec {
                    Some(r) if r.cron_expression == sched.cron_expression => r,
                    _ => {
                        // New, or its expression changed: counted from now.
                        let r = ScheduleRecord::restarted(
                            rec,
                            name,
                            node.name.as_str(),
                            sched.id.as_str(),
                            &sched.cron_expression,
                            now,
                        );
                        let next = cron.after(&now).next();
                        p.not_before = next;
                        p.reason = format!(
                            "schedule {} ({}, \"{}\"): followed from now on",
                            sched.id, sched.backup_type, sched.cron_expression
                        );
                        p.transition = Some(Transition::Schedule {
                            record: Box::new(r),
                            phases: None,
                            refused: None,
                            prune: Vec::new(),
                        });
                        wake(out, next);
                        out.operations.push(p);
                        continue;
                    }
                };
                if let Some(t) = rec
                    .last_missed
                    .filter(|t| now - *t < chrono::Duration::hours(24))
                {
                    out.notes.push(Note {
                        kind: NoteKind::Backup,
                        database: name.clone(),
                        message: format!(
                            "schedule {} of {name}/{}: {} scheduled run(s) were missed, the latest due at {} (no leader ran then, or the database was busy past the next time); the latest time that passed ran instead",
                            sched.id,
                            node.name,
                            rec.missed,
                            t.to_rfc3339()
                        ),
                    });
                }
                let base = rec.last_due.map_or(rec.since, |d| d.max(rec.since));
                let due: Vec<DateTime<Utc>> = cron
                    .after(&base)
                    .take_while(|t| *t <= now)
                    .take(CAP)
                    .collect();
                let Some(&latest) = due.last() else {
                    wake(out, cron.after(&base).next());
                    continue;
                };
                wake(out, cron.after(&latest).next());
                p.not_before = Some(latest);
                if busy.contains(name) || !starting.insert(name.clone()) {
                    p.state = OperationState::Pending;
                    p.reason = format!(
                        "schedule {}: the run due at {} waits until {name}'s other steps and operations are carried out",
                        sched.id,
                        latest.to_rfc3339()
                    );
                    out.operations.push(p);
                    continue;
                }
                let id = run_id(name, &node.name, &sched.id, latest);
                let outcome = backup::backup(
                    &id,
                    db,
                    &index,
                    &node.name,
                    Some(sched.backup_type),
                    sched.repository.as_deref(),
                );
                let (phases, refused) = match outcome {
                    Outcome::Phases(ph) => (Some(ph), None),
                    Outcome::Refuse(why) => (None, Some(format!("refused: {why}"))),
                    Outcome::Wait(why) => {
                        starting.remove(name);
                        p.state = OperationState::Pending;
                        p.reason = format!(
                            "schedule {}: the run due at {} {why}",
                            sched.id,
                            latest.to_rfc3339()
                        );
                        out.operations.push(p);
                        continue;
                    }
                };
                let (next, missed, prune) = advance(rec, &due, &id, actual);
                p.id = id;
                p.state = if refused.is_some() {
                    OperationState::Failed
                } else {
                    OperationState::Running
                };
                p.reason = match &refused {
                    Some(why) => why.clone(),
                    None => format!(
                        "schedule {}: {} backup due at {}{}",
                        sched.id,
                        sched.backup_type,
                        latest.to_rfc3339(),
                        if missed > 0 {
                            format!(" ({missed} earlier time(s) missed)")
                        } else {
                            String::new()
                        }
                    ),
                };
                if let Some(ph) = &phases {
                    p.phases = super::phases_of(ph);
                }
                p.transition = Some(Transition::Schedule {
                    record: Box::new(next),
                    phases,
                    refused,
                    prune,
                });
                out.operations.push(p);
            }
        }
    }
}

/// A schedule's record once the run `id` for the latest of the `due`
/// times starts (the earlier ones counted missed), with how many were
/// missed and the old runs' records to delete: the latest [`KEEP_RUNS`]
/// are kept, and any still running.
pub(super) fn advance(
    rec: &ScheduleRecord,
    due: &[DateTime<Utc>],
    id: &str,
    actual: &Actual,
) -> (ScheduleRecord, usize, Vec<String>) {
    let mut next = rec.clone();
    let missed = due.len().saturating_sub(1);
    next.last_due = due.last().copied();
    next.runs += 1;
    next.missed += missed as u64;
    if missed > 0 {
        next.last_missed = due.get(due.len() - 2).copied();
    }
    next.recent.push(id.to_string());
    let mut prune = Vec::new();
    while next.recent.len() > KEEP_RUNS {
        let old = next.recent.remove(0);
        let done = actual
            .operations
            .iter()
            .find(|o| o.id == old)
            .is_none_or(|o| o.state.is_final());
        if done {
            prune.push(old);
        } else {
            next.recent.insert(0, old);
            break;
        }
    }
    (next, missed, prune)
}

/// Asks the reconciler to plan again at `at` (the earliest asked for wins).
pub(super) fn wake(out: &mut Plan, at: Option<DateTime<Utc>>) {
    if let Some(at) = at {
        out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at)));
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
