//! The HTTP API (axum): read-only JSON views of the cluster, the HTML status
//! page at `/`, `/metrics`, `/healthz`, and the internal
//! `POST /v1/cluster/join`. Every agent answers from etcd, so any agent's
//! address will do. One route per file under `routes/`. Served over TLS
//! (`serve`), with client certificates checked per route (`auth`).

pub mod auth;
pub mod routes;
pub mod serve;

use crate::cluster::metrics::Metrics;
use crate::cluster::store::Store;
use crate::pki::client::ClientTls;
use crate::pki::PkiDir;
use crate::spec::names::HostId;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The etcd store.
    pub store: Store,
    /// This agent's host id.
    pub host: HostId,
    /// The pgcd cluster id.
    pub cluster_id: String,
    /// This agent's metrics.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the agent shuts down; long-lived responses (followed
    /// task logs) end on it so they do not hold up the graceful shutdown.
    pub shutdown: CancellationToken,
    /// This host's PKI directory (the CA the join pins and hands over).
    pub pki: PkiDir,
    /// Whether routes need client certificates.
    pub auth: auth::ApiAuth,
    /// Per-source limits of the open routes.
    pub limits: Arc<auth::RateLimits>,
    /// How this agent reaches etcd members (health checks).
    pub etcd_tls: Option<ClientTls>,
}

/// The largest request body any route takes (webhooks have their own).
pub const MAX_BODY: usize = 64 * 1024;

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(routes::page::get))
        .route("/healthz", get(routes::health::get))
        .route("/metrics", get(routes::metrics::get))
        .route("/v1/cluster", get(routes::cluster::get))
        .route("/v1/cluster/join", post(routes::join::post))
        .route("/v1/cluster/ca", get(routes::ca::get))
        .route("/v1/cluster/join-tokens", post(routes::join_tokens::post))
        .route("/v1/certificates", get(routes::certificates::list))
        .route("/v1/hosts", get(routes::hosts::list))
        .route("/v1/tasks", get(routes::tasks::list))
        .route("/v1/tasks/{id}", get(routes::tasks::get_one))
        .route("/v1/tasks/{id}/log", get(routes::task_log::get))
        .route("/v1/databases", get(routes::databases::list))
        .route("/v1/databases/{name}", get(routes::databases::get_one))
        .route("/v1/databases/{name}/plan", get(routes::database_plan::get))
        .route("/v1/operations", get(routes::operations::list))
        .route("/v1/operations/{id}", get(routes::operations::get_one))
        .route("/v1/schedules", get(routes::operations::schedules))
        .route("/v1/databases/{name}/backups", get(routes::backups::get))
        .route("/v1/revisions", get(routes::revisions::list))
        .route("/v1/revisions/{sha}", get(routes::revisions::get_one))
        .route("/v1/audit", get(routes::audit::list))
        .route("/v1/audit/{sha}", get(routes::audit::get_one))
        .route("/v1/source", get(routes::source::get))
        .route("/v1/desired", get(routes::desired::get))
        .route("/v1/actual", get(routes::actual::get))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .merge(routes::webhooks::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .with_state(state)
}

/// An error answered as `{"error": "..."}` with a status code.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message a person reads.
    pub message: String,
}

impl ApiError {
    /// Makes an error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(e: crate::cluster::ClusterError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Escapes a label value for the Prometheus text format: backslash, double
/// quote and line feed.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Refuses what cannot be a commit: 7 to 40 hex digits.
pub fn check_sha(sha: &str) -> Result<(), ApiError> {
    if sha.len() < 7 || sha.len() > 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a revision is 7 to 40 hex digits",
        ));
    }
    Ok(())
}

/// The one record whose commit starts with `sha`: a 404 with `missing`
/// when none does, a 400 when several do (`what` names the records).
pub fn one_by_prefix<T>(
    records: Vec<T>,
    sha: &str,
    sha_of: impl Fn(&T) -> &str,
    missing: String,
    what: &str,
) -> Result<T, ApiError> {
    let mut matches: Vec<T> = records
        .into_iter()
        .filter(|r| sha_of(r).starts_with(sha))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(ApiError::new(StatusCode::NOT_FOUND, missing)),
        n => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{sha} matches {n} {what}; give more digits"),
        )),
    }
}
