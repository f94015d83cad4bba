//! Carrying one step out as a task on its host: the task is written through
//! the leader guard (only when absent, so a fixed id runs once), and its end
//! is awaited from the reconciler's watch of `tasks/` — no polling. At most
//! `max_per_host` steps run at once on one host.

use crate::cluster::election::LeaderGuard;
use crate::cluster::keys;
use crate::cluster::store::Entry;
use crate::cluster::tasks::{dispatch, TaskSpec, TaskState, TaskStatus};
use crate::cluster::ClusterError;
use crate::spec::names::HostId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// How a task ended: its result, or the error its host reported (or that
/// it did not end in time).
pub type TaskOutcome = Result<serde_json::Value, String>;

/// Dispatches tasks and tells their waiters when they end.
pub struct Dispatcher {
    guard: LeaderGuard,
    waiters: Mutex<HashMap<String, watch::Sender<Option<TaskStatus>>>>,
    hosts: Mutex<HashMap<HostId, Arc<Semaphore>>>,
    max_per_host: usize,
}

impl Dispatcher {
    /// A dispatcher writing through `guard`, with at most `max_per_host`
    /// tasks of its own running per host.
    pub fn new(guard: LeaderGuard, max_per_host: usize) -> Self {
        Self {
            guard,
            waiters: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            max_per_host: max_per_host.max(1),
        }
    }

    /// Feeds a change of `tasks/<id>` from the reconciler's watch.
    pub fn task_changed(&self, e: &Entry) {
        let Some(id) = e.key.strip_prefix(keys::TASKS) else {
            return;
        };
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = waiters.get(id) {
            if let Ok(status) = e.json::<TaskStatus>() {
                let _ = tx.send(Some(status));
            }
        }
    }

    /// After the watch was listed again, events may have been missed: look
    /// each awaited task up once.
    pub async fn refresh(&self) {
        let ids: Vec<String> = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for id in ids {
            if let Ok(Some(e)) = self.guard.store().get(&keys::task(&id)).await {
                self.task_changed(&e);
            }
        }
    }

    fn semaphore(&self, host: &HostId) -> Arc<Semaphore> {
        self.hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }

    /// Writes the task (unless one with its id exists: then that one is
    /// awaited) and waits for its end, at most `budget`. `Err` is lost
    /// leadership or etcd trouble; `Ok(Err(..))` a failed task.
    pub async fn run(
        &self,
        host: &HostId,
        spec: TaskSpec,
        budget: Duration,
    ) -> Result<TaskOutcome, ClusterError> {
        let semaphore = self.semaphore(host);
        let _permit = tokio::select! {
            () = self.guard.token().cancelled() => return Err(ClusterError::NotLeader),
            p = semaphore.acquire_owned() => p.map_err(|_| ClusterError::Other("the host's step queue closed".into()))?,
        };
        let rx = self.register(&spec.id);
        let written = dispatch(&self.guard, host, &spec).await;
        let outcome = match written {
            Ok(fresh) => {
                if !fresh {
                    tracing::info!(task = %spec.id, "task exists already; awaiting it, not running it again");
                }
                self.await_end(&spec.id, rx, budget).await
            }
            Err(e) => Err(e),
        };
        self.unregister(&spec.id);
        outcome
    }

    /// Waits for a task written earlier (by a predecessor) to end.
    pub async fn wait_existing(
        &self,
        id: &str,
        budget: Duration,
    ) -> Result<TaskOutcome, ClusterError> {
        let rx = self.register(id);
        let outcome = self.await_end(id, rx, budget).await;
        self.unregister(id);
        outcome
    }

    fn register(&self, id: &str) -> watch::Receiver<Option<TaskStatus>> {
        let (tx, rx) = watch::channel(None);
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), tx);
        rx
    }

    fn unregister(&self, id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    async fn await_end(
        &self,
        id: &str,
        mut rx: watch::Receiver<Option<TaskStatus>>,
        budget: Duration,
    ) -> Result<TaskOutcome, ClusterError> {
        // The state may have been final before we registered: look once.
        if let Some(t) = self
            .guard
            .store()
            .get_json::<TaskStatus>(&keys::task(id))
            .await?
        {
            if let Some(o) = ended(&t) {
                return Ok(o);
            }
        }
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let changed = tokio::select! {
                () = self.guard.token().cancelled() => return Err(ClusterError::NotLeader),
                () = tokio::time::sleep_until(deadline) => false,
                r = rx.changed() => r.is_ok(),
            };
            if changed {
                let state = rx.borrow_and_update().clone();
                if let Some(o) = state.as_ref().and_then(ended) {
                    return Ok(o);
                }
                continue;
            }
            // The deadline: one last look, in case an event was missed.
            let last = self
                .guard
                .store()
                .get_json::<TaskStatus>(&keys::task(id))
                .await?;
            return Ok(last.as_ref().and_then(ended).unwrap_or_else(|| {
                Err(format!(
                    "task {id} did not finish within {}s",
                    budget.as_secs()
                ))
            }));
        }
    }
}

fn ended(t: &TaskStatus) -> Option<TaskOutcome> {
    match t.state {
        TaskState::Succeeded => Some(Ok(t.result.clone().unwrap_or_default())),
        TaskState::Failed => Some(Err(t.error.clone().unwrap_or_else(|| "failed".into()))),
        TaskState::Pending | TaskState::Running => None,
    }
}
