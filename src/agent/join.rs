//! Joining a cluster through another agent's API: asking for its cluster id
//! and asking it to add this host as an etcd member.

use super::AgentError;
use crate::api::routes::cluster::ClusterView;
use crate::api::routes::join::{JoinRequest, JoinResponse};
use crate::spec::names::HostId;
use std::time::{Duration, Instant};

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Asks the agent at `api_url` for its cluster id.
pub(super) async fn remote_cluster_id(api_url: &str) -> Result<String, String> {
    let url = format!("{}/v1/cluster", api_url.trim_end_matches('/'));
    let resp = http()?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach {api_url} to join: {}; check the address and that a pgcd agent runs there", root_cause(&e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "{api_url} did not answer as a pgcd agent (GET /v1/cluster: {})",
            resp.status()
        ));
    }
    resp.json::<ClusterView>()
        .await
        .map(|v| v.cluster_id)
        .map_err(|_| {
            format!(
                "{api_url} did not answer as a pgcd agent (GET /v1/cluster is not a pgcd cluster)"
            )
        })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// POSTs the join; retries while etcd is not ready to add a member.
pub(super) async fn request_join(
    api_url: &str,
    host: &HostId,
    peer_url: &str,
) -> Result<JoinResponse, AgentError> {
    let url = format!("{}/v1/cluster/join", api_url.trim_end_matches('/'));
    let body = JoinRequest {
        host_id: host.to_string(),
        peer_url: peer_url.to_owned(),
    };
    let client = http().map_err(AgentError::Join)?;
    let start = Instant::now();
    loop {
        let resp = client.post(&url).json(&body).send().await.map_err(|e| {
            AgentError::Join(format!(
                "cannot reach {api_url} to join: {}",
                root_cause(&e)
            ))
        })?;
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
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && start.elapsed() < Duration::from_secs(60)
        {
            tracing::info!(reason = %message, "etcd is not ready to add a member; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        return Err(AgentError::Join(format!(
            "join refused by {api_url}: {message}"
        )));
    }
}
