//! Appending a batch's steps and their outcomes to the audit record of the
//! revision they were planned from (`audit/<sha>`, see `state::audit`).
//! Batches of several databases end at once: each append is a
//! compare-and-swap on the record's version, tried again when another won.

use super::worker::BatchOutcome;
use crate::cluster::election::LeaderGuard;
use crate::cluster::keys;
use crate::cluster::store::{full_key, to_json};
use crate::cluster::ClusterError;
use crate::state::audit::{AuditRecord, AuditStep, StepResult};
use etcd_client::{Compare, CompareOp, TxnOp};

/// Compare-and-swap attempts before the steps are left out (logged).
const ATTEMPTS: usize = 5;

/// Adds the batch's steps to its revision's record. A revision without a
/// record (put in force before records were kept) gets none.
pub(super) async fn append(guard: &LeaderGuard, batch: &BatchOutcome) -> Result<(), ClusterError> {
    if batch.outcomes.is_empty() || batch.revision.is_empty() {
        return Ok(());
    }
    let key = keys::audit(&batch.revision);
    let ended_at = crate::cluster::now_rfc3339();
    let steps: Vec<AuditStep> = batch
        .outcomes
        .iter()
        .map(|o| AuditStep {
            step: o.step.id.clone(),
            reason: o.step.reason.clone(),
            drift: o.step.drift,
            tasks: o.tasks.clone(),
            outcome: if o.error.is_some() {
                StepResult::Failed
            } else {
                StepResult::Succeeded
            },
            error: o.error.clone(),
            seconds: o.seconds,
            leader: guard.host().to_string(),
            ended_at: ended_at.clone(),
        })
        .collect();
    for _ in 0..ATTEMPTS {
        let Some(entry) = guard.store().get(&key).await? else {
            return Ok(());
        };
        let mut record: AuditRecord = entry.json()?;
        record.push(steps.iter().cloned());
        let same = Compare::mod_revision(full_key(&key), CompareOp::Equal, entry.mod_revision);
        let put = TxnOp::put(full_key(&key), to_json(&record)?, None);
        if guard.txn(vec![same], vec![put], vec![]).await?.succeeded() {
            return Ok(());
        }
    }
    tracing::warn!(revision = %batch.revision, database = %batch.database, "audit record busy; this batch's steps are not in it");
    Ok(())
}
