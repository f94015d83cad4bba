//! pgEdge's quickstart spec, for real: three nodes of one database on one
//! host, a port each and no `postgres_version` (so the default, 18). The
//! three instances run side by side (a container and data directory per
//! node), replicate to each other, and a row written on one node reaches the
//! other two.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);

#[test]
fn pgedge_quickstart_runs_three_nodes_on_one_host() {
    require_image(18);
    let block = 71;
    let dir = tempfile::tempdir().unwrap();
    let host = host_id(block, 0);
    let _containers = Containers::new(vec![host.clone()]);
    std::env::set_var("PGCD_EXAMPLE_ADMIN_PASSWORD", "quick'start");
    let (agents, work) = pg_cluster(block, 1, dir.path(), WAIT);
    let api = agents[0].api();
    // tests/fixtures/pgedge/quickstart, on this test's host and ports.
    let spec = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pgedge/quickstart/databases/example.yaml"),
    )
    .unwrap()
    .replace("host-1", &host)
    .replace("port: 643", "port: 657");
    std::fs::write(work.join("databases/example.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "pgEdge quickstart"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    let s = wait_ready(&api, "example", Some(&sha), WAIT);
    assert!(!condition(&s, "Degraded"), "{s}");

    let on = |n: usize, sql: &str| {
        let su = std::fs::read_to_string(
            dir.path()
                .join(&host)
                .join(format!("instances/example-n{n}/superuser.pw")),
        )
        .unwrap();
        psql(
            &format!("pgcd-example-n{n}-{host}"),
            &addr(block, 0),
            6571 + n as u16,
            "postgres",
            &su,
            "example",
            sql,
        )
    };
    for n in 1..=3 {
        let v = on(n, "SHOW server_version").unwrap_or_default();
        assert!(v.starts_with("18."), "n{n} runs {v}");
        assert_eq!(
            on(n, "SHOW port").as_deref(),
            Some(&*(6571 + n).to_string())
        );
    }
    on(1, "CREATE TABLE greetings (id int PRIMARY KEY, text text)");
    wait_for("the table on every node", WAIT, || {
        (2..=3)
            .all(|n| on(n, "SELECT to_regclass('greetings') IS NOT NULL").as_deref() == Some("t"))
            .then_some(())
    });
    // As in pgEdge's quickstart: written on n2, read on n1 (and n3).
    wait_for("n2 writes", WAIT, || {
        on(
            2,
            "INSERT INTO greetings VALUES (1, 'Hello, pgEdge!') ON CONFLICT DO NOTHING",
        )
    });
    for n in [1, 3] {
        wait_for("the row on the other nodes", WAIT, || {
            on(n, "SELECT text FROM greetings WHERE id = 1").filter(|t| t == "Hello, pgEdge!")
        });
    }
}
