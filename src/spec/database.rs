//! `databases/<name>.yaml`: the desired state of one database. Field names
//! follow pgEdge Control Plane's database spec.

use super::backup::{BackupConfig, RestoreConfig};
use super::decode::{choice, Ctx, Decode, MapReader};
use super::defaults;
use super::diag::FieldPath;
use super::extensions::Extension;
use super::names::{DatabaseName, HostId, NodeName, RoleName};
use super::pgedge;
use super::secret::SecretRef;
use super::values::{ConfValue, Cpus, Memory, PgVersion};
use super::yaml::Node;
use serde::Serialize;
use std::collections::BTreeMap;

choice!(
    /// How a database with several nodes replicates between them.
    Replication {
        /// PostgreSQL's built-in logical replication (publications, subscriptions).
        Native = "native",
        /// pgEdge Spock (needs the spock extension in the image).
        Spock = "spock",
    }
);
choice!(
    /// The desired state of a database.
    DatabaseState { Running = "running", Stopped = "stopped", Absent = "absent" }
);
choice!(
    /// How a change of major version in `postgres_version` is carried out
    /// (pgcd's own field; pgEdge upgrades a major only by node addition).
    MajorUpgrade {
        /// Add a node of the new major (`source_node`), let it catch up,
        /// remove the old one: the spec says so node by node. Nothing is
        /// changed in place.
        NodeAdd = "node_add",
        /// `pg_upgrade --link` on the node's primary (a single-node
        /// database): a backup first when the node has `backup_config`,
        /// then a stop, the upgrade, a start on the new image and
        /// `ANALYZE`; its standbys are rebuilt from the upgraded primary.
        InPlace = "in_place",
    }
);
choice!(
    /// The desired state of a node.
    NodeState { Running = "running", Stopped = "stopped" }
);
choice!(
    /// Whether a database user or an extension should exist (pgcd's own
    /// field; pgEdge has none). An entry simply removed from the spec is
    /// left as it is; `absent` is the explicit instruction to drop it.
    Presence { Present = "present", Absent = "absent" }
);
choice!(
    /// A role attribute (`CREATE ROLE ... WITH <attribute>`).
    RoleAttribute {
        Login = "LOGIN", NoLogin = "NOLOGIN", Superuser = "SUPERUSER", CreateDb = "CREATEDB",
        CreateRole = "CREATEROLE", Replication = "REPLICATION", BypassRls = "BYPASSRLS",
        Inherit = "INHERIT", NoInherit = "NOINHERIT"
    }
);

/// A database: where its nodes run, what runs in it, how it is backed up.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// Optional marker; when present it must be `Database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The database name; equals the file name without `.yaml`.
    pub database_name: DatabaseName,
    /// PostgreSQL version of every node unless a node overrides it. Default:
    /// `postgres_version` of `pgcd.yaml`, else pgcd's newest major (18).
    #[serde(default = "super::defaults::postgres_version")]
    pub postgres_version: PgVersion,
    /// Spock major version, when `replication: spock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spock_version: Option<String>,
    /// Port of every instance unless a node overrides it. Default 5432.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// CPU limit of each instance's container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Memory limit of each instance's container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Replication between nodes. Default: `spock` when `spock_version` is set, else `native`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// `running` (default), `stopped`, or `absent` (with `confirm_delete`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<DatabaseState>,
    /// Must equal `database_name` for `state: absent` to delete anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_delete: Option<String>,
    /// With `state: absent`: also delete the data directories (kept by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_data: Option<bool>,
    /// The nodes; each is one primary plus standbys (`host_ids`).
    pub nodes: Vec<NodeSpec>,
    /// Roles to create and keep.
    #[serde(default)]
    pub database_users: Vec<User>,
    /// Extensions to create in the database.
    #[serde(default)]
    pub extensions: Vec<Extension>,
    /// `postgresql.conf` settings of every node (nodes merge theirs over these).
    #[serde(default)]
    pub postgresql_conf: BTreeMap<String, ConfValue>,
    /// `pg_hba.conf` lines of every instance: after pgcd's own lines (its
    /// agent; replication between the database's hosts only), before
    /// pgcd's catch-all (TCP with a password, scram only). `md5` and
    /// `password` are refused. A change is put in force by a reload.
    #[serde(default)]
    pub pg_hba_conf: Vec<String>,
    /// `pg_ident.conf` lines of every instance (`MAPNAME SYSTEM-USERNAME
    /// PG-USERNAME`). A change is put in force by a reload.
    #[serde(default)]
    pub pg_ident_conf: Vec<String>,
    /// SQL run once at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scripts: Option<Scripts>,
    /// Backups of every node unless a node overrides them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_config: Option<BackupConfig>,
    /// Create the database from an existing backup repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_config: Option<RestoreConfig>,
    /// Automatic failover of each node's primary to one of its standbys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverPolicy>,
    /// Maintenance mode: no automatic action on this database (no steps
    /// but those of operations committed for it, no drift correction, no
    /// automatic failover, no scheduled backup) while observation and
    /// status go on. Like Patroni's `pause` and Flux's `suspend`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// How a new major in `postgres_version` is reached: `node_add`
    /// (default: add a node of the new major, then remove the old one) or
    /// `in_place` (`pg_upgrade --link`, a single-node database only; clients
    /// are disconnected while it runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_upgrade: Option<MajorUpgrade>,
}

/// Automatic failover of a node's primary to one of its standbys.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverPolicy {
    /// Fail over automatically when a primary is lost. Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic: Option<bool>,
    /// How long a primary whose host is alive may not answer (its server
    /// crashed or hung) before its node fails over; Docker restarts a
    /// crashed server meanwhile. Default `10s`. A primary whose host is
    /// lost (its agent's lease expired) fails over at once: it has stopped
    /// itself before the lease could expire (see `agent::fence`), so the
    /// lease's TTL (`--lease-ttl`) is that case's grace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<super::values::Duration>,
    /// A standby that lags the lost primary by more than this is never
    /// promoted automatically (Patroni's `maximum_lag_on_failover`).
    /// Default `1MiB`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_lag: Option<Memory>,
}

impl FailoverPolicy {
    /// Whether failover is automatic (the default).
    pub fn automatic(p: Option<&Self>) -> bool {
        p.and_then(|p| p.automatic).unwrap_or(true)
    }

    /// The grace time of a primary that does not answer on a live host
    /// (default 10 s).
    pub fn grace(p: Option<&Self>) -> std::time::Duration {
        p.and_then(|p| p.grace.as_ref())
            .map_or(std::time::Duration::from_secs(10), |d| d.as_std())
    }

    /// The largest lag, bytes, a standby promoted automatically may have.
    pub fn maximum_lag(p: Option<&Self>) -> u64 {
        p.and_then(|p| p.maximum_lag.as_ref())
            .and_then(|m| super::values::memory_bytes(&m.0))
            .unwrap_or(1024 * 1024)
    }
}

impl Decode for FailoverPolicy {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a failover policy")?;
        let r = (
            m.opt(cx, "automatic"),
            m.opt(cx, "grace"),
            m.opt(cx, "maximum_lag"),
        );
        m.finish(cx);
        Some(Self {
            automatic: r.0,
            grace: r.1,
            maximum_lag: r.2,
        })
    }
}

impl Decode for Database {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a database spec")?;
        let kind: Option<String> = m.opt(cx, "kind");
        if let Some(k) = kind.as_deref().filter(|k| *k != "Database") {
            let p = m.path().field("kind");
            let pos = cx.spans.pos(p.as_str());
            cx.error_at(
                pos,
                &p,
                format!("a file under databases/ has kind Database, not \"{k}\""),
            );
        }
        let version: Option<PgVersion> = m.opt(cx, "postgres_version");
        let version = version
            .or(cx.postgres_version)
            .unwrap_or_else(defaults::postgres_version);
        m.unsupported(cx, "orchestrator_opts", pgedge::orchestrator_opts);
        m.unsupported(cx, "patroni_port", pgedge::patroni_port);
        m.unsupported(cx, "services", pgedge::services);
        let r = (
            m.req(cx, "database_name"),
            Some(version),
            m.opt(cx, "spock_version"),
            m.opt(cx, "port"),
            m.opt(cx, "cpus"),
            m.opt(cx, "memory"),
            m.opt(cx, "replication"),
            m.opt(cx, "state"),
            m.opt(cx, "confirm_delete"),
            m.opt(cx, "delete_data"),
            m.nonempty_list(cx, "nodes", true, "a database has at least one node"),
        );
        let s = (
            m.list(cx, "database_users"),
            m.list(cx, "extensions"),
            m.map(cx, "postgresql_conf"),
            m.list(cx, "pg_hba_conf"),
            m.list(cx, "pg_ident_conf"),
            m.opt(cx, "scripts"),
            m.opt(cx, "backup_config"),
            m.opt(cx, "restore_config"),
            m.opt(cx, "failover"),
            m.opt(cx, "suspend"),
            m.opt(cx, "major_upgrade"),
        );
        m.finish(cx);
        Some(Self {
            kind,
            database_name: r.0?,
            postgres_version: r.1?,
            spock_version: r.2,
            port: r.3,
            cpus: r.4,
            memory: r.5,
            replication: r.6,
            state: r.7,
            confirm_delete: r.8,
            delete_data: r.9,
            nodes: r.10?,
            database_users: s.0,
            extensions: s.1,
            postgresql_conf: s.2,
            pg_hba_conf: s.3,
            pg_ident_conf: s.4,
            scripts: s.5,
            backup_config: s.6,
            restore_config: s.7,
            failover: s.8,
            suspend: s.9,
            major_upgrade: s.10,
        })
    }
}

/// One node: a primary on the first host, standbys on the others.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Node name, unique in the database (`n1`, `n2`, ...).
    pub name: NodeName,
    /// Hosts of this node's instances; the first is the initial primary.
    pub host_ids: Vec<HostId>,
    /// Overrides the database's `postgres_version` (a major upgrade adds a node of the new version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_version: Option<PgVersion>,
    /// Overrides the database's `port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Overrides the database's `cpus`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    /// Overrides the database's `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// Merged over the database's `postgresql_conf`.
    #[serde(default)]
    pub postgresql_conf: BTreeMap<String, ConfValue>,
    /// Added after the database's `pg_hba_conf` on this node's instances
    /// (still before pgcd's catch-all).
    #[serde(default)]
    pub pg_hba_conf: Vec<String>,
    /// Added after the database's `pg_ident_conf` on this node's instances.
    #[serde(default)]
    pub pg_ident_conf: Vec<String>,
    /// Replaces the database's `backup_config` for this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_config: Option<BackupConfig>,
    /// Create this node from a backup instead of copying from `source_node`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_config: Option<RestoreConfig>,
    /// The node a new node copies its data from (zero-downtime add).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_node: Option<NodeName>,
    /// `running` (default) or `stopped`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<NodeState>,
    /// Standbys are synchronous (quorum `ANY 1`): a commit is acknowledged
    /// once it is on the primary and one standby. Needs two or more hosts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synchronous: Option<bool>,
}

impl Decode for NodeSpec {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a node")?;
        m.unsupported(cx, "orchestrator_opts", pgedge::orchestrator_opts);
        m.unsupported(cx, "patroni_port", pgedge::patroni_port);
        let r = (
            m.req(cx, "name"),
            m.nonempty_list(
                cx,
                "host_ids",
                true,
                "a node has at least one host (its primary)",
            ),
            m.opt(cx, "postgres_version"),
            m.opt(cx, "port"),
            m.opt(cx, "cpus"),
            m.opt(cx, "memory"),
            m.map(cx, "postgresql_conf"),
            m.list(cx, "pg_hba_conf"),
            m.list(cx, "pg_ident_conf"),
            m.opt(cx, "backup_config"),
            m.opt(cx, "restore_config"),
            m.opt(cx, "source_node"),
            m.opt(cx, "state"),
            m.opt(cx, "synchronous"),
        );
        m.finish(cx);
        Some(Self {
            name: r.0?,
            host_ids: r.1?,
            postgres_version: r.2,
            port: r.3,
            cpus: r.4,
            memory: r.5,
            postgresql_conf: r.6,
            pg_hba_conf: r.7,
            pg_ident_conf: r.8,
            backup_config: r.9,
            restore_config: r.10,
            source_node: r.11,
            state: r.12,
            synchronous: r.13,
        })
    }
}

/// A role pgcd creates and keeps in the database.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Role name.
    pub username: RoleName,
    /// Where the password comes from (never clear text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Owns the database. At most one user per database. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_owner: Option<bool>,
    /// Role attributes. Default `[LOGIN]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Vec<RoleAttribute>>,
    /// Roles granted to this one (`pg_read_all_data`, another managed user, ...).
    #[serde(default)]
    pub roles: Vec<String>,
    /// `present` (default) or `absent`: drop the role on every instance,
    /// after `REASSIGN OWNED BY` it `TO` the database's owner and `DROP
    /// OWNED BY` it in each database (its objects survive, owned by the
    /// owner). A user removed from the spec is left as it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<Presence>,
}

impl User {
    /// Whether the spec wants the role to exist (`state` is not `absent`).
    pub fn present(&self) -> bool {
        self.state != Some(Presence::Absent)
    }
}

impl Decode for User {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a database user")?;
        let r = (
            m.req(cx, "username"),
            m.opt(cx, "password"),
            m.opt(cx, "db_owner"),
            m.opt(cx, "attributes"),
            m.list(cx, "roles"),
            m.opt(cx, "state"),
        );
        m.finish(cx);
        Some(Self {
            username: r.0?,
            password: r.1,
            db_owner: r.2,
            attributes: r.3,
            roles: r.4,
            state: r.5,
        })
    }
}

/// SQL run once, at creation, each list in one transaction. Changing them
/// once the database exists does nothing (a plan says so).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    /// Statements run in `postgres` after initdb, before users are
    /// created: once on each node's primary, when pgcd initialises it (an
    /// instance's `postgres` database is its own; standbys copy it).
    #[serde(default)]
    pub post_init: Vec<String>,
    /// Statements run in the new database before anything else (the spec's
    /// extensions included) and before replication is set up: once per
    /// database, on its first node; the other nodes, and nodes added later,
    /// copy the result from it.
    #[serde(default)]
    pub post_database_create: Vec<String>,
}

impl Decode for Scripts {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "scripts")?;
        let (post_init, post_database_create) =
            (m.list(cx, "post_init"), m.list(cx, "post_database_create"));
        m.finish(cx);
        Some(Self {
            post_init,
            post_database_create,
        })
    }
}
