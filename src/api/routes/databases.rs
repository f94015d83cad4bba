//! `GET /v1/databases` (every database's status, sorted by name, plans
//! without their steps) and `GET /v1/databases/{name}` (one status in full),
//! as the reconciler last wrote them under `status/databases/`, each at the
//! revision its statuses were last derived at (`status/revision`).

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::store::Store;
use crate::cluster::ClusterError;
use crate::reconcile::status::DatabaseStatus;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

/// Reads every database status, sorted by name. A record that does not
/// decode is skipped with a warning: one bad record must not hide the rest.
pub async fn all(store: &Store) -> Result<Vec<DatabaseStatus>, ClusterError> {
    let (entries, _) = store.get_prefix(keys::DATABASE_STATUS).await?;
    let mut dbs: Vec<DatabaseStatus> = entries
        .iter()
        .filter_map(|e| match e.json() {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::warn!(key = %e.key, error = %err, "skipping a database status that does not decode");
                None
            }
        })
        .collect();
    dbs.sort_by(|a, b| a.name.cmp(&b.name));
    let revision = status_revision(store).await?;
    for db in &mut dbs {
        at_revision(db, revision.as_deref());
    }
    Ok(dbs)
}

/// The revision every status was last derived at (`status/revision`).
async fn status_revision(store: &Store) -> Result<Option<String>, ClusterError> {
    Ok(store
        .get(keys::STATUS_REVISION)
        .await?
        .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
}

/// A status is not written again when only the revision changed: the
/// revision it was last derived at is `status/revision`.
fn at_revision(db: &mut DatabaseStatus, revision: Option<&str>) {
    if let Some(r) = revision {
        db.observed_revision = Some(r.to_string());
    }
}

/// Reads one database's status; a 404 when there is none, a 400 for a name
/// that cannot be a key.
pub async fn one(store: &Store, name: &str) -> Result<DatabaseStatus, ApiError> {
    if name.is_empty() || name.contains('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid database name",
        ));
    }
    let mut db: DatabaseStatus = store
        .get_json(&keys::database_status(name))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no database {name}")))?;
    at_revision(&mut db, status_revision(store).await?.as_deref());
    Ok(db)
}

/// Lists every database's status, sorted by name. The steps of each last
/// plan are left out to keep the list short (the plan's text and notes stay);
/// `GET /v1/databases/{name}/plan` has them.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Vec<DatabaseStatus>>, ApiError> {
    let mut dbs = all(&state.store).await?;
    for db in &mut dbs {
        if let Some(plan) = db.last_plan.as_mut() {
            plan.steps.clear();
        }
    }
    Ok(Json(dbs))
}

/// One database's status, with its last plan in full.
pub async fn get_one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<DatabaseStatus>, ApiError> {
    one(&state.store, &name).await.map(Json)
}
