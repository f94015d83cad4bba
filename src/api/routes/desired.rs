//! `GET /v1/desired`: the desired state in force and its revision (404 before the first).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// The `desired` record as the leader wrote it.
pub async fn get(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .store
        .get_json(keys::DESIRED)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no desired state yet: the leader has not applied a revision",
            )
        })
}
