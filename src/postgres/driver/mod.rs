//! The replication drivers: how a database's nodes replicate to each other,
//! as SQL. [`Native`] uses PostgreSQL's publications and subscriptions,
//! [`Spock`] uses pgEdge Spock (its documented interface, `pgEdge/spock`
//! `docs/`). This module owns the statements of each driver, Spock's
//! zero-downtime add-node procedure as ordered [`Phase`]s, and the queries
//! that read Spock's subscription status and lag. It only builds
//! [`Statement`]s: it must not connect, run SQL, wait or sleep; the executor
//! does that, and decides timeouts.

use super::sql::{self, ident, literal, Conninfo, SqlError, Statement};
use crate::spec::database::Replication;
use crate::state::names::publication_name;

mod zodan;
pub use zodan::{spock_add_node, spock_advance_slot, spock_wait_for_sync_event, Phase, Then};

#[cfg(test)]
mod tests;

/// How the task log shows a password inside a connection string.
const MASK: &str = "********";

/// The replication sets a Spock subscription receives: tables with a
/// replica identity, tables without one (inserts only), and queued DDL.
const SPOCK_SETS: &str = "ARRAY['default', 'default_insert_only', 'ddl_sql']";

/// A node's primary, and how the other nodes reach it.
pub struct Endpoint<'a> {
    /// The node's name in the spec (`n1`).
    pub node: &'a str,
    /// How to connect to the node's primary (as the replication role).
    pub conn: Conninfo<'a>,
}

/// The statements of one replication technology. Each method returns the
/// statements to run, in order, on one node's primary, in the database
/// being replicated; none of them runs anything.
pub trait ReplicationDriver: Send + Sync {
    /// The driver's name in the spec: `native` or `spock`.
    fn name(&self) -> &'static str;
    /// Makes `me` able to publish its tables; run on `me`.
    fn publish(&self, me: &Endpoint) -> Result<Vec<Statement>, SqlError>;
    /// Subscribes the node it runs on to `publisher`, under `name`, without
    /// copying data and without forwarding changes that came from other
    /// nodes (so nothing loops). Run on the subscriber after its `publish`.
    fn subscribe(&self, name: &str, publisher: &Endpoint) -> Result<Vec<Statement>, SqlError>;
    /// Publishes the tables created on this node since `publish`; run on
    /// the publisher.
    fn publish_new_tables(&self) -> Result<Vec<Statement>, SqlError>;
    /// Makes subscription `name` receive the tables its publisher published
    /// since it was created; run on the subscriber.
    fn refresh(&self, name: &str) -> Result<Vec<Statement>, SqlError>;
    /// Starts subscription `name` again.
    fn enable(&self, name: &str) -> Result<Vec<Statement>, SqlError>;
    /// Stops subscription `name`, keeping its place on the publisher.
    fn disable(&self, name: &str) -> Result<Vec<Statement>, SqlError>;
    /// Drops subscription `name`.
    fn drop_subscription(&self, name: &str) -> Result<Vec<Statement>, SqlError>;
    /// Replicates DDL run on this node (`node`) of `database` to the others.
    fn autoddl(&self, database: &str, node: &str) -> Result<Vec<Statement>, SqlError>;
}

/// The driver of a database's `replication` setting.
pub fn driver(kind: Replication) -> &'static dyn ReplicationDriver {
    match kind {
        Replication::Native => &Native,
        Replication::Spock => &Spock,
    }
}

/// PostgreSQL's built-in logical replication: publication `pgcd_all` on
/// every node, one subscription per other node, DDL through pgcd's own log.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

impl ReplicationDriver for Native {
    fn name(&self) -> &'static str {
        Replication::Native.as_str()
    }

    /// `CREATE PUBLICATION pgcd_all FOR ALL TABLES`.
    fn publish(&self, _me: &Endpoint) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![sql::create_publication_all(publication_name())?])
    }

    /// `CREATE SUBSCRIPTION` with `origin = none, copy_data = false`.
    fn subscribe(&self, name: &str, publisher: &Endpoint) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![sql::create_subscription(
            name,
            &publisher.conn,
            publication_name(),
        )?])
    }

    /// Nothing: a `FOR ALL TABLES` publication includes new tables.
    fn publish_new_tables(&self) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![])
    }

    /// `ALTER SUBSCRIPTION ... REFRESH PUBLICATION WITH (copy_data = false)`.
    fn refresh(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![sql::refresh_subscription(name)?])
    }

    fn enable(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![sql::enable_subscription(name)?])
    }

    fn disable(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![Statement::plain(format!(
            "ALTER SUBSCRIPTION {} DISABLE",
            ident(name)?
        ))])
    }

    fn drop_subscription(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![sql::drop_subscription(name)?])
    }

    /// pgcd's DDL log and triggers ([`sql::install_autoddl`]).
    fn autoddl(&self, database: &str, node: &str) -> Result<Vec<Statement>, SqlError> {
        sql::install_autoddl(database, node)
    }
}

/// pgEdge Spock: a Spock node per pgcd node, tables in the `default` and
/// `default_insert_only` replication sets, DDL through Spock's AutoDDL.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spock;

impl ReplicationDriver for Spock {
    fn name(&self) -> &'static str {
        Replication::Spock.as_str()
    }

    /// The extension, the Spock node (with the DSN the others connect to),
    /// and this node's tables in the replication sets.
    fn publish(&self, me: &Endpoint) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![
            sql::create_extension("spock", None)?,
            spock_node_create(me)?,
            spock_add_tables(),
        ])
    }

    /// `spock.sub_create` from `publisher`, no structure or data copy,
    /// `forward_origins := '{}'`.
    fn subscribe(&self, name: &str, publisher: &Endpoint) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![spock_sub_create(name, &publisher.conn, false, true)?])
    }

    /// Adds the tables in no replication set to `default` or
    /// `default_insert_only` (what `spock.include_ddl_repset` does when a
    /// table is created; a no-op when AutoDDL is on).
    fn publish_new_tables(&self) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![spock_add_tables()])
    }

    /// Nothing: a Spock subscription applies every table its sets hold,
    /// including tables added to them later, with no data copy.
    fn refresh(&self, _name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![])
    }

    fn enable(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![Statement::plain(format!(
            "SELECT spock.sub_enable(subscription_name := {}, immediate := true)",
            literal(name)?
        ))])
    }

    fn disable(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![Statement::plain(format!(
            "SELECT spock.sub_disable(subscription_name := {}, immediate := true)",
            literal(name)?
        ))])
    }

    fn drop_subscription(&self, name: &str) -> Result<Vec<Statement>, SqlError> {
        Ok(vec![Statement::plain(format!(
            "SELECT spock.sub_drop(subscription_name := {}, ifexists := true)",
            literal(name)?
        ))])
    }

    /// Spock's three AutoDDL settings on, then a reload. `ALTER SYSTEM`
    /// cannot run inside a transaction block.
    fn autoddl(&self, _database: &str, _node: &str) -> Result<Vec<Statement>, SqlError> {
        spock_ddl_settings("on")
    }
}

/// A statement holding `conn` as a quoted DSN: `build` is given the real
/// DSN for `sql` and the masked one for `shown`.
fn with_dsn(conn: &Conninfo, build: impl Fn(&str) -> String) -> Result<Statement, SqlError> {
    Ok(Statement {
        sql: build(&literal(&conn.render(conn.password))?),
        shown: build(&literal(&conn.render(MASK))?),
    })
}

/// `spock.node_create` unless the node exists.
fn spock_node_create(me: &Endpoint) -> Result<Statement, SqlError> {
    let node = literal(me.node)?;
    with_dsn(&me.conn, |dsn| {
        format!(
            "SELECT spock.node_create(node_name := {node}, dsn := {dsn}) \
             WHERE NOT EXISTS (SELECT 1 FROM spock.node WHERE node_name = {node})"
        )
    })
}

/// Each table in no replication set, partitions included, goes into
/// `default` if it has an index-based replica identity (a primary key, or
/// `REPLICA IDENTITY USING INDEX`), else into `default_insert_only`; tables
/// of extensions are left out.
fn spock_add_tables() -> Statement {
    Statement::plain(
        "SELECT spock.repset_add_table(\
         (CASE WHEN c.relreplident = 'i' OR (c.relreplident = 'd' AND EXISTS \
         (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)) \
         THEN 'default' ELSE 'default_insert_only' END)::name, \
         c.oid::regclass, synchronize_data := false, include_partitions := false) \
         FROM pg_catalog.pg_class c \
         WHERE c.oid IN (SELECT t.relid FROM spock.tables t WHERE t.set_name IS NULL) \
         AND c.oid NOT IN (SELECT t.relid FROM spock.tables t WHERE t.set_name IS NOT NULL) \
         AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')"
            .to_string(),
    )
}

/// `spock.sub_create` unless the subscription exists: the three sets,
/// local changes of the provider only, structure and data copied if `copy`.
fn spock_sub_create(
    name: &str,
    provider: &Conninfo,
    copy: bool,
    enabled: bool,
) -> Result<Statement, SqlError> {
    let name = literal(name)?;
    with_dsn(provider, |dsn| {
        format!(
            "SELECT spock.sub_create(subscription_name := {name}, provider_dsn := {dsn}, \
             replication_sets := {SPOCK_SETS}, synchronize_structure := {copy}, \
             synchronize_data := {copy}, forward_origins := '{{}}'::text[], \
             enabled := {enabled}) \
             WHERE NOT EXISTS (SELECT 1 FROM spock.subscription WHERE sub_name = {name})"
        )
    })
}

/// The AutoDDL settings set to `value`, then a reload.
fn spock_ddl_settings(value: &str) -> Result<Vec<Statement>, SqlError> {
    Ok(vec![
        sql::alter_system("spock.enable_ddl_replication", value)?,
        sql::alter_system("spock.include_ddl_repset", value)?,
        sql::alter_system("spock.allow_ddl_from_functions", value)?,
        sql::reload(),
    ])
}

/// The slot a Spock subscription uses on its provider, named by Spock.
fn spock_slot(provider: &str, subscription: &str) -> Result<String, SqlError> {
    Ok(format!(
        "spock.spock_gen_slot_name(current_database(), {}, {})",
        literal(provider)?,
        literal(subscription)?
    ))
}

/// `spock.sub_show_status` of one subscription (or all): columns
/// `subscription_name, status, provider_node, slot_name` (all text).
/// `status` is `replicating` once the initial sync is done.
pub fn spock_sub_status(subscription: Option<&str>) -> Result<Statement, SqlError> {
    let arg = match subscription {
        Some(s) => literal(s)?,
        None => "NULL".to_string(),
    };
    Ok(Statement::plain(format!(
        "SELECT subscription_name, status, provider_node, slot_name \
         FROM spock.sub_show_status({arg}) ORDER BY subscription_name"
    )))
}

/// `spock.lag_tracker` on this node: columns `origin_name, receiver_name`
/// (text), `commit_epoch` (seconds, float8, NULL before any change),
/// `commit_lsn` (text), `lag_bytes` (int8) and `lag_seconds` (float8).
pub fn spock_lag() -> Statement {
    Statement::plain(
        "SELECT origin_name::text, receiver_name::text, \
         extract(epoch FROM commit_timestamp)::float8 AS commit_epoch, \
         commit_lsn::text, replication_lag_bytes::int8 AS lag_bytes, \
         extract(epoch FROM replication_lag)::float8 AS lag_seconds \
         FROM spock.lag_tracker ORDER BY 1, 2"
            .to_string(),
    )
}
