//! `POST /v1/cluster/join-tokens`: makes a short-lived join token. etcd
//! keeps only SHA-256 of its secret, under a lease that ends with the
//! token; the answer is the only place the token ever appears.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::now_rfc3339;
use crate::pki::files;
use crate::pki::issue::pin_of_pem;
use crate::pki::token::{JoinToken, TokenRecord};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The default lifetime of a token.
pub const DEFAULT_TTL_SECONDS: u64 = 3600;
/// The longest lifetime a token may have.
pub const MAX_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// What the caller asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokenRequest {
    /// Lifetime in seconds (default one hour, at most a week).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The new token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// `ID.SECRET.CA_PIN`, for `pgcd agent --join URL --join-token TOKEN`.
    pub token: String,
    /// The token's id (its etcd record).
    pub id: String,
    /// When it stops working, RFC 3339.
    pub expires_at: String,
}

/// Makes a token.
pub async fn post(
    State(state): State<ApiState>,
    body: Option<Json<TokenRequest>>,
) -> Result<Json<TokenResponse>, ApiError> {
    let ttl = body
        .and_then(|Json(b)| b.ttl_seconds)
        .unwrap_or(DEFAULT_TTL_SECONDS);
    if ttl == 0 || ttl > MAX_TTL_SECONDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("ttl_seconds must be between 1 and {MAX_TTL_SECONDS}"),
        ));
    }
    let path = state.pki.ca_cert();
    let pin = tokio::task::spawn_blocking(move || pin_of_pem(&files::read(&path)?))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let token = JoinToken::generate(&pin);
    let expires = chrono::Utc::now() + chrono::Duration::seconds(ttl as i64);
    let record = TokenRecord {
        hash: token.hash(),
        expires_at_unix: expires.timestamp(),
        created_at: now_rfc3339(),
        used_by: None,
    };
    // The lease outlives the token a little: a used token's record stays
    // until it would have expired anyway, and then etcd forgets it.
    let mut client = state.store.client();
    let lease = state
        .store
        .timed(client.lease_grant(ttl as i64 + 60, None))
        .await?
        .id();
    let value = serde_json::to_vec(&record)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    state
        .store
        .put(&keys::join_token(&token.id), value, Some(lease))
        .await?;
    tracing::info!(token_id = %token.id, expires_at = %expires.to_rfc3339(), "join token made");
    Ok(Json(TokenResponse {
        token: token.to_string(),
        id: token.id.clone(),
        expires_at: expires.to_rfc3339(),
    }))
}
