//! A cold restart, as after a power loss: every agent of a three-host
//! cluster with running databases stops; they come back one by one, 30 s
//! apart, in reverse order. An agent whose etcd has no quorum yet waits
//! (saying so) instead of exiting; once two are back the cluster forms
//! again with its history, and every database is Ready with its data.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use serde_json::Value;
use std::time::Duration;

const READY: Duration = Duration::from_secs(180);
const APART: Duration = Duration::from_secs(30);

fn database(name: &str, port: u16, hosts: &[&str]) -> String {
    format!(
        "database_name: {name}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}]\ndatabase_users:\n  - username: app\n    password: {{env: PGCD_TEST_APP_PASSWORD}}\n    db_owner: true\n    attributes: [LOGIN]\n",
        hosts.join(", ")
    )
}

fn history(api: &str) -> Option<Vec<Value>> {
    get_json(&format!("{api}/v1/cluster"))?["leader_history"]
        .as_array()
        .cloned()
}

fn stop(agent: &mut Agent) {
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    let mut child = agent.child.take().expect("running");
    wait_for(
        &format!("{} stopped", agent.id),
        Duration::from_secs(30),
        || child.try_wait().ok().flatten(),
    );
}

#[test]
fn hosts_coming_back_one_by_one_in_reverse_order_form_the_same_cluster_again() {
    require_image(17);
    std::env::set_var("PGCD_TEST_APP_PASSWORD", "cold-app");
    let block = 83;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let work = dir.path().join("repo");
    std::fs::create_dir_all(work.join("databases")).unwrap();
    git(
        dir.path(),
        &["init", "-q", "-b", "main", work.to_str().unwrap()],
    );
    std::fs::write(
        work.join("databases/cold_a.yaml"),
        database("cold_a", 6631, &[&ids[0], &ids[1]]),
    )
    .unwrap();
    std::fs::write(
        work.join("databases/cold_b.yaml"),
        database("cold_b", 6632, &[&ids[2]]),
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "two databases"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);

    let mut agents = vec![pg_agent(
        block,
        0,
        dir.path(),
        vec!["--init".into(), "--repo".into(), work.display().to_string()],
    )];
    for i in 1..3 {
        let api = agents[0].api();
        wait_for("previous agents healthy", READY, || {
            (healthy_hosts(&api).len() == i).then_some(())
        });
        agents.push(pg_agent(block, i, dir.path(), vec!["--join".into(), api]));
    }
    let mut agents: Vec<AgentGuard> = agents.into_iter().map(Agent::guarded).collect();
    let api = agents[0].api();
    wait_for("three healthy hosts", READY, || {
        (healthy_hosts(&api).len() == 3).then_some(())
    });
    for db in ["cold_a", "cold_b"] {
        wait_ready(&api, db, Some(&sha), READY);
    }
    let addrs: Vec<String> = agents.iter().map(|a| a.addr.clone()).collect();
    let rows = |db: &str, host: usize, port: u16, sql: &str| {
        psql(
            &format!("pgcd-{db}-n1-{}", ids[host]),
            &addrs[host],
            port,
            "app",
            "cold-app",
            db,
            sql,
        )
    };
    // Ready is what the last observation saw; the first write waits until
    // the server answers this client too.
    wait_for("cold_a takes its rows", READY, || {
        rows(
            "cold_a",
            0,
            6631,
            "CREATE TABLE IF NOT EXISTS t(id int); INSERT INTO t SELECT generate_series(1, 100)",
        )
    });
    wait_for("cold_b takes its rows", READY, || {
        rows(
            "cold_b",
            2,
            6632,
            "CREATE TABLE IF NOT EXISTS t(id int); INSERT INTO t SELECT generate_series(1, 50)",
        )
    });
    let before = wait_for("a leader term recorded", READY, || {
        history(&api).filter(|h| !h.is_empty())
    });

    for a in agents.iter_mut() {
        stop(a);
    }
    // h3 first, alone: its etcd has no quorum; it waits and says so.
    agents[2].spawn();
    std::thread::sleep(APART);
    assert!(
        agents[2]
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none()),
        "h3 waits for a quorum instead of exiting:\n{}",
        agents[2].log()
    );
    assert!(
        agents[2].log().contains("etcd has no quorum yet"),
        "h3 says why it waits:\n{}",
        agents[2].log()
    );
    agents[1].spawn();
    std::thread::sleep(APART);
    agents[0].spawn();
    let api = agents[2].api();
    wait_for("three healthy hosts again", READY, || {
        (healthy_hosts(&api).len() == 3).then_some(())
    });
    for db in ["cold_a", "cold_b"] {
        wait_ready(&api, db, Some(&sha), READY);
    }
    let after = history(&api).unwrap();
    assert!(
        after.len() > before.len() && after[..before.len()] == before[..],
        "the leader term history is kept: before {before:?}, after {after:?}"
    );
    let count = |db: &str, host: usize, port: u16| {
        wait_for(&format!("{db} answers"), READY, || {
            rows(db, host, port, "SELECT count(*) FROM t")
        })
    };
    assert_eq!(count("cold_a", 0, 6631), "100");
    assert_eq!(count("cold_b", 2, 6632), "50");
    for a in &agents {
        assert!(!a.log().contains("pgcd: "), "{} gave up: {}", a.id, a.log());
    }
}
