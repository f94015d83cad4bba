//! Joining a cluster through another agent's API: asking for its cluster id
//! and CA (checked against the join token's pin before anything secret is
//! sent), then asking it, with the token, to add this host as an etcd
//! member.
//!
//! Both retry through [`Backoff`] until they succeed or meet a refusal that
//! cannot get better (a host id taken, a request the other side rejects):
//! agents started together, or while the cluster elects or catches up a new
//! member, all join in the end. Only an address where nothing listens at all
//! is given up on after a few seconds, so a mistyped `--join` fails fast.

use super::AgentError;
use crate::api::routes::ca::CaView;
use crate::api::routes::join::{JoinRequest, JoinResponse};
use crate::backoff::Backoff;
use crate::pki::client::ClientTls;
use crate::pki::issue::pin_of_pem;
use crate::pki::token::JoinToken;
use crate::spec::names::HostId;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long an address where nothing accepts connections is tried before
/// `--join` is taken to be wrong.
const NOTHING_LISTENS: Duration = Duration::from_secs(5);

/// The client of the first look: the server's certificate cannot be
/// checked yet (this host has no CA); what it answers is checked instead,
/// against the token's pin or the CA this host already holds.
fn discovery_http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// A client that trusts only the cluster CA.
fn pinned_http(ca_pem: &str) -> Result<reqwest::Client, String> {
    ClientTls {
        ca_pem: ca_pem.to_owned(),
        identity: None,
    }
    .http(Duration::from_secs(5))
    .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Checks a discovered CA against what this host trusts: the join token's
/// pin, or the CA it already holds (a restart).
pub(super) fn check_ca(api_url: &str, found: &CaView, pin: &str) -> Result<(), AgentError> {
    let got = pin_of_pem(&found.ca_pem).map_err(|e| AgentError::Join(format!("{api_url}: {e}")))?;
    if got != pin {
        return Err(AgentError::Join(format!(
            "the CA of {api_url} (sha256 {got}) is not the one the join token pins ({pin}); refusing to send the token"
        )));
    }
    Ok(())
}

/// Why one try did not get an answer.
enum Trouble {
    /// Nothing accepted the connection.
    NotListening(String),
    /// Something accepted it but did not answer (yet), or answered 5xx.
    NotReady(String),
    /// Something answered that is not a pgcd agent's API.
    Foreign(String),
}

fn classify(api_url: &str, e: &reqwest::Error) -> Trouble {
    let why = format!("cannot reach {api_url} to join: {}", root_cause(e));
    if is_tls_failure(e) {
        // Something answered, in TLS, but refused us or was not an agent's
        // API (an etcd port asks for a client certificate): no retry helps.
        Trouble::Foreign(format!(
            "{api_url} did not answer as a pgcd agent (TLS: {})",
            root_cause(e)
        ))
    } else if e.is_connect() {
        Trouble::NotListening(why)
    } else {
        Trouble::NotReady(why)
    }
}

/// Whether rustls refused the handshake somewhere in the error's chain.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The API speaks only https: a plain `http://` URL can never work.
fn require_https(api_url: &str) -> Result<(), AgentError> {
    if api_url.starts_with("https://") {
        Ok(())
    } else {
        Err(AgentError::Join(format!(
            "{api_url} did not answer as a pgcd agent: the pgcd API speaks https:// (use --join https://ADDRESS:7800)"
        )))
    }
}

/// Asks the agent at `api_url` for its cluster id and CA certificate,
/// waiting while it starts.
pub(super) async fn remote_cluster_ca(
    api_url: &str,
    cancel: &CancellationToken,
) -> Result<CaView, AgentError> {
    require_https(api_url)?;
    let url = format!("{}/v1/cluster/ca", api_url.trim_end_matches('/'));
    let client = discovery_http().map_err(AgentError::Join)?;
    let mut backoff = Backoff::transient();
    loop {
        let trouble = match client.get(&url).send().await {
            Err(e) => classify(api_url, &e),
            Ok(resp) if resp.status().is_server_error() => {
                Trouble::NotReady(format!("{api_url} answered {}", resp.status()))
            }
            Ok(resp) if !resp.status().is_success() => {
                return Err(AgentError::Join(format!(
                    "{api_url} did not answer as a pgcd agent (GET /v1/cluster/ca: {})",
                    resp.status()
                )))
            }
            Ok(resp) => {
                return resp.json::<CaView>().await.map_err(|_| {
                    AgentError::Join(format!(
                        "{api_url} did not answer as a pgcd agent (GET /v1/cluster/ca is not a pgcd cluster)"
                    ))
                })
            }
        };
        match trouble {
            Trouble::Foreign(why) => return Err(AgentError::Join(why)),
            Trouble::NotListening(why) if backoff.elapsed() >= NOTHING_LISTENS => {
                return Err(AgentError::Join(format!(
                    "{why}; check the address and that a pgcd agent runs there"
                )))
            }
            Trouble::NotListening(why) | Trouble::NotReady(why) => {
                if backoff.should_log() {
                    tracing::info!(reason = %why, waited_s = backoff.elapsed().as_secs(), "the agent to join through does not answer yet; retrying");
                }
            }
        }
        if !backoff.wait(cancel).await {
            return Err(AgentError::Stopped);
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// POSTs the join until the member is added (the route is idempotent: a
/// retry after a lost answer finds the member and answers again). Speaks
/// only to a server whose certificate the pinned CA issued.
pub(super) async fn request_join(
    api_url: &str,
    host: &HostId,
    peer_url: &str,
    token: &JoinToken,
    ca_pem: &str,
    cancel: &CancellationToken,
) -> Result<JoinResponse, AgentError> {
    let url = format!("{}/v1/cluster/join", api_url.trim_end_matches('/'));
    let body = JoinRequest {
        host_id: host.to_string(),
        peer_url: peer_url.to_owned(),
        token: token.to_string(),
    };
    let client = pinned_http(ca_pem).map_err(AgentError::Join)?;
    let mut backoff = Backoff::transient();
    loop {
        let why = match client.post(&url).json(&body).send().await {
            Err(e) => match classify(api_url, &e) {
                Trouble::Foreign(w) => return Err(AgentError::Join(w)),
                Trouble::NotListening(w) | Trouble::NotReady(w) => w,
            },
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    let joined: JoinResponse = resp.json().await.map_err(|e| {
                        AgentError::Join(format!(
                            "{api_url} answered the join with something else: {e}"
                        ))
                    })?;
                    tracing::info!(initial_cluster = %joined.initial_cluster, "etcd member added; starting etcd");
                    return Ok(joined);
                }
                let message = resp
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_owned))
                    .unwrap_or_else(|| status.to_string());
                if !status.is_server_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return Err(AgentError::Join(format!(
                        "join refused by {api_url}: {message}"
                    )));
                }
                message
            }
        };
        if backoff.should_log() {
            tracing::info!(reason = %why, waited_s = backoff.elapsed().as_secs(), "etcd cannot add this member yet; retrying");
        }
        if !backoff.wait(cancel).await {
            return Err(AgentError::Stopped);
        }
    }
}
