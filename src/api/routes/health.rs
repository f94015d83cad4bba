//! `GET /healthz`: 200 when this agent reaches etcd, 503 otherwise.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use axum::extract::State;

/// Answers `ok` when etcd answers.
pub async fn get(State(state): State<ApiState>) -> Result<&'static str, ApiError> {
    state.store.get(keys::CLUSTER_ID).await?;
    Ok("ok\n")
}
