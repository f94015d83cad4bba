//! `GET /v1/tasks` (without logs) and `GET /v1/tasks/{id}` (with log); the
//! log alone, as text or followed, is `task_log`.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::tasks::{list_tasks, TaskStatus};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// Lists every task's state; logs are left out (see `/v1/tasks/{id}`).
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<TaskStatus>>, ApiError> {
    let mut tasks = list_tasks(&state.store).await?;
    for t in &mut tasks {
        t.log.clear();
    }
    Ok(Json(tasks))
}

/// One task with its log.
pub async fn get_one(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<TaskStatus>, ApiError> {
    if id.contains('/') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid task id"));
    }
    state
        .store
        .get_json(&keys::task(&id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no task {id}")))
}
