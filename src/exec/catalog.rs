//! Catalog steps, in the planner's phase order: the database and its owner,
//! roles and memberships (a user with `state: absent` dropped after its
//! objects are reassigned), extensions, and settings (`ALTER SYSTEM`, then a
//! reload; a restart is its own step).

use super::instance::unreachable_action;
use super::{exists, query_error, run_sql, StepError, Target};
use crate::plan::Action;
use crate::postgres::sql;

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    let step = t.step;
    match &step.action {
        Action::CreateDatabase {
            owner,
            post_database_create,
        } if !post_database_create.is_empty() => {
            super::scripts::create_database(t, owner, post_database_create).await
        }
        Action::RunPostInit { statements } => super::scripts::post_init(t, statements).await,
        Action::DropRole { name, reassign_to } => drop_role(t, name, reassign_to).await,
        Action::DropExtension { name, cascade } => {
            let c = t.database().await?;
            run_sql(&c, t.ctx, &[sql::drop_extension(name, *cascade)?]).await
        }
        Action::CreateDatabase { owner, .. } => {
            let c = t.admin().await?;
            let name: &str = &step.database;
            if exists(&c, "SELECT 1 FROM pg_database WHERE datname = $1", &name).await? {
                t.log(format!("database {} exists", step.database));
                let s = sql::alter_database_owner(&step.database, owner)?;
                return run_sql(&c, t.ctx, &[s]).await;
            }
            let s = sql::create_database(&step.database, owner)?;
            run_sql(&c, t.ctx, &[s]).await
        }
        Action::AlterDatabaseOwner { to, .. } => {
            let c = t.admin().await?;
            let s = sql::alter_database_owner(&step.database, to)?;
            run_sql(&c, t.ctx, &[s]).await
        }
        Action::CreateRole {
            name,
            attributes,
            password_ref,
        } => {
            let password = match password_ref {
                Some(r) => {
                    Some(
                        crate::secrets::resolve(r).map_err(|source| StepError::Secret {
                            what: format!("password of role {name}"),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            let c = t.admin().await?;
            let exists = exists(&c, "SELECT 1 FROM pg_roles WHERE rolname = $1", name).await?;
            let mut stmts = Vec::new();
            if exists {
                t.log(format!("role {name} exists; setting its attributes"));
                stmts.push(sql::alter_role(name, attributes)?);
                if let Some(p) = &password {
                    stmts.push(sql::set_password(name, p)?);
                }
            } else {
                stmts.push(sql::create_role(name, attributes, password.as_deref())?);
            }
            run_sql(&c, t.ctx, &stmts).await
        }
        Action::AlterRole { name, to, .. } => {
            let c = t.admin().await?;
            run_sql(&c, t.ctx, &[sql::alter_role(name, to)?]).await
        }
        Action::GrantRole { role, member } => {
            let c = t.admin().await?;
            run_sql(&c, t.ctx, &[sql::grant(role, member)?]).await
        }
        Action::CreateExtension { name, version } => {
            let c = t.database().await?;
            let s = sql::create_extension(name, version.as_deref())?;
            run_sql(&c, t.ctx, &[s]).await
        }
        Action::UpdateExtension { name, to, .. } => {
            let c = t.database().await?;
            run_sql(&c, t.ctx, &[sql::update_extension(name, to)?]).await
        }
        Action::SetSettings {
            changes,
            needs_restart,
        } => {
            let c = t.admin().await?;
            let mut stmts = changes
                .iter()
                .map(|ch| sql::alter_system(&ch.name, &ch.new))
                .collect::<Result<Vec<_>, _>>()?;
            stmts.push(sql::reload());
            let before: String = c
                .query_one("SELECT pg_conf_load_time()::text", &[])
                .await
                .map_err(query_error)?
                .get(0);
            run_sql(&c, t.ctx, &stmts).await?;
            reloaded(t, &before).await?;
            if *needs_restart {
                t.log("some settings wait for the restart step");
            }
            Ok(())
        }
        other => unreachable_action(other),
    }
}

/// Waits until the server has read its configuration again after `before`
/// (its `pg_conf_load_time()` then). A reload is a signal: the observation
/// right after this step opens a new session, which sees the new values
/// only once the postmaster has read them; before, the planner saw the old
/// value, planned the same step again and, twice in a row, stalled.
async fn reloaded(t: &Target<'_>, before: &str) -> Result<(), StepError> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let c = t.admin().await?;
        let done: bool = c
            .query_one(
                "SELECT pg_conf_load_time() > $1::text::timestamptz",
                &[&before],
            )
            .await
            .map_err(query_error)?
            .get(0);
        if done {
            return Ok(());
        }
        if std::time::Instant::now() > until {
            t.log("the server has not read its configuration again within 10 s");
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A user with `state: absent`: its objects are given to `owner` and its
/// privileges dropped in every database that takes connections, then the
/// role is dropped.
async fn drop_role(t: &Target<'_>, name: &str, owner: &str) -> Result<(), StepError> {
    let admin = t.admin().await?;
    if !exists(&admin, "SELECT 1 FROM pg_roles WHERE rolname = $1", &name).await? {
        t.log(format!("role {name} does not exist"));
        return Ok(());
    }
    let databases: Vec<String> = admin
        .query(
            "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for d in &databases {
        let c = t.connect(d).await?;
        t.log(format!("in database {d}:"));
        run_sql(&c, t.ctx, &[sql::disown(name, owner)?]).await?;
    }
    run_sql(&admin, t.ctx, &[sql::drop_role(name)?]).await
}
