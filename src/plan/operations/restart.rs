//! `Restart`: one instance per phase, a node's standbys before its primary,
//! so the primary restarts last and the standbys are back first.

use crate::plan::steps::{Action, Step};
use crate::state::operation::PhaseRecord;
use crate::state::{Actual, InstanceActual, InstanceRole};

/// Restarts, one instance per phase: standbys first, then the primary,
/// so a node's primary restarts last.
pub(super) fn phases(
    id: &str,
    db: &crate::spec::Database,
    actual: &Actual,
    node: Option<&str>,
    host: Option<&str>,
) -> Vec<PhaseRecord> {
    let mut targets: Vec<&InstanceActual> = actual
        .instances
        .iter()
        .filter(|i| {
            i.database == db.database_name
                && i.container_exists
                && node.is_none_or(|n| i.node == n)
                && host.is_none_or(|h| i.host == h)
        })
        .collect();
    let rank = |i: &InstanceActual| u8::from(i.role == InstanceRole::Primary);
    targets.sort_by(|a, b| (&a.node, rank(a), &a.host).cmp(&(&b.node, rank(b), &b.host)));
    targets
        .into_iter()
        .map(|i| {
            let name = format!("{}-{}", i.node, i.host);
            let step = Step {
                id: format!("{}/{}/{}/operation:{id}", i.database, i.node, i.host),
                database: i.database.clone(),
                node: i.node.clone(),
                host: i.host.clone(),
                action: Action::RestartInstance { settings: vec![] },
                reason: format!(
                    "operation {id} restarts {}/{} on {}",
                    i.database, i.node, i.host
                ),
                disruptive: true,
                drift: false,
                depends_on: vec![],
                operation: None,
                impact: None,
            };
            let description = format!("restart {}/{} on {}", i.database, i.node, i.host);
            super::one_step_phase(id, name, description, step)
        })
        .collect()
}
