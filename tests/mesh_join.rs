//! Zero-downtime node addition on native replication, for real: a fourth
//! node is added to three nodes that replicate while a writer inserts on
//! each of them throughout; no write fails, and at the end every node has
//! exactly the same rows. Then a DDL statement that fails on one node is
//! recorded and shown, and replication goes on; an apply error is counted
//! and shown, not a silent stall.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);
const PORT: u16 = 6561;
/// The nodes that replicate before the addition; node `EXISTING + 1` joins.
const EXISTING: usize = 3;

fn spec(ids: &[String], nodes: usize) -> String {
    let mut s = format!(
        "database_name: shop4\npostgres_version: \"17\"\nport: {PORT}\nreplication: native\nnodes:\n"
    );
    for (k, id) in ids.iter().enumerate().take(nodes) {
        s.push_str(&format!("  - name: n{}\n    host_ids: [{id}]\n", k + 1));
    }
    // Extensions that make tables of their own, one behind row security:
    // the copy must take them as they are.
    s.push_str("extensions: [postgis, pg_cron]\npostgresql_conf:\n  cron.database_name: shop4\n");
    s
}

#[test]
fn a_node_added_under_write_load_ends_with_exactly_the_same_rows() {
    require_image(17);
    let block = 66;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..=EXISTING).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, EXISTING + 1, dir.path(), WAIT);
    let api = agents[0].api();
    let commit = |text: String, msg: &str| {
        std::fs::write(work.join("databases/shop4.yaml"), text).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", msg]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let sha = commit(spec(&ids, EXISTING), "shop4 on three nodes");
    wait_ready(&api, "shop4", Some(&sha), WAIT);

    let password = |i: usize| {
        std::fs::read_to_string(
            dir.path()
                .join(&ids[i])
                .join(format!("instances/shop4-n{}/superuser.pw", i + 1)),
        )
        .unwrap()
    };
    let on = |i: usize, sql: &str| {
        psql(
            &format!("pgcd-shop4-n{}-{}", i + 1, ids[i]),
            &addr(block, i),
            PORT,
            "postgres",
            &password(i),
            "shop4",
            sql,
        )
    };
    on(
        0,
        "CREATE TABLE items (id bigserial PRIMARY KEY, node text NOT NULL, n int NOT NULL)",
    )
    .unwrap();
    // The table reaches every node, every subscription takes it, and its
    // sequence is aligned everywhere.
    for i in 0..EXISTING {
        wait_for("items aligned everywhere", WAIT, || {
            on(
                i,
                "SELECT increment_by FROM pg_sequences WHERE sequencename = 'items_id_seq'",
            )
            .filter(|v| v == "16")
        });
    }
    for i in 0..EXISTING {
        wait_for("every table in every subscription", WAIT, || {
            on(
                i,
                &format!(
                    "SELECT (SELECT count(*) FROM pg_subscription_rel) = {} * \
                     (SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgcd_all')",
                    EXISTING - 1
                ),
            )
            .filter(|v| v == "t")
        });
    }
    for i in 0..EXISTING {
        on(
            i,
            &format!(
                "INSERT INTO items (node, n) SELECT 'seed{}', g FROM generate_series(1, 2000) g",
                i + 1
            ),
        )
        .unwrap();
    }
    let seeded = (2000 * EXISTING).to_string();
    for i in 0..EXISTING {
        wait_for("the seed rows on every node", WAIT, || {
            on(i, "SELECT count(*) FROM items").filter(|c| *c == seeded)
        });
    }

    // Writers on every node, all through the addition of n4.
    let writers: Vec<Writer> = (0..EXISTING)
        .map(|i| {
            Writer::start(
                &addr(block, i),
                PORT,
                &password(i),
                "shop4",
                &format!("w{}", i + 1),
            )
        })
        .collect();
    let sha = commit(spec(&ids, EXISTING + 1), "shop4 gains n4");
    wait_ready(&api, "shop4", Some(&sha), WAIT);
    let links = |s: &serde_json::Value| {
        s["links"]
            .as_array()
            .map(|l| l.iter().filter(|l| l["state"] == "streaming").count())
            .unwrap_or(0)
    };
    let all = (EXISTING + 1) * EXISTING;
    wait_for("every link streaming", WAIT, || {
        let s = status(&api, "shop4")?;
        (links(&s) == all).then_some(())
    });
    // It joined through one step that paused n1's links from n2 and n3
    // during the copy and started n4's links from them where it ended.
    let new = EXISTING; // n4, on the fourth host
    let log = task_log(&api, "s-shop4.n4.", ".join-");
    for line in [
        "pgcd_sub_n2_to_n1 paused at",
        "pgcd_sub_n3_to_n1 paused at",
        "copied n1 at the consistent point",
        "pgcd_sub_n2_to_n4 starts after",
        "pgcd_sub_n3_to_n4 starts after",
        "pgcd_sub_n2_to_n1 resumed",
        "pgcd_sub_n3_to_n1 resumed",
        "n4 joined",
    ] {
        assert!(log.contains(line), "{line:?} not in the join log:\n{log}");
    }
    assert!(!log.contains(&password(0)), "{log}");
    // The writers go on a little after n4 took part, then stop.
    let writes_on = |i: usize| {
        on(i, "SELECT count(*) FROM items WHERE node LIKE 'w%'")?
            .parse::<i64>()
            .ok()
    };
    let before = writes_on(new).unwrap();
    wait_for("new writes reach n4", WAIT, || {
        (writes_on(new)? > before + 50).then_some(())
    });
    let done: Vec<Writes> = writers.into_iter().map(Writer::finish).collect();
    let written: u64 = done.iter().map(|w| w.ok).sum();
    eprintln!("writers: {done:?}");
    assert!(
        done.iter().all(|w| w.failed == 0),
        "failed writes: {done:?}"
    );
    assert!(
        done.iter().all(|w| w.ok > 100),
        "the writers wrote: {done:?}"
    );
    let total = (2000 * EXISTING as u64 + written).to_string();
    let digest =
        "SELECT md5(string_agg(id::text || ':' || node || ':' || n, ',' ORDER BY id)) FROM items";
    let reference = wait_for("every write on n1", WAIT, || {
        on(0, "SELECT count(*) FROM items")
            .filter(|c| *c == total)
            .and_then(|_| on(0, digest))
    });
    for i in 1..=new {
        wait_for("the same rows on every node", WAIT, || {
            on(i, "SELECT count(*) FROM items")
                .filter(|c| *c == total)
                .and_then(|_| on(i, digest))
                .filter(|d| *d == reference)
        });
    }
    // n4 generates keys in its own residue, and its rows reach the others.
    on(new, "INSERT INTO items (node, n) VALUES ('n4', 1)").unwrap();
    assert_eq!(
        on(new, "SELECT id % 16 FROM items WHERE node = 'n4'").as_deref(),
        Some("4")
    );
    for i in 0..new {
        wait_for("n4's row everywhere", WAIT, || {
            on(i, "SELECT count(*) FROM items WHERE node = 'n4'").filter(|c| c == "1")
        });
    }
    // No slot is left behind: every pgcd slot on every node is in use.
    for i in 0..=new {
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgcd_sub_%' AND NOT active"
            )
            .as_deref(),
            Some("0")
        );
    }

    // A DDL statement that cannot run on n2 (the table exists there,
    // made by hand without replication) is recorded, shown, and skipped:
    // the links stay up and rows still flow.
    on(
        1,
        "SET application_name = 'pgcd'; CREATE TABLE clash (a int)",
    )
    .unwrap();
    on(0, "CREATE TABLE clash (a int, b int)").unwrap();
    let s = wait_for("the failed DDL in status", WAIT, || {
        let s = status(&api, "shop4")?;
        let c = s["conditions"].to_string();
        (condition(&s, "Degraded") && c.contains("already exists")).then_some(s)
    });
    assert!(
        s["conditions"].to_string().contains("CREATE TABLE clash"),
        "{s}"
    );
    on(0, "INSERT INTO items (node, n) VALUES ('after', 1)").unwrap();
    for i in 1..=new {
        wait_for("rows flow after the failed DDL", WAIT, || {
            on(i, "SELECT count(*) FROM items WHERE node = 'after'").filter(|c| c == "1")
        });
    }
    for i in [2, new] {
        assert_eq!(
            on(
                i,
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'clash'"
            )
            .as_deref(),
            Some("2"),
            "the statement ran on n{}",
            i + 1
        );
    }
    assert_eq!(links(&status(&api, "shop4").unwrap()), all);

    // The two shapes of `clash` make n2's link from n1 fail on the first
    // row: the error is counted and shown, not a silent stall. Fixing the
    // table by hand lets the row through.
    wait_for("clash in n2's subscription from n1", WAIT, || {
        on(
            1,
            "SELECT count(*) FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid \
             WHERE s.subname = 'pgcd_sub_n1_to_n2' AND r.srrelid = 'clash'::regclass",
        )
        .filter(|c| c == "1")
    });
    on(0, "INSERT INTO clash VALUES (1, 2)").unwrap();
    let s = wait_for("the apply error in status", WAIT, || {
        let s = status(&api, "shop4")?;
        let link = s["links"]
            .as_array()?
            .iter()
            .find(|l| l["subscription"] == "pgcd_sub_n1_to_n2")?
            .clone();
        let seen =
            link["apply_errors"].as_i64()? > 0 && link["last_error"].as_str()?.contains("clash");
        seen.then_some(link)
    });
    eprintln!("link with an apply error: {s}");
    let metrics = get_text(&format!("{api}/metrics")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgcd_replication_apply_errors_total{")
                && l.contains("subscription=\"pgcd_sub_n1_to_n2\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
    on(
        1,
        "SET application_name = 'pgcd'; ALTER TABLE clash ADD COLUMN b int",
    )
    .unwrap();
    wait_for("the row through once fixed", WAIT, || {
        on(1, "SELECT b FROM clash WHERE a = 1").filter(|v| v == "2")
    });
}
