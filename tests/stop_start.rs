//! `Stop` and `Start` operations, for real (two agents with the Docker
//! runtime, one node: a primary and its standby):
//! - a Stop of the primary alone is refused and stops nothing;
//! - a Stop of the node stops the standby, then the primary; they stay
//!   stopped through later revisions although the spec says running, and
//!   the node does not fail over;
//! - a Start starts the primary, then the standby, which streams again.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const READY: Duration = Duration::from_secs(180);
const BLOCK: u8 = 101;
const PORT: u16 = 6641;

fn commit(repo: &Path, path: &str, text: &str, msg: &str) -> String {
    let p = repo.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
    git(repo, &["rev-parse", "HEAD"])
}

/// Operation `id` once it has ended.
fn ended(api: &str, id: &str) -> Value {
    wait_for(&format!("operation {id} ended"), READY, || {
        get_json(&format!("{api}/v1/operations/{id}")).filter(|op| {
            ["succeeded", "failed", "cancelled", "unsupported"]
                .iter()
                .any(|s| op["state"] == *s)
        })
    })
}

fn phase_names(op: &Value) -> Vec<String> {
    op["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Whether the instance's container runs.
fn runs(host: &str) -> bool {
    inspect(&format!("pgcd-ops-n1-{host}"), "{{.State.Running}}").as_deref() == Some("true")
}

/// A container's state time (`StartedAt`, `FinishedAt`).
fn state_time(host: &str, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let t = inspect(
        &format!("pgcd-ops-n1-{host}"),
        &format!("{{{{.State.{field}}}}}"),
    )
    .unwrap();
    chrono::DateTime::parse_from_rfc3339(&t).unwrap()
}

/// The instances' states in the status, by host.
fn states(s: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = s["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["host"].as_str().unwrap_or_default().to_string(),
                        i["state"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The node's primary record (`host`, `term`).
fn record(etcd: &str) -> (String, u64) {
    let out = etcdctl(etcd)
        .args(["get", "/pgcd/v1/primaries/ops/n1", "--print-value-only"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["host"].as_str().unwrap().to_string(),
        v["term"].as_u64().unwrap(),
    )
}

#[test]
fn a_stopped_node_stays_stopped_without_failing_over_until_a_start() {
    require_image(17);
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(BLOCK, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(BLOCK, 2, dir.path(), READY);
    let api = agents[0].api();
    let etcd = agents[0].etcd();
    let spec = format!(
        "database_name: ops\npostgres_version: \"17\"\nport: {PORT}\nfailover:\n  grace: 1s\nnodes:\n  - name: n1\n    host_ids: [{}, {}]\n",
        ids[0], ids[1]
    );
    let sha = commit(&work, "databases/ops.yaml", &spec, "ops");
    wait_ready(&api, "ops", Some(&sha), READY);
    let (primary, term) = wait_for("the primary recorded", READY, || {
        etcdctl(&etcd)
            .args(["get", "/pgcd/v1/primaries/ops/n1", "--print-value-only"])
            .output()
            .ok()
            .filter(|o| !o.stdout.is_empty())
            .map(|_| record(&etcd))
    });
    let standby = ids.iter().find(|h| **h != primary).unwrap().clone();
    wait_for("the standby streams", READY, || {
        let s = status(&api, "ops")?;
        s["instances"]
            .as_array()?
            .iter()
            .any(|i| i["host"] == standby.as_str() && i["streaming"] == "streaming")
            .then_some(())
    });

    // The primary alone: refused, nothing stopped.
    commit(
        &work,
        "operations/stop-primary.yaml",
        &format!("id: stop-primary\nkind: Stop\ndatabase: ops\nhost: {primary}\n"),
        "stop the primary alone",
    );
    let op = ended(&api, "stop-primary");
    assert_eq!(op["state"], "failed", "{op}");
    let reason = op["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!("refused: {primary} is the primary of ops/n1"))
            && reason.contains(&standby)
            && reason.contains("nothing was stopped"),
        "{op}"
    );
    assert!(op["phases"].as_array().is_none_or(Vec::is_empty), "{op}");
    assert!(runs(&primary) && runs(&standby), "nothing stopped");

    // The whole node: the standby, then the primary.
    commit(
        &work,
        "operations/stop-ops.yaml",
        "id: stop-ops\nkind: Stop\ndatabase: ops\nnode: n1\n",
        "stop ops",
    );
    let op = ended(&api, "stop-ops");
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(
        phase_names(&op),
        [format!("n1-{standby}"), format!("n1-{primary}")],
        "{op}"
    );
    assert!(!runs(&primary) && !runs(&standby));
    assert!(
        state_time(&standby, "FinishedAt") < state_time(&primary, "FinishedAt"),
        "the standby stopped first"
    );

    // A later revision, about nothing of ops: it is planned again and
    // nothing starts (the spec still says running), nothing fails over
    // (its grace time, 1 s, long past).
    let later = commit(
        &work,
        "NOTES.md",
        "ops is stopped for maintenance\n",
        "notes",
    );
    let s = wait_for("ops planned at the later revision", READY, || {
        status(&api, "ops").filter(|s| {
            s["observed_revision"] == later.as_str() && s["last_plan"]["revision"] == later.as_str()
        })
    });
    let plan = &s["last_plan"];
    assert!(
        plan["steps"].as_array().is_none_or(Vec::is_empty),
        "no step: {plan}"
    );
    let notes = plan["notes"].to_string();
    for h in [&primary, &standby] {
        assert!(
            notes.contains(&format!(
                "ops/n1 on {h} is stopped by operation stop-ops; a Start operation starts it"
            )),
            "{notes}"
        );
    }
    assert_eq!(
        states(&s),
        [
            (ids[0].clone(), "stopped".to_string()),
            (ids[1].clone(), "stopped".to_string())
        ],
        "{s}"
    );
    assert!(!runs(&primary) && !runs(&standby));
    assert_eq!(record(&etcd), (primary.clone(), term), "no failover");

    // Start: the primary, then the standby, which streams from it again.
    commit(
        &work,
        "operations/start-ops.yaml",
        "id: start-ops\nkind: Start\ndatabase: ops\n",
        "start ops",
    );
    let op = ended(&api, "start-ops");
    assert_eq!(op["state"], "succeeded", "{op}");
    assert_eq!(
        phase_names(&op),
        [format!("n1-{primary}"), format!("n1-{standby}")],
        "{op}"
    );
    assert!(
        state_time(&primary, "StartedAt") < state_time(&standby, "StartedAt"),
        "the primary started first"
    );
    wait_for("the standby streams again", READY, || {
        let s = status(&api, "ops")?;
        s["instances"]
            .as_array()?
            .iter()
            .any(|i| i["host"] == standby.as_str() && i["streaming"] == "streaming")
            .then_some(())
    });
    let s = wait_ready(&api, "ops", None, READY);
    assert_eq!(
        states(&s),
        [
            (ids[0].clone(), "running".to_string()),
            (ids[1].clone(), "running".to_string())
        ],
        "{s}"
    );
    assert_eq!(
        record(&etcd),
        (primary, term),
        "the same primary throughout"
    );
}
