//! Writing operations' records (`reconcile/operations/<id>`): the planner
//! proposes what a record should say next, this module writes it — each
//! change a read-modify-write guarded by the leader key and by the record's
//! own revision, so two leaders can never both move one operation, and a
//! phase is marked running before its task is written.

use crate::cluster::election::LeaderGuard;
use crate::cluster::keys;
use crate::cluster::store::{full_key, to_json};
use crate::cluster::{now_rfc3339, ClusterError};
use crate::plan::operations::{OperationPlan, Transition};
use crate::state::operation::{OperationRecord, OperationState, PhaseState};
use crate::state::schedule::ScheduleRecord;
use etcd_client::{Compare, CompareOp, TxnOp};

/// Writes operation records as the leader.
pub struct Recorder {
    guard: LeaderGuard,
}

impl Recorder {
    /// A recorder writing through `guard`.
    pub fn new(guard: LeaderGuard) -> Self {
        Self { guard }
    }

    fn me(&self) -> String {
        self.guard.host().to_string()
    }

    /// Reads the record, lets `change` edit it (or make it), and writes it
    /// back only if nobody wrote it meanwhile; `None` from `change` writes
    /// nothing. Returns the record as written.
    async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(Option<OperationRecord>) -> Option<OperationRecord>,
    ) -> Result<Option<OperationRecord>, ClusterError> {
        let key = keys::operation(id);
        for _ in 0..5 {
            let entry = self.guard.store().get(&key).await?;
            let (compare, current) = match &entry {
                Some(e) => (
                    Compare::mod_revision(full_key(&key), CompareOp::Equal, e.mod_revision),
                    Some(e.json::<OperationRecord>()?),
                ),
                None => (Compare::version(full_key(&key), CompareOp::Equal, 0), None),
            };
            let Some(mut next) = change(current.clone()) else {
                return Ok(current);
            };
            if current.as_ref() == Some(&next) {
                return Ok(current);
            }
            let me = self.me();
            if next.leaders.last() != Some(&me) {
                next.leaders.push(me);
            }
            let resp = self
                .guard
                .txn(
                    vec![compare],
                    vec![TxnOp::put(full_key(&key), to_json(&next)?, None)],
                    vec![],
                )
                .await?;
            if resp.succeeded() {
                return Ok(Some(next));
            }
        }
        Err(ClusterError::Other(format!(
            "operation record {id} kept changing under the leader"
        )))
    }

    /// Writes what the planner proposed for one operation.
    pub async fn apply(&self, p: &OperationPlan) -> Result<(), ClusterError> {
        let Some(t) = &p.transition else {
            return Ok(());
        };
        let now = now_rfc3339();
        let fresh = || OperationRecord {
            id: p.id.clone(),
            kind: p.kind.clone(),
            database: p.database.clone(),
            state: OperationState::Pending,
            reason: String::new(),
            phases: Vec::new(),
            leaders: Vec::new(),
            created_at: now.clone(),
            started_at: None,
            finished_at: None,
        };
        match t {
            Transition::State { state, reason } => {
                self.update(&p.id, |r| {
                    let mut r = r.unwrap_or_else(fresh);
                    if r.state.is_final() {
                        return None;
                    }
                    r.state = *state;
                    r.reason.clone_from(reason);
                    if state.is_final() {
                        r.finished_at = Some(now.clone());
                    }
                    Some(r)
                })
                .await?;
                tracing::info!(operation = %p.id, state = state.as_str(), %reason, "operation recorded");
            }
            Transition::Start { phases } => {
                let started = self
                    .update(&p.id, |r| {
                        let mut r = r.unwrap_or_else(fresh);
                        if r.state.is_final() || !r.phases.is_empty() {
                            return None;
                        }
                        r.state = OperationState::Running;
                        r.reason = p.reason.clone();
                        r.phases.clone_from(phases);
                        r.started_at = Some(now.clone());
                        Some(r)
                    })
                    .await?;
                if started.is_some_and(|r| r.state == OperationState::Running) {
                    tracing::info!(operation = %p.id, phases = phases.len(), "operation started");
                }
            }
            Transition::Schedule {
                record,
                phases,
                refused,
                prune,
            } => {
                let run = match (phases, refused) {
                    (Some(phases), _) => Some(OperationRecord {
                        state: OperationState::Running,
                        reason: p.reason.clone(),
                        phases: phases.clone(),
                        leaders: vec![self.me()],
                        started_at: Some(now.clone()),
                        ..fresh()
                    }),
                    (None, Some(why)) => Some(OperationRecord {
                        state: OperationState::Failed,
                        reason: why.clone(),
                        leaders: vec![self.me()],
                        finished_at: Some(now.clone()),
                        ..fresh()
                    }),
                    (None, None) => None,
                };
                self.schedule(record, run, prune).await?;
            }
            Transition::Cancel { target } => {
                let mut refused = None;
                self.update(target, |r| {
                    let mut r = r.unwrap_or_else(|| OperationRecord {
                        id: target.clone(),
                        kind: String::new(),
                        ..fresh()
                    });
                    if r.state.is_final() {
                        return None;
                    }
                    if r.disrupted() {
                        refused = Some(format!(
                            "operation {target} has started a disruptive phase; it runs to its end"
                        ));
                        return None;
                    }
                    r.state = OperationState::Cancelled;
                    r.reason = format!("cancelled by operation {}", p.id);
                    r.finished_at = Some(now.clone());
                    for ph in &mut r.phases {
                        if ph.state == PhaseState::Pending {
                            ph.state = PhaseState::Skipped;
                        }
                    }
                    Some(r)
                })
                .await?;
                let (state, reason) = match refused {
                    Some(why) => (OperationState::Failed, why),
                    None => (
                        OperationState::Succeeded,
                        format!("cancelled operation {target}"),
                    ),
                };
                self.update(&p.id, |r| {
                    let mut r = r.unwrap_or_else(fresh);
                    if r.state.is_final() {
                        return None;
                    }
                    r.state = state;
                    r.reason.clone_from(&reason);
                    r.finished_at = Some(now.clone());
                    Some(r)
                })
                .await?;
                tracing::info!(operation = %p.id, %target, state = state.as_str(), "cancel recorded");
            }
        }
        Ok(())
    }

    /// Advances a schedule's record and makes its run's record, in one
    /// transaction that holds only if neither changed meanwhile: a
    /// scheduled time runs at most once. Older runs' records go with it.
    async fn schedule(
        &self,
        record: &ScheduleRecord,
        run: Option<OperationRecord>,
        prune: &[String],
    ) -> Result<(), ClusterError> {
        let key = keys::schedule(&record.key());
        let entry = self.guard.store().get(&key).await?;
        let mut compares = vec![match &entry {
            Some(e) => Compare::mod_revision(full_key(&key), CompareOp::Equal, e.mod_revision),
            None => Compare::version(full_key(&key), CompareOp::Equal, 0),
        }];
        let mut ops = vec![TxnOp::put(full_key(&key), to_json(record)?, None)];
        if let Some(run) = &run {
            let op = keys::operation(&run.id);
            compares.push(Compare::version(full_key(&op), CompareOp::Equal, 0));
            ops.push(TxnOp::put(full_key(&op), to_json(run)?, None));
        }
        for old in prune {
            ops.push(TxnOp::delete(full_key(&keys::operation(old)), None));
        }
        let resp = self.guard.txn(compares, ops, vec![]).await?;
        if resp.succeeded() {
            match &run {
                Some(r) => tracing::info!(
                    schedule = %record.key(),
                    operation = %r.id,
                    state = r.state.as_str(),
                    missed = record.missed,
                    "scheduled backup started"
                ),
                None => tracing::info!(schedule = %record.key(), "schedule recorded"),
            }
        }
        Ok(())
    }

    /// Marks a phase running under this leader (before its task is
    /// written). A phase a predecessor started stays as it is: its task is
    /// awaited, not run again.
    pub async fn phase_started(&self, id: &str, phase: &str) -> Result<(), ClusterError> {
        let now = now_rfc3339();
        let me = self.me();
        self.update(id, |r| {
            let mut r = r?;
            let ph = r.phases.iter_mut().find(|p| p.name == phase)?;
            if ph.state != PhaseState::Pending {
                return None;
            }
            ph.state = PhaseState::Running;
            ph.leader = Some(me.clone());
            ph.started_at = Some(now.clone());
            r.reason = format!("phase {phase}: {}", ph.description);
            Some(r)
        })
        .await?;
        Ok(())
    }

    /// Marks a phase ended; the next plan goes on to the next phase, or
    /// ends the operation.
    pub async fn phase_ended(
        &self,
        id: &str,
        phase: &str,
        error: Option<String>,
    ) -> Result<(), ClusterError> {
        let now = now_rfc3339();
        self.update(id, |r| {
            let mut r = r?;
            let ph = r.phases.iter_mut().find(|p| p.name == phase)?;
            if matches!(ph.state, PhaseState::Succeeded | PhaseState::Failed) {
                return None;
            }
            ph.state = if error.is_some() {
                PhaseState::Failed
            } else {
                PhaseState::Succeeded
            };
            ph.error.clone_from(&error);
            ph.finished_at = Some(now.clone());
            Some(r)
        })
        .await?;
        tracing::info!(operation = %id, %phase, ok = error.is_none(), "operation phase ended");
        Ok(())
    }
}
