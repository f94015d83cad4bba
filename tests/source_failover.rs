//! The leader dies between fetching a revision and recording it (a real
//! abort, injected by PGCD_FAULT_ABORT_AFTER_FETCH=h1): the next leader
//! reaches the same revision, records it once and reports it once — counted
//! by a statuses server inside the test.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::Repo;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "failover-webhook-secret";

/// Status POSTs received, per (sha, context).
type Counts = Arc<Mutex<HashMap<(String, String), usize>>>;

/// Counts status POSTs per (sha, context).
fn statuses_server() -> (String, Counts) {
    let seen: Counts = Arc::default();
    let seen2 = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            use axum::{extract::Path as P, routing::post, Router};
            let app = Router::new().route(
                "/repos/{owner}/{repo}/statuses/{sha}",
                post(
                    move |P((_o, _r, sha)): P<(String, String, String)>, body: String| {
                        let seen = seen2.clone();
                        async move {
                            let v: Value = serde_json::from_str(&body).unwrap_or_default();
                            // A context may go pending → success: each
                            // state counts on its own, and none twice.
                            let ctx = format!(
                                "{} {}",
                                v["context"].as_str().unwrap_or(""),
                                v["state"].as_str().unwrap_or("")
                            );
                            *seen.lock().unwrap().entry((sha, ctx)).or_default() += 1;
                            axum::http::StatusCode::CREATED
                        }
                    },
                ),
            );
            let l = tokio::net::TcpListener::bind("127.0.42.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), seen)
}

#[test]
fn leader_killed_between_fetch_and_record_is_replaced_without_skips_or_repeats() {
    std::env::set_var("PGCD_FAULT_ABORT_AFTER_FETCH", "h1");
    std::env::set_var("PGCD_WEBHOOK_SECRET", SECRET);
    std::env::set_var("PGCD_TEST_STATUS_TOKEN", "tok");
    let (statuses, seen) = statuses_server();

    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("origin.git");
    // The cluster forms while the repository does not exist yet, so h1
    // (leader from the start) fetches only once all three hosts are in.
    let mut c = Cluster::start_with_repo(42, 3, &format!("file://{}", bare.display()));
    wait_for("h1 leads", Duration::from_secs(30), || {
        (c.leader_seen_by(1).as_deref() == Some("h1")).then_some(())
    });

    let yaml = format!(
        "reporters:\n  http:\n    base_url: {statuses}\n    repository: acme/config\n    token: {{env: PGCD_TEST_STATUS_TOKEN}}\n"
    );
    let repo = Repo::new(tmp.path(), ".", Some(&yaml));
    assert_eq!(repo.bare, bare);
    let head = repo.head();

    // Wake h1 now: it fetches and aborts before recording.
    let body = b"{}".to_vec();
    let sig = format!(
        "sha256={}",
        pgcd::source::webhook::sign(SECRET.as_bytes(), &body)
    );
    let res = anon_http()
        .post(format!("{}/v1/webhooks/generic", c.agents[1].api()))
        .header("X-Pgcd-Signature", sig)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    wait_for("h1 aborted", Duration::from_secs(30), || {
        c.agents[0]
            .child
            .as_mut()
            .and_then(|ch| ch.try_wait().ok().flatten())
    });

    // A new leader records the same revision, once.
    let api = c.agents[1].api();
    let rec = wait_for(
        "revision recorded by the new leader",
        Duration::from_secs(60),
        || {
            let v = get_json(&format!("{api}/v1/revisions/{head}"))?;
            v.get("sha").is_some().then_some(v)
        },
    );
    assert_eq!(rec["state"], "applied");
    assert_ne!(rec["leader"], "h1");
    let src = get_json(&format!("{api}/v1/source")).unwrap();
    assert_eq!(src["applied"]["sha"], head.as_str());
    let list = get_json(&format!("{api}/v1/revisions")).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // Reported exactly once per context.
    let finals = [
        "pgcd/validate success",
        "pgcd/plan success",
        "pgcd/apply success",
    ];
    let counts = wait_for("statuses delivered", Duration::from_secs(30), || {
        let s = seen.lock().unwrap().clone();
        finals
            .iter()
            .all(|f| s.contains_key(&(head.clone(), f.to_string())))
            .then_some(s)
    });
    for (key, n) in &counts {
        assert_eq!(*n, 1, "{key:?} delivered {n} times: {counts:?}");
    }
}
