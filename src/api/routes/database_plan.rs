//! `GET /v1/databases/{name}/plan`: the plan of the reconciler's last pass
//! over a database that had steps or notes, with every step.

use super::databases;
use crate::api::{ApiError, ApiState};
use crate::reconcile::status::PlanRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// The database's last plan; 404 when the database or its plan is unknown.
pub async fn get(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<PlanRecord>, ApiError> {
    databases::one(&state.store, &name)
        .await?
        .last_plan
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("database {name} has no plan yet"),
            )
        })
}
