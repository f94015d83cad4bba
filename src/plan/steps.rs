//! The values a plan is made of: steps (what to do on which instance, why,
//! after what) and notes (what the planner saw but will not act on).
//!
//! Plain data, JSON both ways for the API and the task queue; this file must
//! not do I/O and holds no secrets: a password travels as its reference.

use crate::spec::names::{DatabaseName, HostId, NodeName};
use crate::spec::secret::SecretRef;
use crate::spec::values::PgVersion;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// An ordered list of steps and the notes of one planning pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Steps in an order that respects every `depends_on`.
    pub steps: Vec<Step>,
    /// What the planner noticed and left alone, with what to do about it.
    pub notes: Vec<Note>,
    /// The operations not yet finished: their phases and what happens next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<super::operations::OperationPlan>,
    /// Plan again at this time even if nothing changes (a failover's grace
    /// time running out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Plan {
    /// Nothing to do (notes may remain).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// One thing to do to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Stable id, `<database>/<node>/<host>/<what>`: the same change gets the
    /// same id on every pass, so the task queue can deduplicate.
    pub id: String,
    /// The database.
    pub database: DatabaseName,
    /// The node.
    pub node: NodeName,
    /// The host whose agent runs the step.
    pub host: HostId,
    /// What to do.
    pub action: Action,
    /// Why, in words a person reviewing the plan understands.
    pub reason: String,
    /// Clients lose connections while it runs.
    pub disruptive: bool,
    /// It corrects drift: the database's spec is the one last carried out in
    /// full, so the difference was made by hand (see `Actual::databases`).
    pub drift: bool,
    /// Ids of the steps that must succeed first.
    pub depends_on: Vec<String>,
    /// The operation phase this step carries out, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<StepOperation>,
    /// What clients will feel of it (a disruptive step), with the time
    /// estimated from this cluster's own recorded durations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
}

/// The operation phase a step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepOperation {
    /// The operation's id.
    pub id: String,
    /// The phase's name.
    pub phase: String,
    /// The step's fixed task id (written once; a new leader awaits it).
    pub task: String,
}

/// One setting to change: name, value now (`None`: the default), value wanted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingChange {
    /// The setting.
    pub name: String,
    /// The value the instance has, `None` when it is at its default.
    pub old: Option<String>,
    /// The value the spec asks for.
    pub new: String,
    /// Takes effect only after a restart.
    pub needs_restart: bool,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Create the container (initdb unless the data directory exists).
    CreateInstance {
        /// The PostgreSQL version of the image.
        #[serde(deserialize_with = "version")]
        version: PgVersion,
        /// The port it listens on.
        port: u16,
        /// `postgresql.conf` written before the first start.
        settings: BTreeMap<String, String>,
        /// CPU limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        cpus: Option<String>,
        /// Memory limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        memory: Option<String>,
        /// The data directory exists and is used as it is (no initdb).
        reuse_data: bool,
        /// Host paths bind-mounted at the same path (`PATH:PATH[:ro]`):
        /// posix and cifs backup repositories, CA files of object stores.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<String>,
        /// The data comes from a backup (`restore_config`): restored,
        /// started and promoted at the target by this step, not initdb.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore_from: Option<Box<super::backup::CloneSource>>,
        /// `pg_hba.conf` as [`super::hba::hba_lines`] renders it for a
        /// server with TLS, in force from the first start (after initdb,
        /// in place of its file). Empty on data kept or restored, and in
        /// steps of an older pgcd: the container's built-in lines then
        /// stand until the first `WriteAuthFiles`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hba: Vec<String>,
        /// `pg_ident.conf`, likewise ([`super::hba::ident_lines`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ident: Vec<String>,
    },
    /// Create a standby's container; its first start copies the primary
    /// with `pg_basebackup` through the slot and follows it, or, with
    /// `from_backup`, this step restores a backup into it first and its
    /// first start follows the primary through the slot.
    CreateStandby {
        /// The PostgreSQL version of the image.
        #[serde(deserialize_with = "version")]
        version: PgVersion,
        /// The port it listens on.
        port: u16,
        /// The primary's host.
        primary: HostId,
        /// The primary's address.
        primary_address: String,
        /// The primary's port.
        primary_port: u16,
        /// The replication slot on the primary (also its `application_name`).
        slot: String,
        /// CPU limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        cpus: Option<String>,
        /// Memory limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        memory: Option<String>,
        /// Host paths bind-mounted at the same path, as for `CreateInstance`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<String>,
        /// The data comes from a backup (`standbys_from_backup`), not
        /// from `pg_basebackup`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_backup: Option<Box<super::standby_backup::StandbyBackup>>,
    },
    /// On a primary: the replication role (password from the cluster's
    /// secret for the database) and a physical slot for a standby.
    EnsureReplication {
        /// The slot.
        slot: String,
    },
    /// On a primary: drop a replication slot no standby of the spec uses.
    DropSlot {
        /// The slot.
        slot: String,
    },
    /// In the database: `CREATE PUBLICATION ... FOR ALL TABLES` (and the
    /// replication role, which subscribers connect as).
    CreatePublication {
        /// The publication.
        name: String,
    },
    /// In the database: subscribe to another node's publication, with
    /// `origin = none` so changes that came from elsewhere are not sent on.
    CreateSubscription {
        /// The subscription (also its slot's name on the publisher).
        name: String,
        /// The node subscribed to.
        publisher: String,
        /// Its primary's address.
        address: String,
        /// Its port.
        port: u16,
        /// Its server has TLS: the agent's own connection there (making
        /// the slot) is TLS, verified against the cluster CA.
        #[serde(default = "tls_by_default")]
        tls: bool,
    },
    /// `ALTER SUBSCRIPTION ... REFRESH PUBLICATION`: tables created since
    /// the subscription was made start replicating.
    RefreshSubscription {
        /// The subscription.
        name: String,
    },
    /// In the database: every sequence steps by `stride` and continues at a
    /// value `≡ offset (mod stride)`, so the nodes' keys never collide.
    AlignSequences {
        /// This node's residue (1-based node position).
        offset: i64,
        /// The stride ([`crate::state::names::SEQUENCE_STRIDE`]).
        stride: i64,
        /// The sequences to align (`schema.name`, quoted as needed).
        sequences: Vec<String>,
    },
    /// In the database: pgcd's DDL replication — an event trigger logs each
    /// DDL statement into `pgcd.ddl_log` (replicated like any table), and a
    /// replica-only trigger on that table runs it on the other nodes.
    InstallAutoDdl {
        /// This node's name, written into each log row's key.
        node: String,
    },
    /// In the empty database of a node added to nodes that already
    /// replicate (zero-downtime node addition): copy `source` at the
    /// consistent point of a new slot, start every other node's changes
    /// exactly where the copy ends, and subscribe to every node, while the
    /// writers of the existing nodes go on.
    JoinMesh {
        /// The node copied (it keeps taking writes; it stops applying the
        /// others' changes during the copy).
        source: Peer,
        /// The other nodes of the mesh.
        others: Vec<Peer>,
        /// This node's residue for generated keys (1-based position).
        offset: i64,
        /// The stride ([`crate::state::names::SEQUENCE_STRIDE`]).
        stride: i64,
    },
    /// `ALTER SUBSCRIPTION ... ENABLE`: a pgcd subscription found disabled
    /// (by hand, or left so by an interrupted node addition) runs again.
    EnableSubscription {
        /// The subscription.
        name: String,
    },
    /// In the database: drop a subscription to a node no longer in the
    /// spec (and its slot on the publisher, when reachable).
    DropSubscription {
        /// The subscription.
        name: String,
    },
    /// On the leader, not a host: record `host` as the node's primary
    /// (`primaries/<db>/<node>`, term `term`), only if the record is still
    /// at `term - 1`. The planner asks for it before a promotion only once
    /// the old primary is stopped or its host's lease has expired.
    RecordPrimary {
        /// The host whose instance becomes the primary.
        host: HostId,
        /// The record's new term.
        term: u64,
        /// Why, in words.
        why: String,
    },
    /// On a node's recorded primary that is still a standby: wait until it
    /// has replayed all the WAL it received, then promote it. Refused when
    /// it has received less than `min_lsn` (what the planner knew the old
    /// primary, or another standby, to have, less what may be lost).
    PromoteStandby {
        /// The least WAL position (byte offset) it must have received.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_lsn: Option<i64>,
    },
    /// On a standby: follow the node's primary at this address (its slot
    /// there is made first), reloading, without a restart.
    RepointStandby {
        /// The primary's host.
        primary: HostId,
        /// Its address.
        primary_address: String,
        /// Its port.
        primary_port: u16,
        /// This standby's slot on it.
        slot: String,
    },
    /// On an instance that was a primary and is not the recorded one any
    /// more: fenced, rewound onto the primary's timeline (`pg_rewind`; a
    /// fresh copy if that cannot be done) and started as its standby.
    /// With `fresh`, a standby whose primary was restored to an earlier
    /// point: its data directory is kept aside and the primary copied.
    RejoinAsStandby {
        /// The primary's host.
        primary: HostId,
        /// Its address.
        primary_address: String,
        /// Its port.
        primary_port: u16,
        /// This standby's slot on it.
        slot: String,
        /// Copy the primary afresh instead of rewinding (a restore's rebuild).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fresh: bool,
    },
    /// On a primary handing over (a switchover): a checkpoint, a wait until
    /// the candidate has flushed the WAL written up to it, then a fast
    /// shutdown, which waits until the streaming standbys have every WAL
    /// record. Fails, leaving the primary serving, when the candidate does
    /// not stream or does not catch up.
    StopForSwitchover {
        /// The candidate's slot (its `application_name`).
        candidate_slot: String,
    },
    /// Start the container.
    StartInstance,
    /// Stop the container (fast shutdown).
    StopInstance,
    /// Restart the server so these settings take effect.
    RestartInstance {
        /// The settings waiting for the restart.
        settings: Vec<String>,
    },
    /// A major upgrade in place of a node's primary (`major_upgrade:
    /// in_place`): `pg_upgrade --check` against the serving server, a
    /// fast shutdown, `pg_upgrade --link` into a new data directory in a
    /// one-off container of the upgrade image (both majors' binaries), the
    /// new directory put in place (the old kept beside it as
    /// `data.old-<from>`), the container recreated on the new image and
    /// started, then `vacuumdb --all --analyze-in-stages`. Resumed from
    /// where it stands when run again.
    UpgradeMajor {
        /// The major the data directory holds now.
        from: u16,
        /// The version it is upgraded to (the new container's image).
        #[serde(deserialize_with = "version")]
        version: PgVersion,
        /// The port it listens on.
        port: u16,
        /// CPU limit of the new container.
        #[serde(skip_serializing_if = "Option::is_none")]
        cpus: Option<String>,
        /// Memory limit of the new container.
        #[serde(skip_serializing_if = "Option::is_none")]
        memory: Option<String>,
        /// Its bind mounts, as [`Action::CreateInstance`]'s.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<String>,
        /// Only `pg_upgrade --check` against the serving server (before
        /// the standbys go): nothing stops.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        check_only: bool,
    },
    /// Remove the container, and the data directory unless kept.
    RemoveInstance {
        /// Keep the data directory (the default of `state: absent`).
        keep_data: bool,
    },
    /// `CREATE DATABASE ... OWNER`. With `post_database_create`, the
    /// database is made under a temporary name, the statements run in it in
    /// one transaction, and only then is it renamed: it exists under its
    /// name only with its scripts applied, so they run exactly once.
    CreateDatabase {
        /// The owner; the superuser when the spec names none.
        owner: String,
        /// `scripts.post_database_create`, when this step creates the
        /// database's first copy (its first node, no copy anywhere yet).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        post_database_create: Vec<String>,
    },
    /// `scripts.post_init` in the `postgres` database of a new primary,
    /// before its roles: in one transaction with its record
    /// (`pgcd.scripts`); a record found means it ran, and nothing runs.
    RunPostInit {
        /// The statements, as the spec writes them.
        statements: Vec<String>,
    },
    /// A user with `state: absent`: in every database of the instance,
    /// `REASSIGN OWNED BY` it `TO reassign_to` and `DROP OWNED BY` it
    /// (its objects survive, its privileges go), then `DROP ROLE`.
    DropRole {
        /// Role name.
        name: String,
        /// Who receives its objects: the database's owner in the spec.
        reassign_to: String,
    },
    /// An extension with `state: absent`: `DROP EXTENSION IF EXISTS`,
    /// refused by PostgreSQL while anything depends on it unless `cascade`.
    DropExtension {
        /// SQL name.
        name: String,
        /// `CASCADE` (the spec's explicit `cascade: true`).
        cascade: bool,
    },
    /// `ALTER DATABASE ... OWNER TO`.
    AlterDatabaseOwner {
        /// The owner now.
        from: String,
        /// The owner the spec names.
        to: String,
    },
    /// `CREATE ROLE ... WITH <attributes> PASSWORD <resolved on the host>`.
    CreateRole {
        /// Role name.
        name: String,
        /// Attributes to hold, positively (`LOGIN`, `INHERIT`, ...).
        attributes: Vec<String>,
        /// Where the host reads the password; never the password.
        #[serde(skip_serializing_if = "Option::is_none")]
        password_ref: Option<SecretRef>,
    },
    /// `ALTER ROLE ... WITH <to>`.
    AlterRole {
        /// Role name.
        name: String,
        /// The clauses that describe the role now (`NOCREATEDB`).
        from: Vec<String>,
        /// The clauses that make it as the spec says (`CREATEDB`).
        to: Vec<String>,
    },
    /// `GRANT role TO member`.
    GrantRole {
        /// The role granted.
        role: String,
        /// The role receiving it.
        member: String,
    },
    /// `CREATE EXTENSION ... VERSION`.
    CreateExtension {
        /// SQL name.
        name: String,
        /// The version; the image's default when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    /// `ALTER EXTENSION ... UPDATE TO`.
    UpdateExtension {
        /// SQL name.
        name: String,
        /// Installed version.
        from: String,
        /// Declared version.
        to: String,
    },
    /// `ALTER SYSTEM SET` each setting, then reload.
    SetSettings {
        /// The changes.
        changes: Vec<SettingChange>,
        /// Some change needs a restart (planned as its own step).
        needs_restart: bool,
    },
    /// Write the whole `pg_hba.conf` and `pg_ident.conf` (pgcd's lines and
    /// the spec's, see [`super::hba`]), check that the server accepts them
    /// (the old files are put back when it does not), then reload.
    WriteAuthFiles {
        /// The lines of `pg_hba.conf`.
        hba: Vec<String>,
        /// The lines of `pg_ident.conf`.
        ident: Vec<String>,
    },
    /// pgBackRest on one instance: write its `pgbackrest.conf` (secrets
    /// resolved on the host), and on a primary create the stanza when
    /// absent and run `pgbackrest check`. Idempotent.
    ConfigureBackup {
        /// What the configuration holds (secret references, not secrets).
        conf: super::backup::BackupConf,
        /// [`super::backup::digest`] of `conf`: the instance reports it back.
        conf_digest: String,
        /// The instance is its node's primary (stanza and check run there).
        primary: bool,
    },
    /// `pgbackrest backup` on a node's primary (an operation's step).
    RunBackup {
        /// The stanza.
        stanza: String,
        /// The repository (`repoN`, 1-based, in spec order).
        repo: u32,
        /// full, diff or incr.
        backup_type: crate::spec::backup::BackupType,
        /// Measure the databases right after it (rows, sizes) for restore
        /// rehearsals: the node has `backup_config.verify`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        measure: bool,
    },
    /// In-place restore of one instance: stop it, `pgbackrest restore
    /// --delta` on its data directory in a one-off container, start it and
    /// wait until it is promoted at the target (an operation's step).
    RestoreInstance {
        /// The stanza.
        stanza: String,
        /// The repository restored from (`repoN`).
        repo: u32,
        /// Where recovery stops.
        target: super::backup::RestoreTarget,
        /// The system identifier whose backups are used (its repository
        /// path); the instance's current one when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_identifier: Option<String>,
    },
    /// A restore rehearsal (an operation's step): the node's newest backup
    /// restored into a scratch directory on this host, started until
    /// consistent, compared with its source's figures, then removed. The
    /// node's instances are not touched.
    RehearseRestore(Box<Rehearsal>),
}

/// The rehearsal step's data, boxed in [`Action::RehearseRestore`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsal {
    /// The node's backup configuration (secrets as references).
    pub conf: super::backup::BackupConf,
    /// The repository restored from (`repoN`).
    pub repo: u32,
    /// Host paths the scratch container mounts (local repositories, CA files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
    /// The node's PostgreSQL major (the scratch container's image).
    pub major: u16,
}

/// Another node's primary as a step reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The node.
    pub node: String,
    /// Its primary's address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Its server has TLS (`ssl = on`): pgcd's `pg_hba.conf` there admits
    /// the replication role over TLS only, so connections to it are TLS,
    /// verified like `sslmode=verify-full`.
    #[serde(default = "tls_by_default")]
    pub tls: bool,
}

/// A step written before peers carried `tls` reaches a server with TLS:
/// every image but PostgreSQL 16's has it.
fn tls_by_default() -> bool {
    true
}

/// Reads a version as plans write it (`"17"`, `"17.6"`).
fn version<'de, D: Deserializer<'de>>(d: D) -> Result<PgVersion, D::Error> {
    let text = String::deserialize(d)?;
    PgVersion::parse(&text).map_err(serde::de::Error::custom)
}

/// How a step counts in the summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Creates something.
    Add,
    /// Changes something that exists.
    Change,
    /// Restarts a server.
    Restart,
    /// Removes something.
    Remove,
}

impl Action {
    /// How the step counts in the summary.
    pub fn effect(&self) -> Effect {
        match self {
            Action::CreateInstance { .. }
            | Action::CreateStandby { .. }
            | Action::EnsureReplication { .. }
            | Action::CreatePublication { .. }
            | Action::CreateSubscription { .. }
            | Action::InstallAutoDdl { .. }
            | Action::JoinMesh { .. }
            | Action::CreateDatabase { .. }
            | Action::CreateRole { .. }
            | Action::GrantRole { .. }
            | Action::CreateExtension { .. }
            | Action::RunBackup { .. }
            | Action::RehearseRestore(_) => Effect::Add,
            Action::StartInstance
            | Action::RecordPrimary { .. }
            | Action::RepointStandby { .. }
            | Action::StopInstance
            | Action::AlterDatabaseOwner { .. }
            | Action::RefreshSubscription { .. }
            | Action::EnableSubscription { .. }
            | Action::AlignSequences { .. }
            | Action::AlterRole { .. }
            | Action::UpdateExtension { .. }
            | Action::SetSettings { .. }
            | Action::WriteAuthFiles { .. }
            | Action::RunPostInit { .. }
            | Action::ConfigureBackup { .. } => Effect::Change,
            Action::RestartInstance { .. }
            | Action::RestoreInstance { .. }
            | Action::PromoteStandby { .. }
            | Action::RejoinAsStandby { .. }
            | Action::StopForSwitchover { .. }
            | Action::UpgradeMajor { .. } => Effect::Restart,
            Action::RemoveInstance { .. }
            | Action::DropRole { .. }
            | Action::DropExtension { .. }
            | Action::DropSlot { .. }
            | Action::DropSubscription { .. } => Effect::Remove,
        }
    }
}

/// Something the planner saw and does not act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// What kind of finding.
    pub kind: NoteKind,
    /// The database it concerns.
    pub database: DatabaseName,
    /// What was seen and what a person can do.
    pub message: String,
}

/// The kinds of note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// Running without a spec (its file was removed): kept as it is.
    Orphaned,
    /// Standbys are not planned yet.
    Standby,
    /// Replication between a database's nodes is not planned yet: each
    /// node runs on its own.
    Replication,
    /// A host cannot run steps now; its instances wait.
    HostUnavailable,
    /// The instance runs another version than the spec; upgrades are separate.
    Version,
    /// The spec asks for something the image does not offer.
    Unavailable,
    /// `state: absent` without a matching `confirm_delete`.
    DeleteNotConfirmed,
    /// An operation waits, cannot be carried out, or holds the database.
    Operation,
    /// Backups: a restore under way, a configuration that cannot be used.
    Backup,
    /// High availability: a failover waiting, refused, or not possible.
    Failover,
    /// `scripts` that do not run (the database exists) or wait.
    Scripts,
    /// A minor upgrade in place under way: what it waits for, what runs
    /// which version, what clients feel.
    Upgrade,
    /// A change of the spec pgcd refuses to carry out (a minor downgrade):
    /// the commit's `pgcd/plan` status fails with it.
    Refused,
}

impl NoteKind {
    /// The label plans print.
    pub fn as_str(&self) -> &'static str {
        match self {
            NoteKind::Orphaned => "orphaned",
            NoteKind::Standby => "standby",
            NoteKind::Replication => "replication",
            NoteKind::HostUnavailable => "host unavailable",
            NoteKind::Version => "version",
            NoteKind::Unavailable => "unavailable",
            NoteKind::DeleteNotConfirmed => "delete not confirmed",
            NoteKind::Operation => "operation",
            NoteKind::Backup => "backup",
            NoteKind::Failover => "failover",
            NoteKind::Scripts => "scripts",
            NoteKind::Upgrade => "upgrade",
            NoteKind::Refused => "refused",
        }
    }
}
