//! Backups as the planner sees them: which `backup_config` a node has (its
//! own, else the database's), the archiving settings it implies, the host
//! paths its containers mount, and the `ConfigureBackup` step of each
//! instance whose pgBackRest configuration is not the one the spec asks for.
//! Also the builders of the operations' steps (`RunBackup`,
//! `RestoreInstance`), for the operation path to call. Pure; this file must
//! not do I/O.
//!
//! The stanza is `<database>-<node>`: a stanza is one PostgreSQL cluster
//! (one system identifier), and a node is exactly that — its primary and its
//! physical standbys share one, while each node of a multi-node database is
//! a cluster of its own. The database in the name keeps stanzas of several
//! databases apart in one shared repository; names hold no `-`, so the
//! pair reads back unambiguously.

use super::instance::{primary_host, step};
use super::steps::{Action, Note, NoteKind, Plan};
use super::Index;
use crate::spec::backup::{BackupConfig, RepoType, Repository, RetentionType};
use crate::spec::database::{NodeSpec, NodeState};
use crate::spec::names::{HostId, NodeName};
use crate::spec::secret::SecretRef;
use crate::spec::Database;
use crate::state::actual::{InstanceActual, InstanceRole};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where pgcd keeps pgBackRest's files inside the container (in the
/// instance directory, so they outlive the container).
pub const CONTAINER_DIR: &str = "/var/lib/pgcd/pgbackrest";
/// The configuration file every pgBackRest command of pgcd names.
pub const CONF_PATH: &str = "/var/lib/pgcd/pgbackrest/pgbackrest.conf";

/// One repository as the configuration renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConf {
    /// `repoN`: 1-based, in spec order.
    pub index: u32,
    /// The spec's id of the repository.
    pub id: String,
    /// Storage type.
    #[serde(rename = "type")]
    pub repo_type: RepoType,
    /// Base path (posix, cifs) or prefix in the bucket; pgcd appends
    /// `/<stanza>/<system identifier>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// S3 bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3 endpoint (`host`, `host:port` or `https://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 access key id (a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<SecretRef>,
    /// S3 secret access key (a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_key_secret: Option<SecretRef>,
    /// GCS bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_bucket: Option<String>,
    /// GCS service account key, JSON (a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_key: Option<SecretRef>,
    /// Azure storage account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_account: Option<String>,
    /// Azure container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_container: Option<String>,
    /// Azure shared key (a reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_key: Option<SecretRef>,
    /// Full backups (count) or days (time) kept.
    pub retention_full: u32,
    /// How `retention_full` counts.
    pub retention_full_type: RetentionType,
    /// Further repository options, rendered as `repoN-<name>=<value>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_options: BTreeMap<String, String>,
}

/// What an instance's `pgbackrest.conf` holds, secrets as references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupConf {
    /// The stanza (`<database>-<node>`).
    pub stanza: String,
    /// The port PostgreSQL listens on.
    pub port: u16,
    /// The repositories, in spec order.
    pub repos: Vec<RepoConf>,
}

impl BackupConf {
    /// Whether archiving pushes to an object store, where `archive-async`
    /// pays off: each push is a round trip of a few tens of milliseconds,
    /// and the async mode batches segments in parallel from a local spool.
    /// A posix or cifs repository is written at disk speed, synchronously.
    pub fn archive_async(&self) -> bool {
        self.repos
            .iter()
            .any(|r| matches!(r.repo_type, RepoType::S3 | RepoType::Gcs | RepoType::Azure))
    }
}

/// The backup configuration of a node: its own, else the database's.
pub fn config<'a>(db: &'a Database, node: &'a NodeSpec) -> Option<&'a BackupConfig> {
    node.backup_config.as_ref().or(db.backup_config.as_ref())
}

/// The stanza of a node (see the module's comment for why this name).
pub fn stanza(db: &str, node: &str) -> String {
    format!("{db}-{node}")
}

/// One spec repository as `repo<index>` renders it.
pub fn repo_conf(r: &Repository, index: u32) -> RepoConf {
    RepoConf {
        index,
        id: r.id.to_string(),
        repo_type: r.repo_type,
        base_path: r.base_path.clone(),
        s3_bucket: r.s3_bucket.clone(),
        s3_region: r.s3_region.clone(),
        s3_endpoint: r.s3_endpoint.clone(),
        s3_key: r.s3_key.clone(),
        s3_key_secret: r.s3_key_secret.clone(),
        gcs_bucket: r.gcs_bucket.clone(),
        gcs_key: r.gcs_key.clone(),
        azure_account: r.azure_account.clone(),
        azure_container: r.azure_container.clone(),
        azure_key: r.azure_key.clone(),
        retention_full: r
            .retention_full
            .unwrap_or(crate::spec::defaults::DEFAULT_RETENTION_FULL),
        retention_full_type: r.retention_full_type.unwrap_or(RetentionType::Count),
        custom_options: r.custom_options.clone(),
    }
}

/// The configuration of a node's instances, when it has backups.
pub fn conf(db: &Database, node: &NodeSpec) -> Option<BackupConf> {
    let cfg = config(db, node)?;
    let repos = cfg
        .repositories
        .iter()
        .zip(1u32..)
        .map(|(r, index)| repo_conf(r, index))
        .collect();
    Some(BackupConf {
        stanza: stanza(&db.database_name, &node.name),
        port: node
            .port
            .or(db.port)
            .unwrap_or(crate::spec::defaults::DEFAULT_PORT),
        repos,
    })
}

/// A digest of a configuration (SHA-256 of its JSON): the executor records
/// it with the instance, the planner compares.
pub fn digest(conf: &BackupConf) -> String {
    use sha2::{Digest, Sha256};
    // Plain values always serialise; an empty digest only replans the step.
    let json = serde_json::to_vec(conf).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

/// The repository index of a spec repository id (`None`: the first).
pub fn repo_index(cfg: &BackupConfig, id: Option<&str>) -> Option<u32> {
    match id {
        None => (!cfg.repositories.is_empty()).then_some(1),
        Some(id) => cfg
            .repositories
            .iter()
            .position(|r| r.id.as_str() == id)
            .and_then(|p| u32::try_from(p + 1).ok()),
    }
}

/// `archive_command` of a node's instances.
pub fn archive_command(stanza: &str) -> String {
    format!("pgbackrest --config={CONF_PATH} --stanza={stanza} archive-push %p")
}

/// The settings backups need (`archive_mode` takes a restart, which the
/// settings machinery plans).
pub fn archive_settings(db: &Database, node: &NodeSpec) -> Vec<(String, String)> {
    if config(db, node).is_none() {
        return Vec::new();
    }
    vec![
        ("archive_mode".into(), "on".into()),
        (
            "archive_command".into(),
            archive_command(&stanza(&db.database_name, &node.name)),
        ),
    ]
}

/// The host paths a node's containers bind-mount at the same path: each
/// posix or cifs repository's base path (read-write: the directory every
/// host sees), and CA files or directories named by `storage-ca-file` or
/// `storage-ca-path` (read-only), which pgBackRest reads inside the container.
pub fn mounts(db: &Database, node: &NodeSpec) -> Vec<String> {
    let Some(cfg) = config(db, node) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for r in &cfg.repositories {
        if let (RepoType::Posix | RepoType::Cifs, Some(p)) = (r.repo_type, &r.base_path) {
            out.push(format!("{p}:{p}"));
        }
        for key in ["storage-ca-file", "storage-ca-path"] {
            if let Some(p) = r.custom_options.get(key) {
                out.push(format!("{p}:{p}:ro"));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a restore is under way on an instance of `node`; if so, notes
/// it: nothing else is planned for the node until the restore ends.
pub(super) fn restoring(db: &Database, node: &NodeSpec, index: &Index, out: &mut Plan) -> bool {
    let busy: Vec<&InstanceActual> = index
        .of_database(&db.database_name)
        .iter()
        .copied()
        .filter(|i| i.node == node.name && i.backup.restoring)
        .collect();
    for i in &busy {
        out.notes.push(Note {
            kind: NoteKind::Backup,
            database: db.database_name.clone(),
            message: format!(
                "{}/{} on {}: a restore is under way; nothing else is planned for the node until it ends (if its agent died mid-restore, check the data directory, then delete instances/{}-{}/pgbackrest/restore.json on the host)",
                i.database, i.node, i.host, i.database, i.node
            ),
        });
    }
    !busy.is_empty()
}

/// Plans each instance's `ConfigureBackup` where its configuration is not
/// the spec's (or was written for another system identifier), after the
/// instance's other steps of this pass (archiving needs its settings in
/// force for `pgbackrest check`). A container that lacks a repository's
/// mount is recreated on its data first (a disruption, said in the plan).
pub(super) fn steps(db: &Database, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    for node in &db.nodes {
        let Some(want) = conf(db, node) else {
            continue;
        };
        if node.state == Some(NodeState::Stopped) {
            continue;
        }
        let bad: Vec<String> = want
            .repos
            .iter()
            .flat_map(|r| {
                r.custom_options.iter().filter_map(move |(k, v)| {
                    crate::spec::pgbackrest::check_custom_option(k, v)
                        .map(|why| format!("repository {}: {k}: {why}", r.id))
                })
            })
            .collect();
        if !bad.is_empty() {
            out.notes.push(Note {
                kind: NoteKind::Backup,
                database: name.clone(),
                message: format!(
                    "{name}/{}: backups are not configured: {}",
                    node.name,
                    bad.join("; ")
                ),
            });
            continue;
        }
        let digest = digest(&want);
        let binds = mounts(db, node);
        let primary = primary_host(name, node, index);
        for host in &node.host_ids {
            if !index
                .actual
                .host(host)
                .is_some_and(|h| h.healthy && h.docker)
            {
                continue; // the instance planner notes it
            }
            let inst = index.instance(name, node.name.as_str(), host.as_str());
            let at = (name, &node.name, host);
            let prefix = format!("{name}/{}/{host}/", node.name);
            if let Some(i) = inst.filter(|i| i.container_exists) {
                let missing: Vec<&String> = binds
                    .iter()
                    .filter(|b| !i.backup.mounts.contains(b))
                    .collect();
                if !missing.is_empty() {
                    recreate_for_mounts(at, &prefix, &missing, out);
                    continue;
                }
            }
            let is_primary = match inst {
                Some(i) if i.running => i.role == InstanceRole::Primary,
                _ => primary == Some(host),
            };
            let will_run = inst.is_some_and(|i| i.running)
                || out.steps.iter().any(|s| s.id == format!("{prefix}start"));
            if !will_run {
                continue;
            }
            let done = inst.is_some_and(|i| {
                i.running
                    && i.backup.conf.as_ref().is_some_and(|c| {
                        c.digest == digest
                            && c.system_identifier == i.backup.system_identifier
                            && (c.checked || !is_primary)
                    })
            });
            if done {
                continue;
            }
            let reason = match inst.and_then(|i| i.backup.conf.as_ref().map(|c| (i, c))) {
                None => format!(
                    "{name}/{} on {host} has backup_config; pgBackRest is not configured there yet (stanza {})",
                    node.name, want.stanza
                ),
                Some((i, c)) if c.system_identifier != i.backup.system_identifier => format!(
                    "the system identifier of {name}/{} on {host} is now {} (was {}): backups continue under a new repository path",
                    node.name,
                    i.backup.system_identifier.as_deref().unwrap_or("unknown"),
                    c.system_identifier.as_deref().unwrap_or("unknown")
                ),
                Some((_, c)) if c.digest != digest => format!(
                    "the backup_config of {name}/{} changed; pgbackrest.conf on {host} is rewritten",
                    node.name
                ),
                Some(_) => format!(
                    "pgbackrest check has not passed on {name}/{} on {host}",
                    node.name
                ),
            };
            let after: Vec<String> = out
                .steps
                .iter()
                .filter(|s| s.id.starts_with(&prefix))
                .map(|s| s.id.clone())
                .collect();
            out.steps.push(step(
                at,
                "backup-config",
                Action::ConfigureBackup {
                    conf: want.clone(),
                    conf_digest: digest.clone(),
                    primary: is_primary,
                },
                reason,
                after,
            ));
        }
    }
}

/// The container of an instance lacks mounts its backups need: it is
/// removed (data kept) after the instance's other steps, and the next pass
/// recreates it on its data with them. Its restart in this pass, if any, is
/// dropped: the new container starts with the new settings anyway.
fn recreate_for_mounts(
    at: (&crate::spec::names::DatabaseName, &NodeName, &HostId),
    prefix: &str,
    missing: &[&String],
    out: &mut Plan,
) {
    let restart = format!("{prefix}restart");
    out.steps.retain(|s| s.id != restart);
    for s in &mut out.steps {
        s.depends_on.retain(|d| *d != restart);
    }
    let after: Vec<String> = out
        .steps
        .iter()
        .filter(|s| s.id.starts_with(prefix))
        .map(|s| s.id.clone())
        .collect();
    let paths: Vec<&str> = missing
        .iter()
        .map(|b| b.split(':').next().unwrap_or(b))
        .collect();
    out.steps.push(step(
        at,
        "remount",
        Action::RemoveInstance { keep_data: true },
        format!(
            "the container lacks {} that its backups need; it is removed (data kept) and recreated on its data with the mount",
            paths.join(", ")
        ),
        after,
    ));
}

/// The backup state of a node's instance once everything is carried out
/// (for [`super::converged`]): mounted, configured and checked, on a
/// system identifier that stands for any.
pub(crate) fn converged(db: &Database, node: &NodeSpec) -> crate::state::InstanceBackup {
    let system_identifier = Some("7000000000000000001".to_string());
    crate::state::InstanceBackup {
        system_identifier: system_identifier.clone(),
        mounts: mounts(db, node),
        conf: conf(db, node).map(|c| crate::state::BackupConfActual {
            stanza: c.stanza.clone(),
            digest: digest(&c),
            system_identifier,
            checked: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[path = "backup_ops.rs"]
mod ops;
pub use ops::{backup_step, rehearse_step, restore_step, RestoreTarget};

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;

/// Where a new instance takes its data from: a backup in a repository
/// (`restore_config`), restored and promoted before it serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSource {
    /// The source's stanza (`<source database>-<source node>`).
    pub stanza: String,
    /// The source database and node, whose backup listing in etcd names
    /// the repository path (system identifier) of their backups.
    pub source_database: String,
    /// The source node.
    pub source_node: String,
    /// The database inside the backup, renamed to the spec's
    /// `database_name` when they differ.
    pub database: String,
    /// The repository, rendered as `repo1` of a configuration of its own.
    pub repo: RepoConf,
    /// Where recovery stops.
    pub target: RestoreTarget,
    /// Host paths the one-off restore container mounts (the repository's
    /// base path, CA files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<String>,
}

/// The backup a node's new primary is created from, if any: the node's own
/// `restore_config` while no other node of the database holds data (a node
/// added to running nodes joins by copying one of them: noted), else the
/// database's for its first node. `restore_config` counts at creation
/// only: an instance with data is never restored by it. An error is the
/// reason the spec cannot be carried out.
pub(super) fn clone_source(
    db: &Database,
    node: &NodeSpec,
    index: &Index,
    out: &mut Plan,
) -> Option<Result<CloneSource, String>> {
    let name = &db.database_name;
    let others_hold_data = index
        .of_database(name)
        .iter()
        .any(|i| i.node != node.name && i.data_dir_exists);
    let first = db.nodes.first().is_some_and(|n| n.name == node.name);
    let rc = match (&node.restore_config, &db.restore_config) {
        (Some(_), _) if others_hold_data => {
            out.notes.push(Note {
                kind: NoteKind::Backup,
                database: name.clone(),
                message: format!(
                    "{name}/{}: restore_config of a node added to nodes that hold data is not carried out yet; the node joins by copying a member (zero-downtime node addition)",
                    node.name
                ),
            });
            return None;
        }
        (Some(rc), _) => rc,
        (None, Some(rc)) if first => rc,
        _ => return None,
    };
    let source_database = rc
        .source_database_id
        .as_ref()
        .map(|s| s.to_string())
        .or_else(|| rc.source_database_name.as_ref().map(|s| s.to_string()));
    let Some(source_database) = source_database else {
        return Some(Err(
            "restore_config names neither source_database_id nor source_database_name".into(),
        ));
    };
    let source_node = rc
        .source_node_name
        .as_ref()
        .map_or_else(|| node.name.to_string(), |n| n.to_string());
    let target = match RestoreTarget::from_options(rc.restore_options.as_ref()) {
        Ok(t) => t,
        Err(e) => return Some(Err(format!("restore_config.restore_options: {e}"))),
    };
    if !matches!(rc.repository.repo_type, RepoType::Posix | RepoType::S3) {
        return Some(Err(format!(
            "restore_config.repository: pgcd restores from posix and s3 repositories here ({} is written against pgBackRest's documentation and not run)",
            rc.repository.repo_type
        )));
    }
    let mut mounts = Vec::new();
    if let (RepoType::Posix, Some(p)) = (rc.repository.repo_type, &rc.repository.base_path) {
        mounts.push(format!("{p}:{p}"));
    }
    for key in ["storage-ca-file", "storage-ca-path"] {
        if let Some(p) = rc.repository.custom_options.get(key) {
            mounts.push(format!("{p}:{p}:ro"));
        }
    }
    Some(Ok(CloneSource {
        stanza: stanza(&source_database, &source_node),
        database: rc
            .source_database_name
            .as_ref()
            .map_or_else(|| source_database.clone(), |n| n.to_string()),
        source_database,
        source_node,
        repo: repo_conf(&rc.repository, 1),
        target,
        mounts,
    }))
}
