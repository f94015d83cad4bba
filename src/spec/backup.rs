//! pgBackRest settings of a database or node: repositories, schedules, and
//! where a restore or a new node takes its data from.

use super::decode::{choice, Ctx, Decode, MapReader};
use super::diag::FieldPath;
use super::names::{DatabaseName, HostId, NodeName, ObjectId};
use super::secret::SecretRef;
use super::yaml::Node;
use serde::Serialize;
use std::collections::BTreeMap;

choice!(
    /// Where a pgBackRest repository stores backups.
    RepoType { Posix = "posix", Cifs = "cifs", S3 = "s3", Gcs = "gcs", Azure = "azure" }
);
choice!(
    /// How `retention_full` counts.
    RetentionType { Count = "count", Time = "time" }
);
choice!(
    /// A pgBackRest backup type.
    BackupType { Full = "full", Diff = "diff", Incr = "incr" }
);
choice!(
    /// The point-in-time recovery target kind (pgBackRest `--type`).
    RestoreType {
        Default = "default", Immediate = "immediate", Time = "time", Xid = "xid", Lsn = "lsn", Name = "name"
    }
);

/// A pgBackRest repository.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = id_is_optional)]
pub struct Repository {
    /// Id, unique within the database. Default: the type and the position in
    /// its list, from 1 (`s3-1`, `posix-2`); a restore's repository is `<type>-1`.
    pub id: ObjectId,
    /// Storage type.
    #[serde(rename = "type")]
    pub repo_type: RepoType,
    /// Path on the host (posix, cifs) or the prefix inside the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// S3 bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_bucket: Option<String>,
    /// S3 region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_region: Option<String>,
    /// S3 endpoint (for S3-compatible stores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_endpoint: Option<String>,
    /// S3 access key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_key: Option<SecretRef>,
    /// S3 secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_key_secret: Option<SecretRef>,
    /// GCS bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_bucket: Option<String>,
    /// GCS endpoint (for a GCS-compatible store or emulator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_endpoint: Option<String>,
    /// GCS service account key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_key: Option<SecretRef>,
    /// Azure storage account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_account: Option<String>,
    /// Azure container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_container: Option<String>,
    /// Azure endpoint (another cloud than Azure's public one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_endpoint: Option<String>,
    /// Azure key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure_key: Option<SecretRef>,
    /// How many full backups (or days) to keep. Default 7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_full: Option<u32>,
    /// Whether `retention_full` counts backups or days. Default count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_full_type: Option<RetentionType>,
    /// Further pgBackRest options, passed through (`repo1-` prefix added by pgcd).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_options: BTreeMap<String, String>,
}

impl Decode for Repository {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a backup repository")?;
        let had_id = m.has("id");
        let r = (
            m.opt::<ObjectId>(cx, "id"),
            m.req::<RepoType>(cx, "type"),
            m.opt(cx, "base_path"),
            m.opt(cx, "s3_bucket"),
            m.opt(cx, "s3_region"),
            m.opt(cx, "s3_endpoint"),
            m.opt(cx, "s3_key"),
            m.opt(cx, "s3_key_secret"),
            m.opt(cx, "gcs_bucket"),
            m.opt(cx, "gcs_endpoint"),
            m.opt(cx, "gcs_key"),
            m.opt(cx, "azure_account"),
            m.opt(cx, "azure_container"),
            m.opt(cx, "azure_endpoint"),
            m.opt(cx, "azure_key"),
        );
        let s = (
            m.opt(cx, "retention_full"),
            m.opt(cx, "retention_full_type"),
            m.map(cx, "custom_options"),
        );
        m.finish(cx);
        let repo_type = r.1?;
        let id = match r.0 {
            Some(id) => id,
            None if had_id => return None, // a bad id is reported; do not invent one
            // pgEdge derives nothing visible; pgcd needs an id to refer to
            // (schedules, Backup operations), stable as long as the list is.
            None => ObjectId::parse(&format!(
                "{repo_type}-{}",
                path.last_index().map_or(1, |i| i + 1)
            ))
            .ok()?,
        };
        Some(Self {
            id,
            repo_type,
            base_path: r.2,
            s3_bucket: r.3,
            s3_region: r.4,
            s3_endpoint: r.5,
            s3_key: r.6,
            s3_key_secret: r.7,
            gcs_bucket: r.8,
            gcs_endpoint: r.9,
            gcs_key: r.10,
            azure_account: r.11,
            azure_container: r.12,
            azure_endpoint: r.13,
            azure_key: r.14,
            retention_full: s.0,
            retention_full_type: s.1,
            custom_options: s.2,
        })
    }
}

/// The schema of a repository: `id` may be left out (it is derived).
fn id_is_optional(schema: &mut schemars::Schema) {
    if let Some(req) = schema.get_mut("required").and_then(|r| r.as_array_mut()) {
        req.retain(|f| f != "id");
    }
}

/// A scheduled backup.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Id, unique within the database.
    pub id: ObjectId,
    /// Backup type.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// When, in UTC: five fields (`0 2 * * *`) or six with seconds.
    pub cron_expression: String,
    /// The repository to back up to; the first one when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<ObjectId>,
}

impl Decode for Schedule {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a backup schedule")?;
        let (id, backup_type, cron_expression, repository) = (
            m.req(cx, "id"),
            m.req(cx, "type"),
            m.req(cx, "cron_expression"),
            m.opt(cx, "repository"),
        );
        m.finish(cx);
        Some(Self {
            id: id?,
            backup_type: backup_type?,
            cron_expression: cron_expression?,
            repository,
        })
    }
}

/// Backups of a database (or of one node, overriding the database's).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Where backups go.
    pub repositories: Vec<Repository>,
    /// When backups run.
    #[serde(default)]
    pub schedules: Vec<Schedule>,
    /// Restore rehearsals: when the newest backup of each node is restored
    /// into a scratch instance and checked against its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// pgcd: a new standby of the node is restored from the newest backup
    /// of its primary in the first repository (`pgbackrest restore
    /// --type=standby`) instead of copied with `pg_basebackup`, then
    /// streams from the primary through its slot. Without such a backup it
    /// is copied as usual (the plan says so). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standbys_from_backup: Option<bool>,
}

/// Restore rehearsals of a node's newest backup.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// When, in UTC: five fields (`0 4 * * *`) or six with seconds.
    pub cron_expression: String,
    /// The host that restores the backup into a scratch instance. Default:
    /// a host of the node that is not its primary, else the primary's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostId>,
}

impl Decode for Verify {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a backup_config.verify")?;
        let (cron_expression, host) = (m.req(cx, "cron_expression"), m.opt(cx, "host"));
        m.finish(cx);
        Some(Self {
            cron_expression: cron_expression?,
            host,
        })
    }
}

impl Decode for BackupConfig {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a backup_config")?;
        let repositories = m.nonempty_list(
            cx,
            "repositories",
            true,
            "a backup_config has at least one repository",
        );
        let schedules = m.list(cx, "schedules");
        let verify = m.opt(cx, "verify");
        let standbys_from_backup: Option<bool> = m.opt(cx, "standbys_from_backup");
        m.finish(cx);
        if standbys_from_backup == Some(true) && repositories.as_ref().is_none_or(|r| r.is_empty())
        {
            let p = path.field("standbys_from_backup");
            let pos = cx.spans.pos(p.as_str());
            cx.error_at(
                pos,
                &p,
                "standbys_from_backup needs a repository to restore standbys from: add one to repositories",
            );
        }
        Some(Self {
            repositories: repositories?,
            schedules,
            verify,
            standbys_from_backup,
        })
    }
}

/// Where a new database or node takes its data from: an existing pgBackRest repository.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// The database whose backups these are (the stanza's database): pgEdge's
    /// database id. Default: `source_database_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_database_id: Option<ObjectId>,
    /// The database inside the backups; restored under this spec's `database_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_database_name: Option<DatabaseName>,
    /// The node the backups were taken on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_node_name: Option<NodeName>,
    /// The repository holding the backups.
    pub repository: Repository,
    /// Point-in-time options: `type`, `target`, `set`, ... (pgBackRest restore options).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_options: Option<RestoreOptions>,
}

impl Decode for RestoreConfig {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "a restore_config")?;
        let r = (
            m.opt(cx, "source_database_id"),
            m.opt(cx, "source_database_name"),
            m.opt(cx, "source_node_name"),
            m.req(cx, "repository"),
            m.opt(cx, "restore_options"),
        );
        m.finish(cx);
        Some(Self {
            source_database_id: r.0,
            source_database_name: r.1,
            source_node_name: r.2,
            repository: r.3?,
            restore_options: r.4,
        })
    }
}

/// Point-in-time recovery options.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreOptions {
    /// The kind of target; `default` replays to the end of the WAL.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub restore_type: Option<RestoreType>,
    /// The target: a timestamp, xid, LSN or restore point name, as `type` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A backup set label to restore from instead of the latest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// Stop just before the target instead of just after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive: Option<bool>,
}

impl Decode for RestoreOptions {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "restore_options")?;
        let r = (
            m.opt(cx, "type"),
            m.opt(cx, "target"),
            m.opt(cx, "set"),
            m.opt(cx, "exclusive"),
        );
        m.finish(cx);
        Some(Self {
            restore_type: r.0,
            target: r.1,
            set: r.2,
            exclusive: r.3,
        })
    }
}
