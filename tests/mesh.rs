//! Native logical replication for real: three nodes of one database on
//! three hosts, each publishing and subscribing to the others with
//! `origin = none`. DDL run on one node reaches the others (pgcd's event
//! trigger and replicated log); pgcd refreshes the subscriptions for new
//! tables; a row written on any node reaches every node exactly once;
//! generated keys never collide.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

#[test]
fn three_nodes_replicate_rows_to_each_other_without_loops() {
    require_image(17);
    let block = 64;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    // The agents resolve the user's password from their environment.
    std::env::set_var("PGCD_TEST_SHOPPER_PASSWORD", "shop'pw");
    let (agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let api = agents[0].api();
    let spec = format!(
        "database_name: shop3\npostgres_version: \"17\"\nport: 6549\nreplication: native\nnodes:\n  - name: n1\n    host_ids: [{}]\n  - name: n2\n    host_ids: [{}]\n  - name: n3\n    host_ids: [{}]\ndatabase_users:\n  - username: shopper\n    password: {{env: PGCD_TEST_SHOPPER_PASSWORD}}\n    db_owner: true\n    attributes: [LOGIN]\n",
        ids[0], ids[1], ids[2]
    );
    std::fs::write(work.join("databases/shop3.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "shop3 on three nodes"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let s = wait_ready(&api, "shop3", Some(&sha), WAIT);
    assert!(!condition(&s, "Degraded"), "{s}");

    let on = |i: usize, sql: &str| {
        let su = std::fs::read_to_string(
            dir.path()
                .join(&ids[i])
                .join(format!("instances/shop3-n{}/superuser.pw", i + 1)),
        )
        .unwrap();
        psql(
            &format!("pgcd-shop3-n{}-{}", i + 1, ids[i]),
            &addr(block, i),
            6549,
            "postgres",
            &su,
            "shop3",
            sql,
        )
    };
    // Each node has both subscriptions, enabled, and wal_level logical.
    for i in 0..3 {
        assert_eq!(on(i, "SHOW wal_level").as_deref(), Some("logical"));
        assert_eq!(
            on(i, "SELECT count(*) FROM pg_subscription WHERE subenabled").as_deref(),
            Some("2")
        );
    }
    // DDL replication is installed on every node.
    for i in 0..3 {
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM pg_event_trigger WHERE evtname = 'pgcd_capture_ddl'"
            )
            .as_deref(),
            Some("1")
        );
    }
    // A table created on one node reaches the others by itself, and its
    // rows replicate from the first one, written in the same transaction:
    // the DDL replay enters it into every subscription at once (3 tables,
    // pgcd's DDL log and failure record and this one, in each of 2).
    on(
        0,
        "CREATE TABLE events (node text, n int); INSERT INTO events VALUES ('early', 0)",
    )
    .unwrap();
    for i in 0..3 {
        wait_for("the table everywhere, in both subscriptions", WAIT, || {
            on(i, "SELECT count(*) FROM pg_subscription_rel").filter(|c| c == "6")
        });
    }
    for i in 0..3 {
        on(i, &format!("INSERT INTO events VALUES ('n{}', 1)", i + 1)).unwrap();
    }
    for i in 0..3 {
        wait_for("every node's row on every node", WAIT, || {
            on(i, "SELECT string_agg(node, ',' ORDER BY node) FROM events")
                .filter(|v| v == "early,n1,n2,n3")
        });
    }
    // No loop: a marker written after them arrives, and still every row
    // is there exactly once.
    on(2, "INSERT INTO events VALUES ('marker', 2)").unwrap();
    for i in 0..3 {
        wait_for("the marker on every node", WAIT, || {
            on(i, "SELECT count(*) FROM events WHERE node = 'marker'").filter(|c| c == "1")
        });
        assert_eq!(on(i, "SELECT count(*) FROM events").as_deref(), Some("5"));
    }
    let s = status(&api, "shop3").unwrap();
    assert!(condition(&s, "Ready") && !condition(&s, "Degraded"), "{s}");

    // A table made by the database's owner (not a superuser) on n2, with a
    // row in the same transaction: replayed as that role, so it has the same
    // owner everywhere, and the row is there too.
    let shopper = |i: usize, sql: &str| {
        psql(
            &format!("pgcd-shop3-n{}-{}", i + 1, ids[i]),
            &addr(block, i),
            6549,
            "shopper",
            "shop'pw",
            "shop3",
            sql,
        )
    };
    shopper(
        1,
        "CREATE TABLE carts (id int PRIMARY KEY); INSERT INTO carts VALUES (7)",
    )
    .unwrap();
    for i in 0..3 {
        wait_for("the owner's table and row everywhere", WAIT, || {
            on(
                i,
                "SELECT pg_get_userbyid(relowner) || ':' || (SELECT string_agg(id::text, ',') FROM carts) \
                 FROM pg_class WHERE relname = 'carts'",
            )
            .filter(|v| v == "shopper:7")
        });
    }

    // ALTER TABLE on the third node and CREATE INDEX on the first reach all.
    on(2, "ALTER TABLE events ADD COLUMN note text").unwrap();
    on(0, "CREATE INDEX events_n ON events (n)").unwrap();
    for i in 0..3 {
        wait_for("the column and the index everywhere", WAIT, || {
            let col = on(
                i,
                "SELECT count(*) FROM information_schema.columns \
                 WHERE table_name = 'events' AND column_name = 'note'",
            )?;
            let idx = on(i, "SELECT to_regclass('public.events_n') IS NOT NULL")?;
            (col == "1" && idx == "t").then_some(())
        });
    }

    // Status: six links streaming, and the DDL log in step on every node
    // (four queries: two CREATE TABLE, ALTER TABLE, CREATE INDEX).
    wait_for("links and DDL positions in status", WAIT, || {
        let s = status(&api, "shop3")?;
        let streaming = s["links"]
            .as_array()?
            .iter()
            .filter(|l| l["state"] == "streaming")
            .count();
        let ddl: Vec<i64> = ["n1", "n2", "n3"]
            .iter()
            .filter_map(|n| s["ddl_log"][n].as_i64())
            .collect();
        (streaming == 6 && ddl == [4, 4, 4]).then_some(())
    });

    // Keys: a table with a generated key, created on the second node; pgcd
    // aligns its sequence on every node (stride 16, residue = node
    // position), so inserts on all nodes at once never collide.
    on(
        1,
        "CREATE TABLE orders (id bigserial PRIMARY KEY, node text)",
    )
    .unwrap();
    for i in 0..3 {
        wait_for(
            "the sequence aligned and the table subscribed",
            WAIT,
            || {
                let inc = on(
                    i,
                    "SELECT increment_by FROM pg_sequences WHERE sequencename = 'orders_id_seq'",
                )?;
                let rels = on(i, "SELECT count(*) FROM pg_subscription_rel")?;
                (inc == "16" && rels == "10").then_some(())
            },
        );
    }
    std::thread::scope(|scope| {
        for i in 0..3 {
            let on = &on;
            scope.spawn(move || {
                for _ in 0..5 {
                    on(
                        i,
                        &format!(
                            "INSERT INTO orders (node) SELECT 'n{}' FROM generate_series(1, 10)",
                            i + 1
                        ),
                    )
                    .expect("insert");
                }
            });
        }
    });
    for i in 0..3 {
        wait_for("150 orders on every node", WAIT, || {
            on(i, "SELECT count(*) FROM orders").filter(|c| c == "150")
        });
        assert_eq!(
            on(i, "SELECT count(DISTINCT id) FROM orders").as_deref(),
            Some("150")
        );
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM orders WHERE id % 16 <> substr(node, 2)::int"
            )
            .as_deref(),
            Some("0"),
            "every key is in its node's residue"
        );
    }
    let s = status(&api, "shop3").unwrap();
    assert!(
        !condition(&s, "Degraded"),
        "no link broke on a conflict: {s}"
    );

    // Remove a node from the spec: no subscription or slot is left for it
    // anywhere; its instance and data are kept (noted).
    let spec = format!(
        "database_name: shop3\npostgres_version: \"17\"\nport: 6549\nreplication: native\nnodes:\n  - name: n1\n    host_ids: [{}]\n  - name: n2\n    host_ids: [{}]\n",
        ids[0], ids[1]
    );
    std::fs::write(work.join("databases/shop3.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "shop3 without n3"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let s = wait_ready(&api, "shop3", Some(&sha), WAIT);
    assert!(
        s["conditions"]
            .to_string()
            .contains("has no place in the spec"),
        "{s}"
    );
    for i in 0..2 {
        assert_eq!(
            on(i, "SELECT count(*) FROM pg_subscription").as_deref(),
            Some("1")
        );
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%n3%'"
            )
            .as_deref(),
            Some("0")
        );
    }
    assert_eq!(
        on(2, "SELECT count(*) FROM pg_subscription").as_deref(),
        Some("0")
    );
    assert_eq!(on(2, "SELECT count(*) FROM orders").as_deref(), Some("150"));
}
