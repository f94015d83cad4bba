//! `GET /v1/operations` and `GET /v1/operations/{id}`: each operation's
//! record — its state, its phases with their start and end times, the
//! leaders that carried it — and, for one operation, the state of every
//! task its phases ran.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::tasks::TaskStatus;
use crate::state::operation::OperationRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;

/// Every operation's record, by id.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<OperationRecord>>, ApiError> {
    let (entries, _) = state.store.get_prefix_paged(keys::OPERATIONS, 0).await?;
    Ok(Json(entries.iter().filter_map(|e| e.json().ok()).collect()))
}

/// `GET /v1/schedules`: every backup schedule's record — when pgcd began
/// following it, the latest time it ran for, how many runs and missed
/// times, and the operation ids of its latest runs.
pub async fn schedules(
    State(state): State<ApiState>,
) -> Result<Json<Vec<crate::state::schedule::ScheduleRecord>>, ApiError> {
    let (entries, _) = state.store.get_prefix_paged(keys::SCHEDULES, 0).await?;
    Ok(Json(entries.iter().filter_map(|e| e.json().ok()).collect()))
}

/// One operation with the tasks of its phases.
#[derive(Debug, Serialize)]
pub struct OperationView {
    /// The record.
    #[serde(flatten)]
    pub record: OperationRecord,
    /// The state of each task its phases ran (logs left out; see `/v1/tasks/{id}`).
    pub tasks: Vec<TaskStatus>,
}

/// One operation.
pub async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<OperationView>, ApiError> {
    if id.contains('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid operation id",
        ));
    }
    let record: OperationRecord = state
        .store
        .get_json(&keys::operation(&id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no operation {id} has been planned (is operations/{id}.yaml in the revision in force?)"),
            )
        })?;
    let mut tasks = Vec::new();
    for t in record.phases.iter().flat_map(|p| p.tasks.iter()) {
        if let Some(mut s) = state.store.get_json::<TaskStatus>(&keys::task(t)).await? {
            s.log.clear();
            tasks.push(s);
        }
    }
    Ok(Json(OperationView { record, tasks }))
}
