//! `POST /v1/webhooks/{github,gitea,gitlab,bitbucket,generic}`: verify the
//! delivery (the HMAC signature of the raw body, or GitLab's token: 401 when
//! missing or wrong, 413 over 1 MiB), then wake the leader through etcd
//! (202). Pushes to refs pgcd neither follows nor plans, and pings, are
//! accepted and ignored, with the reason in the answer.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::source::git::{ref_matches, SourceConfig};
use crate::source::records::Settings;
use crate::source::webhook::{self, Delivery, Flavor, MAX_BODY};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};

/// The agent-wide fallback when `pgcd.yaml` names no webhook secret.
pub const SECRET_ENV: &str = "PGCD_WEBHOOK_SECRET";

/// The endpoints, one per forge, with the body limit.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/webhooks/github", post(github))
        .route("/v1/webhooks/gitea", post(gitea))
        .route("/v1/webhooks/gitlab", post(gitlab))
        .route("/v1/webhooks/bitbucket", post(bitbucket))
        .route("/v1/webhooks/generic", post(generic))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn github(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    handle(Flavor::Github, state, headers, body).await
}

async fn gitea(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    handle(Flavor::Gitea, state, headers, body).await
}

async fn gitlab(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    handle(Flavor::Gitlab, state, headers, body).await
}

async fn bitbucket(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    handle(Flavor::Bitbucket, state, headers, body).await
}

async fn generic(
    state: State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    handle(Flavor::Generic, state, headers, body).await
}

async fn handle(
    flavor: Flavor,
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let settings: Settings = state
        .store
        .get_json(keys::SOURCE_SETTINGS)
        .await?
        .unwrap_or_default();
    let secret = match &settings.webhook_secret {
        Some(r) => crate::secrets::resolve(r).map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("webhook secret: {e}")))?,
        None => std::env::var(SECRET_ENV).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no webhook secret: set source.webhook_secret in pgcd.yaml or {SECRET_ENV} on the agents"),
            )
        })?,
    };
    let header = headers.get(flavor.header()).and_then(|v| v.to_str().ok());
    webhook::verify(flavor, secret.as_bytes(), header, &body)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;

    let event = headers
        .get(flavor.event_header())
        .and_then(|v| v.to_str().ok());
    let refs = match webhook::delivery(flavor, event, &body) {
        Delivery::Ping => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "accepted": true, "ignored": "ping" })),
            ))
        }
        Delivery::Refs(refs) => refs,
        Delivery::Other => Vec::new(),
    };
    let config: Option<SourceConfig> = state.store.get_json(keys::SOURCE_CONFIG).await?;
    let branch = config.map_or_else(|| "main".to_string(), |c| c.branch);
    let tracked = format!("refs/heads/{branch}");
    let wanted = |r: &String| *r == tracked || settings.plan_refs.iter().any(|p| ref_matches(p, r));
    if !refs.is_empty() && !refs.iter().any(wanted) {
        let reason = format!(
            "push to {}; pgcd follows {tracked} and plans {}",
            refs.join(", "),
            settings.plan_refs.join(", ")
        );
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": true, "ignored": reason })),
        ));
    }
    let wake = serde_json::json!({ "at": crate::cluster::now_rfc3339(), "by": state.host, "via": flavor.header() });
    state.store.put_json(keys::SOURCE_WAKE, &wake).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": true, "woke": "leader" })),
    ))
}
