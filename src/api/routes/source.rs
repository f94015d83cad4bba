//! `GET /v1/source`: where the leader fetches from and which revision is in force.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::source::git::SourceConfig;
use crate::source::records::Applied;
use axum::extract::State;
use axum::Json;

/// The source configuration (credentials are references, never values) and the applied revision.
pub async fn get(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let config: Option<SourceConfig> = state.store.get_json(keys::SOURCE_CONFIG).await?;
    let applied: Option<Applied> = state.store.get_json(keys::SOURCE_APPLIED).await?;
    Ok(Json(
        serde_json::json!({ "config": config, "applied": applied }),
    ))
}
