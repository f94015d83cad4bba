//! `GET /v1/audit` (revisions put in force, newest first, without their
//! steps) and `GET /v1/audit/{sha}` (one revision's record with every step
//! and its outcome; a unique prefix of 7+ characters works).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::state::audit::AuditRecord;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// `?limit=N` (default 50).
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
}

/// A record in the list: without its steps, with their count and failures.
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    record: AuditRecord,
    step_count: u64,
    failed_steps: usize,
}

async fn all(state: &ApiState) -> Result<Vec<AuditRecord>, ApiError> {
    let (entries, _) = state.store.get_prefix(keys::AUDIT).await?;
    let mut records: Vec<AuditRecord> = entries.iter().filter_map(|e| e.json().ok()).collect();
    records.sort_by(|a, b| b.in_force_at.cmp(&a.in_force_at));
    Ok(records)
}

/// Revisions put in force, newest first.
pub async fn list(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Summary>>, ApiError> {
    let records = all(&state).await?;
    Ok(Json(
        records
            .into_iter()
            .take(q.limit.unwrap_or(50))
            .map(|mut record| {
                let step_count = record.steps.len() as u64 + record.steps_dropped;
                let failed_steps = record.steps.iter().filter(|s| s.error.is_some()).count();
                record.steps.clear();
                Summary {
                    record,
                    step_count,
                    failed_steps,
                }
            })
            .collect(),
    ))
}

/// One revision's record with its steps.
pub async fn get_one(
    State(state): State<ApiState>,
    Path(sha): Path<String>,
) -> Result<Json<AuditRecord>, ApiError> {
    crate::api::check_sha(&sha)?;
    if let Some(r) = state
        .store
        .get_json::<AuditRecord>(&keys::audit(&sha))
        .await?
    {
        return Ok(Json(r));
    }
    let records = all(&state).await?;
    crate::api::one_by_prefix(
        records,
        &sha,
        |r| r.sha.as_str(),
        format!("no audit record of revision {sha} (only revisions put in force have one)"),
        "audit records",
    )
    .map(Json)
}
