//! Planning operations (`operations/<id>.yaml`): each becomes phases of
//! ordinary steps, fixed when it starts and recorded by the reconciler, so
//! it runs exactly once per id and a new leader resumes at the recorded
//! phase. Pure: the planner proposes what the records should say next
//! (`Transition`); only the reconciler writes them.
//!
//! Rules, per database:
//! - an operation that runs holds its database: its current phase's steps
//!   are planned and the database's other steps wait (a restart must not be
//!   undone by a "start the stopped instance" step);
//! - otherwise the database's own steps come first, and operations wait;
//! - then one operation starts at a time, in id order, once its
//!   `scheduled_at` has come.
//!
//! Kinds this cluster cannot carry out yet are recorded `unsupported` and
//! noted on their database, never silently ignored.

mod backup;
mod restart;
mod schedule;
pub(super) mod stop_start;
mod switchover;
pub mod verify;

use super::steps::{Note, NoteKind, Plan};
use crate::spec::names::DatabaseName;
use crate::spec::operation::Action as Op;
use crate::spec::{Desired, Operation};
use crate::state::operation::{OperationRecord, OperationState, PhaseRecord, PhaseState};
use crate::state::Actual;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What the planner makes of one operation that has not finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationPlan {
    /// Its id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// The database it acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseName>,
    /// Where it stands after this plan.
    pub state: OperationState,
    /// Why, in words.
    pub reason: String,
    /// Its phases (proposed when it has not started, recorded once it has).
    pub phases: Vec<PhasePlan>,
    /// What the reconciler should record, when that changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<Transition>,
    /// Not before this time (a scheduled operation), for the reconciler's timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

/// One phase as a plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhasePlan {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Clients feel it.
    pub disruptive: bool,
    /// Where it stands.
    pub state: PhaseState,
    /// What clients will feel of it (see [`crate::plan::impact`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    /// Its first step, for the impact (not shown).
    #[serde(skip)]
    pub step: Option<super::steps::Step>,
}

/// A change to an operation's record that the planner asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Transition {
    /// Record this state and reason (made when absent).
    State {
        /// The state.
        state: OperationState,
        /// Why.
        reason: String,
    },
    /// Start: record these phases and `running` (only if it has none yet).
    Start {
        /// The phases, in order, with their steps.
        phases: Vec<PhaseRecord>,
    },
    /// Cancel another operation (`target`), which has not started a
    /// disruptive phase; this Cancel then succeeds.
    Cancel {
        /// The operation cancelled.
        target: String,
    },
    /// A backup schedule: its record as it should be now and, when a
    /// scheduled time has come, the run's operation record (this plan's
    /// id) made with these phases, or failed with this reason; written in
    /// one transaction, so a time runs at most once. `prune` are the
    /// records of older runs, deleted with it.
    Schedule {
        /// The schedule's record.
        record: Box<crate::state::schedule::ScheduleRecord>,
        /// The run's phases.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phases: Option<Vec<PhaseRecord>>,
        /// The run was refused: why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
        /// Older runs' operation records to delete.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        prune: Vec<String>,
    },
}

/// What a request for phases comes to.
pub(super) enum Outcome {
    /// These phases.
    Phases(Vec<PhaseRecord>),
    /// Not yet (the operation stays pending): why.
    Wait(String),
    /// Refused (the operation fails, nothing was done): why.
    Refuse(String),
}

/// The kinds this cluster carries out; the others are recorded unsupported.
fn supported(op: &Op) -> bool {
    matches!(
        op,
        Op::Restart { .. }
            | Op::Stop { .. }
            | Op::Start { .. }
            | Op::Cancel { .. }
            | Op::Switchover { .. }
            | Op::Failover { .. }
            | Op::Backup { .. }
            | Op::Restore { .. }
    )
}

fn kind(op: &Op) -> &'static str {
    match op {
        Op::Switchover { .. } => "Switchover",
        Op::Failover { .. } => "Failover",
        Op::Backup { .. } => "Backup",
        Op::Restore { .. } => "Restore",
        Op::Restart { .. } => "Restart",
        Op::Stop { .. } => stop_start::STOP,
        Op::Start { .. } => stop_start::START,
        Op::Cancel { .. } => "Cancel",
    }
}

fn scheduled_at(op: &Op) -> Option<DateTime<Utc>> {
    match op {
        Op::Switchover { scheduled_at, .. }
        | Op::Restart { scheduled_at, .. }
        | Op::Stop { scheduled_at, .. }
        | Op::Start { scheduled_at, .. } => scheduled_at.as_ref().map(|t| t.0),
        _ => None,
    }
}

/// Plans every operation of `desired` that has not finished, adding the
/// steps of running phases to `out` and holding back the other steps of a
/// database an operation holds. `now` is `None` when the caller has no
/// clock (a plan shown to a person): scheduled operations then stay
/// scheduled.
/// A phase of one step, pending: the step is marked as the operation's
/// and carried by the phase's one task.
fn one_step_phase(
    id: &str,
    name: String,
    description: String,
    mut step: super::steps::Step,
) -> PhaseRecord {
    let task = crate::state::operation::phase_task_id(id, &name);
    step.operation = Some(super::steps::StepOperation {
        id: id.to_string(),
        phase: name.clone(),
        task: task.clone(),
    });
    PhaseRecord {
        description,
        disruptive: step.disruptive,
        steps: vec![step],
        tasks: vec![task],
        name,
        state: PhaseState::Pending,
        leader: None,
        started_at: None,
        finished_at: None,
        error: None,
    }
}

pub(super) fn plan(desired: &Desired, actual: &Actual, now: Option<DateTime<Utc>>, out: &mut Plan) {
    let records: BTreeMap<&str, &OperationRecord> = actual
        .operations
        .iter()
        .map(|r| (r.id.as_str(), r))
        .collect();
    // Minor upgrades' switchovers, made by the planner, run like committed ones,
    // and the backups that major upgrades in place take first.
    let index = super::Index::new(actual, now);
    let mut made = super::upgrade::operations(desired, &index);
    made.extend(super::major::operations(desired, &index));
    let mut ops: Vec<&Operation> = desired.operations.iter().chain(&made).collect();
    ops.sort_by(|a, b| a.id.cmp(&b.id));
    let mut held: BTreeSet<DatabaseName> = BTreeSet::new();
    // Running operations first: they hold their databases. Their records
    // carry them, also when their file is gone (editing or deleting it
    // changes nothing) or they are a schedule's runs.
    for rec in records.values() {
        if rec.state == OperationState::Running {
            // A rehearsal touches nothing of its database: it holds nothing.
            if let Some(db) = rec.database.as_ref().filter(|_| rec.kind != verify::KIND) {
                held.insert(db.clone());
            }
            let p = running(rec, out);
            out.operations.push(p);
        }
    }
    if !held.is_empty() {
        let mut kept = Vec::with_capacity(out.steps.len());
        let mut waiting: BTreeMap<DatabaseName, usize> = BTreeMap::new();
        for s in out.steps.drain(..) {
            if s.operation.is_none() && held.contains(&s.database) && !super::ha::urgent(&s) {
                *waiting.entry(s.database.clone()).or_default() += 1;
            } else {
                kept.push(s);
            }
        }
        out.steps = kept;
        for (db, n) in waiting {
            out.notes.push(Note {
                kind: NoteKind::Operation,
                database: db.clone(),
                message: format!("{n} step(s) of {db} wait until its running operation ends"),
            });
        }
    }
    let busy: BTreeSet<DatabaseName> = out
        .steps
        .iter()
        .filter(|s| s.operation.is_none())
        .map(|s| s.database.clone())
        .collect();
    let mut starting: BTreeSet<DatabaseName> = held.clone();
    for op in &ops {
        let rec = records.get(op.id.as_str()).copied();
        if rec.is_some_and(|r| r.state.is_final() || r.state == OperationState::Running) {
            continue;
        }
        let p = idle(
            op,
            rec,
            desired,
            actual,
            &records,
            now,
            &busy,
            &mut starting,
        );
        if p.state == OperationState::Unsupported {
            if let Some(db) = &p.database {
                out.notes.push(Note {
                    kind: NoteKind::Operation,
                    database: db.clone(),
                    message: p.reason.clone(),
                });
            }
        }
        out.operations.push(p);
    }
    if let Some(now) = now {
        schedule::plan(desired, actual, now, &busy, &mut starting, out);
        verify::plan(desired, actual, now, out);
    }
}

/// A running operation: its current phase's steps, or its end.
fn running(rec: &OperationRecord, out: &mut Plan) -> OperationPlan {
    let mut p = OperationPlan {
        id: rec.id.clone(),
        kind: rec.kind.clone(),
        database: rec.database.clone(),
        state: OperationState::Running,
        reason: rec.reason.clone(),
        phases: phases_of(&rec.phases),
        transition: None,
        not_before: None,
    };
    match rec.current_phase() {
        None => {
            p.state = OperationState::Succeeded;
            p.reason = format!("all {} phase(s) succeeded", rec.phases.len());
            p.transition = Some(Transition::State {
                state: OperationState::Succeeded,
                reason: p.reason.clone(),
            });
        }
        Some((i, phase)) if phase.state == PhaseState::Failed => {
            p.state = OperationState::Failed;
            p.reason = format!(
                "phase {} ({}) failed: {}",
                i + 1,
                phase.name,
                phase.error.as_deref().unwrap_or("no reason recorded")
            );
            p.transition = Some(Transition::State {
                state: OperationState::Failed,
                reason: p.reason.clone(),
            });
        }
        Some((i, phase)) => {
            p.reason = format!(
                "phase {}/{} ({}): {}",
                i + 1,
                rec.phases.len(),
                phase.name,
                phase.description
            );
            out.steps.extend(phase.steps.iter().cloned());
        }
    }
    p
}

/// An operation that has not started (or is scheduled, pending, or a
/// Cancel): what it waits for, or how it starts.
#[allow(clippy::too_many_arguments)]
fn idle(
    op: &Operation,
    rec: Option<&OperationRecord>,
    desired: &Desired,
    actual: &Actual,
    records: &BTreeMap<&str, &OperationRecord>,
    now: Option<DateTime<Utc>>,
    busy: &BTreeSet<DatabaseName>,
    starting: &mut BTreeSet<DatabaseName>,
) -> OperationPlan {
    let database = op.action.database().cloned();
    let mut p = OperationPlan {
        id: op.id.to_string(),
        kind: kind(&op.action).into(),
        database: database.clone(),
        state: OperationState::Pending,
        reason: String::new(),
        phases: Vec::new(),
        transition: None,
        not_before: scheduled_at(&op.action),
    };
    let record = |p: &mut OperationPlan, state: OperationState, reason: String| {
        p.state = state;
        p.reason = reason.clone();
        let same = rec.is_some_and(|r| r.state == state && r.reason == reason);
        if !same {
            p.transition = Some(Transition::State { state, reason });
        }
    };
    if !supported(&op.action) {
        let reason = format!(
            "operation {} ({}) is not carried out by this version of pgcd; nothing was done",
            op.id,
            kind(&op.action)
        );
        record(&mut p, OperationState::Unsupported, reason);
        return p;
    }
    if let Op::Cancel { operation, task } = &op.action {
        return cancel(op, operation.as_deref(), task.as_deref(), records, p, rec);
    }
    if let Some(at) = p.not_before {
        if now.is_none_or(|n| n < at) {
            record(
                &mut p,
                OperationState::Scheduled,
                format!("scheduled for {}", at.to_rfc3339()),
            );
            return p;
        }
    }
    let Some(db) = database else {
        return p;
    };
    if busy.contains(&db) {
        let reason = format!("waits until {db}'s other steps are carried out");
        record(&mut p, OperationState::Pending, reason);
        return p;
    }
    if !starting.insert(db.clone()) {
        let reason = format!("waits for another operation on {db}");
        record(&mut p, OperationState::Pending, reason);
        return p;
    }
    let Some(spec) = desired.databases.iter().find(|d| d.database_name == db) else {
        record(
            &mut p,
            OperationState::Failed,
            format!("database {db} is not in the spec"),
        );
        return p;
    };
    let index = super::Index::new(actual, now);
    let outcome = match &op.action {
        Op::Restart { node, host, .. } => Outcome::Phases(restart::phases(
            &op.id,
            spec,
            &index,
            node.as_deref(),
            host.as_deref(),
        )),
        Op::Stop { node, host, .. } => {
            stop_start::stop(&op.id, spec, &index, node.as_deref(), host.as_deref())
        }
        Op::Start { node, host, .. } => {
            stop_start::start(&op.id, spec, &index, node.as_deref(), host.as_deref())
        }
        Op::Switchover {
            node, candidate, ..
        }
        | Op::Failover {
            node, candidate, ..
        } => {
            let kind = match &op.action {
                Op::Failover { force, .. } => switchover::Kind::Failover {
                    force: *force == Some(true),
                },
                _ => switchover::Kind::Switchover,
            };
            switchover::phases(&op.id, spec, &index, node, candidate.as_ref(), kind)
        }
        Op::Backup {
            node,
            backup_type,
            repository,
            ..
        } => backup::backup(
            &op.id,
            spec,
            &index,
            node,
            *backup_type,
            repository.as_deref(),
        ),
        Op::Restore {
            target_nodes,
            repository,
            restore_options,
            ..
        } => backup::restore(
            &op.id,
            spec,
            &index,
            target_nodes,
            repository.as_deref(),
            restore_options.as_ref(),
        ),
        Op::Cancel { .. } => Outcome::Phases(Vec::new()),
    };
    let phases = match outcome {
        Outcome::Phases(p) => p,
        Outcome::Wait(why) => {
            starting.remove(&db);
            record(&mut p, OperationState::Pending, why);
            return p;
        }
        Outcome::Refuse(why) => {
            record(&mut p, OperationState::Failed, format!("refused: {why}"));
            return p;
        }
    };
    if phases.is_empty() {
        record(
            &mut p,
            OperationState::Failed,
            format!("no instance of {db} matches the operation; nothing was done"),
        );
        return p;
    }
    p.state = OperationState::Running;
    p.reason = format!("starts with phase 1/{} ({})", phases.len(), phases[0].name);
    p.phases = phases_of(&phases);
    p.transition = Some(Transition::Start { phases });
    p
}

fn cancel(
    op: &Operation,
    operation: Option<&str>,
    task: Option<&str>,
    records: &BTreeMap<&str, &OperationRecord>,
    mut p: OperationPlan,
    rec: Option<&OperationRecord>,
) -> OperationPlan {
    let target = operation.map(str::to_owned).or_else(|| {
        let task = task?;
        records
            .values()
            .find(|r| r.phases.iter().any(|ph| ph.tasks.iter().any(|t| t == task)))
            .map(|r| r.id.clone())
    });
    let decided = |state: OperationState, reason: String| Transition::State { state, reason };
    let Some(target) = target else {
        p.state = OperationState::Failed;
        p.reason = format!(
            "nothing to cancel: {} names no operation pgcd has started",
            task.unwrap_or("the Cancel")
        );
        p.transition = Some(decided(p.state, p.reason.clone()));
        return p;
    };
    match records.get(target.as_str()) {
        Some(r) if r.state.is_final() => {
            p.state = OperationState::Failed;
            p.reason = format!(
                "operation {target} had already ended ({})",
                r.state.as_str()
            );
            p.transition = Some(decided(p.state, p.reason.clone()));
        }
        Some(r) if r.disrupted() => {
            p.state = OperationState::Failed;
            p.reason =
                format!("operation {target} has started a disruptive phase; it runs to its end");
            p.transition = Some(decided(p.state, p.reason.clone()));
        }
        _ => {
            p.state = OperationState::Running;
            p.reason = format!("cancels operation {target}");
            p.transition = Some(Transition::Cancel { target });
        }
    }
    let _ = (op, rec);
    p
}

fn phases_of(phases: &[PhaseRecord]) -> Vec<PhasePlan> {
    phases
        .iter()
        .map(|p| PhasePlan {
            name: p.name.clone(),
            description: p.description.clone(),
            disruptive: p.disruptive,
            state: p.state,
            impact: None,
            step: p.steps.first().cloned(),
        })
        .collect()
}
