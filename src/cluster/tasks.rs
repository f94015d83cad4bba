//! The task queue. The leader writes a task for a host under
//! `/pgcd/v1/hosts/<id>/tasks/<task-id>` and its state as `pending` under
//! `/pgcd/v1/tasks/<task-id>`; the host's agent watches its queue, claims each
//! task exactly once with a transaction (state absent or still the pending
//! revision it read), runs it through the executor registry and records
//! state, timings, result and log lines.

use super::election::LeaderGuard;
use super::keys;
use super::store::{full_key, to_json, Store};
use super::{now_rfc3339, ClusterError, HostId};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

    fn lines(&self) -> Vec<String> {
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

/// Claims and runs the tasks addressed to one host.
pub struct TaskRunner {
    store: Store,
    host: HostId,
    instance: String,
    data_dir: PathBuf,
    executors: Executors,
    started: Mutex<HashSet<String>>,
}

impl TaskRunner {
    /// Makes a runner for this host.
    pub fn new(
        store: Store,
        host: HostId,
        instance: String,
        data_dir: PathBuf,
        executors: Executors,
    ) -> Self {
        Self {
            store,
            host,
            instance,
            data_dir,
            executors,
            started: Mutex::new(HashSet::new()),
        }
    }

    /// Marks failed every task this host had claimed and left running: a
    /// previous process of this agent died during it. Returns how many.
    pub async fn recover(&self) -> Result<usize, ClusterError> {
        let (entries, _) = self.store.get_prefix(keys::TASKS).await?;
        let mut n = 0;
        for e in entries {
            let Ok(mut status) = e.json::<TaskStatus>() else {
                continue;
            };
            if status.host != self.host.as_str() || status.state != TaskState::Running {
                continue;
            }
            status.state = TaskState::Failed;
            status.finished_at = Some(now_rfc3339());
            status.error = Some("agent restarted during task".into());
            status.log.push(format!(
                "{} agent restarted during task; not run again",
                now_rfc3339()
            ));
            let key = full_key(&e.key);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    e.mod_revision,
                )])
                .and_then([TxnOp::put(key, to_json(&status)?, None)]);
            if self.store.txn(txn).await?.succeeded() {
                tracing::warn!(task = %status.id, "task was running when this agent stopped; marked failed");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Watches this host's queue and runs new tasks until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let prefix = keys::host_tasks(&self.host);
        loop {
            if let Err(e) = self.clone().pass_and_watch(&prefix, &cancel).await {
                tracing::warn!(error = %e, "task watch failed; listing again");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn pass_and_watch(
        self: Arc<Self>,
        prefix: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ClusterError> {
        let (entries, revision) = self.store.get_prefix(prefix).await?;
        for e in entries {
            if let Ok(spec) = e.json::<TaskSpec>() {
                self.clone().consider(spec).await?;
            }
        }
        let mut client = self.store.client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = self
            .store
            .timed(client.watch(full_key(prefix), Some(options)))
            .await?;
        // Re-list now and then even without events: level-triggered safety net.
        let resync = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(resync);
        loop {
            let msg = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = &mut resync => return Ok(()),
                m = stream.message() => m?,
            };
            let Some(resp) = msg else { return Ok(()) };
            for event in resp.events() {
                if event.event_type() != etcd_client::EventType::Put {
                    continue;
                }
                if let Some(kv) = event.kv() {
                    if let Ok(spec) = serde_json::from_slice::<TaskSpec>(kv.value()) {
                        self.clone().consider(spec).await?;
                    }
                }
            }
        }
    }

    /// Claims a task if nobody has; then runs it in the background. An error
    /// makes the caller list the queue again soon.
    async fn consider(self: Arc<Self>, spec: TaskSpec) -> Result<(), ClusterError> {
        if self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&spec.id)
        {
            return Ok(());
        }
        match self.claim(&spec).await {
            Ok(true) => {
                self.started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(spec.id.clone());
                tokio::spawn(self.execute(spec));
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!(task = %spec.id, error = %e, "cannot claim task; will retry");
                Err(e)
            }
        }
    }

    fn claimant(&self) -> String {
        format!("{}/{}", self.host, self.instance)
    }

    async fn claim(&self, spec: &TaskSpec) -> Result<bool, ClusterError> {
        let rel = keys::task(&spec.id);
        let key = full_key(&rel);
        let current = self.store.get(&rel).await?;
        let (compare, created_at) = match &current {
            None => (Compare::version(key.clone(), CompareOp::Equal, 0), None),
            Some(e) => {
                let status: TaskStatus = e.json()?;
                let mine = status.claimant.as_deref() == Some(self.claimant().as_str());
                if status.state == TaskState::Running && mine {
                    // Our claim committed but its answer was lost (timeout); the
                    // claims of earlier processes were failed by `recover`.
                    return Ok(true);
                }
                if status.state != TaskState::Pending {
                    return Ok(false);
                }
                (
                    Compare::mod_revision(key.clone(), CompareOp::Equal, e.mod_revision),
                    status.created_at,
                )
            }
        };
        let status = TaskStatus {
            id: spec.id.clone(),
            host: self.host.to_string(),
            kind: spec.kind.clone(),
            state: TaskState::Running,
            claimant: Some(self.claimant()),
            created_at,
            started_at: Some(now_rfc3339()),
            finished_at: None,
            result: None,
            error: None,
            log: vec![format!(
                "{} claimed by {} (pid {})",
                now_rfc3339(),
                self.host,
                std::process::id()
            )],
        };
        let txn = Txn::new()
            .when([compare])
            .and_then([TxnOp::put(key, to_json(&status)?, None)])
            .or_else([TxnOp::get(full_key(&rel), Some(GetOptions::new()))]);
        let claimed = self.store.txn(txn).await?.succeeded();
        if claimed {
            tracing::info!(task = %spec.id, kind = %spec.kind, "task claimed");
        }
        Ok(claimed)
    }

    async fn execute(self: Arc<Self>, spec: TaskSpec) {
        let ctx = TaskContext {
            host: self.host.clone(),
            task_id: spec.id.clone(),
            data_dir: self.data_dir.clone(),
            store: self.store.clone(),
            log: Arc::new(Mutex::new(vec![])),
        };
        let budget = chrono::DateTime::parse_from_rfc3339(&spec.deadline)
            .ok()
            .and_then(|d| {
                (d.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .ok()
            })
            .unwrap_or(Duration::ZERO);
        let outcome = match self.executors.get(spec.kind.as_str()) {
            None => Err(format!("no executor for task kind {:?}", spec.kind)),
            Some(_) if budget.is_zero() => Err("deadline passed before the task started".into()),
            Some(exec) => {
                match tokio::time::timeout(budget, exec.run(ctx.clone(), spec.args.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("deadline {} passed", spec.deadline)),
                }
            }
        };
        let lines = ctx.lines();
        // Retried: the outcome must not be lost to a passing etcd election.
        for attempt in 1..=60 {
            match self.record_outcome(&spec, &outcome, &lines).await {
                Ok(()) => return,
                Err(e) if attempt < 60 => {
                    tracing::warn!(task = %spec.id, error = %e, "cannot record the task's outcome yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    tracing::error!(task = %spec.id, error = %e, "cannot record the task's outcome")
                }
            }
        }
    }

    async fn record_outcome(
        &self,
        spec: &TaskSpec,
        outcome: &Result<serde_json::Value, String>,
        lines: &[String],
    ) -> Result<(), ClusterError> {
        let rel = keys::task(&spec.id);
        let Some(mut status) = self.store.get_json::<TaskStatus>(&rel).await? else {
            tracing::warn!(task = %spec.id, "task state vanished while running");
            return Ok(());
        };
        status.log.extend(lines.iter().cloned());
        status.finished_at = Some(now_rfc3339());
        match outcome {
            Ok(result) => {
                status.state = TaskState::Succeeded;
                status.result = Some(result.clone());
                tracing::info!(task = %spec.id, "task succeeded");
            }
            Err(e) => {
                status.state = TaskState::Failed;
                status.log.push(format!("{} failed: {e}", now_rfc3339()));
                tracing::warn!(task = %spec.id, error = %e, "task failed");
                status.error = Some(e.clone());
            }
        }
        self.store.put(&rel, to_json(&status)?, None).await
    }
}
