//! Defaults, applied in one place after validation, so `pgcd validate -o json`
//! shows exactly what pgcd will act on.

use super::backup::BackupType;
use super::backup::{BackupConfig, RetentionType};
use super::config::ClusterConfig;
use super::database::{Database, DatabaseState, NodeState, Replication, RoleAttribute};
use super::operation::{Action, Operation};
use super::values::{Duration, PgVersion};

/// The PostgreSQL major of a database that names no `postgres_version` when
/// `pgcd.yaml` names none either: the newest major pgcd builds an image for.
pub const DEFAULT_POSTGRES_MAJOR: u16 = 18;

/// [`DEFAULT_POSTGRES_MAJOR`] as a version (the newest minor of its image).
pub fn postgres_version() -> PgVersion {
    PgVersion {
        major: DEFAULT_POSTGRES_MAJOR,
        minor: None,
    }
}

/// PostgreSQL's port unless the spec says otherwise.
pub const DEFAULT_PORT: u16 = 5432;
/// Full backups kept unless the spec says otherwise.
pub const DEFAULT_RETENTION_FULL: u32 = 7;

fn backup(b: &mut BackupConfig) {
    for r in &mut b.repositories {
        r.retention_full.get_or_insert(DEFAULT_RETENTION_FULL);
        r.retention_full_type.get_or_insert(RetentionType::Count);
    }
}

/// Fills every defaulted field of a database; nodes inherit the database's values.
pub fn database(db: &mut Database) {
    let port = *db.port.get_or_insert(DEFAULT_PORT);
    db.replication.get_or_insert(if db.spock_version.is_some() {
        Replication::Spock
    } else {
        Replication::Native
    });
    let state = *db.state.get_or_insert(DatabaseState::Running);
    if state == DatabaseState::Absent {
        db.delete_data.get_or_insert(false);
    }
    if let Some(b) = &mut db.backup_config {
        backup(b);
    }
    for node in &mut db.nodes {
        node.postgres_version.get_or_insert(db.postgres_version);
        node.port.get_or_insert(port);
        if node.cpus.is_none() {
            node.cpus.clone_from(&db.cpus);
        }
        if node.memory.is_none() {
            node.memory.clone_from(&db.memory);
        }
        node.state
            .get_or_insert(if state == DatabaseState::Stopped {
                NodeState::Stopped
            } else {
                NodeState::Running
            });
        if let Some(b) = &mut node.backup_config {
            backup(b);
        }
    }
    for user in &mut db.database_users {
        user.db_owner.get_or_insert(false);
        user.attributes
            .get_or_insert_with(|| vec![RoleAttribute::Login]);
    }
}

/// Fills the defaults of an operation.
pub fn operation(op: &mut Operation) {
    if let Action::Backup { backup_type, .. } = &mut op.action {
        backup_type.get_or_insert(BackupType::Full);
    }
}

/// Fills the defaults of `pgcd.yaml`.
pub fn config(c: &mut ClusterConfig) {
    c.postgres_version.get_or_insert_with(postgres_version);
    c.source
        .poll_interval
        .get_or_insert_with(|| Duration("15s".into()));
    c.source
        .fetch_timeout
        .get_or_insert_with(|| Duration("60s".into()));
    c.source.require_signed_commits.get_or_insert(false);
    c.reporters.git_notes.enabled.get_or_insert(true);
    c.reporters.git_notes.push.get_or_insert(true);
    if let Some(g) = &mut c.reporters.gitlab {
        g.base_url
            .get_or_insert_with(|| "https://gitlab.com/api/v4".into());
    }
    if let Some(b) = &mut c.reporters.bitbucket {
        b.base_url
            .get_or_insert_with(|| "https://api.bitbucket.org".into());
    }
}
