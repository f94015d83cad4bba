//! Carrying out one database's slice of a plan: its own steps, and the
//! current phase of an operation that holds it. Each database has its own
//! worker, so a step that runs for minutes on one database never delays
//! another's.
//!
//! Steps start as soon as the steps they depend on succeeded; steps of one
//! node run in plan order (the planner orders a node's phases: instance,
//! start, catalog, settings, restart, extensions). A step that fails is
//! tried again ([`Backoff::step`], three attempts), unless its `scripts`
//! failed ([`script_failed`]); the first step that keeps failing stops the
//! batch: nothing new starts, what runs ends.

use super::dispatch::Dispatcher;
use super::operations::Recorder;
use crate::backoff::Backoff;
use crate::cluster::election::LeaderGuard;
use crate::cluster::identity::random_hex;
use crate::cluster::tasks::TaskSpec;
use crate::cluster::ClusterError;
use crate::exec::{StepArgs, KIND};
use crate::plan::{Action, Step};
use crate::spec::database::Replication;
use crate::spec::names::DatabaseName;
use crate::spec::ClusterConfig;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Attempts per step within one batch (a later batch tries again).
pub const ATTEMPTS: u32 = 3;

/// What a worker needs besides its steps.
pub struct Shared {
    /// Leader writes.
    pub guard: LeaderGuard,
    /// Tasks.
    pub dispatcher: Dispatcher,
    /// Operation records.
    pub recorder: Recorder,
}

/// One database's work of one plan.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The database.
    pub database: DatabaseName,
    /// The revision planned from.
    pub revision: String,
    /// Its steps, in plan order.
    pub steps: Vec<Step>,
    /// `pgcd.yaml` of the revision (images).
    pub config: Arc<ClusterConfig>,
    /// How the database's nodes replicate.
    pub replication: Option<Replication>,
}

/// How one step went.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    /// The step.
    pub step: Step,
    /// The tasks that ran it, one per attempt.
    pub tasks: Vec<String>,
    /// The error of the last attempt, when every attempt failed.
    pub error: Option<String>,
    /// How long it took, all attempts.
    pub seconds: f64,
}

/// How a batch went.
#[derive(Debug, Clone)]
pub struct BatchOutcome {
    /// The database.
    pub database: DatabaseName,
    /// The revision planned from.
    pub revision: String,
    /// The steps that ran.
    pub outcomes: Vec<StepOutcome>,
    /// Leadership was lost: nothing is to be concluded.
    pub deposed: bool,
}

impl BatchOutcome {
    /// The first step that failed, when one did.
    pub fn failed(&self) -> Option<&StepOutcome> {
        self.outcomes.iter().find(|o| o.error.is_some())
    }
}

/// Carries out a batch.
pub async fn run(shared: Arc<Shared>, batch: Batch) -> BatchOutcome {
    let span = tracing::info_span!(
        "database",
        database = %batch.database,
        revision = %short(&batch.revision),
        steps = batch.steps.len()
    );
    async {
        let mut out = BatchOutcome {
            database: batch.database.clone(),
            revision: batch.revision.clone(),
            outcomes: Vec::new(),
            deposed: false,
        };
        match carry_out(&shared, &batch, &mut out.outcomes).await {
            Ok(()) => {}
            Err(ClusterError::NotLeader) => out.deposed = true,
            Err(e) => {
                tracing::warn!(error = %e, "the batch stopped on an etcd error; the next pass tries again");
                if out.outcomes.iter().all(|o| o.error.is_none()) {
                    out.outcomes.push(StepOutcome {
                        step: batch.steps[0].clone(),
                        tasks: Vec::new(),
                        error: Some(format!("etcd: {e}")),
                        seconds: 0.0,
                    });
                }
            }
        }
        if !out.deposed {
            if let Err(e) = super::audit::append(&shared.guard, &out).await {
                tracing::warn!(error = %e, "the batch's steps are not in the revision's audit record");
            }
        }
        let failed = out.failed().map(|f| f.step.id.clone());
        tracing::info!(
            steps = out.outcomes.len(),
            failed = failed.as_deref().unwrap_or("none"),
            "database batch ended"
        );
        out
    }
    .instrument(span)
    .await
}

async fn carry_out(
    shared: &Arc<Shared>,
    batch: &Batch,
    done: &mut Vec<StepOutcome>,
) -> Result<(), ClusterError> {
    if batch.steps.iter().any(needs_replication_secret) {
        super::ensure_replication_secret(&shared.guard, &batch.database).await?;
    }
    let ids: BTreeSet<&str> = batch.steps.iter().map(|s| s.id.as_str()).collect();
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    let mut started = vec![false; batch.steps.len()];
    let mut running = futures::stream::FuturesUnordered::new();
    let mut stop = false;
    loop {
        if !stop {
            for (i, s) in batch.steps.iter().enumerate() {
                if started[i] {
                    continue;
                }
                // A dependency outside this batch was satisfied by an earlier one.
                let deps_ok = s
                    .depends_on
                    .iter()
                    .all(|d| !ids.contains(d.as_str()) || succeeded.contains(d));
                // Steps of one node keep their plan order.
                let earlier_pending = batch.steps[..i]
                    .iter()
                    .any(|e| e.node == s.node && !succeeded.contains(&e.id));
                if !deps_ok || earlier_pending {
                    continue;
                }
                started[i] = true;
                let shared = shared.clone();
                let step = s.clone();
                let batch = batch.clone();
                running.push(async move {
                    let o = one(&shared, &batch, &step).await;
                    (step, o)
                });
            }
        }
        use futures::StreamExt;
        let Some((step, outcome)) = running.next().await else {
            break;
        };
        let outcome = outcome?;
        if outcome.error.is_none() {
            succeeded.insert(step.id.clone());
        } else {
            stop = true;
        }
        done.push(outcome);
    }
    Ok(())
}

fn needs_replication_secret(s: &Step) -> bool {
    matches!(
        s.action,
        Action::CreateStandby { .. }
            | Action::EnsureReplication { .. }
            | Action::CreatePublication { .. }
            | Action::CreateSubscription { .. }
            | Action::JoinMesh { .. }
            | Action::InstallAutoDdl { .. }
    )
}

/// One step: a phase of an operation (once, with its fixed task id), or a
/// plan step (tried [`ATTEMPTS`] times).
async fn one(shared: &Shared, batch: &Batch, step: &Step) -> Result<StepOutcome, ClusterError> {
    let span = tracing::info_span!(
        "step",
        step = %step.id,
        database = %step.database,
        node = %step.node,
        host = %step.host,
        operation = step.operation.as_ref().map_or("", |o| o.id.as_str()),
    );
    async {
        let started = Instant::now();
        let args = serde_json::to_value(StepArgs {
            step: step.clone(),
            image: match &step.action {
                Action::CreateInstance { version, .. }
                | Action::CreateStandby { version, .. }
                | Action::UpgradeMajor { version, .. } => {
                    batch.config.image_for(*version)
                }
                Action::RehearseRestore(r) => {
                    batch.config.image_for(crate::spec::values::PgVersion {
                        major: r.major,
                        minor: None,
                    })
                }
                _ => String::new(),
            },
            replication: batch.replication,
        })
        .map_err(|e| ClusterError::Other(e.to_string()))?;
        let budget = budget(step);
        let mut out = StepOutcome {
            step: step.clone(),
            tasks: Vec::new(),
            error: None,
            seconds: 0.0,
        };
        if let Action::RecordPrimary { host, term, why } = &step.action {
            // The leader's own step: no task.
            if let Some(op) = &step.operation {
                shared.recorder.phase_started(&op.id, &op.phase).await?;
            }
            out.error = super::primaries::record(&shared.guard, step, host, *term, why)
                .await?
                .err();
            if let Some(op) = &step.operation {
                shared
                    .recorder
                    .phase_ended(&op.id, &op.phase, out.error.clone())
                    .await?;
            }
        } else if let Some(op) = &step.operation {
            let id = op.task.clone();
            shared.recorder.phase_started(&op.id, &op.phase).await?;
            out.tasks.push(id.clone());
            let outcome = shared
                .dispatcher
                .run(&step.host, spec(&id, args, budget), budget + Duration::from_secs(15))
                .await?;
            out.error = outcome.err();
            shared
                .recorder
                .phase_ended(&op.id, &op.phase, out.error.clone())
                .await?;
        } else {
            let mut backoff = Backoff::step().attempts(ATTEMPTS);
            loop {
                let id = task_id(step);
                out.tasks.push(id.clone());
                let outcome = shared
                    .dispatcher
                    .run(&step.host, spec(&id, args.clone(), budget), budget + Duration::from_secs(15))
                    .await?;
                match outcome {
                    Ok(_) => {
                        out.error = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(task = %id, attempt = out.tasks.len(), error = %e, "step failed");
                        let again = !script_failed(step, &e);
                        out.error = Some(e);
                        if !again || !backoff.wait(shared.guard.token()).await {
                            break;
                        }
                    }
                }
            }
        }
        out.seconds = started.elapsed().as_secs_f64();
        Ok(out)
    }
    .instrument(span)
    .await
}

/// Whether `error` of `step` is its `scripts` list failing (a statement of
/// it, or its commit): the user's SQL, which fails again as it is. Such a
/// step is tried once, and its database is held until its spec changes;
/// any other failure of the step (a connection lost) is retried as usual.
pub fn script_failed(step: &Step, error: &str) -> bool {
    let runs_scripts = match &step.action {
        Action::RunPostInit { .. } => true,
        Action::CreateDatabase {
            post_database_create,
            ..
        } => !post_database_create.is_empty(),
        _ => false,
    };
    runs_scripts
        && ["scripts.post_init", "scripts.post_database_create"]
            .iter()
            .any(|f| error.contains(f))
}

fn spec(id: &str, args: serde_json::Value, budget: Duration) -> TaskSpec {
    let deadline = chrono::Utc::now()
        + chrono::Duration::from_std(budget).unwrap_or(chrono::Duration::minutes(5));
    TaskSpec {
        id: id.to_string(),
        kind: KIND.into(),
        args,
        deadline: deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// A task id for an attempt at a step: `s-<db>.<node>.<host>.<what>-<nonce>`
/// (no `/`, so it is one path segment of the API). The step id is in it, so
/// the task log and the agent's log of one step are joined by it.
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

/// How long a step may take.
pub fn budget(step: &Step) -> Duration {
    match step.action {
        // Restored from a backup, or made by initdb.
        Action::CreateInstance {
            restore_from: Some(_),
            ..
        } => Duration::from_secs(3600),
        Action::CreateInstance { .. } => Duration::from_secs(300),
        // Restores a backup before the standby's first start.
        Action::CreateStandby {
            from_backup: Some(_),
            ..
        } => Duration::from_secs(3600),
        // Copies a whole database, or backs it up, or restores it.
        Action::JoinMesh { .. }
        | Action::RunBackup { .. }
        | Action::RestoreInstance { .. }
        | Action::RehearseRestore(_)
        | Action::UpgradeMajor { .. } => Duration::from_secs(3600),
        // `pgbackrest check` waits for a WAL segment to be archived.
        Action::ConfigureBackup { .. } => Duration::from_secs(300),
        // A rejoin may copy the whole primary when it cannot rewind.
        Action::RejoinAsStandby { .. } => Duration::from_secs(3600),
        Action::StartInstance
        | Action::RestartInstance { .. }
        | Action::StopInstance
        | Action::StopForSwitchover { .. }
        | Action::PromoteStandby { .. }
        | Action::RepointStandby { .. } => Duration::from_secs(180),
        _ => Duration::from_secs(60),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
