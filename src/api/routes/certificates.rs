//! `GET /v1/certificates`: every host's certificates (CA, etcd peer, etcd
//! client, API, PostgreSQL) with subject and expiry, as each host last read
//! its own files (`agent::certs` writes them).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::pki::issue::{seconds_left, CertInfo};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One host's certificates, by kind (`ca`, `etcd-peer`, `etcd-client`,
/// `api`, `postgres`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostCertificates {
    /// The host.
    pub host: String,
    /// Kind → subject and expiry.
    pub certificates: BTreeMap<String, CertInfo>,
    /// When the host last read them.
    pub updated_at: String,
}

/// One certificate as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateView {
    /// The host holding it.
    pub host: String,
    /// Its kind.
    pub kind: String,
    /// Its subject's CN.
    pub subject: String,
    /// Not after, RFC 3339.
    pub not_after: String,
    /// Seconds until it expires (negative once it has).
    pub expires_in_seconds: i64,
}

/// Reads every host's record.
pub async fn read_all(state: &ApiState) -> Result<Vec<HostCertificates>, ApiError> {
    let (entries, _) = state.store.get_prefix(keys::CERTIFICATES).await?;
    Ok(entries.iter().filter_map(|e| e.json().ok()).collect())
}

/// Lists every certificate of every host.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<CertificateView>>, ApiError> {
    let views = read_all(&state)
        .await?
        .into_iter()
        .flat_map(|h| {
            let host = h.host.clone();
            h.certificates
                .into_iter()
                .map(move |(kind, c)| CertificateView {
                    host: host.clone(),
                    kind,
                    subject: c.subject,
                    not_after: c.not_after,
                    expires_in_seconds: seconds_left(c.not_after_unix),
                })
        })
        .collect();
    Ok(Json(views))
}
