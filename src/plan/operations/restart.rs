//! `Restart`: one instance per phase, a node's standbys before its primary,
//! so the primary restarts last and the standbys are back first. Its
//! choice of instances and its phases are shared with `Stop` and `Start`
//! (`super::stop_start`).

use crate::plan::instance::{primary_host, step};
use crate::plan::steps::Action;
use crate::plan::Index;
use crate::state::operation::PhaseRecord;
use crate::state::{InstanceActual, InstanceRole};

/// Restarts, one instance per phase: standbys first, then the primary,
/// so a node's primary restarts last.
pub(super) fn phases(
    id: &str,
    db: &crate::spec::Database,
    index: &Index,
    node: Option<&str>,
    host: Option<&str>,
) -> Vec<PhaseRecord> {
    targets(db, index, node, host, false, |i| i.container_exists)
        .into_iter()
        .map(|i| {
            phase(
                id,
                i,
                Action::RestartInstance { settings: vec![] },
                "restart",
            )
        })
        .collect()
}

/// Whether `i` is its node's primary: the recorded (or reported) one of a
/// node in the spec, else one that reports itself primary.
pub(super) fn is_primary(db: &crate::spec::Database, index: &Index, i: &InstanceActual) -> bool {
    match db.nodes.iter().find(|n| n.name == i.node) {
        Some(n) => primary_host(&db.database_name, n, index).is_some_and(|h| *h == i.host),
        None => i.role == InstanceRole::Primary,
    }
}

/// The instances of `db` an operation acts on (`node`, `host` narrow them;
/// `keep` chooses among them), by node, each node's standbys before its
/// primary, or its primary first with `primary_first`.
pub(super) fn targets<'a>(
    db: &crate::spec::Database,
    index: &Index<'a>,
    node: Option<&str>,
    host: Option<&str>,
    primary_first: bool,
    keep: impl Fn(&InstanceActual) -> bool,
) -> Vec<&'a InstanceActual> {
    let mut targets: Vec<(&InstanceActual, bool)> = index
        .of_database(&db.database_name)
        .iter()
        .copied()
        .filter(|i| node.is_none_or(|n| i.node == n) && host.is_none_or(|h| i.host == h) && keep(i))
        .map(|i| (i, is_primary(db, index, i) != primary_first))
        .collect();
    // Within a node, `false` sorts first: the standbys, or with
    // `primary_first` the primary.
    targets.sort_by(|a, b| (&a.0.node, a.1, &a.0.host).cmp(&(&b.0.node, b.1, &b.0.host)));
    targets.into_iter().map(|(i, _)| i).collect()
}

/// One phase of an operation `id` acting on instance `i`: its one step
/// (`<db>/<node>/<host>/operation:<id>`), named `<node>-<host>`; `verb`
/// says what it does (`restart`, `stop`, `start`).
pub(super) fn phase(id: &str, i: &InstanceActual, action: Action, verb: &str) -> PhaseRecord {
    let name = format!("{}-{}", i.node, i.host);
    let step = step(
        (&i.database, &i.node, &i.host),
        &format!("operation:{id}"),
        action,
        format!(
            "operation {id} {verb}s {}/{} on {}",
            i.database, i.node, i.host
        ),
        vec![],
    );
    let description = format!("{verb} {}/{} on {}", i.database, i.node, i.host);
    super::one_step_phase(id, name, description, step)
}
