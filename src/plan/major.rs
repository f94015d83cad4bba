//! Major upgrades in place (`major_upgrade: in_place`, a single-node
//! database; pgEdge upgrades a major only by node addition). When the
//! spec's major is newer than the one in the primary's data directory:
//!
//! 1. a backup first, when the node has `backup_config`: an operation the
//!    planner makes ([`operations`], id `upgrade-backup-<db>-<node>-<major>`),
//!    run once and recorded like a committed one; a failed backup stops the
//!    upgrade before anything changes;
//! 2. the node's standbys are removed, data too: a standby cannot follow
//!    its primary across majors, and its data is a copy of the primary's.
//!    A `pg_upgrade --check` step against the serving primary comes first,
//!    so a refused upgrade keeps them;
//! 3. one [`Action::UpgradeMajor`] step on the primary: `pg_upgrade
//!    --check` while it serves (a refusal stops nothing), a fast shutdown,
//!    `pg_upgrade --link`, a start on the new image and `ANALYZE`. A failure before the link step
//!    leaves the old version serving;
//! 4. once the primary runs the new major, the ordinary plan rebuilds the
//!    standbys from it, and pgBackRest continues under the new cluster's
//!    repository path (a new system identifier, see [`super::backup`]).
//!
//! The step is planned from the data directory's major, which an agent
//! reports while the instance is stopped too: an upgrade interrupted by a
//! crash is planned again, and the step resumes from where it stands.
//! Pure: this file must not do I/O.

use super::instance::{primary_host, step};
use super::steps::{Action, Note, NoteKind, Plan};
use super::Index;
use crate::spec::database::{DatabaseState, MajorUpgrade, NodeSpec};
use crate::spec::names::{HostId, ObjectId};
use crate::spec::operation::Action as Op;
use crate::spec::values::PgVersion;
use crate::spec::{Database, Desired, Operation};
use crate::state::actual::{InstanceActual, InstanceRole};
use crate::state::operation::OperationState;

/// The id of the backup an in-place upgrade of `node` to `major` takes first.
pub(super) fn backup_id(db: &str, node: &str, major: u16) -> String {
    format!("upgrade-backup-{db}-{node}-{major}")
}

fn want(db: &Database, node: &NodeSpec) -> PgVersion {
    node.postgres_version.unwrap_or(db.postgres_version)
}

/// The major an instance still holds below `target`: its data directory's
/// (or its server's, from an older agent that does not report it), or its
/// container's image's once the data is upgraded but the container is not
/// yet recreated.
fn old_major(i: &InstanceActual, target: u16) -> Option<u16> {
    let running = i
        .version
        .as_deref()
        .and_then(crate::spec::images::parse_server_version)
        .map(|v| v.major);
    let data = i.data_major.or(running)?;
    let image = i.image_major.unwrap_or(data);
    let oldest = data.min(image);
    (oldest < target && data <= target).then_some(oldest)
}

/// The primary of a node whose major is upgraded in place, and the major
/// it still holds.
fn pending<'a>(db: &Database, node: &'a NodeSpec, index: &Index) -> Option<(&'a HostId, u16)> {
    if db.major_upgrade != Some(MajorUpgrade::InPlace) {
        return None;
    }
    let target = want(db, node).major;
    let primary = primary_host(&db.database_name, node, index)?;
    let i = index.instance(&db.database_name, &node.name, primary)?;
    Some((primary, old_major(i, target)?))
}

fn note(out: &mut Plan, db: &Database, message: String) {
    out.notes.push(Note {
        kind: NoteKind::Upgrade,
        database: db.database_name.clone(),
        message,
    });
}

/// Plans a node's major upgrade in place. Returns whether this pass's
/// steps of the node are the upgrade's (its other steps wait).
pub(super) fn node(db: &Database, node: &NodeSpec, index: &Index, out: &mut Plan) -> bool {
    let Some((primary, from)) = pending(db, node, index) else {
        return false;
    };
    let name = &db.database_name;
    let node_name = &node.name;
    let want = want(db, node);
    if super::ha::moving(index, name) {
        return false;
    }
    let Some(p) = index.instance(name, node_name, primary) else {
        return false;
    };
    let title = format!("{name}/{node_name}: major upgrade in place from {from} to {want}");
    // 1. A backup first.
    if super::backup::config(db, node).is_some() && p.data_major.is_none_or(|d| d < want.major) {
        let id = backup_id(name.as_str(), node_name.as_str(), want.major);
        match index.actual.operations.iter().find(|o| o.id == id) {
            Some(r) if r.state == OperationState::Succeeded => {}
            Some(r) if r.state == OperationState::Failed => {
                note(out, db, format!("{title} stopped before anything changed: its backup {id} failed ({}); the primary on {primary} serves PostgreSQL {from}. Fix the cause and change the spec to try again, or set major_upgrade: node_add", r.reason));
                return true;
            }
            _ => {
                note(out, db, format!("{title}: a backup first (operation {id}), then the standbys are removed, then pg_upgrade --link on {primary}"));
                return true;
            }
        }
    }
    // 2. The standbys go: none can follow across majors.
    let standbys: Vec<&InstanceActual> = index
        .of_database(name)
        .iter()
        .copied()
        .filter(|i| i.node == *node_name && i.host != *primary && i.container_exists)
        .collect();
    let upgrade = |check_only: bool| Action::UpgradeMajor {
        from,
        version: want,
        port: p.port,
        cpus: node.cpus.as_ref().map(|c| c.0.clone()),
        memory: node.memory.as_ref().map(|m| m.0.clone()),
        mounts: super::backup::mounts(db, node),
        check_only,
    };
    if !standbys.is_empty() {
        // pg_upgrade's own checks first, while the primary serves: a
        // refusal keeps the standbys.
        let mut check = step(
            (name, node_name, primary),
            "upgrade-check",
            upgrade(true),
            format!("{title}: pg_upgrade --check against the serving primary on {primary}, before its standbys go"),
            Vec::new(),
        );
        check.disruptive = false;
        let after = vec![check.id.clone()];
        out.steps.push(check);
        for s in standbys {
            out.steps.push(step(
                (name, node_name, &s.host),
                "upgrade-remove-standby",
                Action::RemoveInstance { keep_data: false },
                format!(
                    "{title}: the standby on {} is removed with its data (a copy of the primary's; a standby cannot follow across majors) and rebuilt from the upgraded primary",
                    s.host
                ),
                after.clone(),
            ));
        }
        return true;
    }
    // 3. The primary.
    if p.data_major.is_some_and(|d| d < want.major) && p.running && p.role != InstanceRole::Primary
    {
        return false; // not the primary now: the ordinary plan settles that first
    }
    note(out, db, format!(
        "{title}: clients of {primary} are disconnected from its fast shutdown until it serves on {want}: pg_upgrade --link hard-links the data files instead of copying them, so the time grows with the number of objects, not the size (seconds for a small schema); its statistics are rebuilt afterwards (vacuumdb --analyze-in-stages) while it serves. The old data directory is kept as data.old-{from}"
    ));
    out.steps.push(step(
        (name, node_name, primary),
        "upgrade-major",
        upgrade(false),
        format!("{title} on {primary} (pg_upgrade --link, then a start on the {want} image)"),
        Vec::new(),
    ));
    true
}

/// The backups that in-place upgrades take first: one per node whose
/// primary serves an older major than the spec's and has `backup_config`.
pub(super) fn operations(desired: &Desired, index: &Index) -> Vec<Operation> {
    let mut out = Vec::new();
    for db in &desired.databases {
        if db.state == Some(DatabaseState::Absent) || db.suspend == Some(true) {
            continue;
        }
        for node in &db.nodes {
            let Some((primary, _)) = pending(db, node, index) else {
                continue;
            };
            let p = index.instance(&db.database_name, &node.name, primary);
            let data_old = p.is_some_and(|p| p.data_major.is_none_or(|d| d < want(db, node).major));
            if super::backup::config(db, node).is_none()
                || !data_old
                || !super::ha::answers_as(p, InstanceRole::Primary)
            {
                continue;
            }
            let id = backup_id(
                db.database_name.as_str(),
                node.name.as_str(),
                want(db, node).major,
            );
            let Ok(id) = ObjectId::parse(&id) else {
                continue;
            };
            out.push(Operation {
                id,
                action: Op::Backup {
                    database: db.database_name.clone(),
                    node: node.name.clone(),
                    backup_type: None,
                    repository: None,
                },
            });
        }
    }
    out
}
