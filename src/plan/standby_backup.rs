//! Standbys built from a backup (`backup_config.standbys_from_backup`): a
//! new standby of a large node is restored from the newest backup of its
//! primary in the node's first repository instead of copied from the
//! primary with `pg_basebackup`, then streams from the primary through its
//! slot like any standby. Pure; this file must not do I/O.
//!
//! The slot is made before the standby (the `EnsureReplication` step), so
//! the primary keeps its WAL from then on; older WAL comes from the
//! archive through `restore_command`.

use super::backup::{conf, config, BackupConf};
use super::steps::{Note, NoteKind, Plan};
use super::Index;
use crate::spec::database::NodeSpec;
use crate::spec::names::HostId;
use crate::spec::Database;
use serde::{Deserialize, Serialize};

/// The repository standbys are restored from: the first.
pub const STANDBY_REPO: u32 = 1;

/// The backup a new standby is restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyBackup {
    /// The node's pgBackRest configuration (the one its instances get).
    pub conf: BackupConf,
    /// The primary's system identifier: the backups' repository path.
    pub system_identifier: String,
    /// The backup set (the newest of that cluster in the repository).
    pub label: String,
    /// The repository's index (`repoN`).
    pub repo: u32,
    /// The repository's id in the spec.
    pub repo_id: String,
}

/// The backup a new standby of `node` on `host` is restored from, when
/// the node asks for it and its first repository holds a backup of the
/// primary's cluster; else `None`, with a note saying why when the node
/// asked (the standby is then copied with `pg_basebackup`).
pub(super) fn source(
    db: &Database,
    node: &NodeSpec,
    primary: &HostId,
    host: &HostId,
    index: &Index,
    out: &mut Plan,
) -> Option<StandbyBackup> {
    let cfg = config(db, node)?;
    if cfg.standbys_from_backup != Some(true) {
        return None;
    }
    let name = &db.database_name;
    let node_name = &node.name;
    let conf = conf(db, node)?;
    let repo = conf.repos.iter().find(|r| r.index == STANDBY_REPO)?;
    let repo_id = repo.id.clone();
    let mut fall_back = |why: String| {
        out.notes.push(Note {
            kind: NoteKind::Backup,
            database: name.clone(),
            message: format!(
                "{name}/{node_name}: standbys_from_backup: the new standby on {host} is copied from the primary with pg_basebackup: {why}"
            ),
        });
        None
    };
    let Some(sysid) = index
        .instance(name, node_name, primary)
        .and_then(|p| p.backup.system_identifier.clone())
    else {
        return fall_back(format!(
            "the system identifier of the primary on {primary} is not known yet"
        ));
    };
    let newest = index
        .actual
        .backups
        .iter()
        .filter(|l| l.database == name.as_str() && l.node == node_name.as_str())
        .flat_map(|l| l.backups.iter())
        .filter(|b| b.repo == STANDBY_REPO && b.system_identifier.as_deref() == Some(&sysid))
        .max_by(|a, b| a.stop.cmp(&b.stop));
    let Some(newest) = newest else {
        return fall_back(format!(
            "repository {repo_id} holds no backup of the primary's cluster (system identifier {sysid})"
        ));
    };
    Some(StandbyBackup {
        label: newest.label.clone(),
        system_identifier: sysid,
        repo: STANDBY_REPO,
        repo_id,
        conf,
    })
}

#[cfg(test)]
#[path = "standby_backup_tests.rs"]
mod tests;
