//! The demo's security: its CA, the client certificate of the person
//! running it, and join tokens for its hosts' first start.

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use super::demo::{wait_for, FORM_DEADLINE};
use crate::pki::client::ClientTls;
use anyhow::{Context, Result};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// The demo's CA (`DIR/ca`, made once) and the client certificate of the
/// person running it (`DIR/tls`: `root`, so etcdctl works too, with a
/// PKCS#12 copy for a browser).
pub(super) fn demo_pki(dir: &Path) -> Result<ClientTls> {
    use crate::pki::{files, issue, Ca, PkiDir};
    let ca_dir = PkiDir::new(dir.join("ca"));
    let tls_dir = dir.join("tls");
    if !ca_dir.has_ca() {
        Ca::generate("demo")?.save(&ca_dir)?;
    }
    if !tls_dir.join(crate::pki::client::CLIENT_CERT).exists() {
        let ca = Ca::load(&ca_dir)?;
        let issued = ca.issue_client(crate::pki::ETCD_ROOT_CN, issue::LEAF_VALIDITY)?;
        fs::create_dir_all(&tls_dir)?;
        files::write_private(
            &tls_dir.join(crate::pki::client::CLIENT_KEY),
            issued.key_pem.as_bytes(),
        )?;
        files::write_public(
            &tls_dir.join(crate::pki::client::CLIENT_CERT),
            &issued.cert_pem,
        )?;
        files::write_public(&tls_dir.join(crate::pki::client::CA_CERT), ca.cert_pem())?;
        let p12 = issue::pkcs12(&issued, ca.cert_pem(), crate::pki::ETCD_ROOT_CN)?;
        files::write_private(&tls_dir.join("client.p12"), &p12)?;
    }
    Ok(ClientTls::from_dir(&tls_dir)?)
}

/// A join token from the first agent, waiting until it answers.
pub(super) fn demo_join_token(tls: &ClientTls, api: &str) -> Result<String> {
    let client = tls.blocking_http(Duration::from_secs(3))?;
    let url = format!("{api}/v1/cluster/join-tokens");
    let mut token = None;
    wait_for(FORM_DEADLINE, || {
        token = client
            .post(&url)
            .json(&serde_json::json!({ "ttl_seconds": 600 }))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .and_then(|v| v.get("token")?.as_str().map(str::to_owned));
        token.is_some()
    })
    .with_context(|| format!("h1 did not answer at {api}; see its log"))?;
    token.context("no join token")
}
