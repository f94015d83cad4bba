//! Minor upgrades in place (`super::upgrade`): one instance at a time,
//! standbys first, then the primary behind a switchover; downgrades refused.

use super::example::{instance, orders_with};
use super::{plan, Action, NoteKind};
use crate::spec::Desired;
use crate::state::actual::{ExtActual, ReplicaActual};
use crate::state::operation::{OperationRecord, OperationState};
use crate::state::Actual;

/// `orders` on three hosts at `version`.
fn three(version: &str) -> Desired {
    let text = super::example::ORDERS
        .replace("    host_ids: [h1]\n", "    host_ids: [h1, h2, h3]\n")
        .replace(
            "postgres_version: \"17\"",
            &format!("postgres_version: \"{version}\""),
        );
    super::example::desired(&[("orders", &text)])
}

/// Converged on `from`, with the standbys streaming from h1.
fn running(d: &Desired) -> Actual {
    let mut a = super::converged(d);
    stream(&mut a, &["h2", "h3"]);
    a
}

fn stream(a: &mut Actual, hosts: &[&str]) {
    instance(a, "orders", "n1", "h1").replicas = hosts
        .iter()
        .map(|h| ReplicaActual {
            name: crate::state::names::standby_name("n1", h),
            state: "streaming".into(),
            lag_bytes: Some(0),
            lag_seconds: None,
            sync_state: None,
            flush_lsn: None,
        })
        .collect();
}

fn set_version(a: &mut Actual, host: &str, v: &str) {
    instance(a, "orders", "n1", host).version = Some(format!("{v} (Debian {v}-1)"));
}

#[test]
fn a_minor_upgrade_recreates_one_standby_first_on_its_data() {
    let a = running(&three("17.10"));
    let p = plan(&three("17.12"), &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders/n1/h2/upgrade-remove",
            "orders/n1/h2/create-standby",
            "orders/n1/h2/start"
        ],
        "{p}"
    );
    assert!(matches!(
        p.steps[0].action,
        Action::RemoveInstance { keep_data: true }
    ));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn the_next_standby_waits_until_the_upgraded_one_streams_again() {
    let d = three("17.12");
    let mut a = running(&three("17.10"));
    set_version(&mut a, "h2", "17.12");
    stream(&mut a, &["h3"]);
    let p = plan(&d, &a);
    assert!(p.steps.iter().all(|s| !s.id.contains("upgrade")), "{p}");
    assert!(
        p.notes.iter().any(|n| n.kind == NoteKind::Upgrade
            && n.message
                .contains("waits until the upgraded standby on h2 streams again")),
        "{p}"
    );
    stream(&mut a, &["h2", "h3"]);
    let p = plan(&d, &a);
    assert_eq!(p.steps[0].id, "orders/n1/h3/upgrade-remove", "{p}");
}

#[test]
fn once_the_standbys_run_the_new_minor_the_primary_hands_over_by_switchover() {
    let d = three("17.12");
    let mut a = running(&three("17.10"));
    set_version(&mut a, "h2", "17.12");
    set_version(&mut a, "h3", "17.12");
    let p = plan(&d, &a);
    assert!(p.steps.iter().all(|s| s.operation.is_some()), "{p}");
    let op = p
        .operations
        .iter()
        .find(|o| o.id == "upgrade-orders-n1-17.12")
        .expect("the upgrade's switchover");
    assert_eq!(op.kind, "Switchover");
    assert_eq!(op.state, OperationState::Running, "{p}");
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn the_old_primary_is_upgraded_once_it_runs_as_a_standby() {
    let d = three("17.12");
    let mut a = running(&three("17.10"));
    // After the switchover: h2 is the primary (17.12), h1 a standby on 17.10.
    for (h, role) in [
        ("h1", crate::state::actual::InstanceRole::Standby),
        ("h2", crate::state::actual::InstanceRole::Primary),
    ] {
        let i = instance(&mut a, "orders", "n1", h);
        i.role = role;
        i.standby_signal = h == "h1";
        i.replicas = Vec::new();
    }
    set_version(&mut a, "h2", "17.12");
    set_version(&mut a, "h3", "17.12");
    for r in a.primaries.iter_mut() {
        r.host = "h2".parse().unwrap();
        r.term = 2;
    }
    let addr = a.host("h2").unwrap().address.clone();
    for h in ["h1", "h3"] {
        instance(&mut a, "orders", "n1", h)
            .wal
            .get_or_insert_with(Default::default)
            .upstream = Some(addr.clone());
    }
    instance(&mut a, "orders", "n1", "h2").replicas = ["h1", "h3"]
        .iter()
        .map(|h| ReplicaActual {
            name: crate::state::names::standby_name("n1", h),
            state: "streaming".into(),
            lag_bytes: Some(0),
            lag_seconds: None,
            sync_state: None,
            flush_lsn: None,
        })
        .collect();
    let p = plan(&d, &a);
    assert_eq!(p.steps[0].id, "orders/n1/h1/upgrade-remove", "{p}");
    assert!(
        matches!(&p.steps[1].action, Action::CreateStandby { primary, .. } if primary.as_str() == "h2"),
        "{p}"
    );
    assert!(p.operations.is_empty(), "{p}");
}

#[test]
fn a_node_without_standbys_restarts_on_the_new_minor_and_says_clients_are_disconnected() {
    let from = orders_with("postgres_version: \"17\"", "postgres_version: \"17.10\"");
    let to = orders_with("postgres_version: \"17\"", "postgres_version: \"17.12\"");
    let a = super::converged(&from);
    let p = plan(&to, &a);
    assert!(
        matches!(
            &p.steps[1].action,
            Action::CreateInstance { reuse_data: true, version, .. } if version.to_string() == "17.12"
        ),
        "{p}"
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("clients are disconnected")),
        "{p}"
    );
    insta::assert_snapshot!(p.to_string());
    // Carried out, nothing is left.
    let after = super::example::simulate(&p, &a);
    assert!(plan(&to, &after).steps.is_empty(), "{}", plan(&to, &after));
}

#[test]
fn a_minor_downgrade_is_refused_and_changes_nothing() {
    let a = running(&three("17.12"));
    let p = plan(&three("17.10"), &a);
    assert!(p.steps.is_empty(), "{p}");
    insta::assert_snapshot!(p.to_string());
    assert!(p.notes.iter().any(|n| n.kind == NoteKind::Refused));
}

#[test]
fn a_failed_upgrade_switchover_stops_the_rollout_on_mixed_versions() {
    let d = three("17.12");
    let mut a = running(&three("17.10"));
    set_version(&mut a, "h2", "17.12");
    set_version(&mut a, "h3", "17.12");
    a.operations.push(OperationRecord {
        id: "upgrade-orders-n1-17.12".into(),
        kind: "Switchover".into(),
        database: Some("orders".parse().unwrap()),
        state: OperationState::Failed,
        reason: "phase 1 (stop-h1) failed: the candidate did not catch up".into(),
        phases: Vec::new(),
        leaders: Vec::new(),
        created_at: "2026-12-01T00:00:00Z".into(),
        started_at: None,
        finished_at: None,
    });
    let p = plan(&d, &a);
    assert!(p.steps.is_empty(), "{p}");
    assert!(p.operations.is_empty(), "{p}");
    let note = p
        .notes
        .iter()
        .find(|n| n.kind == NoteKind::Upgrade)
        .expect("a note");
    assert!(
        note.message.contains("stopped")
            && note
                .message
                .contains("h1 17.10 (primary), h2 17.12, h3 17.12"),
        "{}",
        note.message
    );
}

#[test]
fn an_extension_in_use_is_updated_when_the_image_carries_a_newer_version() {
    let d = orders_with("postgres_version: \"17\"", "postgres_version: \"17.12\"");
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    let installed: Vec<ExtActual> = i.extensions.clone();
    let vector = installed
        .iter()
        .find(|e| e.name == "vector")
        .expect("vector");
    i.available_versions.insert("vector".into(), "0.8.1".into());
    i.available_versions.insert(
        "plpgsql".into(),
        installed
            .iter()
            .find(|e| e.name == "plpgsql")
            .map_or("1.0".into(), |e| e.version.clone()),
    );
    let from = vector.version.clone();
    let p = plan(&d, &a);
    let s = p
        .step("orders/n1/h1/extension/vector/update")
        .expect("update step");
    assert!(
        matches!(&s.action, Action::UpdateExtension { from: f, to, .. } if *f == from && to == "0.8.1"),
        "{p}"
    );
}

#[test]
fn an_active_active_database_upgrades_one_node_at_a_time_while_its_links_stream() {
    let text = |v: &str| {
        super::example::ORDERS
            .replace(
                "    host_ids: [h1]\n",
                "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
            )
            .replace(
                "postgres_version: \"17\"",
                &format!("postgres_version: \"{v}\""),
            )
    };
    let from = super::example::desired(&[("orders", &text("17.10"))]);
    let to = super::example::desired(&[("orders", &text("17.12"))]);
    let mut a = super::converged(&from);
    let p = plan(&to, &a);
    let hosts: Vec<&str> = p.steps.iter().map(|s| s.host.as_str()).collect();
    assert!(
        hosts.iter().all(|h| *h == "h1") && !hosts.is_empty(),
        "n1 first:\n{p}"
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("the upgrade of node n1 comes first")),
        "{p}"
    );
    // n1 upgraded; a link does not stream: n2 waits for it.
    instance(&mut a, "orders", "n1", "h1").version = Some("17.12".into());
    for s in instance(&mut a, "orders", "n1", "h1")
        .subscriptions
        .iter_mut()
    {
        s.running = false;
    }
    let p = plan(&to, &a);
    assert!(
        p.steps
            .iter()
            .all(|s| s.host.as_str() != "h2" || !s.id.contains("upgrade")),
        "{p}"
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("does not stream")),
        "{p}"
    );
}
