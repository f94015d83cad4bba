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
    /// The cluster's age recipient (`age1…`): what `pgcd secret encrypt`
    /// encrypts to.
    #[serde(default)]
    pub age_recipient: String,
}

/// Answers the CA certificate.
pub async fn get(State(state): State<ApiState>) -> Result<Json<CaView>, ApiError> {
    let pki = state.pki.clone();
    let (ca_pem, age) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::pki::PkiError>((
            files::read(&pki.ca_cert())?,
            files::read(&pki.age_key()).unwrap_or_default(),
        ))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(CaView {
        cluster_id: state.cluster_id.clone(),
        ca_pem,
        age_recipient: crate::secrets::recipient_of(&age).unwrap_or_default(),
    }))
}
