//! Major upgrades in place (`super::major`): standbys removed first, one
//! resumable step on the primary, standbys rebuilt after; a backup first
//! when the node has backup_config; nothing in place without the field.

use super::example::{instance, ORDERS};
use super::{plan, Action, NoteKind};
use crate::spec::Desired;
use crate::state::operation::OperationState;
use crate::state::Actual;

fn orders(version: &str, hosts: &str, extra: &str) -> Desired {
    let text = ORDERS
        .replace(
            "    host_ids: [h1]\n",
            &format!("    host_ids: [{hosts}]\n"),
        )
        .replace(
            "postgres_version: \"17\"",
            &format!("postgres_version: \"{version}\"\n{extra}"),
        );
    super::example::desired(&[("orders", &text)])
}

const IN_PLACE: &str = "major_upgrade: in_place";

/// The plan has a major upgrade step.
fn upgrades(p: &super::Plan) -> bool {
    p.steps
        .iter()
        .any(|s| matches!(s.action, Action::UpgradeMajor { .. }))
}

fn on_17(hosts: &str) -> Actual {
    super::converged(&orders("17", hosts, ""))
}

#[test]
fn without_major_upgrade_a_new_major_changes_nothing_in_place() {
    let p = plan(&orders("18", "h1", ""), &on_17("h1"));
    assert!(!upgrades(&p), "{p}");
    assert!(p.notes.iter().any(|n| n.kind == NoteKind::Version), "{p}");
}

#[test]
fn a_single_instance_is_upgraded_by_one_step() {
    let p = plan(&orders("18", "h1", IN_PLACE), &on_17("h1"));
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["orders/n1/h1/upgrade-major"], "{p}");
    let Action::UpgradeMajor {
        from,
        version,
        port,
        ..
    } = &p.steps[0].action
    else {
        panic!("{p}");
    };
    assert_eq!((*from, version.major, *port), (17, 18, 6432));
    assert!(p.steps[0].disruptive);
    assert!(
        p.notes
            .iter()
            .any(|n| n.kind == NoteKind::Upgrade && n.message.contains("disconnected")),
        "{p}"
    );
}

#[test]
fn standbys_are_removed_before_the_primary_and_rebuilt_after() {
    let d = orders("18", "h1, h2, h3", IN_PLACE);
    let mut a = on_17("h1, h2, h3");
    let p = plan(&d, &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders/n1/h1/upgrade-check",
            "orders/n1/h2/upgrade-remove-standby",
            "orders/n1/h3/upgrade-remove-standby"
        ],
        "{p}"
    );
    // The check first, while the primary serves: a refusal keeps them.
    assert!(matches!(
        p.steps[0].action,
        Action::UpgradeMajor {
            check_only: true,
            ..
        }
    ));
    assert!(!p.steps[0].disruptive);
    assert!(p.steps[1..].iter().all(|s| matches!(
        s.action,
        Action::RemoveInstance { keep_data: false }
    ) && s.depends_on == ["orders/n1/h1/upgrade-check"]));
    // The standbys gone, the primary is upgraded.
    a.instances.retain(|i| i.host.as_str() == "h1");
    let p = plan(&d, &a);
    assert_eq!(p.steps.len(), 1, "{p}");
    assert_eq!(p.steps[0].id, "orders/n1/h1/upgrade-major");
    // The primary on 18: the standbys are made again, from it, on 18.
    let i = instance(&mut a, "orders", "n1", "h1");
    i.version = Some("18.6 (Debian 18.6-3)".into());
    i.data_major = Some(18);
    i.image_major = Some(18);
    let p = plan(&d, &a);
    let standbys: Vec<(&str, u16)> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::CreateStandby { version, .. } => Some((s.host.as_str(), version.major)),
            _ => None,
        })
        .collect();
    assert_eq!(standbys, [("h2", 18), ("h3", 18)], "{p}");
    assert!(!upgrades(&p), "{p}");
}

#[test]
fn an_interrupted_upgrade_is_resumed_from_the_data_directory() {
    let d = orders("18", "h1", IN_PLACE);
    let mut a = on_17("h1");
    // pg_upgrade finished and the data moved; the container is still the
    // 17 image's and stopped.
    let i = instance(&mut a, "orders", "n1", "h1");
    i.running = false;
    i.version = None;
    i.data_major = Some(18);
    i.image_major = Some(17);
    let p = plan(&d, &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["orders/n1/h1/upgrade-major"], "{p}");
    // Data of a newer major than the spec's is never touched.
    let d17 = orders("17", "h1", IN_PLACE);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.image_major = Some(18);
    let p = plan(&d17, &a);
    assert!(!upgrades(&p), "{p}");
}

#[test]
fn with_backup_config_a_backup_comes_first_and_a_failed_one_stops_the_upgrade() {
    let backup = "backup_config:\n  repositories:\n    - type: posix\n      base_path: /backups";
    let d = orders("18", "h1", &format!("{IN_PLACE}\n{backup}"));
    let mut a = super::converged(&orders("17", "h1", backup));
    let p = plan(&d, &a);
    assert!(!upgrades(&p), "{p}");
    let op = p
        .operations
        .iter()
        .find(|o| o.id == "upgrade-backup-orders-n1-18")
        .unwrap_or_else(|| panic!("the backup first: {p}"));
    assert_eq!(op.kind, "Backup");
    let record = |state| crate::state::operation::OperationRecord {
        id: "upgrade-backup-orders-n1-18".into(),
        kind: "Backup".into(),
        database: Some("orders".parse().unwrap()),
        state,
        reason: "pgbackrest backup exited with 56".into(),
        phases: Vec::new(),
        leaders: Vec::new(),
        created_at: "2026-12-01T00:00:00Z".into(),
        started_at: None,
        finished_at: None,
    };
    a.operations = vec![record(OperationState::Failed)];
    let p = plan(&d, &a);
    assert!(!upgrades(&p), "{p}");
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("stopped before anything changed")),
        "{p}"
    );
    a.operations = vec![record(OperationState::Succeeded)];
    let p = plan(&d, &a);
    assert!(upgrades(&p), "{p}");
}
