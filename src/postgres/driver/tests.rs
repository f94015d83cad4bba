//! The drivers' statements, printed and compared with reviewed snapshots.

use super::*;
use crate::postgres::sql::Conninfo;

const PASSWORD: &str = "s3cr'et";

fn endpoint<'a>(node: &'a str, host: &'static str) -> Endpoint<'a> {
    Endpoint {
        node,
        conn: Conninfo {
            host,
            port: 5432,
            dbname: "orders",
            user: crate::state::names::REPLICATION_ROLE,
            password: PASSWORD,
            application_name: "pgcd",
        },
    }
}

/// The SQL that runs, one statement a line.
fn sql(stmts: &[Statement]) -> String {
    stmts.iter().map(|s| format!("{}\n", s.sql)).collect()
}

/// The password is in `sql`, quoted, and never in `shown`.
fn masks_password(stmts: &[Statement]) {
    let with_dsn: Vec<_> = stmts
        .iter()
        .filter(|s| s.sql.contains("password="))
        .collect();
    assert!(!with_dsn.is_empty());
    for s in with_dsn {
        assert!(s.sql.contains(r"password=''s3cr\''et''"), "{}", s.sql);
        assert!(
            !s.shown.contains("s3cr") && s.shown.contains(MASK),
            "{}",
            s.shown
        );
    }
}

#[test]
fn driver_follows_the_replication_setting() {
    assert_eq!(driver(Replication::Native).name(), "native");
    assert_eq!(driver(Replication::Spock).name(), "spock");
}

#[test]
fn native_publishes_all_tables_and_subscribes_without_loops() {
    let n1 = endpoint("n1", "10.0.0.1");
    let mut stmts = Native.publish(&n1).unwrap();
    stmts.extend(Native.subscribe("pgcd_sub_n1_to_n2", &n1).unwrap());
    masks_password(&stmts);
    insta::assert_snapshot!(sql(&stmts));
}

#[test]
fn spock_publish_creates_the_node_and_fills_the_sets() {
    let stmts = Spock.publish(&endpoint("n1", "10.0.0.1")).unwrap();
    masks_password(&stmts);
    insta::assert_snapshot!(sql(&stmts));
}

#[test]
fn spock_subscribe_takes_local_changes_only_without_copy() {
    let stmts = Spock
        .subscribe("pgcd_sub_n1_to_n2", &endpoint("n1", "10.0.0.1"))
        .unwrap();
    masks_password(&stmts);
    insta::assert_snapshot!(sql(&stmts));
}

#[test]
fn spock_refresh_needs_nothing_and_new_tables_join_the_sets() {
    assert!(Spock.refresh("pgcd_sub_n1_to_n2").unwrap().is_empty());
    insta::assert_snapshot!(sql(&Spock.publish_new_tables().unwrap()));
}

#[test]
fn spock_autoddl_turns_three_settings_on_and_reloads() {
    insta::assert_snapshot!(sql(&Spock.autoddl("orders", "n1").unwrap()));
}

#[test]
fn spock_stops_at_once_drops_if_exists_and_reads_status() {
    let n = "pgcd_sub_n1_to_n2";
    let mut stmts = Spock.enable(n).unwrap();
    stmts.extend(Spock.disable(n).unwrap());
    stmts.extend(Spock.drop_subscription(n).unwrap());
    stmts.push(spock_sub_status(Some(n)).unwrap());
    stmts.push(spock_sub_status(None).unwrap());
    stmts.push(spock_lag());
    stmts.push(spock_wait_for_sync_event("n1", "0/1A7D1E0", 180).unwrap());
    stmts.push(spock_advance_slot("n2", "pgcd_sub_n2_to_n3", "0/1A7D1E0").unwrap());
    insta::assert_snapshot!(sql(&stmts));
}

#[test]
fn zodan_adds_n3_copying_n1_without_losing_n2s_changes() {
    let (n1, n2, n3) = (
        endpoint("n1", "10.0.0.1"),
        endpoint("n2", "10.0.0.2"),
        endpoint("n3", "10.0.0.3"),
    );
    let phases = spock_add_node(&n3, &n1, &[n2], true).unwrap();
    let all: Vec<Statement> = phases.iter().flat_map(|p| p.statements.clone()).collect();
    masks_password(&all);
    let logged: String = phases.iter().map(|p| p.to_string()).collect();
    assert!(!logged.contains("s3cr"));
    let printed: String = phases
        .iter()
        .map(|p| {
            let shown = Phase {
                statements: p
                    .statements
                    .iter()
                    .map(|s| Statement::plain(s.sql.clone()))
                    .collect(),
                ..p.clone()
            };
            format!("{shown}\n")
        })
        .collect();
    insta::assert_snapshot!(printed);
}

#[test]
fn zodan_into_a_single_node_needs_no_disabled_subscriptions() {
    let (n1, n2) = (endpoint("n1", "10.0.0.1"), endpoint("n2", "10.0.0.2"));
    let phases = spock_add_node(&n2, &n1, &[], false).unwrap();
    let steps: Vec<String> = phases
        .iter()
        .map(|p| format!("[{}] {}", p.node, p.what))
        .collect();
    insta::assert_snapshot!(steps.join("\n"));
}

#[test]
fn hostile_node_names_stay_quoted() {
    let evil = r#"n"1'; DROP"#;
    let e = endpoint(evil, "10.0.0.1");
    let mut stmts = Spock.publish(&e).unwrap();
    stmts.extend(Spock.subscribe(evil, &e).unwrap());
    stmts.extend(Native.enable(evil).unwrap());
    stmts.extend(Spock.drop_subscription(evil).unwrap());
    stmts.push(spock_advance_slot(evil, evil, "0/0'; DROP").unwrap());
    for s in &stmts {
        assert!(!s.sql.contains(evil), "{}", s.sql);
    }
    insta::assert_snapshot!(sql(&stmts));
    assert_eq!(Spock.enable("a\0b"), Err(SqlError::Nul));
}
