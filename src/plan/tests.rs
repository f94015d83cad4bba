//! Planner tests: (desired, actual) pairs built by `example`, their printed
//! plans compared with reviewed snapshots, and idempotence through
//! `example::simulate`.

use super::example::{self, desired, instance, orders_with, simulate, INVENTORY, ORDERS};
use super::{plan, Action, NoteKind, Plan};
use crate::state::actual::InstanceRole;
use crate::state::Actual;

/// Plans, checks the plan is well-formed and that carrying it out leaves
/// nothing to do, and returns it.
fn checked(d: &crate::spec::Desired, a: &Actual) -> Plan {
    let p = plan(d, a);
    let mut seen = std::collections::HashSet::new();
    for s in &p.steps {
        assert!(!s.reason.is_empty(), "{} has no reason", s.id);
        for dep in &s.depends_on {
            assert!(
                seen.contains(dep.as_str()),
                "{} depends on {dep}, not before it",
                s.id
            );
        }
        assert!(seen.insert(s.id.as_str()), "duplicate step id {}", s.id);
    }
    let after = simulate(&p, a);
    let again = plan(d, &after);
    assert!(again.is_empty(), "not idempotent; second plan:\n{again}");
    p
}

/// Like [`checked`] for a plan that takes several passes (a database made
/// on its first node by its scripts, which the other nodes then copy one
/// at a time): each pass is well-formed, and nothing is left after at most
/// `passes`. Returns every pass's plan.
fn checked_passes(d: &crate::spec::Desired, a: &Actual, passes: usize) -> Vec<Plan> {
    let mut plans = Vec::new();
    let mut a = a.clone();
    for _ in 0..passes {
        let p = plan(d, &a);
        if p.is_empty() {
            return plans;
        }
        let mut seen = std::collections::HashSet::new();
        for s in &p.steps {
            assert!(!s.reason.is_empty(), "{} has no reason", s.id);
            for dep in &s.depends_on {
                assert!(seen.contains(dep.as_str()), "{} depends on {dep}", s.id);
            }
            assert!(seen.insert(s.id.clone()), "duplicate step id {}", s.id);
        }
        a = simulate(&p, &a);
        plans.push(p);
    }
    let again = plan(d, &a);
    assert!(again.is_empty(), "not done after {passes} passes:\n{again}");
    plans
}

/// Healthy hosts with these ids and no instances.
fn empty(ids: &[&str]) -> Actual {
    let ids: Vec<crate::spec::names::HostId> = ids
        .iter()
        .map(|i| i.parse().expect("a test host id"))
        .collect();
    Actual::empty(&ids)
}

/// A healthy host with Docker and no instances.
fn add_host(a: &mut Actual, id: &str) {
    a.hosts.push(crate::state::actual::HostActual {
        id: id.parse().expect("a test host id"),
        healthy: true,
        docker: true,
        address: String::new(),
        started_at: None,
    });
}

/// Whether the plan has a node join the mesh.
fn joins(p: &Plan) -> bool {
    p.steps
        .iter()
        .any(|s| matches!(s.action, Action::JoinMesh { .. }))
}

/// ORDERS with a second node, n2 on h2.
fn orders_on_two_nodes() -> String {
    ORDERS.replace(
        "    host_ids: [h1]\n",
        "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
    )
}

fn orders() -> crate::spec::Desired {
    desired(&[("orders", ORDERS)])
}

#[test]
fn empty_cluster_creates_everything() {
    let d = orders();
    let p = checked(&d, &empty(&["h1"]));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn empty_cluster_plan_as_json() {
    let d = orders();
    let p = plan(&d, &empty(&["h1"]));
    insta::assert_json_snapshot!(p);
}

#[test]
fn converged_has_no_changes() {
    let d = orders();
    let p = checked(&d, &super::converged(&d));
    assert!(p.notes.is_empty());
    insta::assert_snapshot!(p.to_string(), @"No changes.");
}

#[test]
fn sample_repo_converged_has_no_steps_and_notes_standbys() {
    let d = example::sample_repo();
    let p = checked(&d, &super::converged(&d));
    assert!(p.steps.is_empty());
    assert!(p.notes.iter().all(|n| matches!(
        n.kind,
        NoteKind::Standby | NoteKind::Replication | NoteKind::Operation
    )));
    // The sample's Backup starts: one phase on inventory's primary.
    let started: Vec<_> = p
        .operations
        .iter()
        .filter(|o| o.state == crate::state::operation::OperationState::Running)
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(started, ["2026-11-25-inventory-backup"]);
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn sample_repo_on_empty_hosts() {
    let d = example::sample_repo();
    // orders has scripts.post_database_create: n1 creates it with them,
    // then n2 and n3 copy n1, one at a time.
    let plans = checked_passes(&d, &empty(&["h1", "h2", "h3"]), 5);
    let shown: Vec<String> = plans.iter().map(Plan::to_string).collect();
    assert_eq!(plans.len(), 4, "{}", shown.join("\n----\n"));
    let p = &plans[0];
    let scripted: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| {
            matches!(&s.action, Action::CreateDatabase { post_database_create, .. } if !post_database_create.is_empty())
        })
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(scripted, ["orders/n1/h1/database"]);
    for later in &plans[1..] {
        assert!(later.steps.iter().all(|s| !matches!(
            &s.action,
            Action::CreateDatabase { post_database_create, .. } if !post_database_create.is_empty()
        )));
    }
    assert!(plans[1].step("orders/n2/h2/join").is_some(), "{}", plans[1]);
    assert!(plans[2].step("orders/n3/h3/join").is_some(), "{}", plans[2]);
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn reload_setting_change_is_set_without_restart() {
    let d = orders_with("work_mem: 16MB", "work_mem: 64MB");
    let p = checked(&d, &super::converged(&orders()));
    assert!(p.steps.iter().all(|s| !s.disruptive));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn restart_setting_change_plans_one_restart() {
    let d = orders_with("shared_buffers: 1GB", "shared_buffers: 2GB");
    let p = checked(&d, &super::converged(&orders()));
    let restarts = p
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::RestartInstance { .. }))
        .count();
    assert_eq!(restarts, 1);
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn same_value_in_another_spelling_is_no_change() {
    let d = orders_with("shared_buffers: 1GB", "shared_buffers: 1024MB");
    let mut a = super::converged(&orders());
    instance(&mut a, "orders", "n1", "h1")
        .settings
        .insert("jit".into(), "off".into());
    assert!(checked(&d, &a).is_empty());
}

#[test]
fn new_preload_extension_adds_library_restarts_then_creates() {
    let d = orders_with("  - pgvector\n", "  - pgvector\n  - pg_cron\n");
    let p = checked(&d, &super::converged(&orders()));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn pending_restart_alone_plans_a_restart() {
    let d = orders();
    let mut a = super::converged(&d);
    instance(&mut a, "orders", "n1", "h1").pending_restart = vec!["wal_level".into()];
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn role_dropped_by_hand_is_recreated_with_its_grants() {
    let d = orders();
    let mut a = super::converged(&d);
    instance(&mut a, "orders", "n1", "h1")
        .roles
        .retain(|r| r.name != "app");
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn role_attributes_changed_by_hand_are_put_back() {
    let d = orders();
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    let app = i.roles.iter_mut().find(|r| r.name == "app").expect("app");
    app.attributes = vec!["INHERIT".into(), "LOGIN".into(), "SUPERUSER".into()];
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn container_stopped_by_hand_is_started() {
    let d = orders();
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.running = false;
    i.role = InstanceRole::Unknown;
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn container_removed_by_hand_is_recreated_on_its_data() {
    let d = orders();
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.container_exists = false;
    i.running = false;
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn setting_changed_by_hand_is_put_back() {
    let d = orders();
    let mut a = super::converged(&d);
    instance(&mut a, "orders", "n1", "h1")
        .settings
        .insert("work_mem".into(), "4MB".into());
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn users_and_extensions_not_in_the_spec_are_left_alone() {
    let d = orders();
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.roles.push(crate::state::actual::RoleActual {
        name: "dba_alice".into(),
        attributes: vec!["LOGIN".into(), "SUPERUSER".into()],
        member_of: vec![],
    });
    i.extensions.push(crate::state::actual::ExtActual {
        name: "hstore".into(),
        version: "1.8".into(),
    });
    i.settings
        .insert("log_min_duration_statement".into(), "1s".into());
    assert!(checked(&d, &a).is_empty());
}

#[test]
fn removed_database_file_is_only_noted_as_orphaned() {
    let both = desired(&[("orders", ORDERS), ("inventory", INVENTORY)]);
    let p = checked(&orders(), &super::converged(&both));
    assert!(p.steps.is_empty());
    assert_eq!(p.notes.len(), 1);
    assert_eq!(p.notes[0].kind, NoteKind::Orphaned);
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn state_absent_without_delete_data_removes_and_keeps_data() {
    let d = orders_with(
        "port: 6432",
        "port: 6432\nstate: absent\nconfirm_delete: orders",
    );
    let p = checked(&d, &super::converged(&orders()));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn state_absent_with_delete_data_deletes_it() {
    let d = orders_with(
        "port: 6432",
        "port: 6432\nstate: absent\nconfirm_delete: orders\ndelete_data: true",
    );
    let p = checked(&d, &super::converged(&orders()));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn state_stopped_stops_the_instance() {
    let d = orders_with("port: 6432", "port: 6432\nstate: stopped");
    let p = checked(&d, &super::converged(&orders()));
    assert!(p.steps.iter().all(|s| s.disruptive));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn two_databases_on_one_host() {
    let d = desired(&[("orders", ORDERS), ("inventory", INVENTORY)]);
    let p = checked(&d, &empty(&["h1"]));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn unhealthy_host_is_noted_not_planned() {
    let d = orders();
    let mut a = empty(&["h1"]);
    a.hosts[0].healthy = false;
    let p = plan(&d, &a);
    assert!(p.steps.is_empty());
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn the_reported_primary_is_planned_not_the_first_host() {
    let d = orders_with("    host_ids: [h1]\n", "    host_ids: [h1, h2]\n");
    let mut a = super::converged(&d);
    // No primary record yet (a cluster from before records): what runs decides.
    a.primaries.clear();
    instance(&mut a, "orders", "n1", "h1").role = InstanceRole::Standby;
    let h2 = instance(&mut a, "orders", "n1", "h2");
    h2.role = InstanceRole::Primary;
    h2.roles.retain(|r| r.name != "app");
    let p = checked(&d, &a);
    assert!(p.steps.iter().all(|s| s.host == "h2"));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn a_host_taken_out_of_a_node_loses_its_standby_and_slot() {
    let three = orders_with("    host_ids: [h1]\n", "    host_ids: [h1, h2, h3]\n");
    let a = super::converged(&three);
    assert_eq!(
        a.instances.iter().find(|i| i.host == "h1").unwrap().slots,
        ["pgcd_n1_h2", "pgcd_n1_h3"]
    );
    let two = orders_with("    host_ids: [h1]\n", "    host_ids: [h1, h2]\n");
    let p = checked(&two, &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders/n1/h3/remove-standby",
            "orders/n1/h1/drop-slot:pgcd_n1_h3"
        ]
    );
    assert_eq!(p.steps[1].depends_on, ["orders/n1/h3/remove-standby"]);
    assert!(matches!(
        p.steps[0].action,
        Action::RemoveInstance { keep_data: false }
    ));
    // A stopped instance on the removed host may be a former primary: kept.
    let mut stopped = a.clone();
    let h3 = instance(&mut stopped, "orders", "n1", "h3");
    h3.running = false;
    h3.role = InstanceRole::Unknown;
    let p = plan(&two, &stopped);
    assert!(!p.steps.iter().any(|s| s.host == "h3"), "{p}");
    assert!(p.notes.iter().any(|n| n.kind == NoteKind::Orphaned));
}

#[test]
fn synchronous_standbys_are_set_once_a_standby_runs() {
    let sync = orders_with(
        "    host_ids: [h1]\n",
        "    host_ids: [h1, h2, h3]\n    synchronous: true\n",
    );
    // A new cluster: no quorum setting yet (commits would wait for nobody).
    // (The setting comes on the pass after the standbys run: two passes.)
    let p = plan(&sync, &empty(&["h1", "h2", "h3"]));
    assert!(!p.to_string().contains("synchronous_standby_names"), "{p}");
    // Standbys running: the primary gets ANY 1 over both, by reload.
    let p = plan(&sync, &super::converged(&sync));
    let text = p.to_string();
    assert!(
        text.contains("synchronous_standby_names")
            && text.contains("ANY 1 (pgcd_n1_h2, pgcd_n1_h3)"),
        "{text}"
    );
    assert!(
        p.steps.iter().all(|s| s.host == "h1" && !s.disruptive),
        "{text}"
    );
}

#[test]
fn a_node_added_to_a_running_mesh_joins_by_copying_a_member() {
    let nodes = |n: usize| {
        let extra: String = (2..=n)
            .map(|k| format!("  - name: n{k}\n    host_ids: [h{k}]\n"))
            .collect();
        desired(&[(
            "orders",
            &ORDERS.replace(
                "    host_ids: [h1]\n",
                &format!("    host_ids: [h1]\n{extra}"),
            ),
        )])
    };
    let three = nodes(3);
    let mut a = super::converged(&three);
    assert!(plan(&three, &a).is_empty());
    // Before any table exists there is nothing to copy: a new node is
    // wired at once, like the first ones.
    let four = nodes(4);
    let mut empty = a.clone();
    add_host(&mut empty, "h4");
    let p0 = plan(&four, &empty);
    assert!(!joins(&p0), "{p0}");
    assert!(p0
        .steps
        .iter()
        .any(|s| s.node == "n1" && matches!(s.action, Action::CreateSubscription { .. })));
    for i in &mut a.instances {
        i.tables = 1;
    }
    let mut a4 = a.clone();
    add_host(&mut a4, "h4");
    // First pass: n4 is made and joins with one step; nothing subscribes
    // to it yet (it has no data of its own to send).
    let p1 = plan(&four, &a4);
    assert!(p1.steps.iter().all(|s| s.node == "n4"), "{p1}");
    let join = p1
        .steps
        .iter()
        .find(|s| matches!(s.action, Action::JoinMesh { .. }))
        .expect("a join step");
    let Action::JoinMesh {
        source,
        others,
        offset,
        ..
    } = &join.action
    else {
        unreachable!()
    };
    assert_eq!(source.node, "n1");
    assert_eq!(
        others.iter().map(|p| p.node.as_str()).collect::<Vec<_>>(),
        ["n2", "n3"]
    );
    assert_eq!(*offset, 4);
    assert!(
        !p1.steps.iter().any(|s| matches!(
            s.action,
            Action::CreateSubscription { .. } | Action::CreatePublication { .. }
        )),
        "{p1}"
    );
    // Second pass: its DDL capture, and every other node subscribes to it.
    let a5 = simulate(&p1, &a4);
    let p2 = plan(&four, &a5);
    let subs: Vec<&str> = p2
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::CreateSubscription { .. }))
        .map(|s| s.node.as_str())
        .collect();
    assert_eq!(subs, ["n1", "n2", "n3"], "{p2}");
    let a6 = simulate(&p2, &a5);
    assert!(plan(&four, &a6).is_empty());
    insta::assert_snapshot!(format!("{p1}\n---\n{p2}"));
}

#[test]
fn a_single_node_with_data_seeds_the_node_added_to_it() {
    let one = desired(&[("orders", ORDERS)]);
    let mut a = super::converged(&one);
    a.instances[0].tables = 3;
    let two = desired(&[("orders", &orders_on_two_nodes())]);
    add_host(&mut a, "h2");
    let p = plan(&two, &a);
    let on_n1: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.node == "n1")
        .map(|s| s.id.rsplit('/').next().unwrap_or(""))
        .collect();
    assert!(
        on_n1.contains(&"publication") && on_n1.contains(&"autoddl"),
        "{p}"
    );
    let join = p
        .steps
        .iter()
        .find(|s| matches!(s.action, Action::JoinMesh { .. }))
        .expect("n2 joins by copying n1");
    assert_eq!(join.node, "n2");
    assert!(join
        .depends_on
        .iter()
        .any(|d| d.ends_with("n1/h1/publication")));
    assert!(!p
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::CreateSubscription { .. })));
}

#[test]
fn a_node_with_tables_of_its_own_is_not_overwritten_by_a_join() {
    let two = desired(&[("orders", &orders_on_two_nodes())]);
    let mut a = super::converged(&two);
    let n2 = a.instances.iter_mut().find(|i| i.node == "n2").unwrap();
    n2.subscriptions.clear();
    n2.autoddl = false;
    n2.tables = 2;
    let p = plan(&two, &a);
    assert!(!joins(&p), "{p}");
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("n2: holds tables of its own")),
        "{p}"
    );
}

#[test]
fn a_disabled_subscription_is_enabled_and_ddl_failures_are_noted() {
    let two = desired(&[("orders", &orders_on_two_nodes())]);
    let mut a = super::converged(&two);
    let n2 = a.instances.iter_mut().find(|i| i.node == "n2").unwrap();
    n2.subscriptions[0].enabled = false;
    n2.subscriptions[0].running = false;
    n2.ddl_failures.push(crate::state::actual::DdlFailure {
        origin: "n1".into(),
        id: 7,
        statement: "CREATE INDEX CONCURRENTLY i ON t (a)".into(),
        error: "CREATE INDEX CONCURRENTLY cannot run inside a transaction block".into(),
    });
    let p = plan(&two, &a);
    assert!(
        matches!(
            &p.steps[..],
            [s] if matches!(&s.action, Action::EnableSubscription { name } if name == "pgcd_sub_n1_to_n2")
        ),
        "{p}"
    );
    assert!(
        p.notes.iter().any(|n| n.message.contains("n1#7")
            && n.message.contains("cannot run inside a transaction block")),
        "{p}"
    );
}

#[test]
fn drift_is_told_from_a_spec_change() {
    let d = orders();
    let mut by_hand = super::converged(&d);
    instance(&mut by_hand, "orders", "n1", "h1")
        .settings
        .insert("work_mem".into(), "4MB".into());
    let p = plan(&d, &by_hand);
    assert!(!p.is_empty() && p.steps.iter().all(|s| s.drift));
    let edited = orders_with("work_mem: 16MB", "work_mem: 64MB");
    let p = plan(&edited, &super::converged(&d));
    assert!(!p.is_empty() && p.steps.iter().all(|s| !s.drift));
    let unknown = Actual {
        databases: Vec::new(),
        ..by_hand
    };
    assert!(plan(&d, &unknown).steps.iter().all(|s| !s.drift));
}

#[test]
fn plan_is_deterministic() {
    let d = example::sample_repo();
    let a = empty(&["h1", "h2", "h3"]);
    assert_eq!(plan(&d, &a), plan(&d, &a));
    let mut shuffled = a.clone();
    shuffled.hosts.reverse();
    assert_eq!(plan(&d, &a).to_string(), plan(&d, &shuffled).to_string());
}

#[test]
fn plan_json_reads_back_the_same() {
    let d = example::sample_repo();
    let p = plan(&d, &empty(&["h1", "h2", "h3"]));
    let json = serde_json::to_string(&p).expect("serialises");
    let back: Plan = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, p);
    let a = super::converged(&d);
    let json = serde_json::to_string(&a).expect("serialises");
    assert_eq!(
        serde_json::from_str::<Actual>(&json).expect("deserialises"),
        a
    );
}

#[test]
fn stopped_database_on_empty_cluster_is_created_not_started() {
    let d = orders_with("port: 6432", "port: 6432\nstate: stopped");
    insta::assert_snapshot!(checked(&d, &empty(&["h1"])).to_string());
}

#[test]
fn instance_of_a_removed_node_is_only_noted() {
    let two_nodes = orders_with(
        "    host_ids: [h1]\n",
        "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
    );
    let p = checked(&orders(), &super::converged(&two_nodes));
    assert!(p.steps.is_empty());
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn extension_missing_from_the_image_is_noted_not_created() {
    // pg_stat_monitor is preloaded: its library must not be added either.
    let d = orders_with("  - pgvector\n", "  - pgvector\n  - pg_stat_monitor\n");
    let p = checked(&d, &super::converged(&orders()));
    assert!(p.steps.is_empty());
    assert_eq!(p.notes[0].kind, NoteKind::Unavailable);
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn other_version_running_is_noted_not_upgraded() {
    let d = orders();
    let mut a = super::converged(&d);
    instance(&mut a, "orders", "n1", "h1").version = Some("16.10".into());
    let p = checked(&d, &a);
    assert!(p.steps.is_empty());
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn owner_and_extension_version_changed_by_hand_are_put_back() {
    let d = orders_with(
        "  - pgvector\n",
        "  - {name: pgvector, version: \"0.8.0\"}\n",
    );
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.owner = Some("postgres".into());
    i.extensions
        .iter_mut()
        .filter(|e| e.name == "vector")
        .for_each(|e| e.version = "0.7.4".into());
    insta::assert_snapshot!(checked(&d, &a).to_string());
}

#[test]
fn port_change_is_a_restart() {
    let d = orders_with("port: 6432", "port: 6433");
    insta::assert_snapshot!(checked(&d, &super::converged(&orders())).to_string());
}

#[test]
fn preloaded_extension_waits_for_the_restart() {
    let d = orders_with("  - pgvector\n", "  - pgvector\n  - pgaudit\n");
    let p = checked(&d, &super::converged(&orders()));
    let create = p.step("orders/n1/h1/extension/pgaudit").expect("planned");
    assert_eq!(create.depends_on, ["orders/n1/h1/restart"]);
    let restart = p.step("orders/n1/h1/restart").expect("planned");
    assert!(restart.disruptive);
    assert_eq!(restart.depends_on, ["orders/n1/h1/settings"]);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// A change made by hand to one of the sample repository's primaries.
    fn mutate(a: &mut Actual, which: usize, kind: u8) {
        let primaries: Vec<usize> = (0..a.instances.len())
            .filter(|k| a.instances[*k].role == InstanceRole::Primary)
            .collect();
        let i = &mut a.instances[primaries[which % primaries.len()]];
        match kind {
            0 => i.running = false,
            1 => {
                i.container_exists = false;
                i.running = false;
            }
            2 => i.roles.retain(|r| r.name == "postgres"),
            3 => i.extensions.clear(),
            4 => {
                i.settings.insert("max_connections".into(), "100".into());
            }
            5 => {
                i.settings.remove("shared_preload_libraries");
            }
            6 => i.pending_restart.push("wal_level".into()),
            7 => i.roles.iter_mut().for_each(|r| r.member_of.clear()),
            8 => i.owner = Some("postgres".into()),
            _ => {
                i.database_exists = false;
                i.owner = None;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn carrying_out_a_plan_leaves_nothing_to_do(
            changes in proptest::collection::vec((0usize..8, 0u8..10), 0..6)
        ) {
            let d = example::sample_repo();
            let mut a = crate::plan::converged(&d);
            for (which, kind) in changes {
                mutate(&mut a, which, kind);
            }
            // `checked` plans, carries out, and plans again; a container
            // recreated on old data needs a second round (it reports first).
            let p = plan(&d, &a);
            let after = simulate(&p, &a);
            let p2 = checked(&d, &after);
            let recreated = p2
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::CreateInstance { .. }));
            prop_assert!(!recreated, "second round recreated an instance:\n{}", p2);
        }
    }
}

#[test]
fn spock_nodes_are_wired_through_the_spock_driver_when_declared() {
    let spec = |ext: &str| {
        ORDERS
            .replace(
                "    host_ids: [h1]\n",
                "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
            )
            .replace("port: 6432\n", "port: 6432\nreplication: spock\n")
            .replace("  - pgvector\n", ext)
    };
    // Without the extension declared: noted, nothing wired, no preload.
    let bare = desired(&[("orders", &spec("  - pgvector\n"))]);
    let p = plan(&bare, &empty(&["h1", "h2"]));
    assert!(p
        .notes
        .iter()
        .any(|n| n.message.contains("does not declare the spock extension")));
    assert!(!p.to_string().contains("subscribe"), "{p}");
    // Declared: the same mesh steps as native, carried out by the Spock
    // driver; Spock's settings; nothing of pgcd's own DDL log.
    let d = desired(&[("orders", &spec("  - pgvector\n  - spock\n"))]);
    let mut a = super::converged(&d);
    for i in &mut a.instances {
        i.publications.clear();
        i.subscriptions.clear();
        i.autoddl = false;
    }
    let p = checked(&d, &a);
    assert!(p
        .steps
        .iter()
        .any(|s| matches!(s.action, Action::CreateSubscription { .. })));
    let created = super::converged(&d);
    let n1 = &created.instances[0];
    assert_eq!(
        n1.settings
            .get("track_commit_timestamp")
            .map(String::as_str),
        Some("on")
    );
    assert!(n1.settings["shared_preload_libraries"].starts_with("spock"));
    insta::assert_snapshot!(p.to_string());
    // A node added to Spock nodes that replicate is only noted.
    let three = desired(&[(
        "orders",
        &spec("  - pgvector\n  - spock\n").replace(
            "    host_ids: [h2]\n",
            "    host_ids: [h2]\n  - name: n3\n    host_ids: [h3]\n",
        ),
    )]);
    let mut a3 = super::converged(&d);
    a3.instances[0].tables = 1;
    add_host(&mut a3, "h3");
    let p = plan(&three, &a3);
    assert!(!joins(&p), "{p}");
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("n3: joining Spock nodes")),
        "{p}"
    );
}

#[test]
fn a_second_primary_against_the_record_rejoins_as_a_standby() {
    let d = orders_with("    host_ids: [h1]\n", "    host_ids: [h1, h2]\n");
    let mut a = super::converged(&d);
    // The record says h1; h2 runs as a primary too (the far side of a
    // partition, before its fence stopped it).
    let h2 = instance(&mut a, "orders", "n1", "h2");
    h2.role = InstanceRole::Primary;
    h2.standby_signal = false;
    let p = checked(&d, &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["orders/n1/h2/rejoin"], "{p}");
    assert!(matches!(
        &p.steps[0].action,
        Action::RejoinAsStandby { primary, .. } if primary == "h1"
    ));
}

/// ORDERS with n1 on h1, h2, h3 (`extra` node fields), converged, with
/// h1's host lost and each instance's last known WAL position.
fn lost_primary(extra: &str, lsns: [i64; 3]) -> (crate::spec::Desired, Actual) {
    let d = orders_with(
        "    host_ids: [h1]\n",
        &format!("    host_ids: [h1, h2, h3]\n{extra}"),
    );
    let mut a = super::converged(&d);
    for (host, lsn) in ["h1", "h2", "h3"].into_iter().zip(lsns) {
        instance(&mut a, "orders", "n1", host).wal = Some(crate::state::actual::WalActual {
            lsn: Some(lsn),
            replay: Some(lsn),
            timeline: 1,
            receiving: false,
            upstream: None,
        });
    }
    a.hosts
        .iter_mut()
        .find(|h| h.id == "h1")
        .expect("h1")
        .healthy = false;
    (d, a)
}

fn failover_notes(p: &Plan) -> Vec<&str> {
    p.notes
        .iter()
        .filter(|n| n.kind == NoteKind::Failover)
        .map(|n| n.message.as_str())
        .collect()
}

#[test]
fn a_lost_primary_fails_over_to_the_standby_with_the_most_wal() {
    let (d, a) = lost_primary("", [3000, 1000, 3000]);
    let p = plan(&d, &a);
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders/n1/h3/failover-record:t2",
            "orders/n1/h3/failover-promote:t2"
        ],
        "{p}"
    );
    assert!(matches!(
        &p.steps[0].action,
        Action::RecordPrimary { host, term: 2, why } if host == "h3" && why.contains("h1 is lost")
    ));
    assert_eq!(p.steps[1].depends_on, [p.steps[0].id.clone()]);
}

#[test]
fn a_standby_lagging_past_maximum_lag_is_not_promoted_and_the_note_says_why() {
    let (d, a) = lost_primary("", [5 << 20, 0, 1 << 20]);
    let p = plan(&d, &a);
    assert!(p.steps.is_empty(), "{p}");
    let notes = failover_notes(&p);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("more than failover.maximum_lag") && n.contains("h3")),
        "{notes:?}"
    );
    // Within maximum_lag it is promoted, and the promotion checks it has
    // at least that much.
    let (d, a) = lost_primary("", [(1 << 20) + 10, 0, 20]);
    let p = plan(&d, &a);
    assert!(
        p.steps.iter().any(
            |s| matches!(&s.action, Action::PromoteStandby { min_lsn: Some(_) }) && s.host == "h3"
        ),
        "{p}"
    );
}

#[test]
fn a_synchronous_node_waits_for_every_standby_before_promoting() {
    let (d, mut a) = lost_primary("    synchronous: true\n", [3000, 3000, 2000]);
    instance(&mut a, "orders", "n1", "h2").running = false;
    let p = plan(&d, &a);
    assert!(p.steps.is_empty(), "{p}");
    let notes = failover_notes(&p);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("is synchronous and the standby on h2 does not answer")),
        "{notes:?}"
    );
    // Both answer: the most advanced is promoted (it has every write a
    // client was told of: quorum commit needs one standby's flush).
    let (d, a) = lost_primary("    synchronous: true\n", [3000, 2000, 3000]);
    let p = plan(&d, &a);
    assert!(
        p.steps
            .iter()
            .any(|s| s.host == "h3" && matches!(s.action, Action::PromoteStandby { .. })),
        "{p}"
    );
}

#[test]
fn with_automatic_failover_off_a_lost_primary_is_only_noted() {
    let (d, a) = lost_primary("", [3000, 1000, 3000]);
    assert!(!plan(&d, &a).steps.is_empty());
    let text = ORDERS.replace("    host_ids: [h1]\n", "    host_ids: [h1, h2, h3]\n");
    let manual = desired(&[("orders", &format!("{text}failover:\n  automatic: false\n"))]);
    let p = plan(&manual, &a);
    assert!(p.steps.is_empty(), "{p}");
    assert!(
        failover_notes(&p)
            .iter()
            .any(|n| n.contains("automatic failover is off")),
        "{p}"
    );
}
