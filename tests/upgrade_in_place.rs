//! A major upgrade in place, for real: `ledger/n1` (a primary and two
//! standbys) runs PostgreSQL 17 (Debian's 17.12) with rows, a pg_trgm GIN
//! index and the extension, and a client writes all along through a
//! multi-host connection string. The spec then says 18 with
//! `major_upgrade: in_place`: the standbys are removed, the primary is
//! upgraded by `pg_upgrade --link` in `pgcd/postgres-upgrade:17-18` and
//! starts on the 18 image, and the standbys are rebuilt from it. Its data
//! is intact, its index is used, its extension works, every commit the
//! client was told of is on all three instances, and the old data
//! directory is kept beside the new one.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::ha::*;
use common::pg::*;
use common::*;
use std::time::Instant;

const BLOCK: u8 = 105;
const PORT: u16 = 6645;

const FIGURES: &str = "SELECT count(*) || ' ' || md5(string_agg(w, ',' ORDER BY id)) FROM words";

#[test]
fn a_single_node_database_goes_from_17_to_18_in_place_with_its_standbys_rebuilt() {
    require_tag("18");
    let upgrade_image = std::process::Command::new("docker")
        .args(["image", "inspect", "pgcd/postgres-upgrade:17-18"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        upgrade_image,
        "pgcd/postgres-upgrade:17-18 is missing: run scripts/build-images.sh upgrade-17-18 (scripts/test.sh does)"
    );
    let ha = Ha::start(BLOCK, PORT, "extensions:\n  - pg_trgm\n", &[]);
    let api = ha.agents[0].api();
    wait_for("pg_trgm is created", WAIT, || {
        (ha.sql(
            0,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'",
        ) == Some("1".into()))
        .then_some(())
    });
    ha.sql(
        0,
        "CREATE TABLE words (id int PRIMARY KEY, w text NOT NULL); \
         INSERT INTO words SELECT g, md5(g::text) FROM generate_series(1, 20000) g; \
         CREATE INDEX words_trgm ON words USING gin (w gin_trgm_ops)",
    )
    .unwrap();
    // For the benchmark figure (bench/upgrade.md): PGCD_UPGRADE_FILLER_MB
    // megabytes of rows besides (none by default).
    let filler_mb: u64 = std::env::var("PGCD_UPGRADE_FILLER_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if filler_mb > 0 {
        ha.sql(
            0,
            &format!(
                "CREATE TABLE filler (id int PRIMARY KEY, pad text NOT NULL); \
                 INSERT INTO filler SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, {}) g",
                filler_mb * 1024
            ),
        )
        .unwrap();
        eprintln!(
            "database size before: {}",
            ha.sql(0, "SELECT pg_size_pretty(pg_database_size('ledger'))")
                .unwrap()
        );
    }
    let before = ha.sql(0, FIGURES).unwrap();
    for i in 0..3 {
        let v = ha.sql(i, "SELECT version()").unwrap();
        assert!(v.starts_with("PostgreSQL 17"), "{v}");
    }

    let client = ha.client();
    ha.writes_go_on(&client, 50);
    let started = Instant::now();
    let spec = ha.work.join("databases/ledger.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "postgres_version: \"17\"",
            "postgres_version: \"18\"\nmajor_upgrade: in_place",
        ),
    )
    .unwrap();
    git(&ha.work, &["commit", "-q", "-am", "ledger to 18 in place"]);
    let sha = git(&ha.work, &["rev-parse", "HEAD"]);

    // The primary on 18 first, before any standby is back.
    wait_for("the primary serves PostgreSQL 18", WAIT, || {
        ha.sql(0, "SELECT version()")
            .filter(|v| v.starts_with("PostgreSQL 18"))
    });
    let upgraded = started.elapsed();
    ha.writes_go_on(&client, 50);
    let s = wait_ready(&api, "ledger", Some(&sha), WAIT);
    let degraded = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .map(|c| c["status"].clone());
    assert_eq!(degraded, Some(false.into()), "{s}");
    for i in 1..3 {
        wait_for("a rebuilt standby on 18 streams", WAIT, || {
            (ha.standby(i)
                && ha
                    .sql(i, "SELECT version()")
                    .is_some_and(|v| v.starts_with("PostgreSQL 18")))
            .then_some(())
        });
    }
    let gap = client.longest_gap(started);
    let errors = client.errors().len();
    let acked = client.finish();
    eprintln!(
        "major upgrade in place 17 -> 18 of a primary with two standbys: the writer's longest stretch without a commit {:.1} s ({errors} failed connection attempts), the primary on 18 {:.1} s after the commit, Ready after {:.1} s",
        gap.as_secs_f64(),
        upgraded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The data, its index and its extension.
    assert_eq!(ha.sql(0, FIGURES).unwrap(), before);
    let plan = ha
        .sql(
            0,
            "SET enable_seqscan = off; EXPLAIN SELECT id FROM words WHERE w LIKE '%abcd%'",
        )
        .unwrap();
    assert!(plan.contains("words_trgm"), "{plan}");
    assert_eq!(
        ha.sql(0, "SELECT similarity('upgrade', 'upgraded') > 0.5")
            .as_deref(),
        Some("t")
    );
    // Every acknowledged commit, on every instance; one primary, the same.
    ha.all_follow(0, -1);
    for i in 0..3 {
        ha.assert_all_on(i, &acked);
        assert_eq!(ha.sql(i, FIGURES).unwrap(), before, "host {i}");
    }
    assert!(ha.writable(0));
    // The old data directory is kept, the new one is 18's.
    let dir = ha.agents[0].data_dir.join("instances/ledger-n1");
    let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_default();
    assert_eq!(read("data/PG_VERSION").trim(), "18");
    assert_eq!(read("data.old-17/PG_VERSION").trim(), "17");
    // The step's log says what it did.
    let tasks = get_json(&format!("{api}/v1/tasks")).unwrap();
    let logs: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .filter_map(|id| get_text(&format!("{api}/v1/tasks/{id}/log")))
        .filter(|log| log.contains("pg_upgrade --link done"))
        .collect();
    assert_eq!(logs.len(), 1, "one upgrade task: {tasks}");
    assert!(
        logs[0].contains("Performing Consistency Checks on Old Live Server"),
        "{}",
        logs[0]
    );
    assert!(logs[0].contains("statistics rebuilt"), "{}", logs[0]);
}
