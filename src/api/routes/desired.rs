//! `GET /v1/desired`: the desired state in force and its revision
//! (`{"revision", "desired"}`; 404 before the first revision, 503 while a
//! revision is being written).

use crate::api::{ApiError, ApiState};
use crate::state::desired::{self, DesiredError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

/// The desired state in force, read whole at its revision record.
pub async fn get(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    match desired::read(&state.store).await {
        Ok(Some(s)) => Ok(Json(serde_json::json!({
            "revision": s.revision,
            "desired": s.desired,
        }))),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no desired state yet: the leader has not applied a revision",
        )),
        Err(DesiredError::Cluster(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}
