//! The status surface over a real agent: `/v1/databases[/{name}[/plan]]`,
//! the HTML page, `/metrics` and `pgcd status` show the records the
//! reconciler writes (written here straight into etcd), and a followed task
//! log streams each flushed line and ends with the task's final state.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use pgcd::cluster::keys;
use pgcd::cluster::tasks::{TaskState, TaskStatus};
use pgcd::plan::{Action, Step};
use pgcd::reconcile::status::{
    ConditionType, DatabaseStatus, InstanceStatus, PlanRecord, ReconcilerStats,
};
use pgcd::state::InstanceRole;
use serde_json::Value;
use std::time::Duration;

/// Writes one record under the `/pgcd/v1/` namespace.
fn put<T: serde::Serialize>(etcd: &str, rel: &str, value: &T) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(put_async(etcd, rel, value));
}

async fn put_async<T: serde::Serialize>(etcd: &str, rel: &str, value: &T) {
    let mut client = etcd_client::Client::connect([etcd], Some(common::etcd_options()))
        .await
        .expect("connect to etcd");
    let body = serde_json::to_string(value).expect("encode record");
    client
        .put(format!("/pgcd/v1/{rel}"), body, None)
        .await
        .expect("put record");
}

/// GETs a URL: status code and body.
fn fetch(url: &str) -> (u16, String) {
    let resp = http()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.text().expect("body"))
}

fn fetch_json(url: &str) -> (u16, Value) {
    let (code, body) = fetch(url);
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (code, json)
}

fn orders() -> DatabaseStatus {
    let mut db = DatabaseStatus::new("orders", "2025-01-01T00:00:00Z");
    db.observed_revision = Some("0123456789abcdef0123456789abcdef01234567".into());
    db.set(
        ConditionType::Ready,
        true,
        "Applied",
        "all instances match the spec".into(),
        "2025-01-01T00:00:00Z",
    );
    db.instances.push(InstanceStatus {
        node: "n1".into(),
        host: "h1".into(),
        endpoint: "127.0.0.11:5432".into(),
        role: InstanceRole::Primary,
        state: "running".into(),
        version: Some("17.2".into()),
        streaming: None,
        lag_bytes: None,
        lag_seconds: None,
        archive: None,
    });
    db.last_plan = Some(PlanRecord {
        revision: db.observed_revision.clone(),
        planned_at: "2025-01-01T00:00:00Z".into(),
        text: "orders/n1/h1: start the instance".into(),
        steps: vec![Step {
            id: "orders/n1/h1/start".into(),
            database: "orders".parse().unwrap(),
            node: "n1".parse().unwrap(),
            host: "h1".parse().unwrap(),
            action: Action::StartInstance,
            reason: "stopped by hand".into(),
            disruptive: false,
            drift: true,
            depends_on: vec![],
            operation: None,
            impact: None,
        }],
        notes: vec![],
        operations: vec![],
    });
    db
}

fn billing() -> DatabaseStatus {
    let mut db = DatabaseStatus::new("billing", "2025-01-01T00:00:00Z");
    db.set(
        ConditionType::Ready,
        false,
        "StepFailed",
        "not ready".into(),
        "2025-01-01T00:00:00Z",
    );
    db.set(
        ConditionType::Stalled,
        true,
        "StepFailed",
        "<script>alert(\"x\")</script>".into(),
        "2025-01-01T00:00:00Z",
    );
    db
}

#[test]
fn database_records_show_in_json_routes_page_metrics_and_cli() {
    let c = Cluster::start(11, 1);
    let api = c.agents[0].api();
    let etcd = c.agents[0].etcd();

    // Nothing written yet: empty list, a page that renders, zero counters.
    assert_eq!(
        fetch_json(&format!("{api}/v1/databases")),
        (200, Value::Array(vec![]))
    );
    let (code, page) = fetch(&format!("{api}/"));
    assert_eq!(code, 200);
    assert!(page.contains("No database status yet"), "{page}");
    let (_, metrics) = fetch(&format!("{api}/metrics"));
    assert_eq!(metric(&metrics, "pgcd_reconcile_passes_total"), Some(0.0));

    put(&etcd, &keys::database_status("orders"), &orders());
    put(&etcd, &keys::database_status("billing"), &billing());
    let stats = ReconcilerStats {
        leader: "h1".into(),
        passes: 7,
        last_pass_seconds: 0.25,
        last_pass_cpu_seconds: 0.0125,
        pass_seconds_sum: 3.5,
        last_plan_steps: 2,
        drift_corrections_total: 3,
        apply_failures_total: 1,
        steps_total: 9,
        failovers_total: 2,
        updated_at: "2025-01-01T00:00:00Z".into(),
    };
    put(&etcd, keys::RECONCILER_STATS, &stats);

    // The list is sorted by name and leaves out plan steps.
    let (code, list) = fetch_json(&format!("{api}/v1/databases"));
    assert_eq!(code, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["billing", "orders"]);
    assert_eq!(list[1]["last_plan"]["steps"], Value::Array(vec![]));
    assert_eq!(
        list[1]["last_plan"]["text"],
        "orders/n1/h1: start the instance"
    );

    // One database in full, and its plan with every step.
    let (code, one) = fetch_json(&format!("{api}/v1/databases/orders"));
    assert_eq!(code, 200);
    let back: DatabaseStatus = serde_json::from_value(one).expect("a DatabaseStatus");
    assert_eq!(back, orders());
    let (code, plan) = fetch_json(&format!("{api}/v1/databases/orders/plan"));
    assert_eq!(code, 200);
    assert_eq!(plan["steps"][0]["id"], "orders/n1/h1/start");

    // 404s carry an error message.
    let (code, err) = fetch_json(&format!("{api}/v1/databases/nope"));
    assert_eq!(code, 404);
    assert!(err["error"].as_str().is_some_and(|e| e.contains("nope")));
    let (code, err) = fetch_json(&format!("{api}/v1/databases/billing/plan"));
    assert_eq!(code, 404);
    assert!(err["error"].is_string());
    let (code, _) = fetch_json(&format!("{api}/v1/databases/nope/plan"));
    assert_eq!(code, 404);

    // The page names both databases and escapes the message.
    let (code, page) = fetch(&format!("{api}/"));
    assert_eq!(code, 200);
    assert!(page.contains("<h3>orders</h3>"), "{page}");
    assert!(page.contains("<h3>billing</h3>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("<td>primary</td><td>running</td><td>17.2</td>"));
    assert!(page.contains("<pre>orders/n1/h1: start the instance</pre>"));

    // Metrics from the counters record and the conditions.
    let (_, metrics) = fetch(&format!("{api}/metrics"));
    for (name, value) in [
        ("pgcd_reconcile_passes_total", 7.0),
        ("pgcd_reconcile_last_duration_seconds", 0.25),
        ("pgcd_reconcile_last_cpu_seconds", 0.0125),
        ("pgcd_reconcile_duration_seconds_sum", 3.5),
        ("pgcd_plan_steps", 2.0),
        ("pgcd_drift_corrections_total", 3.0),
        ("pgcd_apply_failures_total", 1.0),
        ("pgcd_failovers_total", 2.0),
        ("pgcd_apply_steps_total", 9.0),
        (
            "pgcd_database_condition{database=\"orders\",condition=\"Ready\"}",
            1.0,
        ),
        (
            "pgcd_database_condition{database=\"billing\",condition=\"Ready\"}",
            0.0,
        ),
        (
            "pgcd_database_condition{database=\"billing\",condition=\"Stalled\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, name), Some(value), "{name} in\n{metrics}");
    }

    // `pgcd status` lists each database with what holds and why.
    let out = pgcd_client()
        .args(["status", "--api", &api])
        .output()
        .expect("run pgcd status");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"))
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("billing"), "billing Stalled StepFailed");
    assert_eq!(line("orders"), "orders Ready Applied");
}

fn task(id: &str, state: TaskState, log: &[&str]) -> TaskStatus {
    TaskStatus {
        id: id.into(),
        // No agent runs this host, so no runner touches the record.
        host: "elsewhere".into(),
        kind: "debug.sleep".into(),
        state,
        claimant: None,
        created_at: Some("2025-01-01T00:00:00Z".into()),
        started_at: None,
        finished_at: None,
        result: None,
        error: None,
        log: log.iter().map(|l| (*l).to_owned()).collect(),
    }
}

/// Reads the event stream into `buf` until `done(buf)` or the stream ends.
async fn read_until(resp: &mut reqwest::Response, buf: &mut String, done: impl Fn(&str) -> bool) {
    while !done(buf) {
        match resp.chunk().await.expect("read the event stream") {
            Some(bytes) => buf.push_str(&String::from_utf8_lossy(&bytes)),
            None => return,
        }
    }
}

#[test]
fn followed_task_log_streams_new_lines_and_ends_with_the_final_state() {
    let c = Cluster::start(12, 1);
    let api = c.agents[0].api();
    let etcd = c.agents[0].etcd();
    let url = format!("{api}/v1/tasks/t-follow/log");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let run = async {
        put_async(
            &etcd,
            "tasks/t-follow",
            &task("t-follow", TaskState::Running, &["line one"]),
        )
        .await;
        let client = client_tls()
            .http(Duration::from_secs(60))
            .expect("HTTPS client");
        let mut resp = client
            .get(format!("{url}?follow=true"))
            .send()
            .await
            .expect("open the stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().ok(),
            Some("text/event-stream")
        );
        let mut buf = String::new();
        read_until(&mut resp, &mut buf, |b| b.contains("data: line one\n")).await;
        assert!(buf.contains("id: 0\n"), "{buf}");

        let two = ["line one", "line two"];
        put_async(
            &etcd,
            "tasks/t-follow",
            &task("t-follow", TaskState::Running, &two),
        )
        .await;
        read_until(&mut resp, &mut buf, |b| b.contains("data: line two\n")).await;
        assert!(buf.contains("data: line two\n"), "{buf}");
        assert!(!buf.contains("event: end"), "{buf}");

        let mut done = task("t-follow", TaskState::Succeeded, &two);
        done.finished_at = Some("2025-01-01T00:00:05Z".into());
        put_async(&etcd, "tasks/t-follow", &done).await;
        // The stream ends after the end event: read to its close.
        read_until(&mut resp, &mut buf, |_| false).await;
        assert_eq!(buf.matches("data: line one\n").count(), 1, "{buf}");
        assert_eq!(buf.matches("data: line two\n").count(), 1, "{buf}");
        let end = buf
            .split("\n\n")
            .find(|e| e.contains("event: end"))
            .unwrap_or_else(|| panic!("no end event in {buf}"));
        let data = end
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("end event data");
        let data: Value = serde_json::from_str(data).expect("end data is JSON");
        assert_eq!(data["state"], "succeeded");
        assert_eq!(data["finished_at"], "2025-01-01T00:00:05Z");

        // Reconnecting after line 0 sends only what was missed, then the end.
        let mut resp = client
            .get(format!("{url}?follow=true"))
            .header("Last-Event-ID", "0")
            .send()
            .await
            .expect("reopen the stream");
        let mut again = String::new();
        read_until(&mut resp, &mut again, |_| false).await;
        assert!(!again.contains("line one"), "{again}");
        assert!(again.contains("data: line two\n"), "{again}");
        assert!(again.contains("event: end"), "{again}");
    };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .unwrap_or_else(|_| panic!("the log stream did not finish in 30s"));
    });

    // Without follow, the log stays plain text.
    assert_eq!(fetch(&url), (200, "line one\nline two\n".to_owned()));
    assert_eq!(fetch(&format!("{api}/v1/tasks/none/log")).0, 404);
}
