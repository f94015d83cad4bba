//! `GET /v1/cluster`: cluster id, leader, etcd members and their health.

use crate::api::{ApiError, ApiState};
use crate::cluster::election::current_leader;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One etcd member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    /// etcd's member id, hex.
    pub id: String,
    /// The member name (the host id; empty until it started).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs.
    pub client_urls: Vec<String>,
    /// Whether it answered a status request just now.
    pub healthy: bool,
}

/// The cluster as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The pgcd cluster id.
    pub cluster_id: String,
    /// The host that answered.
    pub answered_by: String,
    /// The leader's host id, if any.
    pub leader: Option<String>,
    /// The etcd members.
    pub members: Vec<MemberView>,
    /// Every leader's term, oldest first.
    #[serde(default)]
    pub leader_history: Vec<crate::cluster::services::LeaderTerm>,
}

/// Describes the cluster.
pub async fn get(State(state): State<ApiState>) -> Result<Json<ClusterView>, ApiError> {
    let leader = current_leader(&state.store).await?;
    let mut client = state.store.client();
    let list = state.store.timed(client.member_list()).await?;
    let checks = list.members().iter().map(|m| {
        let urls = m.client_urls().to_vec();
        let tls = state.etcd_tls.clone();
        async move { member_healthy(urls, tls).await }
    });
    let health = futures::future::join_all(checks).await;
    let members = list
        .members()
        .iter()
        .zip(health)
        .map(|(m, healthy)| MemberView {
            id: format!("{:x}", m.id()),
            name: m.name().to_owned(),
            peer_urls: m.peer_urls().to_vec(),
            client_urls: m.client_urls().to_vec(),
            healthy,
        })
        .collect();
    let leader_history = state
        .store
        .get_json(crate::cluster::keys::LEADER_HISTORY)
        .await?
        .unwrap_or_default();
    Ok(Json(ClusterView {
        cluster_id: state.cluster_id.clone(),
        answered_by: state.host.to_string(),
        leader,
        members,
        leader_history,
    }))
}

async fn member_healthy(urls: Vec<String>, tls: Option<crate::pki::client::ClientTls>) -> bool {
    if urls.is_empty() {
        return false;
    }
    let check = async {
        let mut options =
            etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        if let Some(tls) = &tls {
            options = options.with_tls(tls.etcd_options());
        }
        let mut c = etcd_client::Client::connect(&urls, Some(options))
            .await
            .ok()?;
        c.status().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), check).await,
        Ok(Some(_))
    )
}
