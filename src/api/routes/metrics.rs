//! `GET /metrics`: Prometheus text.

use crate::api::ApiState;
use crate::cluster::registry::list_hosts;
use crate::cluster::tasks::list_tasks;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::collections::BTreeMap;

/// Renders the agent's metrics plus hosts up and tasks by state from etcd.
pub async fn get(State(state): State<ApiState>) -> impl IntoResponse {
    let hosts_up = list_hosts(&state.store)
        .await
        .ok()
        .map(|h| h.iter().filter(|h| h.healthy).count());
    let mut by_state: BTreeMap<String, usize> = ["pending", "running", "succeeded", "failed"]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    if let Ok(tasks) = list_tasks(&state.store).await {
        for t in tasks {
            *by_state.entry(t.state.as_str().to_owned()).or_default() += 1;
        }
    }
    let tasks: Vec<(String, usize)> = by_state.into_iter().collect();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(hosts_up, &tasks),
    )
}
