//! `POST /v1/webhooks/{github,gitea,generic}`: verify the HMAC signature of
//! the raw body (401 when missing or wrong, 413 over 1 MiB), then wake the
//! leader through etcd (202). Pushes to branches pgcd neither follows nor
//! plans are accepted and ignored, with the reason in the answer.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::source::git::{ref_matches, SourceConfig};
use crate::source::records::Settings;
use crate::source::webhook::{self, Flavor, MAX_BODY};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};

/// The agent-wide fallback when `pgcd.yaml` names no webhook secret.
pub const SECRET_ENV: &str = "PGCD_WEBHOOK_SECRET";

/// The three endpoints, with the body limit.
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/v1/webhooks/github", post(github))
        .route("/v1/webhooks/gitea", post(gitea))
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
        .get("x-github-event")
        .or_else(|| headers.get("x-gitea-event"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push");
    if event == "ping" {
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "accepted": true, "ignored": "ping" })),
        ));
    }
    let config: Option<SourceConfig> = state.store.get_json(keys::SOURCE_CONFIG).await?;
    let branch = config.map_or_else(|| "main".to_string(), |c| c.branch);
    let tracked = format!("refs/heads/{branch}");
    if let Some(r) = webhook::pushed_ref(&body) {
        if r != tracked && !settings.plan_refs.iter().any(|p| ref_matches(p, &r)) {
            let reason = format!(
                "push to {r}; pgcd follows {tracked} and plans {}",
                settings.plan_refs.join(", ")
            );
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "accepted": true, "ignored": reason })),
            ));
        }
    }
    let wake = serde_json::json!({ "at": crate::cluster::now_rfc3339(), "by": state.host, "via": flavor.header() });
    state.store.put_json(keys::SOURCE_WAKE, &wake).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": true, "woke": "leader" })),
    ))
}
