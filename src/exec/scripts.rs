//! The steps that run a spec's `scripts`: `post_init` in `postgres` with
//! its record in one transaction, and a database created with its
//! `post_database_create` under a temporary name, renamed once they
//! committed. Either way a list runs exactly once: a retry finds the record
//! (or the database) and runs nothing, and a failure leaves nothing half
//! done (the transaction rolls back; the temporary database is dropped).

use super::{db_error, exists, query_error, run_sql, StepError, Target};
use crate::postgres::scripts::{self, POST_INIT};
use crate::postgres::sql;
use std::time::{Duration, Instant};

/// How long the temporary database may take to lose its last session
/// before it is renamed.
const RENAME_WAIT: Duration = Duration::from_secs(30);

/// Runs `statements` of the list `field` in one transaction on `c`, with
/// `tail` (its record) before the commit. A failing statement rolls all
/// back and names itself: `scripts.post_init[1]: ERROR: ...`.
async fn in_transaction(
    c: &mut tokio_postgres::Client,
    t: &Target<'_>,
    field: &str,
    statements: &[String],
    head: &[sql::Statement],
    tail: &[sql::Statement],
) -> Result<(), StepError> {
    let tx = c.transaction().await.map_err(query_error)?;
    for s in head {
        tx.batch_execute(&s.sql).await.map_err(|e| StepError::Sql {
            statement: s.shown.clone(),
            message: db_error(&e),
        })?;
    }
    for (k, text) in statements.iter().enumerate() {
        let s = scripts::user_statement(text);
        let started = Instant::now();
        if let Err(e) = tx.batch_execute(&s.sql).await {
            let message = db_error(&e);
            t.log(format!(
                "scripts.{field}[{k}] failed: {message}; the transaction is rolled back, nothing of scripts.{field} is applied"
            ));
            return Err(StepError::Sql {
                statement: format!("scripts.{field}[{k}] ({})", s.shown.trim()),
                message,
            });
        }
        t.log(format!(
            "scripts.{field}[{k}]: {} ({} ms)",
            s.shown.trim(),
            started.elapsed().as_millis()
        ));
    }
    for s in tail {
        tx.batch_execute(&s.sql).await.map_err(|e| StepError::Sql {
            statement: s.shown.clone(),
            message: db_error(&e),
        })?;
    }
    tx.commit().await.map_err(|e| StepError::Sql {
        statement: format!("COMMIT of scripts.{field}"),
        message: db_error(&e),
    })
}

/// `scripts.post_init` in `postgres`, unless its record says it ran.
pub(super) async fn post_init(t: &Target<'_>, statements: &[String]) -> Result<(), StepError> {
    let mut c = t.admin().await?;
    let ran = c
        .query_one(scripts::TABLE_EXISTS, &[])
        .await
        .map_err(query_error)?
        .get::<_, bool>(0)
        && exists(&c, scripts::RAN, &POST_INIT).await?;
    if ran {
        t.log("scripts.post_init ran on this instance before (pgcd.scripts has its record); nothing runs");
        return Ok(());
    }
    // The record table is made and locked inside the transaction: two
    // attempts at once serialise, and the second finds the first's record.
    let head = [scripts::ensure_table()];
    let tail = [scripts::record(POST_INIT, statements.len())?];
    match in_transaction(&mut c, t, POST_INIT, statements, &head, &tail).await {
        Err(StepError::Sql { message, .. })
            if message.contains("duplicate key") && message.contains("scripts_pkey") =>
        {
            t.log(
                "scripts.post_init was run by another attempt at the same time; nothing more runs",
            );
            Ok(())
        }
        other => other,
    }
}

/// `CREATE DATABASE` with `post_database_create`: made as
/// [`scripts::creating_name`], the statements run in it in one
/// transaction, then renamed. The database's existence under its name is
/// the record that the scripts ran.
pub(super) async fn create_database(
    t: &Target<'_>,
    owner: &str,
    statements: &[String],
) -> Result<(), StepError> {
    let name: &str = &t.step.database;
    let temp = scripts::creating_name(name);
    let admin = t.admin().await?;
    if exists(
        &admin,
        "SELECT 1 FROM pg_database WHERE datname = $1",
        &name,
    )
    .await?
    {
        t.log(format!(
            "database {name} exists; scripts.post_database_create runs only when pgcd creates it, so it does not run"
        ));
        let s = sql::alter_database_owner(name, owner)?;
        return run_sql(&admin, t.ctx, &[s]).await;
    }
    // What an interrupted attempt left: pgcd's own, never a user's.
    run_sql(
        &admin,
        t.ctx,
        &[
            sql::drop_database_forced(&temp)?,
            sql::create_database(&temp, owner)?,
        ],
    )
    .await?;
    let ran = async {
        let mut c = t.connect(&temp).await?;
        in_transaction(&mut c, t, "post_database_create", statements, &[], &[]).await
    }
    .await;
    if let Err(e) = ran {
        if let Err(drop) = run_sql(&admin, t.ctx, &[sql::drop_database_forced(&temp)?]).await {
            t.log(format!(
                "the temporary database {temp} is left (dropped at the next attempt): {drop}"
            ));
        }
        return Err(e);
    }
    // Our session to it ends asynchronously: wait until none is left.
    let deadline = Instant::now() + RENAME_WAIT;
    loop {
        let busy = exists(
            &admin,
            "SELECT 1 FROM pg_stat_activity WHERE datname = $1",
            &temp,
        )
        .await?;
        if !busy {
            break;
        }
        if Instant::now() > deadline {
            return Err(StepError::Refused(format!(
                "the temporary database {temp} still has sessions after {}s; not renamed to {name}",
                RENAME_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run_sql(&admin, t.ctx, &[sql::rename_database(&temp, name)?]).await?;
    t.log(format!(
        "database {name} created with scripts.post_database_create ({} statement(s)) applied",
        statements.len()
    ));
    Ok(())
}
