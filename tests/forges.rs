//! GitHub, GitLab and Bitbucket as pgcd meets them, in the shapes of their
//! published documentation: webhook deliveries (GitHub's published
//! signature example, GitLab's `X-Gitlab-Token` push hook, Bitbucket's
//! signed `repo:push` and Data Center's `repo:refs_changed`) verified by a
//! real agent and waking its leader, and commit statuses posted to GitLab's
//! commit status API and Bitbucket's build status API — a server inside the
//! test checks each request and counts them per context.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::{git, Repo};
use common::*;
use pgcd::source::forges::StatusApi;
use pgcd::source::status::{CommitStatus, State};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

/// GitHub's published example secret ("Validating webhook deliveries").
const SECRET: &str = "It's a Secret to Everybody";
const WAIT: Duration = Duration::from_secs(30);
/// Shorter than the 15 s first poll: a fetch this soon was the webhook's doing.
const WOKEN: Duration = Duration::from_secs(8);

fn setup_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("PGCD_WEBHOOK_SECRET", SECRET);
        std::env::set_var("PGCD_TEST_GITLAB_TOKEN", "glpat-abc");
        std::env::set_var("PGCD_TEST_BITBUCKET_TOKEN", "bb-access-token");
    });
}

fn one_agent(block: u8, dir: &Path, repo_url: &str) -> AgentGuard {
    setup_env();
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(block, 0),
        data_dir: dir.join("h1"),
        mode: vec!["--init".into(), "--repo".into(), repo_url.into()],
        child: None,
    };
    a.spawn();
    let a = a.guarded();
    let api = a.api();
    wait_for("agent healthy", WAIT, || {
        (healthy_hosts(&api).len() == 1).then_some(())
    });
    a
}

fn post(url: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    // Forges present no client certificate: the webhook route needs none.
    let mut req = anon_http()
        .post(url)
        .timeout(Duration::from_secs(10))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().expect("webhook request");
    (res.status().as_u16(), res.json().unwrap_or(Value::Null))
}

fn sig(body: &[u8]) -> String {
    format!(
        "sha256={}",
        pgcd::source::webhook::sign(SECRET.as_bytes(), body)
    )
}

/// GitLab's documented push hook body, trimmed to what identifies it.
fn gitlab_push(git_ref: &str, after: &str) -> Vec<u8> {
    json!({
        "object_kind": "push", "event_name": "push",
        "before": "95790bf891e76fee5e1747ab589903a6a1f80f22", "after": after,
        "ref": git_ref, "checkout_sha": after,
        "user_id": 4, "user_name": "John Smith", "user_username": "jsmith",
        "project_id": 15,
        "project": {"id": 15, "name": "Diaspora", "path_with_namespace": "mike/diaspora",
                    "default_branch": "main", "git_http_url": "http://example.com/mike/diaspora.git"},
        "commits": [{"id": after, "message": "Update", "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"}}],
        "total_commits_count": 1,
        "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git"}
    })
    .to_string()
    .into_bytes()
}

/// Bitbucket Cloud's documented `repo:push` body, trimmed likewise.
fn bitbucket_push(branch: &str, hash: &str) -> Vec<u8> {
    json!({
        "actor": {"type": "user", "display_name": "Ada", "uuid": "{d301aafa-d676-4ee0-88be-962be7417567}"},
        "repository": {"type": "repository", "full_name": "acme/db-config", "name": "db-config",
                       "uuid": "{b7e6ce6b-a3b9-4ae5-8fdf-6a4ac9f02d1a}"},
        "push": {"changes": [{
            "new": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": hash}},
            "old": {"type": "branch", "name": branch, "target": {"type": "commit", "hash": "1e65c05c1d5171631d92438a13901ca7dae9618c"}},
            "created": false, "forced": false, "closed": false, "truncated": false,
            "commits": [{"type": "commit", "hash": hash}]
        }]}
    })
    .to_string()
    .into_bytes()
}

struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn applied(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/source"))?["applied"]["sha"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn webhooks_of_every_forge_are_verified_in_their_documented_shapes_and_wake_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    // A long poll and a git daemon (no file watch): only a webhook makes the leader fetch in time.
    let repo = Repo::new(tmp.path(), ".", Some("source:\n  poll_interval: 10m\n"));
    let listen = ip(70, 9);
    let exec_path = git(tmp.path(), &["--exec-path"]);
    let _daemon = Daemon(
        Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--export-all",
                "--reuseaddr",
                &format!("--listen={listen}"),
                "--port=9418",
            ])
            .arg(format!("--base-path={}", tmp.path().display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let agent = one_agent(70, tmp.path(), &format!("git://{listen}/origin.git"));
    let api = agent.api();
    let hook = |forge: &str| format!("{api}/v1/webhooks/{forge}");
    let head1 = repo.head();
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });

    // GitHub's published example: this secret, this body, this signature.
    let example = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let (code, v) = post(
        &hook("github"),
        &[
            ("X-Hub-Signature-256", example.into()),
            ("X-GitHub-Event", "push".into()),
        ],
        b"Hello, World!",
    );
    assert_eq!((code, &v["woke"]), (202, &json!("leader")), "{v}");
    let (code, _) = post(
        &hook("github"),
        &[("X-Hub-Signature-256", example.into())],
        b"Hello, World?",
    );
    assert_eq!(code, 401);

    // GitLab: the secret itself in X-Gitlab-Token.
    let head2 = repo.commit("Drop the backup operation", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("main");
    let gl = |token: &str| {
        vec![
            ("X-Gitlab-Event", "Push Hook".to_string()),
            ("X-Gitlab-Token", token.to_string()),
        ]
    };
    let body = gitlab_push("refs/heads/main", &head2);
    let (code, v) = post(&hook("gitlab"), &gl("not the secret"), &body);
    assert_eq!(code, 401, "{v}");
    let (code, _) = post(
        &hook("gitlab"),
        &[("X-Gitlab-Event", "Push Hook".into())],
        &body,
    );
    assert_eq!(code, 401);
    let (code, v) = post(
        &hook("gitlab"),
        &gl(SECRET),
        &gitlab_push("refs/heads/feature", &head2),
    );
    assert_eq!(code, 202);
    assert!(
        v["ignored"]
            .as_str()
            .unwrap()
            .contains("refs/heads/feature"),
        "{v}"
    );
    let (code, v) = post(&hook("gitlab"), &gl(SECRET), &body);
    assert_eq!((code, &v["woke"]), (202, &json!("leader")), "{v}");
    wait_for("the GitLab hook made the leader fetch", WOKEN, || {
        (applied(&api)? == head2).then_some(())
    });

    // Bitbucket Cloud: X-Hub-Signature over the repo:push body.
    let head3 = repo.commit("Orders on another port", |w| {
        let f = w.join("databases/orders.yaml");
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, text.replace("port: 6432", "port: 6433")).unwrap();
    });
    repo.push("main");
    let body = bitbucket_push("main", &head3);
    let bb = |signature: String, event: &str| {
        vec![
            ("X-Hub-Signature", signature),
            ("X-Event-Key", event.to_string()),
        ]
    };
    let (code, _) = post(&hook("bitbucket"), &bb(sig(b"other"), "repo:push"), &body);
    assert_eq!(code, 401);
    let (code, v) = post(
        &hook("bitbucket"),
        &bb(sig(b"{}"), "diagnostics:ping"),
        b"{}",
    );
    assert_eq!((code, &v["ignored"]), (202, &json!("ping")), "{v}");
    let other = bitbucket_push("feature", &head3);
    let (code, v) = post(&hook("bitbucket"), &bb(sig(&other), "repo:push"), &other);
    assert_eq!(code, 202);
    assert!(v["ignored"].is_string(), "{v}");
    let (code, v) = post(&hook("bitbucket"), &bb(sig(&body), "repo:push"), &body);
    assert_eq!((code, &v["woke"]), (202, &json!("leader")), "{v}");
    wait_for("the Bitbucket hook made the leader fetch", WOKEN, || {
        (applied(&api)? == head3).then_some(())
    });

    // Bitbucket Data Center's repo:refs_changed names the full ref.
    let dc = json!({"eventKey": "repo:refs_changed", "date": "2019-06-17T19:37:57+1000",
        "actor": {"name": "john", "slug": "john", "type": "NORMAL"},
        "repository": {"slug": "test-repo", "project": {"key": "MYPROJECT"}},
        "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                     "refId": "refs/heads/main", "fromHash": "f09c8889a2d234985734958795a31589cd91ffda",
                     "toHash": head3, "type": "UPDATE"}]})
    .to_string()
    .into_bytes();
    let (code, v) = post(&hook("bitbucket"), &bb(sig(&dc), "repo:refs_changed"), &dc);
    assert_eq!((code, &v["woke"]), (202, &json!("leader")), "{v}");
    drop(agent);
}

/// Status requests received: (forge, sha, context, state) → count, and the
/// requests themselves.
#[derive(Default)]
struct Seen {
    counts: HashMap<(String, String, String, String), usize>,
    requests: Vec<(String, String, HashMap<String, String>, Value)>,
}

/// A statuses server speaking GitLab's and Bitbucket's paths.
fn forge_server(answer_gitlab: u16) -> (String, Arc<Mutex<Seen>>) {
    use axum::{extract::Path as P, http::HeaderMap, routing::post, Router};
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let (s1, s2) = (seen.clone(), seen.clone());
    let headers_of = |h: &HeaderMap| {
        h.iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect::<HashMap<_, _>>()
    };
    let app = Router::new()
        .route(
            "/api/v4/projects/{id}/statuses/{sha}",
            post(
                move |P((id, sha)): P<(String, String)>,
                      uri: axum::http::Uri,
                      h: HeaderMap,
                      body: String| {
                    let seen = s1.clone();
                    async move {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        let mut s = seen.lock().unwrap();
                        let key = (
                            "gitlab".into(),
                            sha,
                            v["name"].as_str().unwrap_or("").into(),
                            v["state"].as_str().unwrap_or("").into(),
                        );
                        *s.counts.entry(key).or_default() += 1;
                        s.requests.push((
                            "gitlab".into(),
                            format!("{} {id}", uri.path()),
                            headers_of(&h),
                            v,
                        ));
                        let code = axum::http::StatusCode::from_u16(answer_gitlab).unwrap();
                        (
                            code,
                            r#"{"message":"Cannot transition status via :enqueue from :pending"}"#,
                        )
                    }
                },
            ),
        )
        .route(
            "/2.0/repositories/{ws}/{repo}/commit/{sha}/statuses/build",
            post(
                move |P((ws, repo, sha)): P<(String, String, String)>,
                      h: HeaderMap,
                      body: String| {
                    let seen = s2.clone();
                    async move {
                        let v: Value = serde_json::from_str(&body).unwrap_or_default();
                        let mut s = seen.lock().unwrap();
                        let key = (
                            "bitbucket".into(),
                            sha,
                            v["key"].as_str().unwrap_or("").into(),
                            v["state"].as_str().unwrap_or("").into(),
                        );
                        *s.counts.entry(key).or_default() += 1;
                        s.requests.push((
                            "bitbucket".into(),
                            format!("{ws}/{repo}"),
                            headers_of(&h),
                            v,
                        ));
                        axum::http::StatusCode::CREATED
                    }
                },
            ),
        );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind((ip(71, 5), 0)).await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    (format!("http://{}", rx.recv().unwrap()), seen)
}

#[test]
fn statuses_reach_gitlab_and_bitbucket_in_their_shapes_once_per_context() {
    let (base, seen) = forge_server(201);
    let tmp = tempfile::tempdir().unwrap();
    let yaml = format!(
        "reporters:\n  git_notes:\n    enabled: false\n  gitlab:\n    base_url: {base}/api/v4\n    project: acme/db-config\n    token: {{env: PGCD_TEST_GITLAB_TOKEN}}\n  bitbucket:\n    base_url: {base}\n    repository: acme/db-config\n    token: {{env: PGCD_TEST_BITBUCKET_TOKEN}}\n"
    );
    let repo = Repo::new(tmp.path(), ".", Some(&yaml));
    let agent = one_agent(71, tmp.path(), &format!("file://{}", repo.bare.display()));
    let head1 = repo.head();
    let want = |sha: &str| {
        vec![
            ("gitlab", sha.to_string(), "pgcd/validate", "success"),
            ("gitlab", sha.to_string(), "pgcd/plan", "success"),
            ("gitlab", sha.to_string(), "pgcd/apply", "pending"),
            ("bitbucket", sha.to_string(), "pgcd/validate", "SUCCESSFUL"),
            ("bitbucket", sha.to_string(), "pgcd/plan", "SUCCESSFUL"),
            ("bitbucket", sha.to_string(), "pgcd/apply", "INPROGRESS"),
        ]
    };
    let all_seen = |sha: &str| {
        let s = seen.lock().unwrap();
        want(sha).iter().all(|(f, sha, c, st)| {
            s.counts
                .contains_key(&(f.to_string(), sha.clone(), c.to_string(), st.to_string()))
        })
    };
    wait_for("statuses of the first commit on both forges", WAIT, || {
        all_seen(&head1).then_some(())
    });
    // A second commit; once its statuses are in, the first commit's were
    // still posted once each.
    let head2 = repo.commit("Drop the backup operation", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("main");
    wait_for("statuses of the second commit", WAIT, || {
        all_seen(&head2).then_some(())
    });
    let s = seen.lock().unwrap();
    for (f, sha, c, st) in want(&head1) {
        let n = s.counts[&(f.to_string(), sha, c.to_string(), st.to_string())];
        assert_eq!(n, 1, "{f} {c} {st} posted {n} times");
    }
    for (forge, path, headers, body) in &s.requests {
        match forge.as_str() {
            "gitlab" => {
                // The project path travels URL-encoded in one segment.
                assert_eq!(path.split(' ').nth(1), Some("acme/db-config"));
                assert!(
                    path.starts_with("/api/v4/projects/acme%2Fdb-config/statuses/"),
                    "{path}"
                );
                assert_eq!(headers["private-token"], "glpat-abc");
                let mut keys: Vec<&str> = body
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                keys.sort_unstable();
                assert_eq!(
                    keys,
                    ["description", "name", "state", "target_url"],
                    "{body}"
                );
            }
            _ => {
                assert_eq!(path, "acme/db-config");
                assert_eq!(headers["authorization"], "Bearer bb-access-token");
                let mut keys: Vec<&str> = body
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                keys.sort_unstable();
                assert_eq!(
                    keys,
                    ["description", "key", "name", "state", "url"],
                    "{body}"
                );
                assert_eq!(body["key"], body["name"]);
            }
        }
        assert!(body["description"].as_str().unwrap().chars().count() < 140);
    }
    drop(agent);
}

#[tokio::test]
async fn gitlab_refusing_a_repeated_state_counts_as_delivered_and_other_refusals_are_not_retried() {
    let (base, seen) = forge_server(400);
    let api = StatusApi::Gitlab {
        base_url: format!("{base}/api/v4"),
        project: "42".into(),
        token: "t".into(),
    };
    let st = CommitStatus::new(
        "pgcd/apply",
        State::Pending,
        "waiting",
        Some("http://x/".into()),
    );
    let client = reqwest::Client::new();
    // 400 "Cannot transition status via ..." means the status already shows it.
    api.post(&client, "abc", &st, 3, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().requests.len(), 1);

    let (base, seen) = forge_server(401);
    let api = StatusApi::Gitlab {
        base_url: format!("{base}/api/v4"),
        project: "42".into(),
        token: "revoked".into(),
    };
    let err = api
        .post(&client, "abc", &st, 3, Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(err.contains("401"), "{err}");
    assert_eq!(
        seen.lock().unwrap().requests.len(),
        1,
        "a 401 is not retried"
    );
}
