//! Carrying out one database's steps: each step becomes a `pg.step` task on
//! its host, in plan order (which respects every dependency), retried with
//! exponential backoff; the first step that keeps failing stops the rest.

use crate::cluster::election::LeaderGuard;
use crate::cluster::identity::random_hex;
use crate::cluster::keys;
use crate::cluster::tasks::{dispatch, TaskSpec, TaskState, TaskStatus};
use crate::cluster::ClusterError;
use crate::exec::{StepArgs, KIND};
use crate::plan::{Action, Step};
use crate::spec::names::HostId;
use std::time::{Duration, Instant};

/// Attempts per step within one pass (later passes retry again).
pub const ATTEMPTS: u32 = 3;
/// The first retry's delay; each later one doubles it.
const BACKOFF: Duration = Duration::from_secs(1);

/// How one step went.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The step.
    pub step: Step,
    /// The tasks that ran it, one per attempt.
    pub tasks: Vec<String>,
    /// The error of the last attempt, when every attempt failed.
    pub error: Option<String>,
}

/// A task id for an attempt at a step: `s-<db>.<node>.<host>.<what>-<nonce>`
/// (no `/`, so it is one path segment of the API).
pub fn task_id(step: &Step) -> String {
    let base: String = step
        .id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("s-{base}-{}", random_hex(4))
}

fn budget(step: &Step) -> Duration {
    match step.action {
        Action::CreateInstance { .. } => Duration::from_secs(300),
        // Copies a whole database.
        Action::JoinMesh { .. } => Duration::from_secs(3600),
        Action::StartInstance | Action::RestartInstance { .. } | Action::StopInstance => {
            Duration::from_secs(180)
        }
        _ => Duration::from_secs(60),
    }
}

/// Writes a task and waits for its end. `Ok(Err(..))` is a failed task;
/// `Err(..)` is lost leadership or etcd trouble.
pub async fn run_task(
    guard: &LeaderGuard,
    host: &HostId,
    spec: TaskSpec,
    timeout: Duration,
) -> Result<Result<(), String>, ClusterError> {
    dispatch(guard, host, &spec).await?;
    wait_task(guard, &spec.id, timeout).await
}

/// Waits for a task to end (or `timeout`, or lost leadership).
pub async fn wait_task(
    guard: &LeaderGuard,
    id: &str,
    timeout: Duration,
) -> Result<Result<(), String>, ClusterError> {
    let until = Instant::now() + timeout;
    loop {
        if guard.token().is_cancelled() {
            return Err(ClusterError::NotLeader);
        }
        if let Some(t) = guard
            .store()
            .get_json::<TaskStatus>(&keys::task(id))
            .await?
        {
            match t.state {
                TaskState::Succeeded => return Ok(Ok(())),
                TaskState::Failed => return Ok(Err(t.error.unwrap_or_else(|| "failed".into()))),
                TaskState::Pending | TaskState::Running => {}
            }
        }
        if Instant::now() >= until {
            return Ok(Err(format!(
                "task {id} did not finish within {}s",
                timeout.as_secs()
            )));
        }
        tokio::select! {
            () = guard.token().cancelled() => return Err(ClusterError::NotLeader),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Runs one step, retrying failed attempts with exponential backoff.
pub async fn step(
    guard: &LeaderGuard,
    step: &Step,
    image: &str,
    replication: Option<crate::spec::database::Replication>,
) -> Result<StepOutcome, ClusterError> {
    let host = HostId::parse(&step.host).map_err(ClusterError::Other)?;
    let args = serde_json::to_value(StepArgs {
        step: step.clone(),
        image: image.to_string(),
        replication,
    })
    .map_err(|e| ClusterError::Other(e.to_string()))?;
    let mut out = StepOutcome {
        step: step.clone(),
        tasks: Vec::new(),
        error: None,
    };
    let budget = budget(step);
    for attempt in 1..=ATTEMPTS {
        let id = task_id(step);
        let deadline = chrono::Utc::now()
            + chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::minutes(5));
        let spec = TaskSpec {
            id: id.clone(),
            kind: KIND.into(),
            args: args.clone(),
            deadline: deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        out.tasks.push(id.clone());
        match run_task(guard, &host, spec, budget + Duration::from_secs(15)).await? {
            Ok(()) => {
                out.error = None;
                return Ok(out);
            }
            Err(e) => {
                tracing::warn!(step = %step.id, task = %id, attempt, error = %e, "step failed");
                out.error = Some(e);
                if attempt < ATTEMPTS {
                    let delay = BACKOFF * 2u32.pow(attempt - 1);
                    tokio::select! {
                        () = guard.token().cancelled() => return Err(ClusterError::NotLeader),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
    Ok(out)
}
