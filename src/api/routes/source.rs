//! `GET /v1/source`: where the leader fetches from, whether its last fetch
//! worked (and why not), and which revision is in force.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::source::git::SourceConfig;
use crate::source::records::{Applied, FetchStatus};
use axum::extract::State;
use axum::Json;

/// The source configuration (credentials are references, never values),
/// the fetch status and the applied revision.
pub async fn get(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let mut config: Option<SourceConfig> = state.store.get_json(keys::SOURCE_CONFIG).await?;
    if let Some(c) = &mut config {
        c.url = crate::source::remote::redact_url(&c.url);
    }
    let status: Option<FetchStatus> = state.store.get_json(keys::SOURCE_STATUS).await?;
    let applied: Option<Applied> = state.store.get_json(keys::SOURCE_APPLIED).await?;
    Ok(Json(
        serde_json::json!({ "config": config, "status": status, "applied": applied }),
    ))
}
