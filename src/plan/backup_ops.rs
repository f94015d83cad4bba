//! The steps of the backup operations (`RunBackup`, `RestoreInstance`) and
//! where a restore stops: built here for the operation path, which plans
//! them in phases. Pure; this file must not do I/O.

use super::stanza;
use crate::plan::instance::step;
use crate::plan::steps::{Action, Rehearsal, Step};
use crate::spec::backup::{BackupType, RestoreOptions, RestoreType};
use crate::spec::database::NodeSpec;
use crate::spec::names::HostId;
use crate::spec::Database;
use serde::{Deserialize, Serialize};

/// Where recovery stops, as pgBackRest's restore options say it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTarget {
    /// `default` (end of WAL), `immediate`, `time`, `xid`, `lsn` or `name`.
    #[serde(rename = "type")]
    pub restore_type: RestoreType,
    /// The target, for `time`, `xid`, `lsn` and `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The backup set; the latest one that can reach the target when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// Stop just before the target.
    #[serde(default)]
    pub exclusive: bool,
}

impl RestoreTarget {
    /// From a spec's `restore_options` (none: replay to the end of the WAL).
    /// A kind that needs a target without one is an error naming the kind.
    pub fn from_options(o: Option<&RestoreOptions>) -> Result<Self, String> {
        let restore_type = o
            .and_then(|o| o.restore_type)
            .unwrap_or(RestoreType::Default);
        let target = o.and_then(|o| o.target.clone());
        let needs = matches!(
            restore_type,
            RestoreType::Time | RestoreType::Xid | RestoreType::Lsn | RestoreType::Name
        );
        if needs && target.is_none() {
            return Err(format!("restore type {restore_type} needs a target"));
        }
        Ok(Self {
            restore_type,
            target: target.filter(|_| needs),
            set: o.and_then(|o| o.set.clone()),
            exclusive: o.and_then(|o| o.exclusive).unwrap_or(false),
        })
    }
}

/// The step of an on-demand backup of `node`'s primary on `host` (for the
/// operation path): id `<db>/<node>/<host>/backup:<op>`.
pub fn backup_step(
    db: &Database,
    node: &NodeSpec,
    host: &HostId,
    op: &str,
    repo: u32,
    backup_type: BackupType,
) -> Step {
    step(
        (&db.database_name, &node.name, host),
        &format!("backup:{op}"),
        Action::RunBackup {
            stanza: stanza(&db.database_name, &node.name),
            repo,
            backup_type,
            measure: super::config(db, node).is_some_and(|c| c.verify.is_some()),
        },
        format!(
            "operation {op}: {backup_type} backup of {}/{} to repo{repo}",
            db.database_name, node.name
        ),
        Vec::new(),
    )
}

/// The step of an in-place restore of the instance of `node` on `host`
/// (for the operation path): id `<db>/<node>/<host>/restore:<op>`.
pub fn restore_step(
    db: &Database,
    node: &NodeSpec,
    host: &HostId,
    op: &str,
    repo: u32,
    target: RestoreTarget,
) -> Step {
    let what = match &target.target {
        Some(t) => format!("{} {t}", target.restore_type),
        None => target.restore_type.to_string(),
    };
    let mut s = step(
        (&db.database_name, &node.name, host),
        &format!("restore:{op}"),
        Action::RestoreInstance {
            stanza: stanza(&db.database_name, &node.name),
            repo,
            target,
            system_identifier: None,
        },
        format!(
            "operation {op}: restore {}/{} on {host} from repo{repo} ({what})",
            db.database_name, node.name
        ),
        Vec::new(),
    );
    s.disruptive = true;
    s
}

/// The step of a restore rehearsal of `node` on `host` (for the operation
/// path): id `<db>/<node>/<host>/rehearse:<op>`. `host` need not run an
/// instance of the node; nothing of the node is touched.
pub fn rehearse_step(
    db: &Database,
    node: &NodeSpec,
    host: &HostId,
    op: &str,
    repo: u32,
) -> Option<Step> {
    let conf = super::conf(db, node)?;
    let major = node
        .postgres_version
        .as_ref()
        .unwrap_or(&db.postgres_version)
        .major;
    Some(step(
        (&db.database_name, &node.name, host),
        &format!("rehearse:{op}"),
        Action::RehearseRestore(Box::new(Rehearsal {
            conf,
            repo,
            mounts: super::mounts(db, node),
            major,
        })),
        format!(
            "operation {op}: restore rehearsal of {}/{} from repo{repo} on {host}",
            db.database_name, node.name
        ),
        Vec::new(),
    ))
}
