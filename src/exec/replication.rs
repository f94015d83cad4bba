//! Replication steps: the replication role and a standby's slot on a
//! primary, unused slots dropped, and the logical mesh between nodes
//! (publication, subscriptions, sequences in the node's key residue, DDL
//! replication, and a node's zero-downtime join). Every statement comes
//! from the database's replication driver.

use super::instance::unreachable_action;
use super::join::Join;
use super::support::{align_sequences, ensure_replication_role};
use super::{exists, query_error, replication_client, run_sql, ReplicationPeer, StepError, Target};
use crate::plan::Action;
use crate::postgres::driver::Endpoint;
use crate::postgres::sql;
use crate::state::names::REPLICATION_ROLE;

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    let step = t.step;
    let drv = t.driver();
    match &step.action {
        Action::EnsureReplication { slot } => {
            let password = t.replication_password().await?;
            let c = t.admin().await?;
            ensure_replication_role(&c, t.ctx, &password).await?;
            let made = c
                .execute(
                    "SELECT pg_create_physical_replication_slot($1::text::name) \
                     WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1::text::name)",
                    &[slot],
                )
                .await
                .map_err(|e| StepError::Sql {
                    statement: format!("creating slot {slot}"),
                    message: super::db_error(&e),
                })?;
            t.log(format!(
                "sql: SELECT pg_create_physical_replication_slot('{slot}') ({})",
                if made == 1 { "created" } else { "exists" }
            ));
            Ok(())
        }
        Action::DropSlot { slot } => {
            let c = t.admin().await?;
            let active = c
                .query_opt(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = $1::text::name",
                    &[slot],
                )
                .await
                .map_err(query_error)?;
            match active.map(|r| r.get::<_, bool>(0)) {
                None => t.log(format!("slot {slot} does not exist")),
                Some(true) => {
                    return Err(StepError::Refused(format!(
                        "slot {slot} is in use by a standby; not dropped"
                    )))
                }
                Some(false) => {
                    c.execute("SELECT pg_drop_replication_slot($1::text::name)", &[slot])
                        .await
                        .map_err(|e| StepError::Sql {
                            statement: format!("dropping slot {slot}"),
                            message: super::db_error(&e),
                        })?;
                    t.log(format!("sql: SELECT pg_drop_replication_slot('{slot}')"));
                }
            }
            Ok(())
        }
        Action::CreatePublication { name } => {
            let password = t.replication_password().await?;
            let admin = t.admin().await?;
            ensure_replication_role(&admin, t.ctx, &password).await?;
            let c = t.database().await?;
            if exists(&c, "SELECT 1 FROM pg_publication WHERE pubname = $1", name).await? {
                t.log(format!("publication {name} exists"));
                return Ok(());
            }
            let port = t.port().await?;
            let address = t.rt.advertise().to_string();
            let me = Endpoint {
                node: &step.node,
                conn: sql::Conninfo {
                    host: &address,
                    port,
                    dbname: &step.database,
                    user: REPLICATION_ROLE,
                    password: &password,
                    application_name: &step.node,
                },
            };
            run_sql(&c, t.ctx, &drv.publish(&me)?).await
        }
        Action::CreateSubscription {
            name,
            publisher,
            address,
            port,
            tls,
        } => {
            let password = t.replication_password().await?;
            let c = t.database().await?;
            if exists(&c, "SELECT 1 FROM pg_subscription WHERE subname = $1", name).await? {
                t.log(format!("subscription {name} exists"));
                return Ok(());
            }
            let publisher = Endpoint {
                node: publisher,
                conn: sql::Conninfo {
                    host: address,
                    port: *port,
                    dbname: &step.database,
                    user: REPLICATION_ROLE,
                    password: &password,
                    application_name: name,
                },
            };
            let stmts = drv.subscribe(name, &publisher)?;
            if drv.name() == crate::spec::database::Replication::Native.as_str() {
                let at = ReplicationPeer {
                    address,
                    port: *port,
                    tls: *tls,
                };
                publisher_slot(t, &at, &password, name).await?;
            }
            t.log(format!(
                "subscribing to node {} at {address}:{port} ({})",
                publisher.node,
                drv.name()
            ));
            run_sql(&c, t.ctx, &stmts).await
        }
        Action::EnableSubscription { name } => {
            let c = t.database().await?;
            run_sql(&c, t.ctx, &drv.enable(name)?).await
        }
        Action::RefreshSubscription { name } => {
            let c = t.database().await?;
            run_sql(&c, t.ctx, &drv.refresh(name)?).await
        }
        Action::DropSubscription { name } => {
            let c = t.database().await?;
            if !exists(&c, "SELECT 1 FROM pg_subscription WHERE subname = $1", name).await? {
                t.log(format!("subscription {name} does not exist"));
                return Ok(());
            }
            let drop = drv.drop_subscription(name)?;
            if run_sql(&c, t.ctx, &drop).await.is_err() {
                // The publisher is gone: detach the slot (it went with it) and drop.
                t.log(format!(
                    "the publisher of {name} does not answer; dropping without its slot"
                ));
                run_sql(&c, t.ctx, &sql::detach_subscription(name)?).await?;
                run_sql(&c, t.ctx, &drop).await?;
            }
            Ok(())
        }
        Action::AlignSequences {
            offset,
            stride,
            sequences,
        } => {
            let c = t.database().await?;
            align_sequences(&c, t.ctx, *offset, *stride, sequences).await
        }
        Action::InstallAutoDdl { node } => {
            // Its functions are granted to the replication role.
            let password = t.replication_password().await?;
            let admin = t.admin().await?;
            ensure_replication_role(&admin, t.ctx, &password).await?;
            let c = t.database().await?;
            run_sql(&c, t.ctx, &drv.autoddl(&step.database, node)?).await
        }
        Action::JoinMesh {
            source,
            others,
            offset,
            stride,
        } => {
            let password = t.replication_password().await?;
            let port = t.port().await?;
            let join = Join {
                rt: t.rt,
                ctx: t.ctx,
                id: &t.id,
                port,
                password: &password,
                source,
                others,
                offset: *offset,
                stride: *stride,
            };
            join.run().await.map_err(StepError::Phase)
        }
        other => unreachable_action(other),
    }
}

/// Makes a native subscription's slot on its publisher first, in a session
/// of its own, so that `CREATE SUBSCRIPTION` (`create_slot = false`) never
/// waits on another node. Made by `CREATE SUBSCRIPTION`, the slot would be
/// built while this node's transaction is open, and building a slot waits
/// for the publisher's open transactions — among them that node's own
/// `CREATE SUBSCRIPTION` to this one, waiting the same way: two nodes
/// subscribing to each other at once would never finish.
async fn publisher_slot(
    t: &Target<'_>,
    at: &ReplicationPeer<'_>,
    password: &str,
    slot: &str,
) -> Result<(), StepError> {
    let (address, port) = (at.address, at.port);
    let client = replication_client(t.rt, at, password, t.step.database.as_str())
        .await
        .map_err(|e| StepError::Connect(format!("the publisher: {e}")))?;
    let made = client
        .query(
            "SELECT pg_create_logical_replication_slot($1::text::name, 'pgoutput') \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1::text::name)",
            &[&slot],
        )
        .await
        .map_err(|e| StepError::Sql {
            statement: format!("making slot {slot} on {address}:{port}"),
            message: super::db_error(&e),
        })?;
    let over = if at.tls { ", over verified TLS" } else { "" };
    t.log(if made.is_empty() {
        format!("slot {slot} exists on the publisher ({address}:{port}{over})")
    } else {
        format!("slot {slot} made on the publisher ({address}:{port}{over})")
    });
    Ok(())
}
