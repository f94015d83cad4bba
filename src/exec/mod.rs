//! The `pg.step` task: carries out one plan step on this host — a container
//! operation through the runtime or SQL through one superuser connection —
//! logging what ran (passwords masked) and how long it took, then reports a
//! fresh observation so the leader's next plan sees the result. Every step
//! is idempotent: running it again after a success changes nothing.

mod join;
mod support;

pub(crate) use support::{
    align_sequences, db_error, ensure_replication_role, exists, replication_password, run_sql,
    sql_err,
};

use crate::cluster::tasks::{Executor, TaskContext};
use crate::plan::{Action, Step};
use crate::postgres::driver::{driver, Endpoint};
use crate::postgres::sql;
use crate::runtime::docker::{CreateSpec, StandbySource};
use crate::runtime::observe::{self, Observer};
use crate::spec::database::Replication;
use crate::state::InstanceId;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

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
                serde_json::from_value(args).map_err(|e| format!("invalid step arguments: {e}"))?;
            let step = &args.step;
            ctx.log(format!("step {}: {}", step.id, step.reason));
            let started = Instant::now();
            let outcome = carry_out(&observer, &ctx, &args).await;
            let took = started.elapsed();
            ctx.log(format!("step took {:.2}s", took.as_secs_f64()));
            if let Err(e) = observer.report(&ctx.store).await {
                ctx.log(format!("observation after the step not stored: {e}"));
            }
            outcome.map(|()| json!({ "step": step.id, "seconds": took.as_secs_f64() }))
        }
        .boxed()
    }
}

async fn carry_out(observer: &Observer, ctx: &TaskContext, args: &StepArgs) -> Result<(), String> {
    let rt = observer.runtime();
    let step = &args.step;
    let id = InstanceId::new(&step.database, &step.node, &step.host);
    if step.host != rt.host() {
        return Err(format!("step for host {} sent to {}", step.host, rt.host()));
    }
    let id = &id;
    let drv = driver(args.replication.unwrap_or(Replication::Native));
    let port = || async move {
        rt.inspect(id)
            .await
            .map_err(|e| e.to_string())?
            .map(|c| c.port)
            .ok_or_else(|| format!("container {} does not exist", id.container()))
    };
    let superuser = |dbname: String| async move {
        let port = port().await?;
        observe::connect(rt, id, port, &dbname).await
    };
    match &step.action {
        Action::CreateInstance {
            version,
            port,
            settings,
            cpus,
            memory,
            reuse_data,
        } => {
            let conf_lines = settings
                .iter()
                .map(|(k, v)| sql::conf_line(k, v))
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            let spec = CreateSpec {
                image: args.image.clone(),
                port: *port,
                conf_lines,
                cpus: cpus.clone(),
                memory: memory.clone(),
                standby: None,
            };
            let created = rt.create(id, &spec).await.map_err(|e| e.to_string())?;
            ctx.log(format!(
                "container {} {} (image {}, PostgreSQL {version}, port {port}{})",
                id.container(),
                if created { "created" } else { "already exists" },
                args.image,
                if *reuse_data {
                    ", existing data directory"
                } else {
                    ""
                }
            ));
            Ok(())
        }
        Action::CreateStandby {
            version,
            port,
            primary,
            primary_address,
            primary_port,
            slot,
            cpus,
            memory,
        } => {
            let password = replication_password(ctx, &step.database).await?;
            let spec = CreateSpec {
                image: args.image.clone(),
                port: *port,
                conf_lines: Vec::new(),
                cpus: cpus.clone(),
                memory: memory.clone(),
                standby: Some(StandbySource {
                    address: primary_address.clone(),
                    port: *primary_port,
                    slot: slot.clone(),
                    password,
                }),
            };
            let created = rt.create(id, &spec).await.map_err(|e| e.to_string())?;
            ctx.log(format!(
                "standby container {} {} (image {}, PostgreSQL {version}, port {port}); its first start copies the primary on {primary} ({primary_address}:{primary_port}) through slot {slot}",
                id.container(),
                if created { "created" } else { "already exists" },
                args.image,
            ));
            Ok(())
        }
        Action::EnsureReplication { slot } => {
            let password = replication_password(ctx, &step.database).await?;
            let c = superuser("postgres".into()).await?;
            ensure_replication_role(&c, ctx, &password).await?;
            let made = c
                .execute(
                    "SELECT pg_create_physical_replication_slot($1::text::name) \
                     WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1::text::name)",
                    &[slot],
                )
                .await
                .map_err(|e| format!("creating slot {slot}: {}", db_error(&e)))?;
            ctx.log(format!(
                "sql: SELECT pg_create_physical_replication_slot('{slot}') ({})",
                if made == 1 { "created" } else { "exists" }
            ));
            Ok(())
        }
        Action::CreatePublication { name } => {
            let password = replication_password(ctx, &step.database).await?;
            let admin = superuser("postgres".into()).await?;
            ensure_replication_role(&admin, ctx, &password).await?;
            let c = superuser(step.database.clone()).await?;
            let exists =
                exists(&c, "SELECT 1 FROM pg_publication WHERE pubname = $1", name).await?;
            if exists {
                ctx.log(format!("publication {name} exists"));
                return Ok(());
            }
            let port = port().await?;
            let address = rt.advertise().to_string();
            let me = Endpoint {
                node: &step.node,
                conn: sql::Conninfo {
                    host: &address,
                    port,
                    dbname: &step.database,
                    user: crate::state::names::REPLICATION_ROLE,
                    password: &password,
                    application_name: &step.node,
                },
            };
            let stmts = drv.publish(&me).map_err(sql_err)?;
            run_sql(&c, ctx, &stmts).await
        }
        Action::CreateSubscription {
            name,
            publisher,
            address,
            port,
        } => {
            let password = replication_password(ctx, &step.database).await?;
            let c = superuser(step.database.clone()).await?;
            let exists =
                exists(&c, "SELECT 1 FROM pg_subscription WHERE subname = $1", name).await?;
            if exists {
                ctx.log(format!("subscription {name} exists"));
                return Ok(());
            }
            let publisher = Endpoint {
                node: publisher,
                conn: sql::Conninfo {
                    host: address,
                    port: *port,
                    dbname: &step.database,
                    user: crate::state::names::REPLICATION_ROLE,
                    password: &password,
                    application_name: name,
                },
            };
            let stmts = drv.subscribe(name, &publisher).map_err(sql_err)?;
            ctx.log(format!(
                "subscribing to node {} at {address}:{port} ({})",
                publisher.node,
                drv.name()
            ));
            run_sql(&c, ctx, &stmts).await
        }
        Action::EnableSubscription { name } => {
            let c = superuser(step.database.clone()).await?;
            let stmts = drv.enable(name).map_err(sql_err)?;
            run_sql(&c, ctx, &stmts).await
        }
        Action::JoinMesh {
            source,
            others,
            offset,
            stride,
        } => {
            let password = replication_password(ctx, &step.database).await?;
            let port = port().await?;
            let join = join::Join {
                rt,
                ctx,
                id,
                port,
                password: &password,
                source,
                others,
                offset: *offset,
                stride: *stride,
            };
            join.run().await
        }
        Action::RefreshSubscription { name } => {
            let c = superuser(step.database.clone()).await?;
            let stmts = drv.refresh(name).map_err(sql_err)?;
            run_sql(&c, ctx, &stmts).await
        }
        Action::AlignSequences {
            offset,
            stride,
            sequences,
        } => {
            let c = superuser(step.database.clone()).await?;
            align_sequences(&c, ctx, *offset, *stride, sequences).await
        }
        Action::InstallAutoDdl { node } => {
            // Its functions are granted to the replication role.
            let password = replication_password(ctx, &step.database).await?;
            let admin = superuser("postgres".into()).await?;
            ensure_replication_role(&admin, ctx, &password).await?;
            let c = superuser(step.database.clone()).await?;
            let stmts = drv.autoddl(&step.database, node).map_err(sql_err)?;
            run_sql(&c, ctx, &stmts).await
        }
        Action::DropSubscription { name } => {
            let c = superuser(step.database.clone()).await?;
            let exists =
                exists(&c, "SELECT 1 FROM pg_subscription WHERE subname = $1", name).await?;
            if !exists {
                ctx.log(format!("subscription {name} does not exist"));
                return Ok(());
            }
            let drop = drv.drop_subscription(name).map_err(sql_err)?;
            if run_sql(&c, ctx, &drop).await.is_err() {
                // The publisher is gone: detach the slot (it went with it) and drop.
                ctx.log(format!(
                    "the publisher of {name} does not answer; dropping without its slot"
                ));
                let detach = sql::detach_subscription(name).map_err(sql_err)?;
                run_sql(&c, ctx, &detach).await?;
                run_sql(&c, ctx, &drop).await?;
            }
            Ok(())
        }
        Action::DropSlot { slot } => {
            let c = superuser("postgres".into()).await?;
            let active = c
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1::text::name",
                    &[slot],
                )
                .await
                .map_err(|e| db_error(&e))?;
            match active.map(|r| r.get::<_, bool>(0)) {
                None => ctx.log(format!("slot {slot} does not exist")),
                Some(true) => {
                    return Err(format!("slot {slot} is in use by a standby; not dropped"))
                }
                Some(false) => {
                    c.execute("SELECT pg_drop_replication_slot($1::text::name)", &[slot])
                        .await
                        .map_err(|e| format!("dropping slot {slot}: {}", db_error(&e)))?;
                    ctx.log(format!("sql: SELECT pg_drop_replication_slot('{slot}')"));
                }
            }
            Ok(())
        }
        Action::StartInstance => {
            rt.start(id).await.map_err(|e| e.to_string())?;
            ctx.log(format!("container {} started", id.container()));
            rt.wait_healthy(id, READY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            ctx.log("pg_isready: accepting connections");
            Ok(())
        }
        Action::StopInstance => {
            rt.stop(id).await.map_err(|e| e.to_string())?;
            ctx.log(format!(
                "container {} stopped (fast shutdown)",
                id.container()
            ));
            Ok(())
        }
        Action::RestartInstance { settings } => {
            rt.restart(id).await.map_err(|e| e.to_string())?;
            ctx.log(format!(
                "container {} restarted{}",
                id.container(),
                if settings.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", settings.join(", "))
                }
            ));
            rt.wait_healthy(id, READY_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            ctx.log("pg_isready: accepting connections");
            Ok(())
        }
        Action::RemoveInstance { keep_data } => {
            rt.remove(id, *keep_data).await.map_err(|e| e.to_string())?;
            ctx.log(format!(
                "container {} removed; data directory {}",
                id.container(),
                if *keep_data { "kept" } else { "deleted" }
            ));
            Ok(())
        }
        Action::CreateDatabase { owner } => {
            let c = superuser("postgres".into()).await?;
            let exists = exists(
                &c,
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &step.database,
            )
            .await?;
            if exists {
                ctx.log(format!("database {} exists", step.database));
                let s = sql::alter_database_owner(&step.database, owner).map_err(sql_err)?;
                return run_sql(&c, ctx, &[s]).await;
            }
            let s = sql::create_database(&step.database, owner).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::AlterDatabaseOwner { to, .. } => {
            let c = superuser("postgres".into()).await?;
            let s = sql::alter_database_owner(&step.database, to).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::CreateRole {
            name,
            attributes,
            password_ref,
        } => {
            let password = match password_ref {
                Some(r) => Some(
                    crate::secrets::resolve(r)
                        .map_err(|e| format!("password of role {name}: {e}"))?,
                ),
                None => None,
            };
            let c = superuser("postgres".into()).await?;
            let exists = exists(&c, "SELECT 1 FROM pg_roles WHERE rolname = $1", name).await?;
            let mut stmts = Vec::new();
            if exists {
                ctx.log(format!("role {name} exists; setting its attributes"));
                stmts.push(sql::alter_role(name, attributes).map_err(sql_err)?);
                if let Some(p) = &password {
                    stmts.push(sql::set_password(name, p).map_err(sql_err)?);
                }
            } else {
                stmts.push(
                    sql::create_role(name, attributes, password.as_deref()).map_err(sql_err)?,
                );
            }
            run_sql(&c, ctx, &stmts).await
        }
        Action::AlterRole { name, to, .. } => {
            let c = superuser("postgres".into()).await?;
            let s = sql::alter_role(name, to).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::GrantRole { role, member } => {
            let c = superuser("postgres".into()).await?;
            let s = sql::grant(role, member).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::CreateExtension { name, version } => {
            let c = superuser(step.database.clone()).await?;
            let s = sql::create_extension(name, version.as_deref()).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::UpdateExtension { name, to, .. } => {
            let c = superuser(step.database.clone()).await?;
            let s = sql::update_extension(name, to).map_err(sql_err)?;
            run_sql(&c, ctx, &[s]).await
        }
        Action::SetSettings {
            changes,
            needs_restart,
        } => {
            let c = superuser("postgres".into()).await?;
            let mut stmts = changes
                .iter()
                .map(|ch| sql::alter_system(&ch.name, &ch.new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err)?;
            stmts.push(sql::reload());
            run_sql(&c, ctx, &stmts).await?;
            if *needs_restart {
                ctx.log("some settings wait for the restart step");
            }
            Ok(())
        }
    }
}
