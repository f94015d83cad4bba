//! https remotes for real: `git http-backend` behind nginx over TLS (a
//! certificate from a CA made in the test) with basic auth. pgcd fetches
//! with a token from a secret reference, checks the server against the
//! configured CA bundle (the system roots otherwise), and a wrong token, an
//! unknown CA or a server that is down is a clear failed status on the
//! source while the last good desired state stays in force.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::{git, Repo};
use common::servers::{HttpsGit, TestCa};
use common::*;
use pgcd::source::git::{Mirror, SourceConfig};
use pgcd::spec::secret::SecretRef;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "glpat-test-token-1234";

fn fetch_err(dir: &Path, name: &str, cfg: SourceConfig) -> String {
    let mirror = Mirror::open(&dir.join(name), cfg).unwrap();
    mirror.fetch(&[], T).unwrap_err().to_string()
}

#[test]
fn https_fetch_checks_the_server_and_sends_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let ca = TestCa::new("pgcd test CA");
    let ip = ip(60, 9);
    let mut server = HttpsGit::start(
        &tmp.path().join("web"),
        &ip,
        tmp.path(),
        ca.issue(&[&ip]),
        &[("x-access-token", TOKEN)],
    );
    let url = format!("{}/origin.git", server.base);
    let ca_file = ca.write(&tmp.path().join("ca.pem"));
    let other_ca = TestCa::new("someone else").write(&tmp.path().join("other-ca.pem"));
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

    // The system roots do not know the test CA.
    let err = fetch_err(tmp.path(), "m1", SourceConfig::new(&url));
    assert!(
        err.contains("TLS certificate") && err.contains("ca_file"),
        "{err}"
    );

    // A bundle of another CA is refused, naming the bundle.
    let mut cfg = SourceConfig::new(&url);
    cfg.ca_file = Some(other_ca.clone());
    let err = fetch_err(tmp.path(), "m2", cfg);
    assert!(
        err.contains("not signed by a CA in") && err.contains("other-ca.pem"),
        "{err}"
    );

    // The right CA but no credentials: the server asks for them.
    let mut cfg = SourceConfig::new(&url);
    cfg.ca_file = Some(ca_file.clone());
    let err = fetch_err(tmp.path(), "m3", cfg.clone());
    assert!(err.contains("the server wants credentials"), "{err}");

    // A wrong token is refused, named by its reference, never by its value.
    std::env::set_var("PGCD_TEST_WRONG_TOKEN", "not-the-token");
    cfg.credentials = Some(SecretRef::Env("PGCD_TEST_WRONG_TOKEN".into()));
    let err = fetch_err(tmp.path(), "m4", cfg.clone());
    assert!(
        err.contains("refused the credentials {env: PGCD_TEST_WRONG_TOKEN}"),
        "{err}"
    );
    assert!(!err.contains("not-the-token"), "{err}");

    // The token from a file: fetched, and notes pushed back with it.
    cfg.credentials = Some(SecretRef::File(token_file.display().to_string()));
    let mirror = Mirror::open(&tmp.path().join("m5"), cfg.clone()).unwrap();
    let head = mirror.fetch(&[], T).unwrap();
    assert_eq!(head.to_string(), repo.head());
    let st = pgcd::source::status::CommitStatus::new(
        "pgcd/validate",
        pgcd::source::status::State::Success,
        "valid",
        None,
    );
    pgcd::source::status::write_note(mirror.repo(), &repo.head(), &st).unwrap();
    mirror.push_notes(T).unwrap();
    let note = git(
        &repo.bare,
        &["notes", "--ref", "pgcd", "show", &repo.head()],
    );
    assert!(note.contains("pgcd/validate"), "{note}");
    // The older field still works.
    let mut old = SourceConfig::new(&url);
    old.ca_file = Some(ca_file.clone());
    old.credentials_file = Some(token_file.clone());
    let m = Mirror::open(&tmp.path().join("m6"), old).unwrap();
    assert_eq!(m.fetch(&[], T).unwrap(), head);

    // A certificate for another name is refused even from the right CA.
    let ip2 = common::ip(60, 10);
    let wrong_name = HttpsGit::start(
        &tmp.path().join("web2"),
        &ip2,
        tmp.path(),
        ca.issue(&["git.example"]),
        &[("x-access-token", TOKEN)],
    );
    let mut cfg2 = cfg.clone();
    cfg2.url = format!("{}/origin.git", wrong_name.base);
    let err = fetch_err(tmp.path(), "m7", cfg2);
    assert!(err.contains(&format!("not valid for {ip2}")), "{err}");

    // The server down: a clear connection error.
    server.stop();
    let err = mirror.fetch(&[], T).unwrap_err().to_string();
    assert!(err.contains("failed to connect"), "{err}");
}

fn source(api: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/source"))
}

fn source_set(agent: &Agent, args: &[&str]) {
    let out = common::tls::pgcd_client()
        .args(["source", "set", "--etcd", &agent.etcd()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgcd source set {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `GET /v1/source` to show a failed fetch whose error contains `text`.
fn await_failure(api: &str, text: &str) -> Value {
    wait_for(&format!("fetch failure with {text:?}"), WAIT, || {
        let s = source(api)?;
        (s["status"]["state"] == "failed" && s["status"]["error"].as_str()?.contains(text))
            .then_some(s)
    })
}

fn applied(api: &str) -> Option<String> {
    source(api)?["applied"]["sha"].as_str().map(str::to_string)
}

#[test]
fn the_leader_follows_an_https_remote_and_keeps_the_last_good_state_when_it_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let ca = TestCa::new("pgcd test CA");
    let ip = ip(61, 9);
    let mut server = HttpsGit::start(
        &tmp.path().join("web"),
        &ip,
        tmp.path(),
        ca.issue(&[&ip]),
        &[("x-access-token", TOKEN)],
    );
    let ca_file = ca.write(&tmp.path().join("ca.pem"));
    // The agents read the token from their environment.
    std::env::set_var("PGCD_TEST_HTTPS_TOKEN", TOKEN);
    std::env::set_var("PGCD_TEST_HTTPS_WRONG", "expired-token");
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(61, 0),
        data_dir: tmp.path().join("h1"),
        mode: vec![
            "--init".into(),
            "--repo".into(),
            format!("{}/origin.git", server.base),
        ],
        child: None,
    };
    a.spawn();
    let agent = a.guarded();
    let api = agent.api();

    // No CA bundle yet: the system roots refuse the server.
    let s = await_failure(&api, "TLS certificate");
    assert!(s["applied"].is_null(), "{s}");

    // Files are read on the agents: a relative path is refused up front.
    let out = common::tls::pgcd_client()
        .args([
            "source",
            "set",
            "--etcd",
            &agent.etcd(),
            "--ca-file",
            "ca.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ca_file: ca.pem is not an absolute path"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    source_set(
        &agent,
        &[
            "--ca-file",
            ca_file.to_str().unwrap(),
            "--credentials",
            "env:PGCD_TEST_HTTPS_TOKEN",
            "--poll-interval",
            "1s",
        ],
    );
    let head1 = repo.head();
    wait_for("first revision applied over https", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });
    let s = wait_for("fetch ok", WAIT, || {
        source(&api).filter(|s| s["status"]["state"] == "ok")
    });
    assert_eq!(s["config"]["credentials"]["env"], "PGCD_TEST_HTTPS_TOKEN");
    assert!(!s.to_string().contains(TOKEN), "the token leaked: {s}");

    // A push is picked up by polling.
    let head2 = repo.commit("Drop the backup operation", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("main");
    wait_for("second revision applied", WAIT, || {
        (applied(&api)? == head2).then_some(())
    });

    // The token is revoked: a failed status, and the state in force stays.
    source_set(&agent, &["--credentials", "env:PGCD_TEST_HTTPS_WRONG"]);
    await_failure(&api, "refused the credentials {env: PGCD_TEST_HTTPS_WRONG}");
    assert_eq!(applied(&api).unwrap(), head2);

    // The server goes down: the error says so; still the same state in force.
    source_set(&agent, &["--credentials", "env:PGCD_TEST_HTTPS_TOKEN"]);
    server.stop();
    await_failure(&api, "failed to connect");
    let desired = get_json(&format!("{api}/v1/desired")).unwrap();
    assert_eq!(desired["revision"], head2.as_str());
    let show = common::tls::pgcd_client()
        .args(["source", "show", "--api", &api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("fetch:        FAILED since") && text.contains("ca file:"),
        "{text}"
    );

    // Back up: it recovers by itself.
    server.resume();
    wait_for("fetch ok again", WAIT, || {
        source(&api).filter(|s| s["status"]["state"] == "ok")
    });
    drop(agent);
}

#[test]
fn a_server_that_accepts_and_says_nothing_is_a_failed_fetch_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    // Accepts connections and never answers (a hung proxy, a stuck server).
    let silent = std::net::TcpListener::bind((ip(64, 9), 0)).unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(64, 0),
        data_dir: tmp.path().join("h1"),
        mode: vec![
            "--init".into(),
            "--repo".into(),
            format!("https://{}:{port}/origin.git", ip(64, 9)),
        ],
        child: None,
    };
    a.spawn();
    let agent = a.guarded();
    let api = agent.api();
    let start = std::time::Instant::now();
    // libgit2's I/O timeout (30 s) ends the attempt; the leader says so.
    let s = wait_for(
        "the silent server gives a failed fetch",
        Duration::from_secs(50),
        || source(&api).filter(|s| s["status"]["state"] == "failed"),
    );
    let took = start.elapsed();
    eprintln!(
        "silent server: failed after {took:?}: {}",
        s["status"]["error"]
    );
    assert!(took >= Duration::from_secs(20), "failed too soon: {s}");
    assert!(
        s["status"]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{s}"
    );
    drop(agent);
}
