//! Planner tests of `scripts` (run once, at creation, on the right
//! instances) and of `state: absent` users and extensions.

use super::example::{desired, instance, simulate, ORDERS};
use super::{plan, Action, NoteKind, Plan};
use crate::state::actual::{ExtActual, RoleActual};
use crate::state::Actual;

const SCRIPTS: &str = "scripts:\n  post_init:\n    - CREATE TABLE init_marker (n int)\n  post_database_create:\n    - CREATE TABLE seed (id int)\n    - INSERT INTO seed VALUES (1)\n";

fn with_scripts(yaml: &str) -> crate::spec::Desired {
    desired(&[("orders", &format!("{yaml}{SCRIPTS}"))])
}

fn two_nodes() -> String {
    ORDERS.replace(
        "    host_ids: [h1]\n",
        "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
    )
}

fn empty(ids: &[&str]) -> Actual {
    let ids: Vec<crate::spec::names::HostId> = ids
        .iter()
        .map(|i| i.parse().expect("a test host id"))
        .collect();
    Actual::empty(&ids)
}

fn ids_of(p: &Plan, f: impl Fn(&Action) -> bool) -> Vec<&str> {
    p.steps
        .iter()
        .filter(|s| f(&s.action))
        .map(|s| s.id.as_str())
        .collect()
}

fn post_init(a: &Action) -> bool {
    matches!(a, Action::RunPostInit { .. })
}

fn scripted_database(a: &Action) -> bool {
    matches!(a, Action::CreateDatabase { post_database_create, .. } if !post_database_create.is_empty())
}

/// Plans until nothing is left (at most `passes`); returns every plan.
fn passes(d: &crate::spec::Desired, a: &Actual, passes: usize) -> (Vec<Plan>, Actual) {
    let mut a = a.clone();
    let mut out = Vec::new();
    for _ in 0..passes {
        let p = plan(d, &a);
        if p.is_empty() {
            return (out, a);
        }
        a = simulate(&p, &a);
        out.push(p);
    }
    panic!("not done after {passes} passes:\n{}", plan(d, &a));
}

#[test]
fn scripts_run_at_creation_post_init_before_roles_and_database_create_with_the_database() {
    let d = with_scripts(ORDERS);
    let p = plan(&d, &empty(&["h1"]));
    assert_eq!(ids_of(&p, post_init), ["orders/n1/h1/post-init"]);
    assert_eq!(ids_of(&p, scripted_database), ["orders/n1/h1/database"]);
    let pi = p.step("orders/n1/h1/post-init").unwrap();
    assert_eq!(pi.depends_on, ["orders/n1/h1/start"]);
    let role = p.step("orders/n1/h1/role/orders_owner").unwrap();
    assert_eq!(role.depends_on, ["orders/n1/h1/post-init"]);
    let Action::CreateDatabase {
        post_database_create,
        ..
    } = &p.step("orders/n1/h1/database").unwrap().action
    else {
        panic!("a database step")
    };
    assert_eq!(
        post_database_create,
        &["CREATE TABLE seed (id int)", "INSERT INTO seed VALUES (1)"]
    );
    let text = p.to_string();
    assert!(
        text.contains(
            "run scripts.post_init in postgres on orders/n1 (1 statement, one transaction, once)"
        ),
        "{text}"
    );
    assert!(
        text.contains("run scripts.post_database_create in orders on orders/n1 (2 statements"),
        "{text}"
    );
    // Carried out, nothing runs again.
    let after = simulate(&p, &empty(&["h1"]));
    assert!(plan(&d, &after).is_empty(), "{}", plan(&d, &after));
}

#[test]
fn a_failed_post_init_is_planned_again_and_a_recorded_one_is_not() {
    let d = with_scripts(ORDERS);
    let p = plan(&d, &empty(&["h1"]));
    // The instance was made and started; post_init failed, so nothing after it ran.
    let mut a = simulate(
        &Plan {
            steps: p
                .steps
                .iter()
                .filter(|s| s.id.ends_with("create-instance") || s.id.ends_with("/start"))
                .cloned()
                .collect(),
            ..Plan::default()
        },
        &empty(&["h1"]),
    );
    let again = plan(&d, &a);
    assert_eq!(ids_of(&again, post_init), ["orders/n1/h1/post-init"]);
    assert!(again
        .step("orders/n1/h1/post-init")
        .unwrap()
        .reason
        .contains("has not run on this instance"));
    // Its record found (it ran; the step's report was lost): not planned.
    instance(&mut a, "orders", "n1", "h1").post_init_ran = true;
    let p = plan(&d, &a);
    assert!(ids_of(&p, post_init).is_empty(), "{p}");
    assert_eq!(ids_of(&p, scripted_database), ["orders/n1/h1/database"]);
}

#[test]
fn scripts_added_or_changed_after_creation_run_nothing_and_say_so() {
    let a = super::converged(&desired(&[("orders", ORDERS)]));
    let d = with_scripts(ORDERS);
    let p = plan(&d, &a);
    assert!(p.is_empty(), "{p}");
    let note = p
        .notes
        .iter()
        .find(|n| n.kind == NoteKind::Scripts)
        .expect("a scripts note");
    assert!(
        note.message.contains("a change to them does nothing"),
        "{}",
        note.message
    );
    // The only copy of the database dropped by hand: it is created anew,
    // with post_database_create (a new, empty database), but post_init ran
    // on this instance already.
    let mut a = super::converged(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.database_exists = false;
    i.post_init_ran = true;
    let p = plan(&d, &a);
    assert_eq!(ids_of(&p, scripted_database), ["orders/n1/h1/database"]);
    assert!(ids_of(&p, post_init).is_empty(), "{p}");
}

#[test]
fn several_new_nodes_copy_the_first_which_alone_runs_the_scripts() {
    let d = with_scripts(&two_nodes());
    let (plans, after) = passes(&d, &empty(&["h1", "h2"]), 5);
    let first = &plans[0];
    assert_eq!(ids_of(first, scripted_database), ["orders/n1/h1/database"]);
    // post_init runs on each new primary: its `postgres` is its own.
    assert_eq!(
        ids_of(first, post_init),
        ["orders/n1/h1/post-init", "orders/n2/h2/post-init"]
    );
    assert!(first.step("orders/n2/h2/database").is_none(), "{first}");
    assert!(first
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::Scripts && n.message.contains("orders/n2 on h2")));
    for p in &plans[1..] {
        assert!(ids_of(p, scripted_database).is_empty(), "{p}");
        assert!(ids_of(p, post_init).is_empty(), "{p}");
    }
    assert!(plans[1].step("orders/n2/h2/join").is_some(), "{}", plans[1]);
    assert!(after.instances.iter().all(|i| i.database_exists));
}

#[test]
fn a_node_or_standby_added_later_does_not_run_post_database_create() {
    let d = with_scripts(&two_nodes());
    let (_, mut a) = passes(&d, &empty(&["h1", "h2"]), 5);
    for i in &mut a.instances {
        i.tables = 1; // what the scripts made
    }
    let three = with_scripts(&two_nodes().replace(
        "  - name: n2\n    host_ids: [h2]\n",
        "  - name: n2\n    host_ids: [h2, h4]\n  - name: n3\n    host_ids: [h3]\n",
    ));
    let mut hosts = empty(&["h3", "h4"]).hosts;
    a.hosts.append(&mut hosts);
    let p = plan(&three, &a);
    assert!(ids_of(&p, scripted_database).is_empty(), "{p}");
    // The new node's primary is a new instance: its own post_init, no
    // more; the standby copies its primary.
    assert_eq!(ids_of(&p, post_init), ["orders/n3/h3/post-init"]);
    assert!(p.step("orders/n3/h3/database").is_some(), "{p}");
    assert!(p.step("orders/n3/h3/join").is_some(), "{p}");
    assert!(p
        .steps
        .iter()
        .all(|s| s.host != "h4" || !post_init(&s.action)));
}

#[test]
fn an_absent_user_is_dropped_its_objects_going_to_the_owner() {
    let spec = ORDERS.replace(
        "    roles: [pg_read_all_data]\n",
        "    roles: [pg_read_all_data]\n  - username: legacy\n    state: absent\n",
    );
    let d = desired(&[("orders", &spec)]);
    let mut a = super::converged(&d);
    // Absent: not made on a converged instance.
    assert!(a.instances[0].roles.iter().all(|r| r.name != "legacy"));
    assert!(plan(&d, &a).is_empty());
    instance(&mut a, "orders", "n1", "h1")
        .roles
        .push(RoleActual {
            name: "legacy".into(),
            attributes: vec!["LOGIN".into()],
            member_of: vec![],
        });
    let p = plan(&d, &a);
    assert_eq!(p.steps.len(), 1, "{p}");
    assert_eq!(p.steps[0].id, "orders/n1/h1/drop-role/legacy");
    assert_eq!(
        p.steps[0].action,
        Action::DropRole {
            name: "legacy".into(),
            reassign_to: "orders_owner".into()
        }
    );
    assert!(
        p.to_string().contains(
            "- drop role legacy on orders/n1 (its objects reassigned to orders_owner first)"
        ),
        "{p}"
    );
    assert!(plan(&d, &simulate(&p, &a)).is_empty());
    // Removed from the spec instead: left alone.
    let d = desired(&[("orders", ORDERS)]);
    assert!(plan(&d, &a).is_empty());
    // No owner in the spec: postgres receives its objects.
    let spec = spec.replace("    db_owner: true\n", "");
    let p = plan(&desired(&[("orders", &spec)]), &a);
    assert!(
        p.steps.iter().any(|s| s.action
            == Action::DropRole {
                name: "legacy".into(),
                reassign_to: "postgres".into()
            }),
        "{p}"
    );
}

#[test]
fn an_absent_extension_is_dropped_without_cascade_unless_asked() {
    let absent = |extra: &str| {
        desired(&[(
            "orders",
            &ORDERS.replace(
                "  - pgvector\n",
                &format!("  - pgvector\n  - name: pg_cron\n    state: absent\n{extra}"),
            ),
        )])
    };
    let d = absent("");
    let mut a = super::converged(&d);
    assert!(a.instances[0]
        .extensions
        .iter()
        .all(|e| e.name != "pg_cron"));
    // Absent: not preloaded either.
    assert!(!a.instances[0]
        .settings
        .get("shared_preload_libraries")
        .is_some_and(|l| l.contains("pg_cron")));
    assert!(plan(&d, &a).is_empty());
    instance(&mut a, "orders", "n1", "h1")
        .extensions
        .push(ExtActual {
            name: "pg_cron".into(),
            version: "1.6".into(),
        });
    let p = plan(&d, &a);
    assert_eq!(
        ids_of(&p, |_| true),
        ["orders/n1/h1/drop-extension/pg_cron"]
    );
    assert_eq!(
        p.steps[0].action,
        Action::DropExtension {
            name: "pg_cron".into(),
            cascade: false
        }
    );
    assert!(plan(&d, &simulate(&p, &a)).is_empty());
    let p = plan(&absent("    cascade: true\n"), &a);
    assert_eq!(
        p.steps[0].action,
        Action::DropExtension {
            name: "pg_cron".into(),
            cascade: true
        }
    );
    assert!(
        p.to_string()
            .contains("drop extension pg_cron on orders/n1 CASCADE"),
        "{p}"
    );
    // Removed from the spec instead: left installed.
    assert!(plan(&desired(&[("orders", ORDERS)]), &a).is_empty());
}
