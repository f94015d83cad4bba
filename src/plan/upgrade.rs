//! Minor upgrades in place. When a node's pinned `postgres_version`
//! (`"17.12"`) is newer than the minor its instances run (`17.10`), they
//! move to the new image one at a time, each on its own data directory
//! (the two builds share an on-disk format, see `images/README.md`):
//!
//! 1. each standby is removed (data kept) and recreated on the new image,
//!    and must stream again before the next one goes;
//! 2. then the primary hands over to an upgraded standby by a switchover:
//!    an operation the planner makes ([`operations`], id
//!    `upgrade-<db>-<node>-<version>`), which the operation path runs like
//!    a committed one, once, and records;
//! 3. the old primary rejoins as a standby (the ordinary plan) and is
//!    recreated like the others.
//!
//! An active-active database goes one node at a time, in spec order, and a
//! node goes on only while every link of the database's nodes streams
//! (each primary's subscriptions enabled and applying).
//!
//! A node without standbys is recreated on the new image in place, and the
//! plan says its clients are disconnected for the restart. A failed step
//! stops the rollout where it is (the next standby waits for the last to
//! stream; a failed switchover's record is final), and while versions
//! differ the plan notes each instance's version. A minor lower than the
//! one running is refused with a note of kind `refused`, which fails the
//! commit's `pgcd/plan` status: the validator does not see what runs.
//! Pure: this file must not do I/O.

use super::instance::{primary_host, step};
use super::steps::{Action, Note, NoteKind, Plan};
use super::Index;
use crate::spec::database::NodeSpec;
use crate::spec::names::{HostId, ObjectId};
use crate::spec::operation::Action as Op;
use crate::spec::values::PgVersion;
use crate::spec::{Database, Desired, Operation};
use crate::state::actual::{InstanceActual, InstanceRole};
use crate::state::names::standby_name;
use crate::state::operation::OperationState;

/// Where a node stands against its pinned minor.
struct Assessment<'a> {
    want: PgVersion,
    target: u16,
    primary: &'a HostId,
    /// (host, minor) of each instance that answers, in `host_ids` order.
    minors: Vec<(&'a HostId, u16)>,
}

impl Assessment<'_> {
    fn minor_of(&self, h: &HostId) -> Option<u16> {
        self.minors.iter().find(|(x, _)| *x == h).map(|(_, m)| *m)
    }
    fn old(&self, h: &HostId) -> bool {
        self.minor_of(h).is_some_and(|m| m < self.target)
    }
    fn any_old(&self) -> bool {
        self.minors.iter().any(|(_, m)| *m < self.target)
    }
    fn versions(&self, db: &Database, node: &NodeSpec, index: &Index) -> String {
        self.minors
            .iter()
            .map(|(h, m)| {
                let role = match index.instance(&db.database_name, &node.name, h) {
                    Some(i) if i.role == InstanceRole::Primary => " (primary)",
                    _ => "",
                };
                format!("{h} {}.{m}{role}", self.want.major)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn running_minor(i: Option<&InstanceActual>, major: u16) -> Option<u16> {
    let i = i.filter(|i| i.running)?;
    let v = crate::spec::images::parse_server_version(i.version.as_deref()?)?;
    (v.major == major).then_some(v.minor).flatten()
}

fn assess<'a>(db: &Database, node: &'a NodeSpec, index: &Index) -> Option<Assessment<'a>> {
    let want = node.postgres_version.unwrap_or(db.postgres_version);
    let target = want.minor?;
    let name = &db.database_name;
    let primary = primary_host(name, node, index)?;
    let minors = node
        .host_ids
        .iter()
        .filter_map(|h| {
            running_minor(index.instance(name, &node.name, h), want.major).map(|m| (h, m))
        })
        .collect();
    Some(Assessment {
        want,
        target,
        primary,
        minors,
    })
}

/// Why `node` waits before its next upgrade step: an earlier node of the
/// database is still upgrading, or a link between nodes does not stream.
fn held(db: &Database, node: &NodeSpec, index: &Index) -> Option<String> {
    if db.nodes.len() < 2 {
        return None;
    }
    let name = &db.database_name;
    for other in db.nodes.iter().take_while(|n| n.name != node.name) {
        if assess(db, other, index).is_some_and(|a| a.any_old()) {
            return Some(format!("the upgrade of node {} comes first", other.name));
        }
    }
    for n in &db.nodes {
        let Some(p) = primary_host(name, n, index)
            .and_then(|h| index.instance(name, &n.name, h))
            .filter(|p| p.running)
        else {
            return Some(format!("node {}'s primary does not answer", n.name));
        };
        if let Some(sub) = p.subscriptions.iter().find(|s| !(s.enabled && s.running)) {
            return Some(format!(
                "the link {} into node {} does not stream",
                sub.name, n.name
            ));
        }
    }
    None
}

/// The id of the switchover a node's upgrade to `want` makes.
pub(super) fn operation_id(db: &str, node: &str, want: PgVersion) -> String {
    format!("upgrade-{db}-{node}-{want}")
}

fn streams(primary: Option<&InstanceActual>, node: &str, h: &HostId) -> bool {
    primary.is_some_and(|p| {
        p.replicas
            .iter()
            .any(|r| r.name == standby_name(node, h) && r.state == "streaming")
    })
}

/// Plans a node's minor upgrade. Returns whether this pass's steps of the
/// node are the upgrade's (its other steps wait for the next pass).
pub(super) fn node(db: &Database, node: &NodeSpec, index: &Index, out: &mut Plan) -> bool {
    let Some(a) = assess(db, node, index) else {
        return false;
    };
    let name = &db.database_name;
    let node_name = &node.name;
    let newer: Vec<String> = a
        .minors
        .iter()
        .filter(|(_, m)| *m > a.target)
        .map(|(h, m)| format!("{h} runs {}.{m}", a.want.major))
        .collect();
    if !newer.is_empty() {
        out.notes.push(Note {
            kind: NoteKind::Refused,
            database: name.clone(),
            message: format!(
                "{name}/{node_name}: the spec says PostgreSQL {}, but {}: a minor downgrade is refused and nothing is changed (put back the version that runs)",
                a.want,
                newer.join(", ")
            ),
        });
        return false;
    }
    if !a.any_old() || super::ha::moving(index, name) {
        return false;
    }
    let mixed = a.versions(db, node, index);
    if let Some(why) = held(db, node, index) {
        out.notes.push(Note {
            kind: NoteKind::Upgrade,
            database: name.clone(),
            message: format!(
                "{name}/{node_name}: the minor upgrade to {} waits: {why} ({mixed})",
                a.want
            ),
        });
        return false;
    }
    let primary_inst = index.instance(name, node_name, a.primary);
    let standbys: Vec<&HostId> = node.host_ids.iter().filter(|h| *h != a.primary).collect();
    let answers_standby = |h: &HostId| {
        super::ha::answers_as(index.instance(name, node_name, h), InstanceRole::Standby)
    };
    let note = |out: &mut Plan, message: String| {
        out.notes.push(Note {
            kind: NoteKind::Upgrade,
            database: name.clone(),
            message,
        })
    };
    if let Some(h) = standbys.iter().find(|h| a.old(h) && answers_standby(h)) {
        if !super::ha::answers_as(primary_inst, InstanceRole::Primary) {
            note(
                out,
                format!("{name}/{node_name}: the minor upgrade to {} waits for the primary on {} to run ({mixed})", a.want, a.primary),
            );
            return false;
        }
        let waiting: Vec<&&HostId> = standbys
            .iter()
            .filter(|s| **s != *h && !a.old(s) && !streams(primary_inst, node_name, s))
            .collect();
        if let Some(w) = waiting.first() {
            note(
                out,
                format!("{name}/{node_name}: the minor upgrade to {} waits until the upgraded standby on {w} streams again ({mixed})", a.want),
            );
            return false;
        }
        return recreate_standby(db, node, &a, h, index, out, &mixed);
    }
    if !a.old(a.primary) {
        return false; // an old instance that is not a standby now (a former primary): the ordinary plan rejoins it first
    }
    if standbys.is_empty() {
        return recreate_primary(db, node, &a, index, out);
    }
    let id = operation_id(name.as_str(), node_name.as_str(), a.want);
    match index.actual.operations.iter().find(|o| o.id == id) {
        Some(r) if r.state == OperationState::Failed => note(
            out,
            format!("{name}/{node_name}: the minor upgrade to {} stopped: its switchover {id} failed ({}); the node serves on mixed versions: {mixed}. A Switchover operation of your own hands over, and the upgrade goes on", a.want, r.reason),
        ),
        _ => note(
            out,
            format!("{name}/{node_name}: minor upgrade to {}: the primary on {} hands over to an upgraded standby (switchover {id}), then rejoins as a standby and is upgraded; now {mixed}", a.want, a.primary),
        ),
    }
    false
}

fn recreate_standby(
    db: &Database,
    node: &NodeSpec,
    a: &Assessment,
    host: &HostId,
    index: &Index,
    out: &mut Plan,
    mixed: &str,
) -> bool {
    let name = &db.database_name;
    let node_name = &node.name;
    let Some(p) = index.instance(name, node_name, a.primary) else {
        return false;
    };
    let Some(paddr) = index.actual.host(a.primary).map(|h| h.address.clone()) else {
        return false;
    };
    let inst = index.instance(name, node_name, host);
    let have = a.minor_of(host).unwrap_or_default();
    let at = (name, node_name, host);
    let remove = step(
        at,
        "upgrade-remove",
        Action::RemoveInstance { keep_data: true },
        format!(
            "minor upgrade to {}: the standby on {host} (PostgreSQL {}.{have}) stops and its container is removed, its data kept ({mixed})",
            a.want, a.want.major
        ),
        Vec::new(),
    );
    let create = step(
        at,
        "create-standby",
        Action::CreateStandby {
            version: a.want,
            port: inst.map_or(p.port, |i| i.port),
            primary: a.primary.clone(),
            primary_address: paddr,
            primary_port: p.port,
            slot: standby_name(node_name, host),
            cpus: node.cpus.as_ref().map(|c| c.0.clone()),
            memory: node.memory.as_ref().map(|m| m.0.clone()),
            mounts: super::backup::mounts(db, node),
            from_backup: None,
        },
        format!(
            "minor upgrade to {}: the standby on {host} is recreated on the {} image, on its data directory",
            a.want, a.want
        ),
        vec![remove.id.clone()],
    );
    let start = step(
        at,
        "start",
        Action::StartInstance,
        format!(
            "the standby on {host} starts on PostgreSQL {} and streams from {} again; the next instance waits for it",
            a.want, a.primary
        ),
        vec![create.id.clone()],
    );
    out.steps.extend([remove, create, start]);
    true
}

fn recreate_primary(
    db: &Database,
    node: &NodeSpec,
    a: &Assessment,
    index: &Index,
    out: &mut Plan,
) -> bool {
    let name = &db.database_name;
    let node_name = &node.name;
    let host = a.primary;
    let Some(i) = index.instance(name, node_name, host) else {
        return false;
    };
    let have = a.minor_of(host).unwrap_or_default();
    let at = (name, node_name, host);
    out.notes.push(Note {
        kind: NoteKind::Upgrade,
        database: name.clone(),
        message: format!(
            "{name}/{node_name} has no standby: its clients are disconnected while its only instance on {host} restarts on PostgreSQL {} (a fast shutdown and a start on the same data, seconds); with a standby the upgrade would hand over by switchover instead",
            a.want
        ),
    });
    let remove = step(
        at,
        "upgrade-remove",
        Action::RemoveInstance { keep_data: true },
        format!(
            "minor upgrade to {}: {name}/{node_name} on {host} (PostgreSQL {}.{have}) stops and its container is removed, its data kept; clients are disconnected until it starts again",
            a.want, a.want.major
        ),
        Vec::new(),
    );
    // Settings written at initdb only: the data directory exists, so its
    // own postgresql.auto.conf stays in force.
    let create = step(
        at,
        "create-instance",
        Action::CreateInstance {
            version: a.want,
            port: i.port,
            settings: Default::default(),
            cpus: node.cpus.as_ref().map(|c| c.0.clone()),
            memory: node.memory.as_ref().map(|m| m.0.clone()),
            reuse_data: true,
            mounts: super::backup::mounts(db, node),
            restore_from: None,
            hba: Vec::new(),
            ident: Vec::new(),
        },
        format!(
            "minor upgrade to {}: recreated on the {} image, on its data directory",
            a.want, a.want
        ),
        vec![remove.id.clone()],
    );
    let start = step(
        at,
        "start",
        Action::StartInstance,
        format!(
            "{name}/{node_name} on {host} starts on PostgreSQL {}",
            a.want
        ),
        vec![create.id.clone()],
    );
    out.steps.extend([remove, create, start]);
    true
}

/// The switchovers that upgrades make: for each node whose standbys all run
/// the pinned minor (and stream) while its primary runs an older one.
pub(super) fn operations(desired: &Desired, index: &Index) -> Vec<Operation> {
    let mut out = Vec::new();
    for db in &desired.databases {
        if db.state == Some(crate::spec::database::DatabaseState::Absent) {
            continue;
        }
        let name = &db.database_name;
        for node in &db.nodes {
            let Some(a) = assess(db, node, index) else {
                continue;
            };
            if a.minors.iter().any(|(_, m)| *m > a.target)
                || !a.old(a.primary)
                || held(db, node, index).is_some()
            {
                continue;
            }
            let primary_inst = index.instance(name, &node.name, a.primary);
            if !super::ha::answers_as(primary_inst, InstanceRole::Primary) {
                continue;
            }
            let standbys: Vec<&HostId> = node.host_ids.iter().filter(|h| *h != a.primary).collect();
            let old_standby = standbys.iter().any(|h| a.old(h));
            let ready = standbys.iter().any(|h| {
                !a.old(h) && a.minor_of(h).is_some() && streams(primary_inst, &node.name, h)
            });
            if old_standby || !ready {
                continue;
            }
            let Ok(id) = ObjectId::parse(&operation_id(name.as_str(), node.name.as_str(), a.want))
            else {
                continue;
            };
            out.push(Operation {
                id,
                action: Op::Switchover {
                    database: name.clone(),
                    node: node.name.clone(),
                    candidate: None,
                    scheduled_at: None,
                },
            });
        }
    }
    out
}
