//! The mirror against real Git repositories: fetch only when the remote
//! moved, read specs from commit trees (also below a path), and report
//! statuses as notes pushed back to the origin and to an HTTP statuses API
//! (a small server inside the test records exactly what it receives).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::{git, Repo};
use pgcd::source::git::{Mirror, SourceConfig};
use pgcd::source::status::{self, CommitStatus, HttpStatuses, State};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

#[test]
fn fetches_only_when_the_remote_moved_and_reads_specs_from_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let Repo { bare, work } = Repo::new(tmp.path(), ".", None);
    let mirror = Mirror::open(
        &tmp.path().join("source"),
        SourceConfig::new(bare.to_str().unwrap()),
    )
    .unwrap();
    assert_eq!(mirror.local_head(), None);

    let head = mirror.fetch(&[], T).unwrap();
    assert_eq!(head.to_string(), git(&work, &["rev-parse", "HEAD"]));
    let info = mirror.commit_info(head).unwrap();
    assert_eq!(info.author, "Ada Operator <ada@example.com>");
    assert_eq!(info.subject, "Add the sample databases");
    let files = mirror.read_specs(head).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths.contains(&"databases/orders.yaml") && paths.contains(&"pgcd.yaml"),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with("README.md")));
    let desired = pgcd::spec::load(&files).unwrap();
    assert_eq!(desired.databases.len(), 3);

    // Unchanged remote: same head, nothing new in the object database.
    assert_eq!(mirror.remote_head(T).unwrap(), head);
    assert_eq!(mirror.fetch(&[], T).unwrap(), head);

    // A new commit is picked up; the old one stays readable.
    std::fs::remove_file(work.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    git(&work, &["commit", "-q", "-am", "Drop the backup operation"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let next = mirror.fetch(&[], T).unwrap();
    assert_ne!(next, head);
    assert_eq!(
        pgcd::spec::load(&mirror.read_specs(next).unwrap())
            .unwrap()
            .operations
            .len(),
        0
    );
    assert_eq!(
        pgcd::spec::load(&mirror.read_specs(head).unwrap())
            .unwrap()
            .operations
            .len(),
        1
    );
}

#[test]
fn specs_below_a_path_and_a_missing_branch_are_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let Repo { bare, .. } = Repo::new(tmp.path(), "deploy/pg", None);
    let mut cfg = SourceConfig::new(format!("file://{}", bare.display()));
    cfg.path = "deploy/pg".into();
    let mirror = Mirror::open(&tmp.path().join("source"), cfg.clone()).unwrap();
    let head = mirror.fetch(&[], T).unwrap();
    assert_eq!(
        pgcd::spec::load(&mirror.read_specs(head).unwrap())
            .unwrap()
            .databases
            .len(),
        3
    );

    cfg.branch = "production".into();
    let other = Mirror::open(&tmp.path().join("source2"), cfg).unwrap();
    let err = other.fetch(&[], T).unwrap_err().to_string();
    assert!(err.contains("has no branch production"), "{err}");
}

#[test]
fn notes_are_pushed_back_to_the_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let Repo { bare, .. } = Repo::new(tmp.path(), ".", None);
    let mirror = Mirror::open(
        &tmp.path().join("source"),
        SourceConfig::new(bare.to_str().unwrap()),
    )
    .unwrap();
    let head = mirror.fetch(&[], T).unwrap().to_string();
    let st = CommitStatus::new(
        "pgcd/validate",
        State::Success,
        "2 databases, 1 operation",
        Some("http://127.0.0.1:7800/v1/revisions/x".into()),
    );
    status::write_note(mirror.repo(), &head, &st).unwrap();
    mirror.push_notes(T).unwrap();
    let note = git(&bare, &["notes", "--ref", "pgcd", "show", &head]);
    let v: serde_json::Value = serde_json::from_str(&note).unwrap();
    assert_eq!(v["pgcd/validate"]["state"], "success");
    assert_eq!(
        v["pgcd/validate"]["description"],
        "2 databases, 1 operation"
    );
}

#[tokio::test]
async fn http_statuses_are_posted_with_retries() {
    use axum::{extract::Path as P, http::HeaderMap, routing::post, Router};
    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let app = Router::new().route(
        "/repos/{owner}/{repo}/statuses/{sha}",
        post(
            move |P((owner, repo, sha)): P<(String, String, String)>,
                  headers: HeaderMap,
                  body: String| {
                let seen = seen2.clone();
                async move {
                    let mut s = seen.lock().unwrap();
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default();
                    s.push((
                        format!("{owner}/{repo}/{sha}"),
                        auth,
                        serde_json::from_str(&body).unwrap(),
                    ));
                    // The first delivery fails, as a flaky forge would.
                    if s.len() == 1 {
                        axum::http::StatusCode::BAD_GATEWAY
                    } else {
                        axum::http::StatusCode::CREATED
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let api = HttpStatuses {
        base_url: format!("http://{addr}/"),
        repository: "acme/db-config".into(),
        token: "t0ken".into(),
    };
    let st = CommitStatus::new(
        "pgcd/apply",
        State::Failure,
        "step 3 of 5 failed: create role app",
        None,
    );
    api.post(
        &reqwest::Client::new(),
        "abc123",
        &st,
        3,
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (path, auth, body) in seen.iter() {
        assert_eq!(path, "acme/db-config/abc123");
        assert_eq!(auth, "token t0ken");
        assert_eq!(
            body,
            &serde_json::json!({"context": "pgcd/apply", "state": "failure", "description": "step 3 of 5 failed: create role app"})
        );
    }
}
