//! The audit record of a revision (`audit/<sha>`): who made it, who
//! signed it, which leader put it in force and when, the plan it was put
//! in force with, and every step carried out while it was in force with
//! its outcome. Written once by the leader that puts the revision in force
//! (in the same transaction), then appended to as batches end. Plain
//! values; this file must not do I/O.

use serde::{Deserialize, Serialize};

/// Steps a record keeps (the latest); older ones are counted, not kept.
pub const MAX_STEPS: usize = 500;

/// One revision put in force and what carrying it out did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Full commit id.
    pub sha: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// First line of the message.
    pub subject: String,
    /// Commit time (RFC 3339).
    pub committed_at: String,
    /// When the leader put it in force (RFC 3339).
    pub in_force_at: String,
    /// The leader that put it in force.
    pub leader: String,
    /// Signed commits were required by the state in force before it.
    pub signature_required: bool,
    /// Who signed it, as the signature check said (when it was required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The plan's summary against the cluster as observed when it was put
    /// in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The steps carried out while it was in force, in the order their
    /// batches ended (the latest [`MAX_STEPS`]).
    #[serde(default)]
    pub steps: Vec<AuditStep>,
    /// Steps left out of `steps` to keep the record small.
    #[serde(default)]
    pub steps_dropped: u64,
}

/// One step carried out and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditStep {
    /// The step's id (`<database>/<node>/<host>/<what>`).
    pub step: String,
    /// Why the planner asked for it.
    pub reason: String,
    /// It corrected drift.
    #[serde(default)]
    pub drift: bool,
    /// The tasks that ran it, one per attempt (their logs: `/v1/tasks/{id}/log`).
    pub tasks: Vec<String>,
    /// `succeeded` or `failed`.
    pub outcome: StepResult,
    /// The last attempt's error, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, all attempts.
    pub seconds: f64,
    /// The leader that ran it.
    pub leader: String,
    /// When its batch ended (RFC 3339).
    pub ended_at: String,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Carried out.
    Succeeded,
    /// Every attempt failed.
    Failed,
}

impl AuditRecord {
    /// Appends steps, keeping the latest [`MAX_STEPS`].
    pub fn push(&mut self, steps: impl IntoIterator<Item = AuditStep>) {
        self.steps.extend(steps);
        if self.steps.len() > MAX_STEPS {
            let extra = self.steps.len() - MAX_STEPS;
            self.steps.drain(..extra);
            self.steps_dropped += extra as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(n: usize) -> AuditStep {
        AuditStep {
            step: format!("db/n1/h1/s{n}"),
            reason: "r".into(),
            drift: false,
            tasks: vec![],
            outcome: StepResult::Succeeded,
            error: None,
            seconds: 0.0,
            leader: "h1".into(),
            ended_at: String::new(),
        }
    }

    #[test]
    fn a_record_keeps_the_latest_steps_and_counts_the_rest() {
        let mut r = AuditRecord {
            sha: "a".into(),
            author: String::new(),
            subject: String::new(),
            committed_at: String::new(),
            in_force_at: String::new(),
            leader: "h1".into(),
            signature_required: false,
            signer: None,
            plan: None,
            steps: Vec::new(),
            steps_dropped: 0,
        };
        r.push((0..MAX_STEPS + 7).map(step));
        assert_eq!(r.steps.len(), MAX_STEPS);
        assert_eq!(r.steps_dropped, 7);
        assert_eq!(r.steps[0].step, "db/n1/h1/s7");
    }
}
