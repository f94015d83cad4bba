//! `GET /v1/revisions` (newest first, without the error lists) and
//! `GET /v1/revisions/{sha}` (full record; a unique prefix of 7+ characters works).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::source::records::RevisionRecord;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// `?limit=N` (default 50).
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
}

/// A revision in the list: the record without its errors, with their count.
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(flatten)]
    record: RevisionRecord,
    error_count: usize,
}

async fn all(state: &ApiState) -> Result<Vec<RevisionRecord>, ApiError> {
    let (entries, _) = state.store.get_prefix(keys::REVISIONS).await?;
    let mut revs: Vec<RevisionRecord> = entries.iter().filter_map(|e| e.json().ok()).collect();
    revs.sort_by(|a, b| b.fetched_at.cmp(&a.fetched_at));
    Ok(revs)
}

/// Recent revisions, newest first.
pub async fn list(
    State(state): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Summary>>, ApiError> {
    let revs = all(&state).await?;
    Ok(Json(
        revs.into_iter()
            .take(q.limit.unwrap_or(50))
            .map(|mut record| {
                let error_count = record.errors.len();
                record.errors.clear();
                Summary {
                    record,
                    error_count,
                }
            })
            .collect(),
    ))
}

/// One revision with every error.
pub async fn get_one(
    State(state): State<ApiState>,
    Path(sha): Path<String>,
) -> Result<Json<RevisionRecord>, ApiError> {
    crate::api::check_sha(&sha)?;
    if let Some(r) = state
        .store
        .get_json::<RevisionRecord>(&keys::revision(&sha))
        .await?
    {
        return Ok(Json(r));
    }
    let records = all(&state).await?;
    crate::api::one_by_prefix(
        records,
        &sha,
        |r| r.sha.as_str(),
        format!("no revision {sha}"),
        "revisions",
    )
    .map(Json)
}
