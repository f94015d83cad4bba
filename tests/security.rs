//! Security with real TLS and real etcd: who can reach etcd and the API,
//! and what a join needs (certificates over time: security_certs.rs).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A CA and a `root` client certificate of another cluster.
fn foreign_client(dir: &Path) -> std::path::PathBuf {
    let ca = dir.join("other-ca");
    let client = dir.join("other-root");
    assert!(pgcd_client()
        .args(["cert", "ca", "--out"])
        .arg(&ca)
        .output()
        .expect("pgcd cert ca")
        .status
        .success());
    assert!(pgcd_client()
        .args(["cert", "issue", "--client", "root", "--ca-dir"])
        .arg(&ca)
        .arg("--out")
        .arg(&client)
        .output()
        .expect("pgcd cert issue")
        .status
        .success());
    client
}

/// A client certificate of this process's CA for someone who is not root.
fn person(dir: &Path, name: &str) -> std::path::PathBuf {
    let out = dir.join(name);
    let ok = pgcd_client()
        .args(["cert", "issue", "--client", name, "--ca-dir"])
        .arg(&pki().ca_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("pgcd cert issue");
    assert!(ok.status.success(), "{ok:?}");
    out
}

/// etcdctl reading /pgcd/v1/ with the given client files (`None`: CA only).
fn etcd_read(endpoint: &str, client: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--dial-timeout",
            "2s",
            "--command-timeout",
            "3s",
        ])
        .arg("--cacert")
        .arg(pki().client_dir.join("ca.crt"));
    if let Some(dir) = client {
        c.arg("--cert")
            .arg(dir.join("client.crt"))
            .arg("--key")
            .arg(dir.join("client.key"));
    }
    c.args(["get", "/pgcd/v1/", "--prefix", "--keys-only"])
        .output()
        .expect("etcdctl")
}

#[test]
fn etcd_refuses_clients_without_a_certificate_of_the_cluster_ca_on_every_host() {
    let c = Cluster::start(150, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = foreign_client(dir.path());
    let alice = person(dir.path(), "alice");
    for a in &c.agents {
        let endpoint = a.etcd();
        // No client certificate: the handshake fails.
        let out = etcd_read(&endpoint, None);
        assert!(
            !out.status.success(),
            "read without a certificate on {}",
            a.id
        );
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // A certificate of another CA: refused the same way.
        let out = etcd_read(&endpoint, Some(&foreign));
        assert!(
            !out.status.success(),
            "read with another CA's certificate on {}",
            a.id
        );
        assert!(out.stdout.is_empty());
        // The cluster's CA but not an etcd user (a person's API
        // certificate): authentication is on, so etcd says no.
        let out = etcd_read(&endpoint, Some(&alice));
        assert!(
            !out.status.success(),
            "a person's certificate read etcd on {}",
            a.id
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And etcd's root reads it: the refusals above are not an outage.
        let out = etcd_read(&endpoint, Some(&pki().client_dir));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("/pgcd/v1/cluster/id"));
    }
}

/// Runs `pgcd agent --join` that must fail fast; returns its last line.
fn join_fails(addr: &str, api: &str, token: Option<&str>, data_dir: &Path) -> String {
    let mut cmd = Command::new(pgcd_bin());
    cmd.args([
        "agent",
        "--host-id",
        "hx",
        "--advertise",
        addr,
        "--join",
        api,
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .env("PGCD_RUNTIME", "none")
    .env_remove("PGCD_JOIN_TOKEN");
    if let Some(t) = token {
        cmd.args(["--join-token", t]);
    }
    let start = Instant::now();
    let out = cmd.output().expect("run pgcd agent");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "the join should fail: {stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        !data_dir.join("pgcd-host.json").exists(),
        "an identity was written"
    );
    stderr.lines().last().unwrap_or_default().to_owned()
}

fn member_names(api: &str) -> Vec<String> {
    let mut names: Vec<String> = members(api)
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn post_join(api: &str, body: &Value) -> u16 {
    http()
        .post(format!("{api}/v1/cluster/join"))
        .json(body)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn a_join_needs_a_live_unused_token_and_a_refused_one_changes_nothing() {
    let mut c = Cluster::start(151, 1);
    let api = c.agents[0].api();
    let before = member_names(&api);
    assert_eq!(before, vec!["h1".to_owned()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("hx");
    let hx = ip(151, 19);

    // No token at all.
    let line = join_fails(&hx, &api, None, &fresh);
    assert!(line.contains("--join needs --join-token"), "{line}");
    // A token of the right form that the cluster never made.
    let pin = join_token(&api).rsplit('.').next().expect("pin").to_owned();
    let unknown = format!("0badc0de.{}.{pin}", "ab".repeat(16));
    let line = join_fails(&hx, &api, Some(&unknown), &fresh);
    assert!(line.contains("join token is not valid"), "{line}");
    // A real token whose pin names another CA: refused before it is sent.
    let good = join_token(&api);
    let mut parts: Vec<&str> = good.split('.').collect();
    let wrong_pin = "00".repeat(32);
    parts[2] = &wrong_pin;
    let line = join_fails(&hx, &api, Some(&parts.join(".")), &fresh);
    assert!(line.contains("not the one the join token pins"), "{line}");
    // An expired token.
    let expired = http()
        .post(format!("{api}/v1/cluster/join-tokens"))
        .json(&serde_json::json!({ "ttl_seconds": 1 }))
        .send()
        .expect("token")
        .json::<Value>()
        .expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    std::thread::sleep(Duration::from_millis(2100)); // the token's whole lifetime, by design
    let line = join_fails(&hx, &api, Some(&expired), &fresh);
    assert!(line.contains("join token is not valid"), "{line}");
    // The route itself, without and with a garbage token: 401.
    let body = |t: &str| serde_json::json!({ "host_id": "hy", "peer_url": format!("https://{hx}:2380"), "token": t });
    assert_eq!(post_join(&api, &body("")), 401);
    assert_eq!(post_join(&api, &body("nonsense")), 401);
    assert_eq!(member_names(&api), before, "a refused join added a member");

    // A valid token joins h2 ...
    let token = join_token(&api);
    let mut h2 = Agent {
        id: "h2".into(),
        addr: addr(151, 1),
        data_dir: c.dir.path().join("h2"),
        mode: vec![
            "--join".into(),
            api.clone(),
            "--join-token".into(),
            token.clone(),
        ],
        child: None,
    };
    h2.spawn();
    c.agents.push(h2);
    wait_for("h2 joined", Duration::from_secs(60), || {
        (healthy_hosts(&api).len() == 2).then_some(())
    });
    assert_eq!(member_names(&api), vec!["h1".to_owned(), "h2".to_owned()]);
    // ... and the same token, once used, admits nobody else.
    let line = join_fails(&hx, &api, Some(&token), &fresh);
    assert!(line.contains("join token is not valid"), "{line}");
    assert_eq!(member_names(&api), vec!["h1".to_owned(), "h2".to_owned()]);
    // etcd keeps no token: only hashes.
    let out = etcdctl(&c.agents[0].etcd())
        .args(["get", "/pgcd/v1/", "--prefix"])
        .output()
        .expect("etcdctl");
    let all = String::from_utf8_lossy(&out.stdout);
    let secret = token.split('.').nth(1).expect("secret");
    assert!(all.contains("pki/join-tokens/"), "token records exist");
    assert!(!all.contains(secret), "a join token's secret is in etcd");
}

#[test]
fn the_api_needs_a_client_certificate_of_the_cluster_ca() {
    let c = Cluster::start(152, 1);
    let api = c.agents[0].api();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = reqwest::Certificate::from_pem(
        &std::fs::read(pki().client_dir.join("ca.crt")).expect("ca"),
    )
    .expect("ca pem");
    let builder = || {
        reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .timeout(Duration::from_secs(3))
    };
    // Without a client certificate: the open routes answer, the rest 401.
    let anon = builder().build().expect("client");
    let code = |c: &reqwest::blocking::Client, path: &str| {
        c.get(format!("{api}{path}"))
            .send()
            .map(|r| r.status().as_u16())
    };
    for path in ["/v1/cluster", "/v1/hosts", "/", "/metrics", "/v1/desired"] {
        assert_eq!(code(&anon, path).expect("answer"), 401, "{path}");
    }
    assert_eq!(code(&anon, "/healthz").expect("answer"), 200);
    assert_eq!(code(&anon, "/v1/cluster/ca").expect("answer"), 200);
    // A certificate of another CA: the handshake refuses it.
    let foreign = foreign_client(dir.path());
    let pem = [
        std::fs::read(foreign.join("client.crt")).expect("crt"),
        std::fs::read(foreign.join("client.key")).expect("key"),
    ]
    .concat();
    let other = builder()
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client");
    assert!(
        code(&other, "/v1/cluster").is_err(),
        "another CA's certificate got an answer"
    );
    // A person's certificate of the cluster CA reads status, and so does the CLI.
    let alice = person(dir.path(), "alice");
    let out = Command::new(pgcd_bin())
        .args(["status", "--api", &api, "-o", "json"])
        .arg("--tls-dir")
        .arg(&alice)
        .output()
        .expect("pgcd status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["cluster"]["leader"], "h1", "{status}");
    // Plain HTTP to the TLS port gets nothing.
    let plain = format!("http://{}:7800/v1/cluster", c.agents[0].addr);
    assert!(
        anon.get(&plain)
            .send()
            .ok()
            .map(|r| r.status().is_success())
            != Some(true)
    );
    // The open routes are rate limited per source address.
    let mut limited = false;
    for _ in 0..60 {
        let r = anon
            .post(format!("{api}/v1/cluster/join"))
            .json(&serde_json::json!({"host_id": "x", "peer_url": "https://127.0.0.1:1", "token": ""}))
            .send()
            .expect("answer");
        if r.status().as_u16() == 429 {
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "60 joins at once from one address were never limited"
    );
    // A body over the limit is refused.
    let big = "x".repeat(200 * 1024);
    let r = http()
        .post(format!("{api}/v1/cluster/join-tokens"))
        .header("content-type", "application/json")
        .body(format!("{{\"pad\":\"{big}\"}}"))
        .send()
        .expect("answer");
    assert_eq!(r.status().as_u16(), 413);
}
