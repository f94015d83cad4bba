//! `POST /v1/cluster/join` (internal): adds a new host's etcd member through
//! etcd's cluster API and answers the `--initial-cluster` it must start with.
//! Refuses a host id held by a live host; answers 503 while etcd refuses to
//! add a member yet (it wants the last one connected for a few seconds).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::spec::names::HostId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// What a joining agent sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Its host id.
    pub host_id: String,
    /// Its etcd peer URL.
    pub peer_url: String,
}

/// What it gets back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The pgcd cluster id (also the etcd cluster token).
    pub cluster_id: String,
    /// The `--initial-cluster` value for the new member.
    pub initial_cluster: String,
}

/// Adds the member (or finds it already added by an earlier attempt).
pub async fn post(
    State(state): State<ApiState>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    let host =
        HostId::parse(&req.host_id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    if let Some(e) = state.store.get(&keys::host(&host)).await? {
        let address = e
            .json::<serde_json::Value>()
            .ok()
            .and_then(|v| v.get("address").and_then(|a| a.as_str()).map(str::to_owned))
            .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("host id {host} is already taken by a live host at {address}; pick another --host-id"),
        ));
    }
    let mut client = state.store.client();
    let list = state.store.timed(client.member_list()).await?;
    let mut members: Vec<(String, Vec<String>)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_owned(), m.peer_urls().to_vec()))
        .collect();
    let by_peer = members
        .iter()
        .find(|(_, peers)| peers.contains(&req.peer_url));
    let by_name = members.iter().find(|(name, _)| name == host.as_str());
    match (by_peer, by_name) {
        (Some((name, _)), _) if name.is_empty() || name == host.as_str() => {
            tracing::info!(host = %host, "join: member already added; answering again");
        }
        (Some((name, _)), _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("peer URL {} is used by etcd member {name}", req.peer_url),
            ));
        }
        (None, Some((_, peers))) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "an etcd member named {host} exists with peer URL {}; if that host is gone, run `pgcd host remove {host}` first",
                    peers.join(",")
                ),
            ));
        }
        (None, None) => {
            let added = state
                .store
                .timed(client.member_add([req.peer_url.as_str()], None))
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    if text.contains("unhealthy") || text.contains("not enough started") {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("etcd cannot add a member yet: {text}"),
                        )
                    } else {
                        ApiError::new(
                            StatusCode::BAD_GATEWAY,
                            format!("etcd member add failed: {text}"),
                        )
                    }
                })?;
            tracing::info!(host = %host, peer = %req.peer_url, "join: etcd member added");
            members = added
                .member_list()
                .iter()
                .map(|m| (m.name().to_owned(), m.peer_urls().to_vec()))
                .collect();
        }
    }
    let initial_cluster = members
        .iter()
        .flat_map(|(name, peers)| {
            let name = if peers.contains(&req.peer_url) {
                host.to_string()
            } else {
                name.clone()
            };
            peers.iter().map(move |p| format!("{name}={p}"))
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok(Json(JoinResponse {
        cluster_id: state.cluster_id.clone(),
        initial_cluster,
    }))
}
