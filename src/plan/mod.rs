//! The planner: `plan(&Desired, &Actual) -> Plan`, the ordered steps that
//! take the observed state to the spec, each with its host, its reason,
//! whether it disrupts clients and what it waits for.
//!
//! A pure, deterministic function over plain values: this module must not
//! do I/O, read clocks or import a client library. The apply loop carries
//! a plan out; tests compare printed plans with reviewed snapshots. Phases
//! per instance follow neon's compute_ctl: instance, start, post_init,
//! roles, database, memberships, settings, restart, extensions (roles first because
//! the database's owner must exist; extensions last because a preloaded
//! library only loads at the restart).

pub mod backup;
mod catalog;
mod converged;
pub(crate) mod ha;
pub mod hba;
pub mod impact;
mod instance;
mod major;
mod mesh;
pub mod operations;
mod render;
pub mod settings;
pub mod standby_backup;
pub mod steps;
mod upgrade;

#[cfg(test)]
pub(crate) mod example;
#[cfg(test)]
mod major_tests;
#[cfg(test)]
mod scripts_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;

pub use converged::{converged, converged_at};
pub use steps::{Action, Effect, Note, NoteKind, Plan, SettingChange, Step};

use crate::spec::database::DatabaseState;
use crate::spec::{Database, Desired};
use crate::state::{Actual, InstanceActual};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The superuser every instance has; owner of databases whose spec names none.
pub const SUPERUSER: &str = "postgres";

/// Reported instances by (database, node, host), and by database.
pub(crate) struct Index<'a> {
    pub(crate) actual: &'a Actual,
    /// The time of the plan, when the caller has a clock (the reconciler);
    /// `None` for a plan shown to a person: nothing waits on time then.
    pub(crate) now: Option<chrono::DateTime<chrono::Utc>>,
    by_key: HashMap<(&'a str, &'a str, &'a str), &'a InstanceActual>,
    by_db: BTreeMap<&'a str, Vec<&'a InstanceActual>>,
    /// Instances a `Stop` operation keeps stopped, with its id.
    stopped: HashMap<(&'a str, &'a str, &'a str), &'a str>,
}

impl<'a> Index<'a> {
    pub(super) fn new(actual: &'a Actual, now: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        let mut by_key = HashMap::with_capacity(actual.instances.len());
        let mut by_db: BTreeMap<&str, Vec<&InstanceActual>> = BTreeMap::new();
        for i in &actual.instances {
            by_key.insert((i.database.as_str(), i.node.as_str(), i.host.as_str()), i);
            by_db.entry(i.database.as_str()).or_default().push(i);
        }
        for list in by_db.values_mut() {
            list.sort_by(|a, b| (&a.node, &a.host).cmp(&(&b.node, &b.host)));
        }
        Self {
            actual,
            now,
            by_key,
            by_db,
            stopped: operations::stop_start::stopped(actual),
        }
    }

    pub(crate) fn instance(&self, db: &str, node: &str, host: &str) -> Option<&'a InstanceActual> {
        self.by_key.get(&(db, node, host)).copied()
    }

    pub(crate) fn of_database(&self, db: &str) -> &[&'a InstanceActual] {
        self.by_db.get(db).map_or(&[], Vec::as_slice)
    }

    /// The `Stop` operation that keeps this instance stopped (the last Stop
    /// or Start to succeed on it was a Stop), if any.
    pub(crate) fn stopped_by(&self, db: &str, node: &str, host: &str) -> Option<&'a str> {
        self.stopped.get(&(db, node, host)).copied()
    }
}

/// Whether `db`'s spec is the one last carried out in full.
fn applied(actual: &Actual, db: &Database) -> bool {
    actual
        .databases
        .iter()
        .find(|a| a.name == db.database_name.as_str())
        .is_some_and(|a| a.applied_spec == crate::state::spec_digest(db))
}

/// While a spec change is pending on a database that exists, says that its
/// `scripts` do not run again: they ran (or not) when it was created.
fn scripts_note(db: &Database, index: &Index, out: &mut Plan) {
    let Some(scripts) = db.scripts.as_ref() else {
        return;
    };
    if scripts.post_init.is_empty() && scripts.post_database_create.is_empty() {
        return;
    }
    // Every node has the database: its creation is over.
    let created = db.nodes.iter().all(|n| {
        index
            .of_database(&db.database_name)
            .iter()
            .any(|i| i.node == n.name && i.database_exists)
    });
    if created && !applied(index.actual, db) {
        out.notes.push(Note {
            kind: NoteKind::Scripts,
            database: db.database_name.clone(),
            message: format!(
                "{}: scripts run once, when pgcd creates the database (post_init on each new primary); the database exists, so a change to them does nothing",
                db.database_name
            ),
        });
    }
}

/// Plans the steps that take `actual` to `desired`.
///
/// Deterministic: databases by name, nodes and hosts in spec order, steps
/// of one instance in phase order. When a database's spec is the one last
/// carried out in full (`Actual::databases`), its steps correct drift and
/// say so. A database the spec no longer names is
/// never touched, only noted; removal needs `state: absent` with
/// `confirm_delete`.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    plan_at(desired, actual, None)
}

/// Like [`plan`], at a known time: operations whose `scheduled_at` has come
/// start. `now` is an input, not a clock the planner reads, so the
/// reconciler's plans stay reproducible.
pub fn plan_at(
    desired: &Desired,
    actual: &Actual,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Plan {
    // Cluster-wide maintenance mode is every database's.
    let all_suspended;
    let desired = if desired.config.suspend == Some(true) {
        let mut d = desired.clone();
        for db in &mut d.databases {
            db.suspend = Some(true);
        }
        all_suspended = d;
        &all_suspended
    } else {
        desired
    };
    let mut out = databases(desired, actual, now);
    operations::plan(desired, actual, now, &mut out);
    impact::annotate(&mut out, actual);
    out
}

/// Whether a database is in maintenance mode (its own `suspend`, or
/// `pgcd.yaml`'s): its steps are planned and shown, and only those of the
/// operations committed for it are carried out.
pub fn suspended(db: &Database, config: &crate::spec::ClusterConfig) -> bool {
    db.suspend == Some(true) || config.suspend == Some(true)
}

/// The steps and notes of every database, operations aside.
fn databases(
    desired: &Desired,
    actual: &Actual,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> Plan {
    let index = Index::new(actual, now);
    let mut dbs: Vec<&Database> = desired.databases.iter().collect();
    dbs.sort_by(|a, b| a.database_name.cmp(&b.database_name));
    let mut out = Plan::default();
    for db in &dbs {
        let first = out.steps.len();
        if db.state == Some(DatabaseState::Absent) {
            instance::remove(db, &index, &mut out);
        } else {
            let spock = crate::state::actual::spock_wired(db);
            if crate::state::actual::spock_mesh(db) && !spock {
                let names: Vec<&str> = db.nodes.iter().map(|n| n.name.as_str()).collect();
                out.notes.push(Note {
                    kind: NoteKind::Replication,
                    database: db.database_name.clone(),
                    message: format!(
                        "{}: nodes {} replicate through Spock, but the database does not declare the spock extension (its image must offer it); they run on their own",
                        db.database_name,
                        names.join(", ")
                    ),
                });
            }
            for node in &db.nodes {
                if !backup::restoring(db, node, &index, &mut out) {
                    instance::node(db, node, &index, &mut out);
                }
            }
            if crate::state::actual::native_mesh(db) || spock {
                mesh::steps(db, &index, &mut out);
            }
            instance::strays(db, &index, &mut out);
            scripts_note(db, &index, &mut out);
            backup::steps(db, &index, &mut out);
            if out.steps.len() > first && applied(actual, db) {
                // Keeping up with tables and sequences users create is
                // upkeep, not a correction of a change made by hand.
                let upkeep = |a: &Action| {
                    matches!(
                        a,
                        Action::AlignSequences { .. } | Action::RefreshSubscription { .. }
                    )
                };
                for s in out.steps[first..].iter_mut().filter(|s| !upkeep(&s.action)) {
                    s.drift = true;
                    s.reason.insert_str(0, "drift: ");
                }
            }
        }
    }
    let named: BTreeSet<&str> = dbs.iter().map(|d| d.database_name.as_str()).collect();
    for (name, instances) in &index.by_db {
        if named.contains(name) {
            continue;
        }
        let places: Vec<String> = instances
            .iter()
            .map(|i| format!("{}/{} on {}", i.database, i.node, i.host))
            .collect();
        out.notes.push(Note {
            kind: NoteKind::Orphaned,
            database: instances[0].database.clone(),
            message: format!(
                "database {name} has no file under databases/ but still has instances ({}); they are kept as they are. To delete it, commit databases/{name}.yaml with `state: absent` and `confirm_delete: {name}` (add `delete_data: true` to drop its data too)",
                places.join(", ")
            ),
        });
    }
    out
}
