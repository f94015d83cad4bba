//! The progress of an operation (`operations/<id>.yaml`), as the reconciler
//! records it under `reconcile/operations/<id>` through leader-guarded
//! writes: its state, its phases with their steps (fixed when it starts),
//! the tasks that ran them, when, and under which leader. The planner reads
//! these records; only the reconciler writes them.
//!
//! A phase's task has a fixed id (`op-<id>-<phase>`) and is written only
//! when absent, and a phase is marked running before its task is written:
//! a new leader finds a running phase and waits for its task instead of
//! starting it again, so no phase runs twice.

use crate::plan::Step;
use crate::spec::names::DatabaseName;
use serde::{Deserialize, Serialize};

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    /// Waiting for its time (`scheduled_at`).
    Scheduled,
    /// Waiting to start (its database has other steps first).
    Pending,
    /// A phase runs.
    Running,
    /// Every phase succeeded.
    Succeeded,
    /// A phase failed; the record says which and why.
    Failed,
    /// Cancelled before a disruptive phase started.
    Cancelled,
    /// This cluster cannot carry out this kind of operation yet.
    Unsupported,
}

impl OperationState {
    /// It will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Unsupported
        )
    }

    /// The state as JSON writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unsupported => "unsupported",
        }
    }
}

/// Where a phase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    /// Not started.
    Pending,
    /// Its task was (or is being) written; it runs.
    Running,
    /// Its task succeeded.
    Succeeded,
    /// Its task failed.
    Failed,
    /// Not run: the operation was cancelled or failed before it.
    Skipped,
}

/// One phase of an operation: steps that run together, after the phase
/// before succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    /// The phase's name, unique in the operation (`n1-h2`, `promote`).
    pub name: String,
    /// What it does, in words.
    pub description: String,
    /// Clients feel it (connections dropped, writes paused).
    pub disruptive: bool,
    /// Its steps, fixed when the operation started.
    pub steps: Vec<Step>,
    /// Where it stands.
    pub state: PhaseState,
    /// The tasks that ran it.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The leader that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `reconcile/operations/<id>`: one operation's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    /// The operation's id (its file name).
    pub id: String,
    /// Its kind (`Restart`, `Switchover`, ...).
    pub kind: String,
    /// The database it acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseName>,
    /// Where it stands.
    pub state: OperationState,
    /// Why it is in that state, in words (a failure, a refusal, what it waits for).
    #[serde(default)]
    pub reason: String,
    /// Its phases in order (empty until it starts).
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
    /// Every leader that carried it forward, in order.
    #[serde(default)]
    pub leaders: Vec<String>,
    /// When the record was made (RFC 3339).
    pub created_at: String,
    /// When its first phase started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

impl OperationRecord {
    /// The first phase that has not succeeded, with its index.
    pub fn current_phase(&self) -> Option<(usize, &PhaseRecord)> {
        self.phases
            .iter()
            .enumerate()
            .find(|(_, p)| p.state != PhaseState::Succeeded)
    }

    /// Whether a disruptive phase has started (then it cannot be cancelled).
    pub fn disrupted(&self) -> bool {
        self.phases
            .iter()
            .any(|p| p.disruptive && p.state != PhaseState::Pending)
    }
}

/// The fixed task id of a phase: a new leader finds it instead of running
/// the phase again.
pub fn phase_task_id(operation: &str, phase: &str) -> String {
    format!("op-{operation}-{phase}")
}
