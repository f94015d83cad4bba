//! `GET /v1/databases` (every database's status, sorted by name, plans
//! without their steps) and `GET /v1/databases/{name}` (one status in full),
//! as the reconciler last wrote them under `status/databases/`, each at the
//! revision its statuses were last derived at (`status/revision`).
//! `?include=available_upgrades` adds, per node, what the images built on
//! the answering host offer: newer minors (in place) and newer majors.

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
    // The revision first: the leader writes it after the statuses derived
    // at it, so statuses read afterwards are at least that new. Read the
    // other way round, an old status could be shown at a new revision (a
    // database Ready at a commit whose steps had not run).
    let revision = status_revision(store).await?;
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
    // The revision before the status (see `all`).
    let revision = status_revision(store).await?;
    let mut db: DatabaseStatus = store
        .get_json(&keys::database_status(name))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no database {name}")))?;
    at_revision(&mut db, revision.as_deref());
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

/// `?include=...` of `GET /v1/databases/{name}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Include {
    /// `available_upgrades`.
    #[serde(default)]
    include: Option<String>,
}

/// One database's status with what its nodes can be upgraded to.
#[derive(Debug, serde::Serialize)]
pub struct WithUpgrades {
    /// The status.
    #[serde(flatten)]
    pub status: DatabaseStatus,
    /// Per node, from the images built here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_upgrades: Option<Vec<NodeUpgrades>>,
}

/// What one node can be upgraded to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeUpgrades {
    /// The node.
    pub node: String,
    /// The versions its instances run (several during a rollout).
    pub running: Vec<String>,
    /// Newer minors of its major, built here: an in-place minor upgrade.
    pub minors: Vec<String>,
    /// Newer majors' newest builds: an upgrade by node addition.
    pub majors: Vec<String>,
}

/// Per node of `status`, from `catalog`: a node's upgrades are those
/// offered to its oldest running version.
pub fn available_upgrades(
    status: &DatabaseStatus,
    catalog: &crate::spec::images::ImageCatalog,
) -> Vec<NodeUpgrades> {
    let mut nodes: Vec<&str> = status.instances.iter().map(|i| i.node.as_str()).collect();
    nodes.dedup();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|node| {
            let mut running: Vec<String> = status
                .instances
                .iter()
                .filter(|i| i.node == node)
                .filter_map(|i| i.version.clone())
                .collect();
            running.sort();
            running.dedup();
            let oldest = running
                .iter()
                .min_by_key(|v| {
                    crate::spec::images::parse_server_version(v).map(|p| (p.major, p.minor))
                })
                .cloned()
                .unwrap_or_default();
            let (minors, majors) = catalog.upgrades_from(&oldest);
            NodeUpgrades {
                node: node.to_string(),
                running,
                minors: minors.iter().map(ToString::to_string).collect(),
                majors: majors.iter().map(ToString::to_string).collect(),
            }
        })
        .collect()
}

/// One database's status, with its last plan in full
/// (`?include=available_upgrades`: and its nodes' upgrades).
pub async fn get_one(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    axum::extract::Query(q): axum::extract::Query<Include>,
) -> Result<Json<WithUpgrades>, ApiError> {
    let status = one(&state.store, &name).await?;
    let wanted = q
        .include
        .as_deref()
        .is_some_and(|i| i.split(',').any(|x| x.trim() == "available_upgrades"));
    let available_upgrades = if wanted {
        let catalog = tokio::task::spawn_blocking(|| {
            crate::spec::images::ImageCatalog::read_dir(
                &crate::spec::images::ImageCatalog::default_dir(),
            )
        })
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        Some(available_upgrades(&status, &catalog))
    } else {
        None
    };
    Ok(Json(WithUpgrades {
        status,
        available_upgrades,
    }))
}
