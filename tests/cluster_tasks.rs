//! Tasks run exactly once: one per host, with the agent of one host killed
//! while its task runs and restarted (the task is marked failed, never run
//! again), and a task written while that agent was down runs once after it
//! comes back.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// Writes a `debug.sleep` task for a host the way the leader does.
fn put_task(etcd: &str, host: &str, id: &str, ms: u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([etcd], Some(common::etcd_options()))
            .await
            .expect("etcd");
        let deadline = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
        let spec =
            json!({ "id": id, "kind": "debug.sleep", "args": { "ms": ms }, "deadline": deadline });
        let status = json!({ "id": id, "host": host, "kind": "debug.sleep", "state": "pending" });
        // Retried: right after a member is killed, etcd may be electing a raft leader.
        let start = std::time::Instant::now();
        loop {
            // Only if absent, as the leader's dispatch: a retry after an
            // ambiguous timeout must not make a finished task pending again.
            let status_key = format!("/pgcd/v1/tasks/{id}");
            let absent =
                etcd_client::Compare::version(status_key, etcd_client::CompareOp::Equal, 0);
            let txn = etcd_client::Txn::new().when([absent]).and_then([
                etcd_client::TxnOp::put(
                    format!("/pgcd/v1/hosts/{host}/tasks/{id}"),
                    spec.to_string(),
                    None,
                ),
                etcd_client::TxnOp::put(format!("/pgcd/v1/tasks/{id}"), status.to_string(), None),
            ]);
            match client.txn(txn).await {
                Ok(_) => break,
                Err(e) if start.elapsed() < Duration::from_secs(15) => {
                    eprintln!("retrying task write: {e}")
                }
                Err(e) => panic!("write task {id}: {e}"),
            }
        }
    });
}

fn task(api: &str, id: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/tasks/{id}"))
}

fn runs(agent: &Agent, id: &str) -> usize {
    std::fs::read_to_string(agent.data_dir.join("debug-runs.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(id))
        .count()
}

#[test]
fn each_task_runs_exactly_once_even_when_its_agent_is_killed_and_restarted() {
    let mut c = Cluster::start(4, 3);
    let etcd = c.agents[0].etcd();
    let api = c.agents[0].api();
    for a in &c.agents {
        put_task(&etcd, &a.id, &format!("sleep-{}", a.id), 4000);
    }
    // h2's task is running: kill its agent mid-task.
    wait_for("sleep-h2 running", Duration::from_secs(10), || {
        task(&api, "sleep-h2").filter(|t| t["state"] == "running")
    });
    // A running task's log lines show before it finishes.
    wait_for(
        "sleep-h3's log while it runs",
        Duration::from_secs(10),
        || {
            let t = task(&api, "sleep-h3")?;
            assert_ne!(
                t["state"], "succeeded",
                "finished before its log was seen: {t}"
            );
            let log = t["log"].as_array()?;
            let sleeping = log
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.contains("sleeping")));
            (t["state"] == "running" && sleeping).then_some(())
        },
    );
    c.agents[1].kill9();
    // While h2 is down, another task for it is written.
    put_task(&etcd, "h2", "late-h2", 100);
    c.agents[1].spawn();

    for (id, want) in [
        ("sleep-h1", "succeeded"),
        ("sleep-h3", "succeeded"),
        ("late-h2", "succeeded"),
        ("sleep-h2", "failed"),
    ] {
        let t = wait_for(&format!("{id} {want}"), Duration::from_secs(30), || {
            task(&api, id).filter(|t| t["state"] == want)
        });
        assert!(
            t["started_at"].is_string() && t["finished_at"].is_string(),
            "{t}"
        );
        assert!(
            t["log"].as_array().is_some_and(|l| !l.is_empty()),
            "task has a log: {t}"
        );
        if want == "failed" {
            assert_eq!(t["error"], "agent restarted during task", "{t}");
        }
    }
    let log = get_text(&format!("{api}/v1/tasks/sleep-h2/log")).unwrap_or_default();
    assert!(log.contains("agent restarted during task"), "{log}");
    assert_eq!(runs(&c.agents[0], "sleep-h1"), 1);
    assert_eq!(runs(&c.agents[2], "sleep-h3"), 1);
    assert_eq!(
        runs(&c.agents[1], "sleep-h2"),
        1,
        "the interrupted task is not run again"
    );
    assert_eq!(runs(&c.agents[1], "late-h2"), 1);
    // Other hosts never ran tasks that were not theirs.
    assert_eq!(
        runs(&c.agents[0], "sleep-h2") + runs(&c.agents[2], "sleep-h2"),
        0
    );
    let list = get_json(&format!("{api}/v1/tasks")).expect("task list");
    assert!(
        list.as_array().is_some_and(|l| l.len() >= 7),
        "3 facts + 4 sleep tasks: {list}"
    );
    let failed: Vec<&str> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "failed")
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["sleep-h2"],
        "only the interrupted task failed: {list}"
    );
    let metrics = get_text(&format!("{api}/metrics")).unwrap_or_default();
    assert!(
        metrics.contains("pgcd_tasks{state=\"failed\"} 1"),
        "{metrics}"
    );
}
