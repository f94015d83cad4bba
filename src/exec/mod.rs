//! The host's step executor: the `pg.step` task carries out one plan step on
//! this host, routed by concern — containers (`instance`), the catalog
//! (`catalog`: databases, roles, extensions, settings) or replication
//! (`replication`, and `join` for a node added to a mesh) — logging what ran
//! (passwords masked) and how long it took, then reports a fresh
//! observation so the leader's next plan sees the result.
//!
//! Every step is idempotent: running it again after a success changes
//! nothing. The executor never decides what to do; the planner has.

mod auth;
mod backup;
mod catalog;
mod error;
mod ha;
mod instance;
mod join;
mod rehearse;
mod replication;
mod scripts;
mod standby_backup;
mod support;
mod upgrade;

pub use error::StepError;
pub(crate) use error::{db_error, query_error};
pub(crate) use support::{
    ensure_replication_role, exists, replication_client, run_sql, ReplicationPeer,
};

use crate::cluster::tasks::{Executor, TaskContext};
use crate::plan::{Action, Step};
use crate::postgres::driver::{driver, ReplicationDriver};
use crate::runtime::docker::Runtime;
use crate::runtime::observe::{self, Observer};
use crate::spec::database::Replication;
use crate::state::InstanceId;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The task kind.
pub const KIND: &str = "pg.step";

/// How long a started server may take to answer `pg_isready`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The arguments of a `pg.step` task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepArgs {
    /// The step.
    pub step: Step,
    /// The image of the instance's PostgreSQL version.
    pub image: String,
    /// How the database's nodes replicate (the driver of replication steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
}

/// The executor; it owns the host's observer.
pub struct StepExecutor {
    observer: Observer,
}

impl StepExecutor {
    /// Makes the executor.
    pub fn new(observer: Observer) -> Self {
        Self { observer }
    }
}

impl Executor for StepExecutor {
    fn run(&self, ctx: TaskContext, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        let observer = self.observer.clone();
        async move {
            let args: StepArgs =
                serde_json::from_value(args).map_err(|e| StepError::Arguments(e.to_string()))?;
            let step = &args.step;
            let span = tracing::info_span!(
                "step",
                step = %step.id,
                database = %step.database,
                node = %step.node,
                host = %step.host,
                task = %ctx.task_id,
            );
            async {
                ctx.log(format!("step {}: {}", step.id, step.reason));
                test_hooks(&ctx, step).await;
                let started = Instant::now();
                let outcome = carry_out(&observer, &ctx, &args).await;
                let took = started.elapsed();
                ctx.log(format!("step took {:.2}s", took.as_secs_f64()));
                match &outcome {
                    Ok(()) => tracing::info!(seconds = took.as_secs_f64(), "step carried out"),
                    Err(e) => tracing::warn!(error = %e, retryable = e.retryable(), "step failed"),
                }
                if let Err(e) = observer.report(&ctx.store).await {
                    ctx.log(format!("observation after the step not stored: {e}"));
                }
                outcome
                    .map(|()| json!({ "step": step.id, "seconds": took.as_secs_f64() }))
                    .map_err(String::from)
            }
            .instrument(span)
            .await
        }
        .boxed()
    }
}

/// Test aids, only with `PGCD_TEST_EXECUTORS=1` (the test harness sets
/// it): every step run is appended to `DATA_DIR/step-runs.log` (task id and
/// step id, so tests count runs), and `PGCD_TEST_SLOW_STEPS=part:secs,...`
/// makes every step whose id contains `part` (`orders/` for a database's,
/// `operation:` for operations') wait that long first: a step that runs
/// for minutes, without a real one.
async fn test_hooks(ctx: &TaskContext, step: &Step) {
    if std::env::var("PGCD_TEST_EXECUTORS").as_deref() != Ok("1") {
        return;
    }
    let line = format!("{} {}\n", ctx.task_id, step.id);
    let path = ctx.data_dir.join("step-runs.log");
    let _ = append_line(&path, &line).await;
    let slow = std::env::var("PGCD_TEST_SLOW_STEPS").unwrap_or_default();
    let wait = slow.split(',').find_map(|kv| {
        let (part, secs) = kv.rsplit_once(':')?;
        (!part.is_empty() && step.id.contains(part)).then(|| secs.parse::<u64>().ok())?
    });
    if let Some(secs) = wait {
        ctx.log(format!(
            "test: waiting {secs} s before the step (PGCD_TEST_SLOW_STEPS)"
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}

/// One step on one instance of this host: what every concern's code needs.
pub(crate) struct Target<'a> {
    /// This host's runtime.
    pub rt: &'a Runtime,
    /// The task, for its log.
    pub ctx: &'a TaskContext,
    /// The instance acted on.
    pub id: InstanceId,
    /// The step.
    pub step: &'a Step,
    /// Its arguments (image, replication).
    pub args: &'a StepArgs,
}

impl Target<'_> {
    /// Appends a line to the task log.
    pub fn log(&self, line: impl Into<String>) {
        self.ctx.log(line);
    }

    /// The port of the instance's container.
    pub async fn port(&self) -> Result<u16, StepError> {
        self.rt
            .inspect(&self.id)
            .await?
            .map(|c| c.port)
            .ok_or_else(|| StepError::NoContainer(self.id.container()))
    }

    /// A superuser connection to `dbname` of the instance. Its commits do
    /// not wait for a synchronous standby (`synchronous_commit = local`):
    /// pgcd's own writes (roles, slots, settings) are what brings a missing
    /// standby back, so they must not wait for it — a new primary's slot
    /// for its standbys would otherwise wait forever.
    pub async fn connect(&self, dbname: &str) -> Result<tokio_postgres::Client, StepError> {
        let port = self.port().await?;
        let client = observe::connect(self.rt, &self.id, port, dbname)
            .await
            .map_err(StepError::Connect)?;
        client
            .batch_execute("SET synchronous_commit = local")
            .await
            .map_err(query_error)?;
        Ok(client)
    }

    /// A superuser connection to the `postgres` database (roles, settings).
    pub async fn admin(&self) -> Result<tokio_postgres::Client, StepError> {
        self.connect("postgres").await
    }

    /// A superuser connection to the step's own database.
    pub async fn database(&self) -> Result<tokio_postgres::Client, StepError> {
        self.connect(&self.step.database).await
    }

    /// The replication driver of the step's database.
    pub fn driver(&self) -> &'static dyn ReplicationDriver {
        driver(self.args.replication.unwrap_or(Replication::Native))
    }

    /// The database's replication password, made by the leader.
    pub async fn replication_password(&self) -> Result<String, StepError> {
        support::replication_password(self.ctx, &self.step.database).await
    }
}

async fn carry_out(
    observer: &Observer,
    ctx: &TaskContext,
    args: &StepArgs,
) -> Result<(), StepError> {
    let rt = observer.runtime();
    let step = &args.step;
    if step.host != *rt.host() {
        return Err(StepError::WrongHost {
            step: step.host.to_string(),
            here: rt.host().to_string(),
        });
    }
    let t = Target {
        rt,
        ctx,
        id: InstanceId::new(&step.database, &step.node, &step.host),
        step,
        args,
    };
    match &step.action {
        Action::CreateInstance { .. }
        | Action::CreateStandby { .. }
        | Action::StartInstance
        | Action::StopInstance
        | Action::RestartInstance { .. }
        | Action::RemoveInstance { .. } => instance::carry_out(&t).await,
        Action::CreateDatabase { .. }
        | Action::RunPostInit { .. }
        | Action::DropRole { .. }
        | Action::DropExtension { .. }
        | Action::AlterDatabaseOwner { .. }
        | Action::CreateRole { .. }
        | Action::AlterRole { .. }
        | Action::GrantRole { .. }
        | Action::CreateExtension { .. }
        | Action::UpdateExtension { .. }
        | Action::SetSettings { .. } => catalog::carry_out(&t).await,
        Action::WriteAuthFiles { hba, ident } => auth::write(&t, hba, ident).await,
        Action::EnsureReplication { .. }
        | Action::DropSlot { .. }
        | Action::CreatePublication { .. }
        | Action::CreateSubscription { .. }
        | Action::EnableSubscription { .. }
        | Action::RefreshSubscription { .. }
        | Action::DropSubscription { .. }
        | Action::AlignSequences { .. }
        | Action::InstallAutoDdl { .. }
        | Action::JoinMesh { .. } => replication::carry_out(&t).await,
        Action::ConfigureBackup { .. }
        | Action::RunBackup { .. }
        | Action::RestoreInstance { .. } => backup::carry_out(&t).await,
        Action::RehearseRestore(r) => rehearse::carry_out(&t, r).await,
        Action::PromoteStandby { .. }
        | Action::RepointStandby { .. }
        | Action::RejoinAsStandby { .. }
        | Action::StopForSwitchover { .. } => ha::carry_out(&t).await,
        Action::UpgradeMajor { .. } => upgrade::carry_out(&t).await,
        Action::RecordPrimary { .. } => Err(StepError::Arguments(
            "recording a primary is the leader's step, not a host's".into(),
        )),
    }
}

/// Appends one line to a file (made when missing), off the async runtime's
/// threads.
pub async fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    f.write_all(line.as_bytes()).await
}
