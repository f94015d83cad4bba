//! The task queue's records and the leader's side: the leader writes a task
//! for a host under `/pgcd/v1/hosts/<id>/tasks/<task-id>` and its state as
//! `pending` under `/pgcd/v1/tasks/<task-id>`. The host's side (claim exactly
//! once, run, record) is `runner`. Executors plug in through `Executor`.

use super::election::LeaderGuard;
use super::keys;
use super::store::{full_key, to_json, Store};
use super::{now_rfc3339, ClusterError};
use crate::spec::names::HostId;
use etcd_client::{Compare, CompareOp, TxnOp};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Written by the leader, not claimed yet.
    Pending,
    /// Claimed and running on its host.
    Running,
    /// Finished without error.
    Succeeded,
    /// Finished with an error, timed out, or interrupted.
    Failed,
}

impl TaskState {
    /// The state's name, as in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// A task as the leader addresses it to a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task id (unique in the cluster).
    pub id: String,
    /// The executor kind, e.g. `host.facts`.
    pub kind: String,
    /// Arguments for the executor.
    #[serde(default)]
    pub args: serde_json::Value,
    /// When the task must be finished by (RFC 3339).
    pub deadline: String,
}

/// The state of a task, under `/pgcd/v1/tasks/<id>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task id.
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// The executor kind.
    pub kind: String,
    /// The state.
    pub state: TaskState,
    /// The agent instance that claimed it.
    #[serde(default)]
    pub claimant: Option<String>,
    /// When it was written.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The executor's result.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Log lines.
    #[serde(default)]
    pub log: Vec<String>,
}

/// What an executor gets besides its arguments.
#[derive(Clone)]
pub struct TaskContext {
    /// The host running the task.
    pub host: HostId,
    /// The task id.
    pub task_id: String,
    /// The agent's data directory.
    pub data_dir: PathBuf,
    /// The store, for executors that record results elsewhere.
    pub store: Store,
    log: Arc<Mutex<Vec<String>>>,
}

impl TaskContext {
    /// Appends a line to the task's log.
    pub fn log(&self, line: impl Into<String>) {
        let line = format!("{} {}", now_rfc3339(), line.into());
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// Makes the context of one task run.
    pub fn new(host: HostId, task_id: String, data_dir: PathBuf, store: Store) -> Self {
        Self {
            host,
            task_id,
            data_dir,
            store,
            log: Arc::new(Mutex::new(vec![])),
        }
    }

    /// The log lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs one kind of task.
pub trait Executor: Send + Sync {
    /// Runs the task; the result is stored with the task state.
    fn run(
        &self,
        ctx: TaskContext,
        args: serde_json::Value,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>>;
}

/// The executor registry: kind → executor.
pub type Executors = HashMap<&'static str, Box<dyn Executor>>;

/// Writes a task for a host, as the leader, unless a task with this id exists.
/// Returns whether it was written.
pub async fn dispatch(
    guard: &LeaderGuard,
    host: &HostId,
    spec: &TaskSpec,
) -> Result<bool, ClusterError> {
    let status = TaskStatus {
        id: spec.id.clone(),
        host: host.to_string(),
        kind: spec.kind.clone(),
        state: TaskState::Pending,
        claimant: None,
        created_at: Some(now_rfc3339()),
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        log: vec![],
    };
    let status_key = full_key(&keys::task(&spec.id));
    let resp = guard
        .txn(
            vec![Compare::version(status_key.clone(), CompareOp::Equal, 0)],
            vec![
                TxnOp::put(
                    full_key(&keys::host_task(host, &spec.id)),
                    to_json(spec)?,
                    None,
                ),
                TxnOp::put(status_key, to_json(&status)?, None),
            ],
            vec![],
        )
        .await?;
    if resp.succeeded() {
        tracing::info!(task = %spec.id, kind = %spec.kind, host = %host, "task dispatched");
    }
    Ok(resp.succeeded())
}

/// Lists every task state.
pub async fn list_tasks(store: &Store) -> Result<Vec<TaskStatus>, ClusterError> {
    let (entries, _) = store.get_prefix(keys::TASKS).await?;
    Ok(entries.iter().filter_map(|e| e.json().ok()).collect())
}
