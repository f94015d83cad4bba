//! The harness's TLS: one CA per test process (every `--init` uses it), a
//! `root` client certificate (the API's client and etcd's administrator),
//! the HTTPS clients and etcd options built on it, and join tokens.

use super::{pgcd_bin, wait_for};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// This test process's cluster CA and a client certificate named `root`
/// (the API's client and etcd's administrator). Every agent the harness
/// starts with `--init` uses this CA (`--ca DIR`), so one client
/// certificate reads every cluster of the process.
pub struct TestPki {
    /// `pgcd cert ca --out` of this process.
    pub ca_dir: PathBuf,
    /// `pgcd cert issue --client root --out`: ca.crt, client.crt, client.key.
    pub client_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// The process's [`TestPki`], made on first use with the pgcd binary.
pub fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_dir = dir.path().join("ca");
        let client_dir = dir.path().join("root");
        let ok = Command::new(pgcd_bin())
            .args(["cert", "ca", "--out"])
            .arg(&ca_dir)
            .stdout(Stdio::null())
            .status()
            .expect("pgcd cert ca");
        assert!(ok.success(), "pgcd cert ca failed");
        let ok = Command::new(pgcd_bin())
            .args(["cert", "issue", "--client", "root", "--ca-dir"])
            .arg(&ca_dir)
            .arg("--out")
            .arg(&client_dir)
            .stdout(Stdio::null())
            .status()
            .expect("pgcd cert issue");
        assert!(ok.success(), "pgcd cert issue failed");
        TestPki {
            ca_dir,
            client_dir,
            _dir: dir,
        }
    })
}

/// The client material of [`pki`].
pub fn client_tls() -> pgcd::pki::client::ClientTls {
    pgcd::pki::client::ClientTls::from_dir(&pki().client_dir).expect("test client certificate")
}

/// etcd connect options with the test client certificate (etcd's root).
pub fn etcd_options() -> etcd_client::ConnectOptions {
    etcd_client::ConnectOptions::new().with_tls(client_tls().etcd_options())
}

/// `etcdctl` with the test client certificate, v3 API.
pub fn etcdctl(endpoint: &str) -> Command {
    let dir = &pki().client_dir;
    let mut c = Command::new("etcdctl");
    c.env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .arg("--cert")
        .arg(dir.join("client.crt"))
        .arg("--key")
        .arg(dir.join("client.key"));
    c
}

/// The shared HTTPS client presenting the test client certificate.
pub fn http() -> &'static reqwest::blocking::Client {
    static HTTP: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        pgcd::pki::install_default_provider();
        client_tls()
            .blocking_http(Duration::from_secs(3))
            .expect("HTTPS client")
    })
}

/// An HTTPS client trusting the test CA but presenting no certificate:
/// what a forge delivering a webhook looks like.
pub fn anon_http() -> &'static reqwest::blocking::Client {
    static HTTP: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        pgcd::pki::install_default_provider();
        let mut tls = client_tls();
        tls.identity = None;
        tls.blocking_http(Duration::from_secs(5))
            .expect("HTTPS client")
    })
}

/// The pgcd binary as a client of the process's clusters: it presents
/// the test client certificate (`PGCD_TLS_DIR`).
pub fn pgcd_client() -> Command {
    let mut c = Command::new(pgcd_bin());
    c.env("PGCD_TLS_DIR", &pki().client_dir);
    c
}

/// Asks the agent at `api` for a join token, waiting (up to 60 s) until it answers.
pub fn join_token(api: &str) -> String {
    let url = format!("{api}/v1/cluster/join-tokens");
    wait_for(
        &format!("a join token from {api}"),
        Duration::from_secs(60),
        || {
            let resp = http().post(&url).json(&serde_json::json!({})).send().ok()?;
            let v: Value = resp.json().ok()?;
            v.get("token")?.as_str().map(str::to_owned)
        },
    )
}
