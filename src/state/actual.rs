//! The observed state the planner compares the spec with: hosts and the
//! PostgreSQL instances on them, as agents report them.
//!
//! These are plain values (serde both ways, so they travel through etcd) and
//! this file must not do I/O: `observe` fills them, `plan` reads them.
//! Instances are keyed by (database, node, host), so a node's standbys sit
//! beside its primary and which one is primary is a reported fact.

use crate::spec::database::RoleAttribute;
use crate::spec::names::{DatabaseName, HostId, NodeName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the agents reported: hosts and instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actual {
    /// The registered hosts.
    pub hosts: Vec<HostActual>,
    /// The instances pgcd manages (containers labelled as its own).
    pub instances: Vec<InstanceActual>,
    /// What the apply loop last carried out in full, per database.
    #[serde(default)]
    pub databases: Vec<DatabaseActual>,
    /// The operations' records: what each one has done so far.
    #[serde(default)]
    pub operations: Vec<crate::state::operation::OperationRecord>,
    /// The backup schedules' records.
    #[serde(default)]
    pub schedules: Vec<crate::state::schedule::ScheduleRecord>,
    /// Each node's last restore rehearsal.
    #[serde(default)]
    pub restore_checks: Vec<crate::state::rehearsal::RestoreCheck>,
    /// Which host is each node's primary (nodes with standbys).
    #[serde(default)]
    pub primaries: Vec<crate::state::primary::PrimaryRecord>,
    /// When the leader first saw each instance it cannot use (its host's
    /// lease gone, or its server not answering), by `db/node/host`: the
    /// clock of failover's grace time.
    #[serde(default)]
    pub down_since: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    /// How long the steps clients feel took on this cluster (the impact
    /// plan's estimates).
    #[serde(default)]
    pub durations: crate::state::durations::StepDurations,
    /// Each node's backups, as its primary's agent last listed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<NodeBackupsActual>,
}

/// A node's backups without errors, as the planner needs them (the
/// listing itself is `backups/<db>/<node>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeBackupsActual {
    /// The database.
    pub database: String,
    /// The node.
    pub node: String,
    /// Its backups, in the listing's order (oldest first).
    pub backups: Vec<BackupActual>,
}

/// One backup of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupActual {
    /// Its label (`20260101-020000F`).
    pub label: String,
    /// The repository it is in (`repoN`).
    pub repo: u32,
    /// When it stopped (RFC 3339, UTC).
    pub stop: String,
    /// The system identifier of the cluster it was taken of.
    pub system_identifier: Option<String>,
}

/// The spec of a database as last carried out in full: when it equals the
/// spec now, any difference the planner finds was made by hand (drift).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseActual {
    /// The database.
    pub name: String,
    /// [`super::spec_digest`] of its spec when every step had succeeded.
    pub applied_spec: String,
}

/// A registered host and whether it can run steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostActual {
    /// The host id (`h1`).
    pub id: HostId,
    /// Its agent holds its lease and answers.
    pub healthy: bool,
    /// Docker answers on the host.
    pub docker: bool,
    /// The host's advertise address (where its instances listen).
    #[serde(default)]
    pub address: String,
    /// When its agent started (its host record's `started_at`), while live:
    /// an agent that started just now may not have observed yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The replication role an instance reports (`pg_is_in_recovery()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceRole {
    /// Accepts writes.
    Primary,
    /// In recovery, following a primary.
    Standby,
    /// Not running, or not answering.
    Unknown,
}

/// One instance: container, server and the catalog of its database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceActual {
    /// The database (container label).
    pub database: DatabaseName,
    /// The node (container label).
    pub node: NodeName,
    /// The host the container runs on.
    pub host: HostId,
    /// The container `pgcd-<database>-<node>-<host>` exists.
    pub container_exists: bool,
    /// The container runs and `pg_isready` answers.
    pub running: bool,
    /// `server_version`, e.g. `17.6`; unknown when not running.
    pub version: Option<String>,
    /// The port PostgreSQL listens on.
    pub port: u16,
    /// Primary or standby.
    pub role: InstanceRole,
    /// Settings whose source is not `default`, as `current_setting()` shows them.
    pub settings: BTreeMap<String, String>,
    /// Settings changed but waiting for a restart (`pg_settings.pending_restart`).
    pub pending_restart: Vec<String>,
    /// The database named after the spec exists.
    pub database_exists: bool,
    /// Its owner.
    pub owner: Option<String>,
    /// Roles of the server.
    pub roles: Vec<RoleActual>,
    /// Extensions installed in the database.
    pub extensions: Vec<ExtActual>,
    /// Extensions the image offers (`pg_available_extensions`).
    pub available_extensions: Vec<String>,
    /// The version each offered extension installs by default
    /// (`pg_available_extensions.default_version`): a newer image's newer
    /// version is what `ALTER EXTENSION ... UPDATE` moves to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub available_versions: BTreeMap<String, String>,
    /// The instance's host data directory exists.
    pub data_dir_exists: bool,
    /// The major of the cluster in its data directory (`PG_VERSION`),
    /// known while it is stopped too: a major upgrade in place is resumed
    /// from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_major: Option<u16>,
    /// The major of its container's image (the image's `pgcd.major` label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_major: Option<u16>,
    /// Its data directory holds `standby.signal`: it starts as a standby
    /// (known while it is stopped too, which tells a stopped standby from a
    /// stopped former primary).
    #[serde(default)]
    pub standby_signal: bool,
    /// Replication slots on the server (`pg_replication_slots`).
    #[serde(default)]
    pub slots: Vec<String>,
    /// Standbys streaming from it (`pg_stat_replication`).
    #[serde(default)]
    pub replicas: Vec<ReplicaActual>,
    /// Publications in the database (`pg_publication`).
    #[serde(default)]
    pub publications: Vec<String>,
    /// Subscriptions in the database (`pg_subscription`).
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionActual>,
    /// Sequences of the database whose increment is not the mesh stride
    /// ([`SEQUENCE_STRIDE`]), as `schema.name`.
    #[serde(default)]
    pub unaligned_sequences: Vec<String>,
    /// pgcd's DDL replication is installed in the database (its event
    /// trigger exists).
    #[serde(default)]
    pub autoddl: bool,
    /// Rows of `pgcd.ddl_log`: every DDL statement of every node this node
    /// has (equal on all nodes when each DDL change is in force everywhere).
    #[serde(default)]
    pub ddl_rows: Option<i64>,
    /// Tables of the database outside the catalogs and pgcd's own schema: a
    /// node with none can be filled by copying another node.
    #[serde(default)]
    pub tables: i64,
    /// `scripts.post_init` ran on this instance: its record is in
    /// `pgcd.scripts` of the `postgres` database, written in the scripts'
    /// own transaction.
    #[serde(default)]
    pub post_init_ran: bool,
    /// Where the server is in the WAL: what failover compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalActual>,
    /// DDL statements from other nodes that failed here (`pgcd.ddl_failures`):
    /// skipped, so replication goes on, and shown until resolved by hand.
    #[serde(default)]
    pub ddl_failures: Vec<DdlFailure>,
    /// pgBackRest and archiving on this instance.
    #[serde(default)]
    pub backup: InstanceBackup,
    /// Its `pg_hba.conf` and `pg_ident.conf`, read from the server; `None`
    /// when it does not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthActual>,
}

/// The authentication files a running server reads at its next reload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthActual {
    /// The server has TLS on (`ssl`): pgcd's replication lines are `hostssl`.
    pub tls: bool,
    /// The lines of `pg_hba.conf`.
    pub hba: Vec<String>,
    /// The lines of `pg_ident.conf`.
    pub ident: Vec<String>,
}

/// What an instance reports of its backups: which cluster its data is, the
/// mounts its container has, the pgBackRest configuration pgcd last wrote
/// there, a restore under way, and archiving as `pg_stat_archiver` says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceBackup {
    /// `pg_control_system()`'s system identifier (decimal text: it does not
    /// fit a JSON number's exact range). A restore from another cluster or a
    /// new initdb changes it; the repository path follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Host paths bind-mounted into the container besides its instance
    /// directory, as `PATH:PATH[:ro]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// The configuration pgcd last wrote (and checked) on the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<BackupConfActual>,
    /// A restore is under way: nothing else is planned for the node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restoring: bool,
    /// Archiving (`pg_stat_archiver`), when the server runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<ArchiverActual>,
}

/// The pgBackRest configuration last written on an instance, as the
/// executor recorded it next to `pgbackrest.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupConfActual {
    /// The stanza.
    pub stanza: String,
    /// The planner's digest of the configuration.
    pub digest: String,
    /// The system identifier the repository paths were made for.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// The stanza exists and `pgbackrest check` passed (primaries only).
    #[serde(default)]
    pub checked: bool,
    /// Each repository's path as written (`repoN-path`), by index.
    #[serde(default)]
    pub repo_paths: BTreeMap<u32, String>,
    /// Each earlier system identifier of this node's data, oldest first,
    /// with its repository paths: their backups stay listed and restorable.
    #[serde(default)]
    pub earlier: Vec<EarlierCluster>,
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub at: String,
}

/// A cluster the node's data was before its system identifier changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierCluster {
    /// Its system identifier.
    pub system_identifier: String,
    /// Its repository paths, by index.
    pub repo_paths: BTreeMap<u32, String>,
}

/// `pg_stat_archiver` of an instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiverActual {
    /// WAL files archived since the statistics were reset.
    pub archived_count: i64,
    /// The last WAL file archived.
    #[serde(default)]
    pub last_archived_wal: Option<String>,
    /// When it was archived (RFC 3339).
    #[serde(default)]
    pub last_archived_time: Option<String>,
    /// Failed attempts since the statistics were reset.
    pub failed_count: i64,
    /// The last WAL file that failed.
    #[serde(default)]
    pub last_failed_wal: Option<String>,
    /// When it failed (RFC 3339).
    #[serde(default)]
    pub last_failed_time: Option<String>,
}

/// A server's position in the WAL, as byte offsets (`pg_lsn` minus `0/0`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalActual {
    /// A primary: the WAL flushed (`pg_current_wal_flush_lsn()`). A
    /// standby: the WAL received and flushed (`pg_last_wal_receive_lsn()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<i64>,
    /// A standby: the WAL replayed (`pg_last_wal_replay_lsn()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<i64>,
    /// The timeline.
    #[serde(default)]
    pub timeline: i64,
    /// A standby: its WAL receiver streams now.
    #[serde(default)]
    pub receiving: bool,
    /// A standby: the host it streams from (`sender_host`, else the host
    /// of its `primary_conninfo` while it does not stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// A replicated DDL statement that failed on the node that received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdlFailure {
    /// The node it was run on first.
    pub origin: String,
    /// Its id in that node's DDL log.
    pub id: i64,
    /// The statement.
    pub statement: String,
    /// The error it raised here.
    pub error: String,
}

/// A logical replication subscription of the database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionActual {
    /// Its name (`pgcd_sub_<node>`: the node it subscribes to).
    pub name: String,
    /// `subenabled`.
    pub enabled: bool,
    /// Its apply worker runs (`pg_stat_subscription.pid`).
    pub running: bool,
    /// A table of the database is not in it yet (created after the
    /// subscription): `ALTER SUBSCRIPTION ... REFRESH PUBLICATION` adds it.
    #[serde(default)]
    pub stale: bool,
    /// Errors applying changes since the statistics were reset
    /// (`pg_stat_subscription_stats.apply_error_count`).
    #[serde(default)]
    pub apply_errors: i64,
    /// Errors in the initial copy of tables (`sync_error_count`).
    #[serde(default)]
    pub sync_errors: i64,
    /// Conflicts met while applying, by kind (`insert_exists`,
    /// `update_missing`, ...; PostgreSQL 18's `confl_*` counters, empty before).
    #[serde(default)]
    pub conflicts: BTreeMap<String, i64>,
    /// The last error of its workers in the server log, when one is recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A standby streaming from a primary, as the primary sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaActual {
    /// The standby's `application_name` (`pgcd_<node>_<host>`).
    pub name: String,
    /// `streaming`, `catchup`, ...
    pub state: String,
    /// Bytes of WAL the primary has that the standby has not replayed.
    pub lag_bytes: Option<i64>,
    /// `replay_lag`, seconds (none when idle).
    pub lag_seconds: Option<f64>,
    /// `sync_state`: `async`, `potential`, `sync` or `quorum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<String>,
    /// The WAL it has flushed, as a byte offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_lsn: Option<i64>,
}

/// Whether a database's nodes replicate through native logical replication
/// (several nodes, `replication: native`).
pub fn native_mesh(db: &crate::spec::Database) -> bool {
    db.nodes.len() > 1 && db.replication != Some(crate::spec::database::Replication::Spock)
}

/// Whether a database's nodes replicate through Spock (several nodes,
/// `replication: spock`); the planner wires them only where the image
/// offers the extension.
pub fn spock_mesh(db: &crate::spec::Database) -> bool {
    db.nodes.len() > 1 && db.replication == Some(crate::spec::database::Replication::Spock)
}

/// Whether pgcd wires a Spock database's nodes: it declares the `spock`
/// extension, which validation has found in its image (pgcd never
/// preloads a library it cannot confirm).
pub fn spock_wired(db: &crate::spec::Database) -> bool {
    spock_mesh(db)
        && db
            .extensions
            .iter()
            .any(|e| e.name == "spock" && e.present())
}

/// A role as `pg_roles` and `pg_auth_members` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleActual {
    /// Role name.
    pub name: String,
    /// The attributes it holds, positively: `LOGIN`, `CREATEDB`, `INHERIT`, ...
    pub attributes: Vec<String>,
    /// Roles it is a member of.
    pub member_of: Vec<String>,
}

/// An installed extension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtActual {
    /// SQL name.
    pub name: String,
    /// Installed version.
    pub version: String,
}

/// The extensions pgcd's images ship besides contrib (issue 5's image list);
/// [`Actual::converged`] reports them as available.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "vector",
    "postgis",
    "postgis_topology",
    "postgis_raster",
    "pg_cron",
    "pgaudit",
];

/// The attributes PostgreSQL tracks per role, in the order plans print them.
pub const ROLE_FLAGS: &[&str] = &[
    "SUPERUSER",
    "CREATEDB",
    "CREATEROLE",
    "INHERIT",
    "LOGIN",
    "REPLICATION",
    "BYPASSRLS",
];

/// The attributes a role created with `attrs` holds, positively, in
/// [`ROLE_FLAGS`] order (PostgreSQL's defaults: `INHERIT`, nothing else).
pub fn held_attributes(attrs: &[RoleAttribute]) -> Vec<String> {
    let mut held: Vec<&str> = vec!["INHERIT"];
    for a in attrs {
        match a {
            RoleAttribute::NoLogin => held.retain(|h| *h != "LOGIN"),
            RoleAttribute::NoInherit => held.retain(|h| *h != "INHERIT"),
            other => held.push(other.as_str()),
        }
    }
    ROLE_FLAGS
        .iter()
        .filter(|f| held.contains(f))
        .map(|f| f.to_string())
        .collect()
}

impl Actual {
    /// The host `id`, when registered.
    pub fn host(&self, id: &str) -> Option<&HostActual> {
        self.hosts.iter().find(|h| h.id == id)
    }

    /// The instance of `database`/`node` on `host`, when reported.
    pub fn instance(&self, database: &str, node: &str, host: &str) -> Option<&InstanceActual> {
        self.instances
            .iter()
            .find(|i| i.database == database && i.node == node && i.host == host)
    }

    /// Healthy hosts with these ids and no instances: a new cluster.
    pub fn empty(host_ids: &[HostId]) -> Self {
        Self {
            hosts: host_ids
                .iter()
                .map(|id| HostActual {
                    id: id.clone(),
                    healthy: true,
                    docker: true,
                    address: String::new(),
                    started_at: None,
                })
                .collect(),
            instances: Vec::new(),
            databases: Vec::new(),
            operations: Vec::new(),
            schedules: Vec::new(),
            restore_checks: Vec::new(),
            backups: Vec::new(),
            primaries: Vec::new(),
            down_since: BTreeMap::new(),
            durations: Default::default(),
        }
    }
}
