//! `GET /v1/hosts`: every known host with health and facts.

use crate::api::{ApiError, ApiState};
use crate::cluster::registry::{list_hosts, HostView};
use axum::extract::State;
use axum::Json;

/// Lists hosts, sorted by id.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<HostView>>, ApiError> {
    Ok(Json(list_hosts(&state.store).await?))
}
