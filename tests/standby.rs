//! Standbys for real: a node with three hosts runs a primary and two
//! physical streaming standbys made with pg_basebackup through a slot each;
//! a row written on the primary is read on both; status shows their lag.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

#[test]
fn a_node_with_three_hosts_runs_a_primary_and_two_streaming_standbys() {
    require_image(17);
    let block = 63;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (mut agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let api = agents[0].api();

    let spec = format!(
        "database_name: ledger\npostgres_version: \"17\"\nport: 6548\nnodes:\n  - name: n1\n    host_ids: [{}, {}, {}]\n",
        ids[0], ids[1], ids[2]
    );
    std::fs::write(work.join("databases/ledger.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "ledger with two standbys"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "ledger", Some(&sha), WAIT);

    // Write on the primary, read on both standbys (the standbys' superuser
    // password is the primary's: their data is its copy).
    let su = std::fs::read_to_string(agents[0].data_dir.join("instances/ledger-n1/superuser.pw"))
        .unwrap();
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    let on = |i: usize, sql: &str| {
        psql(
            &format!("pgcd-ledger-n1-{}", ids[i]),
            &addrs[i],
            6548,
            "postgres",
            &su,
            "ledger",
            sql,
        )
    };
    on(0, "CREATE TABLE entries (id int PRIMARY KEY, note text); INSERT INTO entries VALUES (1, 'first')").unwrap();
    for i in 1..3 {
        assert_eq!(on(i, "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
        wait_for("the row on the standby", WAIT, || {
            on(i, "SELECT note FROM entries WHERE id = 1").filter(|n| n == "first")
        });
        assert!(
            on(i, "INSERT INTO entries VALUES (2, 'x')").is_none(),
            "a standby is read-only"
        );
    }
    // Status shows each standby streaming with its lag; the slots exist.
    let s = wait_for("both standbys streaming in status", WAIT, || {
        let s = status(&api, "ledger")?;
        let streaming = s["instances"]
            .as_array()?
            .iter()
            .filter(|i| {
                i["role"] == "standby" && i["streaming"] == "streaming" && i["lag_bytes"].is_i64()
            })
            .count();
        (streaming == 2).then_some(s)
    });
    assert!(condition(&s, "Ready"), "{s}");
    assert!(!condition(&s, "Degraded"), "{s}");
    let slots = on(
        0,
        "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots",
    )
    .unwrap();
    assert_eq!(
        slots,
        format!(
            "pgcd_n1_{},pgcd_n1_{}",
            ids[1].replace('-', "_"),
            ids[2].replace('-', "_")
        )
    );

    let slot = |i: usize| format!("pgcd_n1_{}", ids[i].replace('-', "_"));

    // synchronous: true → quorum commit over both standbys (ANY 1).
    let with = |hosts: &[&String], extra: &str| {
        let list: Vec<&str> = hosts.iter().map(|h| h.as_str()).collect();
        let spec = format!(
            "database_name: ledger\npostgres_version: \"17\"\nport: 6548\nnodes:\n  - name: n1\n    host_ids: [{}]\n{extra}",
            list.join(", ")
        );
        std::fs::write(work.join("databases/ledger.yaml"), spec).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "ledger changed"]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let sha = with(&[&ids[0], &ids[1], &ids[2]], "    synchronous: true\n");
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    let quorum = format!("ANY 1 ({}, {})", slot(1), slot(2));
    wait_for("synchronous_standby_names on the primary", WAIT, || {
        on(0, "SHOW synchronous_standby_names").filter(|v| *v == quorum)
    });
    // Kill the third host (agent and container): a write still commits, with the second.
    agents[2].kill9();
    docker(&["kill", &format!("pgcd-ledger-n1-{}", ids[2])]);
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            "-e",
            &format!("PGPASSWORD={su}"),
            &format!("pgcd-ledger-n1-{}", ids[0]),
        ])
        .args([
            "timeout",
            "30",
            "psql",
            "-X",
            "-At",
            "-h",
            &agents[0].addr,
            "-p",
            "6548",
            "-U",
            "postgres",
            "-d",
            "ledger",
        ])
        .args(["-c", "INSERT INTO entries VALUES (3, 'quorum')"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the commit waited: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the quorum row on the second host", WAIT, || {
        on(1, "SELECT note FROM entries WHERE id = 3").filter(|n| n == "quorum")
    });
    // The third host comes back: its standby is started again and catches up.
    agents[2].spawn();
    wait_for("the third standby catches up", WAIT, || {
        on(2, "SELECT note FROM entries WHERE id = 3").filter(|n| n == "quorum")
    });

    // Taking a host out of host_ids removes its standby and its slot.
    let sha = with(&[&ids[0], &ids[1]], "");
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    wait_for("the third standby removed", WAIT, || {
        inspect(&format!("pgcd-ledger-n1-{}", ids[2]), "{{.State.Status}}")
            .is_none()
            .then_some(())
    });
    let slots = wait_for("one slot left", WAIT, || {
        on(
            0,
            "SELECT string_agg(slot_name, ',') FROM pg_replication_slots",
        )
        .filter(|s| !s.contains(&slot(2)))
    });
    assert_eq!(slots, slot(1));
}
