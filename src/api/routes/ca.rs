//! `GET /v1/cluster/ca` (open): the cluster id and the CA certificate. A
//! joining host compares the certificate with its token's pin before it
//! sends the token; nothing here is secret.

use crate::api::{ApiError, ApiState};
use crate::pki::files;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaView {
    /// The pgcd cluster id.
    pub cluster_id: String,
    /// The cluster CA certificate, PEM.
    pub ca_pem: String,
}

/// Answers the CA certificate.
pub async fn get(State(state): State<ApiState>) -> Result<Json<CaView>, ApiError> {
    let path = state.pki.ca_cert();
    let ca_pem = tokio::task::spawn_blocking(move || files::read(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(CaView {
        cluster_id: state.cluster_id.clone(),
        ca_pem,
    }))
}
