//! `POST /v1/cluster/join` (open, authenticated by a join token): adds a
//! new host's etcd member through etcd's cluster API and answers the
//! `--initial-cluster` it must start with, and the cluster CA (certificate
//! and key: the new host issues its own certificates and can answer joins
//! in turn). The joining host checked this server's CA against the token's
//! pin before sending the token. A missing, unknown, expired or used token
//! is refused with 401 and changes nothing; a retry by the host that used
//! it (a lost answer) is answered again. Refuses a host id held by a live
//! host; answers 503 while etcd refuses to add a member yet (it wants the
//! last one connected for a few seconds).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::store::full_key;
use crate::pki::token::{JoinToken, TokenRecord};
use crate::pki::{files, host_cn, ETCD_ROOT_CN};
use crate::spec::names::HostId;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What a joining agent sends.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Its host id.
    pub host_id: String,
    /// Its etcd peer URL.
    pub peer_url: String,
    /// The join token (`ID.SECRET.CA_PIN`).
    #[serde(default)]
    pub token: String,
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("host_id", &self.host_id)
            .field("peer_url", &self.peer_url)
            .finish_non_exhaustive()
    }
}

/// What it gets back.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The pgcd cluster id (also the etcd cluster token).
    pub cluster_id: String,
    /// The `--initial-cluster` value for the new member.
    pub initial_cluster: String,
    /// The cluster CA certificate, PEM.
    #[serde(default)]
    pub ca_cert_pem: String,
    /// The cluster CA key, PEM (kept 0600 in the new host's data dir).
    #[serde(default)]
    pub ca_key_pem: String,
    /// The cluster's age identity (decrypts `{age: ...}` secrets).
    #[serde(default)]
    pub age_identity: String,
}

impl std::fmt::Debug for JoinResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinResponse")
            .field("cluster_id", &self.cluster_id)
            .field("initial_cluster", &self.initial_cluster)
            .finish_non_exhaustive()
    }
}

/// The one answer to every token that does not admit the host: which of
/// missing, unknown, expired or used it was is not told.
const REFUSED: &str = "the join token is not valid (missing, unknown, expired or already used); make one with `pgcd cert join-token` on a cluster member";

fn refused() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, REFUSED)
}

/// Checks the token; returns its record's key and mod revision for the claim.
async fn check_token(
    state: &ApiState,
    host: &HostId,
    text: &str,
) -> Result<(String, i64, TokenRecord), ApiError> {
    let token = JoinToken::parse(text).map_err(|_| refused())?;
    let key = keys::join_token(&token.id);
    let entry = state.store.get(&key).await?.ok_or_else(refused)?;
    let record: TokenRecord = entry.json().map_err(|_| refused())?;
    let same: bool = record.hash.as_bytes().ct_eq(token.hash().as_bytes()).into();
    let live = record.expires_at_unix > chrono::Utc::now().timestamp();
    let free = record.used_by.as_deref().is_none_or(|h| h == host.as_str());
    if !(same && live && free) {
        tracing::warn!(host = %host, token_id = %token.id, "join refused: token not valid");
        return Err(refused());
    }
    Ok((key, entry.mod_revision, record))
}

/// Marks the token used by `host`, unless another join took it meanwhile.
async fn claim_token(
    state: &ApiState,
    host: &HostId,
    key: &str,
    mod_revision: i64,
    mut record: TokenRecord,
) -> Result<(), ApiError> {
    if record.used_by.is_some() {
        return Ok(());
    }
    record.used_by = Some(host.to_string());
    let value = serde_json::to_vec(&record)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let full = full_key(key);
    let txn = Txn::new()
        .when([Compare::mod_revision(
            full.clone(),
            CompareOp::Equal,
            mod_revision,
        )])
        .and_then([TxnOp::put(
            full,
            value,
            Some(PutOptions::new().with_ignore_lease()),
        )]);
    if state.store.txn(txn).await?.succeeded() {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Makes the etcd user of the new host's client certificate (its CN) with
/// the root role: agents add and remove members, which etcd allows root only.
async fn etcd_user(state: &ApiState, host: &HostId) -> Result<(), ApiError> {
    let mut client = state.store.client();
    let user = host_cn(host.as_str());
    let password = crate::cluster::identity::random_hex(24);
    if let Err(e) = state
        .store
        .timed(client.user_add(user.as_str(), password, None))
        .await
    {
        if !e.to_string().contains("already exists") {
            return Err(e.into());
        }
    }
    state
        .store
        .timed(client.user_grant_role(user.as_str(), ETCD_ROOT_CN))
        .await?;
    Ok(())
}

/// Adds the member (or finds it already added by an earlier attempt).
pub async fn post(
    State(state): State<ApiState>,
    Json(req): Json<JoinRequest>,
) -> Result<Json<JoinResponse>, ApiError> {
    let host =
        HostId::parse(&req.host_id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let (token_key, token_rev, token_record) = check_token(&state, &host, &req.token).await?;
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
    // One join at a time here, and none while another member has been
    // added but not started: etcd 3.4 accepts a second add meanwhile, and
    // the first joiner's initial cluster (its add's answer) then lacks the
    // second, so its etcd never starts. The joiner retries a 503.
    static JOINS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = JOINS.lock().await;
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
            if let Some((_, peers)) = members.iter().find(|(name, _)| name.is_empty()) {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "etcd cannot add a member yet: the member at {} was added and has not started",
                        peers.join(",")
                    ),
                ));
            }
            claim_token(&state, &host, &token_key, token_rev, token_record).await?;
            etcd_user(&state, &host).await?;
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
    let pki = state.pki.clone();
    let (ca_cert_pem, ca_key_pem, age_identity) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::pki::PkiError>((
            files::read(&pki.ca_cert())?,
            files::read(&pki.ca_key())?,
            files::read(&pki.age_key()).unwrap_or_default(),
        ))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(JoinResponse {
        cluster_id: state.cluster_id.clone(),
        initial_cluster,
        ca_cert_pem,
        ca_key_pem,
        age_identity,
    }))
}
