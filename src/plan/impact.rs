//! The impact plan: what clients will feel of each disruptive step, with
//! the time estimated from this cluster's own recorded durations of the
//! same kind of step (`Actual::durations`, recorded by the leader as steps
//! end), so a reviewer sees the cost of a change before merging it. Pure;
//! this file must not do I/O.

use super::steps::{Action, Plan, Step};
use crate::state::durations::StepDurations;
use crate::state::{Actual, InstanceRole};

/// The kind a step's duration is recorded and estimated under, for the
/// steps whose duration clients feel.
pub fn kind(action: &Action) -> Option<&'static str> {
    match action {
        Action::RestartInstance { .. } => Some("restart"),
        Action::StopForSwitchover { .. } => Some("switchover-stop"),
        Action::PromoteStandby { .. } => Some("promote"),
        Action::RestoreInstance { .. } => Some("restore"),
        Action::RejoinAsStandby { .. } => Some("rejoin"),
        Action::StopInstance => Some("stop"),
        _ => None,
    }
}

/// "about 2.1 s (median of 4 restarts timed on this cluster)", or the
/// fallback when none was timed here.
fn estimate(d: &StepDurations, kinds: &[&str], what: &str, fallback: &str) -> String {
    let mut total = 0.0;
    let mut fewest = usize::MAX;
    for k in kinds {
        match d.median(k) {
            Some((m, n)) => {
                total += m;
                fewest = fewest.min(n);
            }
            None => return format!("{fallback} (no {what} timed on this cluster yet)"),
        }
    }
    format!("about {total:.1} s (median of the last {fewest} {what} timed on this cluster)")
}

/// The candidate's replication lag now, as its primary reports it.
fn candidate_lag(actual: &Actual, step: &Step, slot: &str) -> Option<String> {
    let primary = actual.instances.iter().find(|i| {
        i.database == step.database.as_str()
            && i.node == step.node.as_str()
            && i.host == step.host.as_str()
            && i.role == InstanceRole::Primary
    })?;
    let r = primary.replicas.iter().find(|r| r.name == slot)?;
    let bytes = r.lag_bytes?;
    Some(format!(
        "; the candidate ({slot}) is {bytes} bytes behind now"
    ))
}

/// What clients feel of one step, when they feel it.
pub fn of(step: &Step, actual: &Actual) -> Option<String> {
    let d = &actual.durations;
    let at = format!("{}/{} on {}", step.database, step.node, step.host);
    let text = match &step.action {
        Action::RestartInstance { .. } => format!(
            "connections to {at} drop; it serves again after {}",
            estimate(d, &["restart"], "restarts", "a few seconds")
        ),
        Action::StopForSwitchover { candidate_slot } => format!(
            "writes to {}/{} pause from this step until the candidate is promoted: {}{}",
            step.database,
            step.node,
            estimate(
                d,
                &["switchover-stop", "promote"],
                "switchovers",
                "about a second (pgcd's window in bench/failover.md)"
            ),
            candidate_lag(actual, step, candidate_slot).unwrap_or_default()
        ),
        Action::PromoteStandby { .. } => format!(
            "{at} becomes the primary; clients on a multi-host connection string (pgcd connstr) reconnect to it"
        ),
        Action::RestoreInstance { .. } => format!(
            "{at} is down while it restores, {}",
            estimate(d, &["restore"], "restores", "a time that grows with the database and the WAL it replays")
        ),
        Action::RejoinAsStandby { .. } => format!(
            "read-only clients of {at} lose it until it follows the primary again: {}",
            estimate(d, &["rejoin"], "rejoins", "seconds for a rewind, longer for a fresh copy")
        ),
        Action::StopInstance => format!("{at} stops: its clients lose it until it is started again"),
        Action::UpgradeMajor { version, .. } => format!(
            "{at} is down from its fast shutdown until it serves on PostgreSQL {version}: {}",
            estimate(d, &["upgrade-major"], "major upgrades", "seconds for a small schema (pg_upgrade --link copies no data files; its time grows with the number of objects)")
        ),
        Action::RemoveInstance { keep_data: true } => format!(
            "the container of {at} is removed, its data kept: its clients lose it until it runs again"
        ),
        Action::RemoveInstance { .. } => format!("{at} is removed: its clients lose it"),
        _ if step.disruptive => format!("clients of {at} are disconnected"),
        _ => return None,
    };
    Some(text)
}

/// Sets the impact of every disruptive step of the plan, and of each
/// operation's disruptive phases.
pub fn annotate(plan: &mut Plan, actual: &Actual) {
    for s in &mut plan.steps {
        if s.disruptive {
            s.impact = of(s, actual);
        }
    }
    for o in &mut plan.operations {
        for p in &mut o.phases {
            if let Some(step) = p.step.as_ref().filter(|_| p.disruptive) {
                p.impact = of(step, actual);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::example::{converged_of, desired, instance, ORDERS};
    use super::super::plan;

    #[test]
    fn a_restart_is_estimated_from_the_restarts_timed_here() {
        let d = desired(&[("orders", ORDERS)]);
        let mut a = converged_of(&d);
        instance(&mut a, "orders", "n1", "h1").pending_restart = vec!["shared_buffers".into()];
        let p = plan(&d, &a);
        let restart = p.steps.iter().find(|s| s.disruptive).unwrap();
        assert_eq!(
            restart.impact.as_deref(),
            Some("connections to orders/n1 on h1 drop; it serves again after a few seconds (no restarts timed on this cluster yet)")
        );
        for s in [2.0, 4.0, 3.0] {
            a.durations.record("restart", s);
        }
        let p = plan(&d, &a);
        let restart = p.steps.iter().find(|s| s.disruptive).unwrap();
        assert_eq!(
            restart.impact.as_deref(),
            Some("connections to orders/n1 on h1 drop; it serves again after about 3.0 s (median of the last 3 restarts timed on this cluster)")
        );
        assert!(p
            .to_string()
            .contains("    ! clients: connections to orders/n1 on h1 drop"));
        assert!(
            p.steps
                .iter()
                .filter(|s| !s.disruptive)
                .all(|s| s.impact.is_none()),
            "only steps clients feel say so"
        );
    }
}
