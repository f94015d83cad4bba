//! The host side of the task queue: the agent watches its host's queue,
//! claims each task exactly once with a transaction (state absent, or still
//! the pending revision it read), runs it through the executor registry and
//! records state, timings, result and log lines (flushed every second while
//! it runs). Tasks a previous process left running are marked failed.

use super::keys;
use super::store::{full_key, to_json, Store};
use super::tasks::{Executors, TaskContext, TaskSpec, TaskState, TaskStatus};
use super::{now_rfc3339, ClusterError};
use crate::backoff::Backoff;
use crate::spec::names::HostId;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, WatchOptions};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Log lines the claim writes before the executor's own.
const CLAIM_LOG_LINES: usize = 1;

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
                .and_then([
                    TxnOp::put(key, to_json(&status)?, None),
                    TxnOp::delete(full_key(&keys::host_task(&self.host, &status.id)), None),
                ]);
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
        let resync = tokio::time::sleep(Duration::from_secs(60));
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
                let span = tracing::info_span!("task", task = %spec.id, kind = %spec.kind, host = %self.host);
                tokio::spawn(tracing::Instrument::instrument(self.execute(spec), span));
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
                    if status.state != TaskState::Running {
                        // Ended long ago (an older agent kept queue entries):
                        // the queue holds only tasks to run.
                        let _ = self
                            .store
                            .delete(&keys::host_task(&self.host, &spec.id))
                            .await;
                    }
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
        let ctx = TaskContext::new(
            self.host.clone(),
            spec.id.clone(),
            self.data_dir.clone(),
            self.store.clone(),
        );
        let budget = chrono::DateTime::parse_from_rfc3339(&spec.deadline)
            .ok()
            .and_then(|d| {
                (d.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .to_std()
                    .ok()
            })
            .unwrap_or(Duration::ZERO);
        let flush_stop = CancellationToken::new();
        let flusher = tokio::spawn(flush_log(
            self.store.clone(),
            spec.id.clone(),
            ctx.clone(),
            flush_stop.clone(),
        ));
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
        flush_stop.cancel();
        let _ = flusher.await;
        let lines = ctx.lines();
        // Retried: the outcome must not be lost to a passing etcd election.
        let mut backoff = Backoff::transient().within(Duration::from_secs(120));
        let never = CancellationToken::new();
        loop {
            match self.record_outcome(&spec, &outcome, &lines).await {
                Ok(()) => return,
                Err(e) => {
                    if backoff.should_log() {
                        tracing::warn!(task = %spec.id, error = %e, "cannot record the task's outcome yet; retrying");
                    }
                    if !backoff.wait(&never).await {
                        tracing::error!(task = %spec.id, error = %e, "cannot record the task's outcome");
                        return;
                    }
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
        status.log.truncate(CLAIM_LOG_LINES);
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
        // The queue entry goes with it: a queue holds only tasks to run, so
        // listing it stays cheap however many tasks ran before.
        let txn = Txn::new().and_then([
            TxnOp::put(full_key(&rel), to_json(&status)?, None),
            TxnOp::delete(full_key(&keys::host_task(&self.host, &spec.id)), None),
        ]);
        self.store.txn(txn).await.map(drop)
    }
}

/// Writes the running task's log lines every second, until `stop`.
async fn flush_log(store: Store, id: String, ctx: TaskContext, stop: CancellationToken) {
    let rel = keys::task(&id);
    let mut flushed = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let lines = ctx.lines();
        if lines.len() == flushed {
            continue;
        }
        let Ok(Some(entry)) = store.get(&rel).await else {
            continue;
        };
        let Ok(mut status) = entry.json::<TaskStatus>() else {
            return;
        };
        if status.state != TaskState::Running {
            return;
        }
        status.log.truncate(CLAIM_LOG_LINES);
        status.log.extend(lines.iter().cloned());
        let Ok(value) = to_json(&status) else { return };
        let key = full_key(&rel);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                entry.mod_revision,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        if matches!(store.txn(txn).await, Ok(r) if r.succeeded()) {
            flushed = lines.len();
        }
    }
}
