//! The authentication files in plans: rendered in pgcd's order, written
//! and reloaded (never restarted) when the spec's lines or the node's hosts
//! change, and put back when edited by hand.

use super::super::example::{converged_of, desired, instance, simulate, ORDERS};
use super::super::{plan, Action, Plan, Step};
use super::{hba_lines, ident_lines};
use crate::state::Actual;

/// ORDERS on h1 (primary) and h2 (standby), with the spec's lines.
fn spec(hba: &str, ident: &str, node_hba: &str) -> crate::spec::Desired {
    let mut text = ORDERS.replace(
        "    host_ids: [h1]\n",
        &format!("    host_ids: [h1, h2]\n{node_hba}"),
    );
    text.push_str(hba);
    text.push_str(ident);
    desired(&[("orders", &text)])
}

const HBA: &str = "pg_hba_conf:\n  - host orders app 127.0.0.1/32 scram-sha-256\n";
const IDENT: &str = "pg_ident_conf:\n  - ops alice app\n";
const NODE_HBA: &str = "    pg_hba_conf:\n      - host all app 10.9.0.0/16 reject\n";

/// The converged state with the hosts at real addresses.
fn at_addresses(d: &crate::spec::Desired) -> Actual {
    let mut a = converged_of(d);
    for (h, addr) in a.hosts.iter_mut().zip(["10.0.0.1", "10.0.0.2", "10.0.0.3"]) {
        h.address = addr.into();
    }
    // The files as pgcd wrote them for those addresses.
    let b = a.clone();
    for i in &mut a.instances {
        let db = &d.databases[0];
        let node = db.nodes.iter().find(|n| n.name == i.node).unwrap();
        let auth = i.auth.as_mut().unwrap();
        auth.hba = hba_lines(db, node, &b, true);
        auth.ident = ident_lines(db, node);
    }
    a
}

fn auth_steps(p: &Plan) -> Vec<&Step> {
    p.steps
        .iter()
        .filter(|s| matches!(s.action, Action::WriteAuthFiles { .. }))
        .collect()
}

fn files(s: &Step) -> (&[String], &[String]) {
    match &s.action {
        Action::WriteAuthFiles { hba, ident } => (hba, ident),
        _ => unreachable!(),
    }
}

fn position(lines: &[String], line: &str) -> usize {
    lines
        .iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("no line {line:?} in\n{}", lines.join("\n")))
}

#[test]
fn written_files_have_no_step() {
    let d = spec(HBA, IDENT, NODE_HBA);
    let p = plan(&d, &at_addresses(&d));
    assert!(p.is_empty(), "{p}");
}

#[test]
fn a_new_spec_line_is_written_to_every_instance_of_the_node_and_reloaded() {
    let before = spec(HBA, IDENT, "");
    let a = at_addresses(&before);
    let after = spec(
        "pg_hba_conf:\n  - host orders app 127.0.0.1/32 scram-sha-256\n  - host orders batch 127.0.0.1/32 reject\n",
        IDENT,
        NODE_HBA,
    );
    let p = plan(&after, &a);
    let steps = auth_steps(&p);
    let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["orders/n1/h1/auth", "orders/n1/h2/auth"], "{p}");
    for s in &steps {
        assert!(!s.disruptive && !s.drift, "{s:?}");
        assert!(
            s.reason
                .contains("adds `host orders batch 127.0.0.1/32 reject`")
                && s.reason.contains("`host all app 10.9.0.0/16 reject`")
                && s.reason.contains("no restart"),
            "{}",
            s.reason
        );
    }
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s.action, Action::RestartInstance { .. })),
        "pg_hba.conf is reload-only:\n{p}"
    );
    // Carrying the plan out leaves nothing to do.
    let again = plan(&after, &simulate(&p, &a));
    assert!(again.is_empty(), "{again}");
}

#[test]
fn pgcd_lines_come_first_then_the_database_s_then_the_node_s_then_the_catch_all() {
    let d = spec(HBA, IDENT, NODE_HBA);
    let a = at_addresses(&d);
    let db = &d.databases[0];
    let hba = hba_lines(db, &db.nodes[0], &a, true);
    let own = position(&hba, "local all postgres trust");
    let repl = position(
        &hba,
        "hostssl replication pgcd_replication 10.0.0.2/32 scram-sha-256",
    );
    let refused = position(&hba, "host replication pgcd_replication 0.0.0.0/0 reject");
    let user = position(&hba, "host orders app 127.0.0.1/32 scram-sha-256");
    let node = position(&hba, "host all app 10.9.0.0/16 reject");
    let catch_all = position(&hba, "host all all 0.0.0.0/0 scram-sha-256");
    assert!(
        own < repl && repl < refused && refused < user && user < node && node < catch_all,
        "{}",
        hba.join("\n")
    );
    assert_eq!(ident_lines(db, &db.nodes[0])[1..], ["ops alice app"]);
    // No line allows md5 or password, nor a bare trust over TCP.
    assert!(
        !hba.iter().any(|l| l.contains("md5")
            || l.ends_with(" password")
            || (l.starts_with("host") && l.ends_with(" trust"))),
        "{}",
        hba.join("\n")
    );
}

#[test]
fn physical_replication_is_allowed_from_the_node_s_hosts_only() {
    // n1 on h1 and h2, n2 on h3: n2's host may subscribe, not stream WAL.
    let text = ORDERS.replace(
        "    host_ids: [h1]\n",
        "    host_ids: [h1, h2]\n  - name: n2\n    host_ids: [h3]\n",
    );
    let d = desired(&[("orders", &text)]);
    let a = at_addresses(&d);
    let db = &d.databases[0];
    let hba = hba_lines(db, &db.nodes[0], &a, true);
    let physical: Vec<&String> = hba
        .iter()
        .filter(|l| l.starts_with("hostssl replication"))
        .collect();
    assert_eq!(
        physical,
        [
            "hostssl replication pgcd_replication 10.0.0.1/32 scram-sha-256",
            "hostssl replication pgcd_replication 10.0.0.2/32 scram-sha-256"
        ],
        "{}",
        hba.join("\n")
    );
    // Its subscriptions (and the agents' own connections as the role) come
    // over TLS too.
    position(
        &hba,
        "hostssl all pgcd_replication 10.0.0.3/32 scram-sha-256",
    );
    assert!(
        !hba.iter()
            .any(|l| l.starts_with("host ") && l.contains(" pgcd_replication 10.0.0.")),
        "the role is admitted without TLS:\n{}",
        hba.join("\n")
    );
    // Anywhere else, the replication role is refused before the spec's lines.
    position(&hba, "host replication pgcd_replication ::/0 reject");
    position(&hba, "host all pgcd_replication 0.0.0.0/0 reject");
    // A server without TLS gets the same lines without `hostssl`.
    let plain = hba_lines(db, &db.nodes[0], &a, false);
    position(
        &plain,
        "host replication pgcd_replication 10.0.0.1/32 scram-sha-256",
    );
    position(
        &plain,
        "host all pgcd_replication 10.0.0.3/32 scram-sha-256",
    );
    assert!(!plain.iter().any(|l| l.starts_with("hostssl")));
}

#[test]
fn hosts_on_one_machine_also_allow_127_0_0_1() {
    let d = spec("", "", "");
    let mut a = converged_of(&d);
    for (h, addr) in a.hosts.iter_mut().zip(["127.0.3.11", "127.0.3.12"]) {
        h.address = addr.into();
    }
    let db = &d.databases[0];
    let hba = hba_lines(db, &db.nodes[0], &a, true);
    position(
        &hba,
        "hostssl replication pgcd_replication 127.0.0.1/32 scram-sha-256",
    );
    position(
        &hba,
        "hostssl replication pgcd_replication 127.0.3.12/32 scram-sha-256",
    );
}

#[test]
fn a_host_s_new_address_rewrites_the_replication_lines() {
    let d = spec(HBA, IDENT, "");
    let mut a = at_addresses(&d);
    a.hosts[1].address = "10.0.0.22".into();
    let p = plan(&d, &a);
    let steps = auth_steps(&p);
    assert_eq!(steps.len(), 2, "{p}");
    let (hba, _) = files(steps[0]);
    position(
        hba,
        "hostssl replication pgcd_replication 10.0.0.22/32 scram-sha-256",
    );
    assert!(!hba.iter().any(|l| l.contains("10.0.0.2/32")));
    assert!(
        steps[0]
            .reason
            .contains("adds `host all postgres 10.0.0.22/32")
            && steps[0]
                .reason
                .contains("removes `host all postgres 10.0.0.2/32"),
        "{}",
        steps[0].reason
    );
}

#[test]
fn a_file_edited_by_hand_is_put_back_as_drift() {
    let d = spec(HBA, IDENT, "");
    let mut a = at_addresses(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    let auth = i.auth.as_mut().unwrap();
    auth.hba.insert(1, "host all all 0.0.0.0/0 trust".into());
    auth.ident.clear();
    let p = plan(&d, &a);
    let steps = auth_steps(&p);
    assert_eq!(steps.len(), 1, "{p}");
    assert!(steps[0].drift, "{p}");
    assert!(
        steps[0].reason.starts_with("drift: ")
            && steps[0]
                .reason
                .contains("removes `host all all 0.0.0.0/0 trust`")
            && steps[0].reason.contains("pg_ident.conf adds")
            && steps[0].reason.contains("`ops alice app`"),
        "{}",
        steps[0].reason
    );
    assert!(p.to_string().contains("write pg_hba.conf"), "{p}");
}

#[test]
fn an_instance_that_has_not_reported_its_files_gets_no_step() {
    let d = spec(HBA, IDENT, "");
    let mut a = at_addresses(&d);
    instance(&mut a, "orders", "n1", "h1").auth = None;
    instance(&mut a, "orders", "n1", "h2").auth = None;
    let changed = spec("", IDENT, "");
    assert!(auth_steps(&plan(&changed, &a)).is_empty());
}

#[test]
fn the_tls_rendering_without_tls_is_the_rendering_for_a_server_without_tls() {
    let text = ORDERS.replace(
        "    host_ids: [h1]\n",
        "    host_ids: [h1, h2]\n  - name: n2\n    host_ids: [h3]\n",
    );
    let d = desired(&[("orders", &format!("{text}{HBA}"))]);
    let a = at_addresses(&d);
    let db = &d.databases[0];
    for node in &db.nodes {
        let tls = hba_lines(db, node, &a, true);
        assert_eq!(
            super::without_tls(&tls),
            hba_lines(db, node, &a, false),
            "{}",
            tls.join("\n")
        );
    }
    // A spec line of its own that says `hostssl` keeps it.
    let user = vec!["hostssl orders app 10.0.0.0/8 scram-sha-256".to_string()];
    assert_eq!(super::without_tls(&user), user);
}

/// The `CreateInstance` steps of a plan, with the files they carry.
fn created(p: &Plan) -> Vec<(&Step, &[String], &[String])> {
    p.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::CreateInstance { hba, ident, .. } => Some((s, &hba[..], &ident[..])),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_instance_starts_with_the_spec_s_files_and_needs_no_auth_step() {
    let d = spec(HBA, IDENT, NODE_HBA);
    let mut a = at_addresses(&d);
    a.instances.clear();
    a.databases.clear();
    a.primaries.clear();
    let p = plan(&d, &a);
    let made = created(&p);
    assert_eq!(made.len(), 1, "{p}");
    let (step, hba, ident) = made[0];
    assert_eq!(step.id, "orders/n1/h1/create-instance");
    let db = &d.databases[0];
    assert_eq!(hba, hba_lines(db, &db.nodes[0], &a, true));
    assert_eq!(ident, ident_lines(db, &db.nodes[0]));
    assert!(
        hba[0].starts_with("# Managed by pgcd"),
        "{}",
        hba.join("\n")
    );
    // Nothing is left to write once it runs, pass after pass (its standby
    // copies its files with the data: `create standby` carries none).
    let mut now = a;
    for _ in 0..4 {
        let p = plan(&d, &now);
        assert!(auth_steps(&p).is_empty(), "{p}");
        now = simulate(&p, &now);
    }
}

#[test]
fn an_instance_recreated_on_its_data_keeps_its_files() {
    let d = spec(HBA, IDENT, "");
    let mut a = at_addresses(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.container_exists = false;
    i.running = false;
    let p = plan(&d, &a);
    let made = created(&p);
    assert_eq!(made.len(), 1, "{p}");
    assert!(made[0].1.is_empty() && made[0].2.is_empty(), "{p}");
}
