//! Planning one node or one deleted database: which instance is acted on,
//! and its steps in fixed phases chained by dependencies. Pure; this file
//! must not do I/O.

use super::settings;
use super::steps::{Action, Note, NoteKind, Plan, Step};
use super::Index;
use crate::spec::database::{NodeSpec, NodeState};
use crate::spec::names::{DatabaseName, HostId, NodeName};
use crate::spec::Database;
use crate::state::actual::{InstanceActual, InstanceRole};

/// The phases of one instance, in order; each step waits for the steps of
/// the last non-empty phase before its own.
const PHASES: usize = 9;
const CREATE: usize = 0;
const START: usize = 1;
pub(super) const POST_INIT: usize = 2;
pub(super) const ROLES: usize = 3;
pub(super) const DATABASE: usize = 4;
pub(super) const GRANTS: usize = 5;
pub(super) const SETTINGS: usize = 6;
pub(super) const RESTART: usize = 7;
pub(super) const EXTENSIONS: usize = 8;

/// Steps of one instance, collected by phase.
pub(super) struct Steps<'a> {
    pub(super) db: &'a DatabaseName,
    pub(super) node: &'a NodeName,
    pub(super) host: &'a HostId,
    phases: [Vec<Step>; PHASES],
}

/// One step on `db`/`node` at `host`, id `<db>/<node>/<host>/<what>`, after
/// `depends_on`; whether it disrupts clients follows from its action.
pub(super) fn step(
    at: (&DatabaseName, &NodeName, &HostId),
    what: &str,
    action: Action,
    reason: String,
    depends_on: Vec<String>,
) -> Step {
    let (db, node, host) = at;
    let disruptive = matches!(
        action,
        Action::StopInstance
            | Action::RestartInstance { .. }
            | Action::RemoveInstance { .. }
            | Action::RestoreInstance { .. }
            | Action::PromoteStandby { .. }
            | Action::RejoinAsStandby { .. }
            | Action::StopForSwitchover { .. }
            | Action::UpgradeMajor { .. }
    );
    Step {
        id: format!("{db}/{node}/{host}/{what}"),
        database: db.clone(),
        node: node.clone(),
        host: host.clone(),
        action,
        reason,
        disruptive,
        drift: false,
        depends_on,
        operation: None,
        impact: None,
    }
}

impl<'a> Steps<'a> {
    pub(super) fn add(&mut self, phase: usize, what: &str, action: Action, reason: String) {
        let s = step(
            (self.db, self.node, self.host),
            what,
            action,
            reason,
            Vec::new(),
        );
        self.phases[phase].push(s);
    }

    fn finish(self, out: &mut Plan) {
        let mut before: Vec<String> = Vec::new();
        for phase in self.phases {
            if phase.is_empty() {
                continue;
            }
            let ids: Vec<String> = phase.iter().map(|s| s.id.clone()).collect();
            for mut step in phase {
                step.depends_on.clone_from(&before);
                out.steps.push(step);
            }
            before = ids;
        }
    }
}

/// Whether the host can run steps; notes why not.
fn host_ready(db: &DatabaseName, host: &HostId, index: &Index, out: &mut Plan) -> bool {
    match index.actual.host(host) {
        Some(h) if !h.healthy || !h.docker => {
            let why = if h.healthy {
                "Docker does not answer"
            } else {
                "its agent does not answer"
            };
            out.notes.push(Note {
                kind: NoteKind::HostUnavailable,
                database: db.clone(),
                message: format!("host {host}: {why}; steps on it are planned when it is back"),
            });
            false
        }
        Some(_) => true,
        None => {
            out.notes.push(Note {
                kind: NoteKind::HostUnavailable,
                database: db.clone(),
                message: format!(
                    "host {host} has not registered; its steps are planned once its agent runs"
                ),
            });
            false
        }
    }
}

/// Notes the reported instances of a database the spec has no place for
/// (a node removed, a host taken out of `host_ids`): they are kept as they are.
pub(super) fn strays(db: &Database, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    for i in index.of_database(name) {
        let known = db
            .nodes
            .iter()
            .any(|n| n.name.as_str() == i.node && n.host_ids.iter().any(|h| h.as_str() == i.host));
        let handled = removable_standby(i) && db.nodes.iter().any(|n| n.name.as_str() == i.node);
        if !known && !handled {
            out.notes.push(Note {
                kind: NoteKind::Orphaned,
                database: name.clone(),
                message: format!(
                    "instance {}/{} on {} has no place in the spec (node or host removed); it is kept as it is (pgcd removes an instance only with its database, by `state: absent`); put it back in the spec to manage it again",
                    i.database, i.node, i.host
                ),
            });
        }
    }
}

/// The host of a node's primary: the recorded one (`primaries/`), else the
/// one reporting itself primary, else the first of `host_ids`.
pub(super) fn primary_host<'a>(
    db: &str,
    node: &'a NodeSpec,
    index: &Index,
) -> Option<&'a crate::spec::names::HostId> {
    if let Some(r) = super::ha::record(index, db, node.name.as_str()) {
        if let Some(h) = node.host_ids.iter().find(|h| **h == r.host) {
            return Some(h);
        }
    }
    node.host_ids
        .iter()
        .find(|h| {
            index
                .instance(db, node.name.as_str(), h.as_str())
                .is_some_and(|i| i.role == InstanceRole::Primary)
        })
        .or(node.host_ids.first())
}

/// An instance a Stop operation (`op`) keeps stopped: stopped again if it
/// runs, else only noted; never started.
fn keep_stopped(s: &mut Steps, at: &str, op: &str, running: bool, out: &mut Plan) {
    let why = format!("stopped by operation {op}; a Start operation starts it");
    if running {
        s.add(
            START,
            "stop",
            Action::StopInstance,
            format!("{at} runs; it was {why}"),
        );
    } else {
        out.notes.push(Note {
            kind: NoteKind::Operation,
            database: s.db.clone(),
            message: format!("{at} is {why}"),
        });
    }
}

/// Plans one node of a database that should exist: a failover when its
/// recorded primary is lost; else its primary (the recorded one, else the
/// reported one, else the first host), then its standbys.
pub(super) fn node(db: &Database, node: &NodeSpec, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    if let Some(rec) = super::ha::record(index, name, &node.name) {
        if super::ha::failover(db, node, rec, index, out) {
            return;
        }
    }
    let Some(primary) = primary_host(name, node, index) else {
        return;
    };
    let standbys: Vec<&HostId> = node.host_ids.iter().filter(|h| *h != primary).collect();
    if !host_ready(name, primary, index, out) {
        return;
    }
    super::ha::first_record(db, node, primary, index, out);
    if promote_recorded(db, node, primary, index, out) {
        return;
    }
    if super::major::node(db, node, index, out) || super::upgrade::node(db, node, index, out) {
        return;
    }
    primary_steps(db, node, primary, index, out);
    for standby in standbys {
        standby_steps(db, node, primary, standby, index, out);
    }
    removed_standbys(db, node, primary, index, out);
}

/// The recorded primary runs as a standby (a promotion was interrupted, or
/// the record was just written): it is promoted, once no other instance
/// of the node runs as a primary. Returns whether that is the node's step.
fn promote_recorded(
    db: &Database,
    node: &NodeSpec,
    primary: &HostId,
    index: &Index,
    out: &mut Plan,
) -> bool {
    let name = &db.database_name;
    let inst = index.instance(name, &node.name, primary);
    if super::ha::record(index, name, &node.name).is_none()
        || !super::ha::answers_as(inst, InstanceRole::Standby)
        || super::ha::moving(index, name)
    {
        return false;
    }
    let other = node.host_ids.iter().find(|h| {
        *h != primary
            && super::ha::live(index, h)
            && super::ha::answers_as(index.instance(name, &node.name, h), InstanceRole::Primary)
    });
    if let Some(h) = other {
        out.notes.push(Note {
            kind: NoteKind::Failover,
            database: name.clone(),
            message: format!(
                "{name}/{}: {primary} is the recorded primary, but {h} still runs as one; the promotion waits until its fence stops it",
                node.name
            ),
        });
        return true;
    }
    out.steps.push(step(
        (name, &node.name, primary),
        "promote",
        Action::PromoteStandby { min_lsn: None },
        format!(
            "{primary} is {name}/{}'s recorded primary and runs as a standby",
            node.name
        ),
        Vec::new(),
    ));
    true
}

/// A host taken out of a node's `host_ids`: its running standby is removed
/// (its data is a copy of the primary's), and every pgcd slot on the
/// primary that no standby of the spec uses is dropped, so none retains WAL.
/// Anything that is not a running standby is only noted (by `strays`).
fn removed_standbys(
    db: &Database,
    node: &NodeSpec,
    primary: &HostId,
    index: &Index,
    out: &mut Plan,
) {
    let name = &db.database_name;
    let node_name = &node.name;
    let in_spec = |h: &HostId| node.host_ids.contains(h);
    let mut removals = Vec::new();
    for i in index.of_database(name) {
        if i.node != node_name || in_spec(&i.host) || !removable_standby(i) {
            continue;
        }
        if !host_ready(name, &i.host, index, out) {
            continue;
        }
        let s = step(
            (name, node_name, &i.host),
            "remove-standby",
            Action::RemoveInstance { keep_data: false },
            format!(
                "{} is no longer in the host_ids of {name}/{node_name}; its standby (a copy of the primary's data) is removed",
                i.host
            ),
            Vec::new(),
        );
        removals.push(s.id.clone());
        out.steps.push(s);
    }
    let Some(p) = index
        .instance(name, node_name, primary)
        .filter(|p| p.running && p.role == InstanceRole::Primary)
    else {
        return;
    };
    let prefix = format!("pgcd_{node_name}_");
    let wanted: Vec<String> = node
        .host_ids
        .iter()
        .filter(|h| *h != primary)
        .map(|h| crate::state::names::standby_name(node_name, h.as_str()))
        .collect();
    for slot in p
        .slots
        .iter()
        .filter(|s| s.starts_with(&prefix) && !wanted.contains(s))
    {
        out.steps.push(step(
            (name, node_name, primary),
            &format!("drop-slot:{slot}"),
            Action::DropSlot { slot: slot.clone() },
            format!("no standby of the spec uses slot {slot}; dropped so it retains no WAL"),
            removals.clone(),
        ));
    }
}

/// A running standby: removing it loses no data.
fn removable_standby(i: &InstanceActual) -> bool {
    i.running && i.role == InstanceRole::Standby
}

/// Plans a standby of a node on `host`: the primary's replication role and
/// slot, then a container whose first start copies the primary. It waits
/// (with a note) until the primary runs as a primary.
fn standby_steps(
    db: &Database,
    node: &NodeSpec,
    primary: &HostId,
    host: &HostId,
    index: &Index,
    out: &mut Plan,
) {
    let name = &db.database_name;
    let node_name = &node.name;
    if !host_ready(name, host, index, out) {
        return;
    }
    if let Some(op) = index.stopped_by(name, node_name, host) {
        let mut s = Steps {
            db: name,
            node: node_name,
            host,
            phases: Default::default(),
        };
        let running = index
            .instance(name, node_name, host)
            .is_some_and(|i| i.container_exists && i.running);
        let at = format!("{name}/{node_name} on {host}");
        keep_stopped(&mut s, &at, op, running, out);
        return s.finish(out);
    }
    // The node stopped as a whole: its standbys too (a standby that is
    // missing is made once the node runs again).
    if node.state == Some(NodeState::Stopped) {
        if index
            .instance(name, node_name, host)
            .is_some_and(|i| i.container_exists && i.running)
        {
            let mut s = Steps {
                db: name,
                node: node_name,
                host,
                phases: Default::default(),
            };
            s.add(
                START,
                "stop",
                Action::StopInstance,
                format!("{name}/{node_name} on {host} runs; the spec says state: stopped"),
            );
            s.finish(out);
        }
        return;
    }
    // The primary runs as one, or this plan creates and starts it (then the
    // standby's steps follow the primary's).
    let reported = index.instance(name, node_name, primary);
    let running = reported.filter(|p| p.running && p.role == InstanceRole::Primary);
    let primary_prefix = format!("{name}/{node_name}/{primary}/");
    let created_now = !reported.is_some_and(|p| p.container_exists)
        && out
            .steps
            .iter()
            .any(|s| s.id == format!("{primary_prefix}start"));
    let paddr = index.actual.host(primary).map(|h| h.address.clone());
    let (true, Some(paddr)) = (running.is_some() || created_now, paddr) else {
        out.notes.push(Note {
            kind: NoteKind::Standby,
            database: name.clone(),
            message: format!(
                "{name}/{node_name}: the standby on {host} waits for the primary on {primary} to run"
            ),
        });
        return;
    };
    let slot = crate::state::names::standby_name(node_name, host);
    let port = running.map_or_else(
        || {
            node.port
                .or(db.port)
                .unwrap_or(crate::spec::defaults::DEFAULT_PORT)
        },
        |p| p.port,
    );
    let mut before: Vec<String> = out
        .steps
        .iter()
        .filter(|s| s.id.starts_with(&primary_prefix))
        .map(|s| s.id.clone())
        .collect();
    let has_role = running.is_some_and(|p| {
        p.roles
            .iter()
            .any(|r| r.name == crate::state::names::REPLICATION_ROLE)
    });
    if !has_role || !running.is_some_and(|p| p.slots.contains(&slot)) {
        let s = step(
            (name, node_name, primary),
            &format!("replication:{host}"),
            Action::EnsureReplication { slot: slot.clone() },
            format!("the standby of {name}/{node_name} on {host} streams through slot {slot}"),
            std::mem::take(&mut before),
        );
        before.push(s.id.clone());
        out.steps.push(s);
    }
    let inst = index.instance(name, node_name, host);
    let mut s = Steps {
        db: name,
        node: node_name,
        host,
        phases: Default::default(),
    };
    let at = format!("{name}/{node_name} on {host}");
    let recorded = super::ha::record(index, name, node_name).is_some();
    // A former primary (no standby.signal), running or not, once the node
    // has a record that names another host.
    let former_primary = recorded
        && inst.is_some_and(|i| {
            i.container_exists
                && !i.standby_signal
                && !super::ha::answers_as(Some(i), InstanceRole::Standby)
        });
    if former_primary {
        if running.is_some() {
            s.add(
                START,
                "rejoin",
                Action::RejoinAsStandby {
                    primary: primary.clone(),
                    primary_address: paddr,
                    primary_port: port,
                    slot,
                    fresh: false,
                },
                format!(
                    "{at} was a primary; {primary} is the recorded one: it rejoins as its standby"
                ),
            );
        } else {
            out.notes.push(Note {
                kind: NoteKind::Standby,
                database: name.clone(),
                message: format!(
                    "{at} was a primary; it rejoins as a standby once the primary on {primary} runs"
                ),
            });
        }
    } else {
        if !inst.is_some_and(|i| i.container_exists) {
            // Data kept without a container (a recreate) is never replaced.
            let from_backup = if inst.is_some_and(|i| i.data_dir_exists) {
                None
            } else {
                super::standby_backup::source(db, node, primary, host, index, out)
            };
            let how = match &from_backup {
                Some(b) => format!(
                    "standbys_from_backup: restored from backup {} in repository {} (pgbackrest restore --type=standby), then it streams from the primary on {primary} through slot {slot}",
                    b.label, b.repo_id
                ),
                None => format!(
                    "its first start copies the primary on {primary} with pg_basebackup through slot {slot}"
                ),
            };
            s.add(
                CREATE,
                "create-standby",
                Action::CreateStandby {
                    version: node.postgres_version.unwrap_or(db.postgres_version),
                    port,
                    primary: primary.clone(),
                    primary_address: paddr.clone(),
                    primary_port: port,
                    slot: slot.clone(),
                    cpus: node.cpus.as_ref().map(|c| c.0.clone()),
                    memory: node.memory.as_ref().map(|m| m.0.clone()),
                    mounts: super::backup::mounts(db, node),
                    from_backup: from_backup.map(Box::new),
                },
                format!("{at} is a standby in the spec and does not exist; {how}"),
            );
        }
        if !inst.is_some_and(|i| i.running) {
            s.add(
                START,
                "start",
                Action::StartInstance,
                format!("start the standby {at}"),
            );
        } else if inst.is_some_and(|i| i.role == InstanceRole::Primary) {
            out.notes.push(Note {
                kind: NoteKind::Standby,
                database: name.clone(),
                message: format!(
                    "{at} runs as a primary beside the primary on {primary}; pgcd leaves it alone (two primaries need a person)"
                ),
            });
        } else if let Some(upstream) = inst
            .and_then(|i| i.wal.as_ref())
            .and_then(|w| w.upstream.as_deref())
            .filter(|u| running.is_some() && *u != paddr)
        {
            s.add(
                START,
                "repoint",
                Action::RepointStandby {
                    primary: primary.clone(),
                    primary_address: paddr.clone(),
                    primary_port: port,
                    slot,
                },
                format!("{at} follows {upstream}; the primary is on {primary} ({paddr})"),
            );
        }
        if let Some(i) = inst.filter(|i| i.running && i.role == InstanceRole::Standby) {
            super::hba::step(db, node, i, index, &mut s);
        }
    }
    let first = out.steps.len();
    s.finish(out);
    if let Some(step) = out.steps.get_mut(first) {
        step.depends_on.extend(before);
    }
}

/// Plans a node's primary: instance, start, catalog, settings, restart.
fn primary_steps(db: &Database, node: &NodeSpec, primary: &HostId, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    let node_name = &node.name;
    let inst = index.instance(name, node_name, primary);
    let mut s = Steps {
        db: name,
        node: node_name,
        host: primary,
        phases: Default::default(),
    };
    let at = format!("{name}/{node_name} on {primary}");
    let version = node.postgres_version.unwrap_or(db.postgres_version);
    let port = node
        .port
        .or(db.port)
        .unwrap_or(crate::spec::defaults::DEFAULT_PORT);
    let offered = |e: &str| {
        inst.filter(|i| i.running)
            .is_none_or(|i| i.available_extensions.iter().any(|a| a == e))
    };
    let mut wanted = settings::desired(db, node, &offered);
    // Quorum commit (acknowledged once one standby has it), set only once a
    // standby runs: before that, every commit would wait for none to come.
    let standby_runs = node.host_ids.iter().any(|h| {
        h != primary
            && index
                .instance(name, node_name, h.as_str())
                .is_some_and(|i| i.running && i.role == InstanceRole::Standby)
    });
    if node.synchronous == Some(true) && standby_runs {
        let names: Vec<String> = node
            .host_ids
            .iter()
            .filter(|h| *h != primary)
            .map(|h| crate::state::names::standby_name(node_name, h.as_str()))
            .collect();
        wanted.insert(
            "synchronous_standby_names".into(),
            format!("ANY 1 ({})", names.join(", ")),
        );
    }
    // A Stop operation keeps it stopped like `state: stopped` would.
    let by_operation = index.stopped_by(name, node_name, primary);
    let stopped = node.state == Some(NodeState::Stopped) || by_operation.is_some();
    let new = !inst.is_some_and(|i| i.container_exists);
    let mut restore_from = None;
    if new && !inst.is_some_and(|i| i.data_dir_exists) {
        match super::backup::clone_source(db, node, index, out) {
            Some(Ok(src)) => restore_from = Some(Box::new(src)),
            Some(Err(why)) => {
                out.notes.push(Note {
                    kind: NoteKind::Backup,
                    database: name.clone(),
                    message: format!("{at} is not created: {why}"),
                });
                return s.finish(out);
            }
            None => {}
        }
    }
    if let Some(src) = &restore_from {
        let what = match &src.target.target {
            Some(t) => format!("{} {t}", src.target.restore_type),
            None => src.target.restore_type.to_string(),
        };
        s.add(
            CREATE,
            "create-instance",
            Action::CreateInstance {
                version,
                port,
                settings: wanted.clone(),
                cpus: node.cpus.as_ref().map(|c| c.0.clone()),
                memory: node.memory.as_ref().map(|m| m.0.clone()),
                reuse_data: false,
                mounts: super::backup::mounts(db, node),
                restore_from: Some(src.clone()),
                hba: Vec::new(),
                ident: Vec::new(),
            },
            format!(
                "{at} is in the spec and does not exist; restore_config: created from the backups of stanza {} in repository {} ({what}), database {} restored as {name}",
                src.stanza, src.repo.id, src.database
            ),
        );
        // The restored catalog is planned once the instance runs and reports.
        return s.finish(out);
    }
    if new {
        let reuse_data = inst.is_some_and(|i| i.data_dir_exists);
        let reason = match (reuse_data, stopped) {
            (true, _) => format!(
                "the container of {at} is missing; recreated on its existing data directory"
            ),
            (false, false) => format!("{at} is in the spec and does not exist"),
            (false, true) => format!(
                "{at} is in the spec (state: stopped) and does not exist; created, not started"
            ),
        };
        // A new data directory starts with the spec's files, not the
        // container's built-in lines. A server's TLS is known once it runs;
        // the container's script drops `hostssl` from pgcd's own lines on
        // an image without TLS (`hba::without_tls`).
        let (hba, ident) = if reuse_data {
            (Vec::new(), Vec::new())
        } else {
            (
                super::hba::hba_lines(db, node, index.actual, true),
                super::hba::ident_lines(db, node),
            )
        };
        s.add(
            CREATE,
            "create-instance",
            Action::CreateInstance {
                version,
                port,
                settings: wanted.clone(),
                cpus: node.cpus.as_ref().map(|c| c.0.clone()),
                memory: node.memory.as_ref().map(|m| m.0.clone()),
                reuse_data,
                mounts: super::backup::mounts(db, node),
                restore_from: None,
                hba,
                ident,
            },
            reason,
        );
    }
    let running = inst.is_some_and(|i| i.container_exists && i.running);
    if let Some(op) = by_operation {
        keep_stopped(&mut s, &at, op, running, out);
        return s.finish(out);
    }
    if stopped {
        if running {
            s.add(
                START,
                "stop",
                Action::StopInstance,
                format!("{at} runs; the spec says state: stopped"),
            );
        }
        return s.finish(out);
    }
    if !running {
        let reason = if new && inst.is_some_and(|i| i.data_dir_exists) {
            format!("start {at} on its existing data")
        } else if new {
            format!("start the new instance {at}")
        } else {
            format!("{at} is stopped; the spec says running")
        };
        s.add(START, "start", Action::StartInstance, reason);
    }
    // The catalog is known for a running instance, or empty for one created
    // by initdb now. Otherwise (stopped, or recreated on old data) the next
    // pass plans it once the instance runs and reports.
    let catalog = match inst {
        Some(i) if running => Some(i),
        _ if new && !inst.is_some_and(|i| i.data_dir_exists) => None,
        _ => return s.finish(out),
    };
    if let Some(i) = catalog {
        check_version(db, &at, version, i, out);
        super::hba::step(db, node, i, index, &mut s);
    }
    super::catalog::steps(db, &mut s, catalog, &wanted, port, index, &mut out.notes);
    s.finish(out);
}

fn check_version(
    db: &Database,
    at: &str,
    want: crate::spec::values::PgVersion,
    i: &InstanceActual,
    out: &mut Plan,
) {
    let Some(have) = i.version.as_deref() else {
        return;
    };
    // Another minor of the same major is the upgrade's (`super::upgrade`).
    let major = have.split('.').next().and_then(|m| m.parse::<u16>().ok());
    if major != Some(want.major) {
        out.notes.push(Note {
            kind: NoteKind::Version,
            database: db.database_name.clone(),
            message: format!(
                "{at} runs PostgreSQL {have}, the spec says {want}; nothing is changed in place: to upgrade, add a node with postgres_version \"{want}\" (it joins by copying a member, across the majors), then remove this one; a single-node database can instead set major_upgrade: in_place (pg_upgrade)"
            ),
        });
    }
}

/// Plans the removal of a database with `state: absent`: every reported
/// instance, standbys and unknown hosts included, once deletion is confirmed.
pub(super) fn remove(db: &Database, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    let instances = index.of_database(name);
    if db.confirm_delete.as_deref() != Some(name) {
        if !instances.is_empty() {
            out.notes.push(Note {
                kind: NoteKind::DeleteNotConfirmed,
                database: name.clone(),
                message: format!(
                    "state: absent without `confirm_delete: {name}`; nothing is removed"
                ),
            });
        }
        return;
    }
    let keep_data = db.delete_data != Some(true);
    for i in instances {
        if !(i.container_exists || (!keep_data && i.data_dir_exists)) {
            continue;
        }
        if !host_ready(name, &i.host, index, out) {
            continue;
        }
        let mut s = Steps {
            db: name,
            node: &i.node,
            host: &i.host,
            phases: Default::default(),
        };
        let reason = if keep_data {
            format!(
                "state: absent, confirmed; the data directory of {name}/{} on {} is kept",
                i.node, i.host
            )
        } else {
            "state: absent, confirmed, with delete_data: true".to_string()
        };
        s.add(
            CREATE,
            "remove",
            Action::RemoveInstance { keep_data },
            reason,
        );
        s.finish(out);
    }
}
