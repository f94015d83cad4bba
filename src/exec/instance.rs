//! Container steps: create an instance or a standby, start, stop, restart
//! and remove it. The data directory outlives the container unless a step
//! says to delete it.

use super::{StepError, Target, READY_TIMEOUT};
use crate::plan::Action;
use crate::postgres::sql;
use crate::runtime::docker::{CreateSpec, InitialAuth, StandbySource};

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    match &t.step.action {
        Action::CreateInstance {
            version,
            port,
            settings,
            cpus,
            memory,
            reuse_data,
            mounts,
            restore_from,
            hba,
            ident,
        } => {
            let conf_lines = settings
                .iter()
                .map(|(k, v)| sql::conf_line(k, v))
                .collect::<Result<Vec<_>, _>>()?;
            let spec = CreateSpec {
                image: t.args.image.clone(),
                port: *port,
                conf_lines,
                cpus: cpus.clone(),
                memory: memory.clone(),
                standby: None,
                mounts: mounts.clone(),
                auth: (!hba.is_empty()).then(|| InitialAuth {
                    hba: hba.clone(),
                    hba_without_tls: crate::plan::hba::without_tls(hba),
                    ident: ident.clone(),
                }),
            };
            if let Some(src) = restore_from {
                return super::backup::create_from_backup(t, &spec, src).await;
            }
            let created = rt.create(id, &spec).await?;
            if created && spec.auth.is_some() {
                t.log(format!(
                    "pg_hba.conf ({} lines) and pg_ident.conf ({} lines) of the spec are in force from the first start",
                    hba.len(),
                    ident.len()
                ));
            }
            t.log(format!(
                "container {} {} (image {}, PostgreSQL {version}, port {port}{})",
                id.container(),
                if created { "created" } else { "already exists" },
                t.args.image,
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
            mounts,
            from_backup,
        } => {
            let password = t.replication_password().await?;
            let spec = CreateSpec {
                image: t.args.image.clone(),
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
                mounts: mounts.clone(),
                // pg_basebackup copies the primary's files, pgcd's already.
                auth: None,
            };
            let created = rt.create(id, &spec).await?;
            let Some(b) = from_backup else {
                t.log(format!(
                    "standby container {} {} (image {}, PostgreSQL {version}, port {port}); its first start copies the primary on {primary} ({primary_address}:{primary_port}) through slot {slot}",
                    id.container(),
                    if created { "created" } else { "already exists" },
                    t.args.image,
                ));
                return Ok(());
            };
            t.log(format!(
                "standby container {} {} (image {}, PostgreSQL {version}, port {port}); its data comes from backup {} in repository {}, then it streams from the primary on {primary} ({primary_address}:{primary_port}) through slot {slot}",
                id.container(),
                if created { "created" } else { "already exists" },
                t.args.image,
                b.label,
                b.repo_id,
            ));
            super::standby_backup::restore(t, &spec, b).await
        }
        Action::StartInstance => {
            if let Some(why) = crate::backup::restoring(rt, id) {
                return Err(StepError::Refused(why));
            }
            // A container being stopped (by hand, say) still runs, and
            // Docker may still call it healthy, until its server is down:
            // wait until it has stopped, then start it, or until it answers.
            let until = std::time::Instant::now() + READY_TIMEOUT;
            loop {
                let info = rt
                    .inspect(id)
                    .await?
                    .ok_or_else(|| StepError::NoContainer(id.container()))?;
                if !info.running {
                    rt.start(id).await?;
                    t.log(format!("container {} started", id.container()));
                    break;
                }
                let probe = rt
                    .exec_as(
                        id,
                        "postgres",
                        &format!("pg_isready -q -h /var/lib/pgcd/run -p {}", info.port),
                        Vec::new(),
                        std::time::Duration::from_secs(10),
                    )
                    .await;
                if matches!(probe, Ok((0, _))) {
                    t.log(format!("container {} runs and answers", id.container()));
                    return Ok(());
                }
                if std::time::Instant::now() > until {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            rt.wait_healthy(id, READY_TIMEOUT).await?;
            t.log("pg_isready: accepting connections");
            Ok(())
        }
        Action::StopInstance => {
            rt.stop(id).await?;
            t.log(format!(
                "container {} stopped (fast shutdown)",
                id.container()
            ));
            Ok(())
        }
        Action::RestartInstance { settings } => {
            rt.restart(id).await?;
            t.log(format!(
                "container {} restarted{}",
                id.container(),
                if settings.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", settings.join(", "))
                }
            ));
            rt.wait_healthy(id, READY_TIMEOUT).await?;
            t.log("pg_isready: accepting connections");
            Ok(())
        }
        Action::RemoveInstance { keep_data } => {
            rt.remove(id, *keep_data).await?;
            t.log(format!(
                "container {} removed; data directory {}",
                id.container(),
                if *keep_data { "kept" } else { "deleted" }
            ));
            Ok(())
        }
        other => unreachable_action(other),
    }
}

/// The router in `exec::carry_out` sends each action to exactly one
/// concern; an action arriving elsewhere is a bug in that router.
pub(super) fn unreachable_action(action: &Action) -> Result<(), StepError> {
    Err(StepError::Arguments(format!(
        "action {action:?} routed to the wrong executor"
    )))
}
