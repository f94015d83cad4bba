//! `GET /v1/actual`: the cluster as the planner sees it — hosts, the
//! instances the agents last observed, the specs last carried out — so that
//! `pgcd plan DIR --api URL` plans an uncommitted edit against the live state.

use crate::api::{ApiError, ApiState};
use crate::state::Actual;
use axum::extract::State;
use axum::Json;

/// The assembled observed state.
pub async fn get(State(state): State<ApiState>) -> Result<Json<Actual>, ApiError> {
    Ok(Json(crate::state::assemble::actual(&state.store).await?))
}
