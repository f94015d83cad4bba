//! A major upgrade by node addition, for real: a two-node active-active
//! PostgreSQL 17 database, with a writer on each node, gains a node whose
//! `postgres_version` is 18. It joins through the zero-downtime node
//! addition (a copy at a consistent point, then logical replication across
//! the two majors), and a 17 node is then removed through the spec. No
//! write fails, and the nodes left end with the same rows (count and
//! checksum); keys stay in each node's residue and DDL replicates from 18
//! to 17. Needs the 17 and 18 images (scripts/build-images.sh).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);
const PORT: u16 = 6644;

/// `mixed` on `nodes` (node number, its host, its `postgres_version`).
fn spec(nodes: &[(usize, &str, Option<&str>)]) -> String {
    let mut s = format!(
        "database_name: mixed\npostgres_version: \"17\"\nport: {PORT}\nreplication: native\nnodes:\n"
    );
    for (k, id, version) in nodes {
        s.push_str(&format!("  - name: n{k}\n    host_ids: [{id}]\n"));
        if let Some(v) = version {
            s.push_str(&format!("    postgres_version: \"{v}\"\n"));
        }
    }
    s
}

#[test]
fn a_17_database_gains_an_18_node_under_writes_and_loses_a_17_one() {
    require_image(17);
    require_image(18);
    let block = 104;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let api = agents[0].api();
    let commit = |text: String, msg: &str| {
        std::fs::write(work.join("databases/mixed.yaml"), text).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", msg]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let two = [(1, ids[0].as_str(), None), (2, ids[1].as_str(), None)];
    let sha = commit(spec(&two), "mixed on two 17 nodes");
    wait_ready(&api, "mixed", Some(&sha), WAIT);
    let password = |i: usize| {
        std::fs::read_to_string(
            dir.path()
                .join(&ids[i])
                .join(format!("instances/mixed-n{}/superuser.pw", i + 1)),
        )
        .unwrap()
    };
    let on = |i: usize, sql: &str| {
        psql(
            &format!("pgcd-mixed-n{}-{}", i + 1, ids[i]),
            &addr(block, i),
            PORT,
            "postgres",
            &password(i),
            "mixed",
            sql,
        )
    };
    on(
        0,
        "CREATE TABLE items (id bigserial PRIMARY KEY, node text NOT NULL, n int NOT NULL)",
    )
    .unwrap();
    for i in 0..2 {
        wait_for("items' sequence in each node's residue", WAIT, || {
            on(
                i,
                "SELECT increment_by FROM pg_sequences WHERE sequencename = 'items_id_seq'",
            )
            .filter(|v| v == "16")
        });
        wait_for("items on both nodes, in their subscriptions", WAIT, || {
            on(
                i,
                "SELECT (SELECT count(*) FROM pg_subscription_rel) = \
                 (SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgcd_all') \
                 AND EXISTS (SELECT 1 FROM pg_publication_tables WHERE tablename = 'items')",
            )
            .filter(|v| v == "t")
        });
    }
    for i in 0..2 {
        on(
            i,
            &format!(
                "INSERT INTO items (node, n) SELECT 'seed{}', g FROM generate_series(1, 2000) g",
                i + 1
            ),
        )
        .unwrap();
    }
    for i in 0..2 {
        wait_for("the seed rows on both nodes", WAIT, || {
            on(i, "SELECT count(*) FROM items").filter(|c| c == "4000")
        });
    }

    // Writers on n1 and n2 through the addition of n3 on 18.
    let writers: Vec<Writer> = (0..2)
        .map(|i| {
            Writer::start(
                &addr(block, i),
                PORT,
                &password(i),
                "mixed",
                &format!("w{}", i + 1),
            )
        })
        .collect();
    let three = [two[0], two[1], (3, ids[2].as_str(), Some("18"))];
    let sha = commit(spec(&three), "mixed gains n3 on PostgreSQL 18");
    wait_ready(&api, "mixed", Some(&sha), WAIT);
    wait_for("every link streaming", WAIT, || {
        let s = status(&api, "mixed")?;
        let streaming = s["links"]
            .as_array()?
            .iter()
            .filter(|l| l["state"] == "streaming")
            .count();
        (streaming == 6).then_some(())
    });
    let version = |i: usize| on(i, "SHOW server_version_num");
    assert!(version(2).unwrap().starts_with("18"), "{:?}", version(2));
    assert!(version(0).unwrap().starts_with("17"), "{:?}", version(0));
    let writes_on = |i: usize| {
        on(i, "SELECT count(*) FROM items WHERE node LIKE 'w%'")?
            .parse::<i64>()
            .ok()
    };
    let before = writes_on(2).unwrap();
    wait_for("new writes reach n3", WAIT, || {
        (writes_on(2)? > before + 50).then_some(())
    });
    // DDL made on 18 reaches 17.
    on(2, "CREATE TABLE on18 (a int PRIMARY KEY)").unwrap();
    on(2, "INSERT INTO on18 VALUES (18)").unwrap();
    for i in 0..2 {
        wait_for("n3's table and row on the 17 nodes", WAIT, || {
            on(i, "SELECT a FROM on18").filter(|a| a == "18")
        });
    }
    let done: Vec<Writes> = writers.into_iter().map(Writer::finish).collect();
    eprintln!("writers: {done:?}");
    assert!(
        done.iter().all(|w| w.failed == 0),
        "failed writes: {done:?}"
    );
    assert!(
        done.iter().all(|w| w.ok > 100),
        "the writers wrote: {done:?}"
    );
    let written: u64 = done.iter().map(|w| w.ok).sum();

    // n1 (17) leaves: n2 (17) and n3 (18) go on, with the same rows.
    let sha = commit(spec(&[three[1], three[2]]), "mixed without n1");
    wait_ready(&api, "mixed", Some(&sha), WAIT);
    on(1, "INSERT INTO items (node, n) VALUES ('after', 2)").unwrap();
    on(2, "INSERT INTO items (node, n) VALUES ('after', 3)").unwrap();
    let total = (4000 + written + 2).to_string();
    let digest =
        "SELECT md5(string_agg(id::text || ':' || node || ':' || n, ',' ORDER BY id)) FROM items";
    let reference = wait_for("every row on n2", WAIT, || {
        on(1, "SELECT count(*) FROM items")
            .filter(|c| *c == total)
            .and_then(|_| on(1, digest))
    });
    wait_for("the same rows on n3", WAIT, || {
        on(2, "SELECT count(*) FROM items")
            .filter(|c| *c == total)
            .and_then(|_| on(2, digest))
            .filter(|d| *d == reference)
    });
    // Each node's keys stay in its own residue.
    assert_eq!(
        on(
            2,
            "SELECT id % 16 FROM items WHERE node = 'after' AND n = 3"
        )
        .as_deref(),
        Some("3")
    );
    // n1 is out of the mesh: no subscription to it or slot for it is left.
    for i in 1..3 {
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM pg_subscription WHERE subname LIKE '%n1%'"
            )
            .as_deref(),
            Some("0")
        );
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%n1%'"
            )
            .as_deref(),
            Some("0")
        );
    }
}
