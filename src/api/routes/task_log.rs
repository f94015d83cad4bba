//! `GET /v1/tasks/{id}/log`: a task's log as plain text, one line per entry;
//! with `?follow=true`, as Server-Sent Events that follow the task until it
//! ends.
//!
//! The stream sends each log line as a message event (`id` is the line's
//! index, so a client reconnecting with `Last-Event-ID` gets only the lines
//! it missed), follows the runner's flushes through an etcd watch on the
//! task's key, and ends with `event: end` whose data is
//! `{"state","error","finished_at"}` once the task succeeded or failed. It
//! ends with `event: error` instead when it cannot go on (record deleted,
//! watch lost, agent shutting down); the client may reconnect.

use crate::api::{ApiError, ApiState};
use crate::cluster::keys;
use crate::cluster::tasks::{TaskState, TaskStatus};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use etcd_client::{EventType, WatchStream};
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use tokio_util::sync::CancellationToken;

/// `?follow=true` (also `?follow`, `?follow=1`).
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    follow: Option<String>,
}

impl LogQuery {
    fn follow(&self) -> bool {
        matches!(self.follow.as_deref(), Some("" | "true" | "1"))
    }
}

/// One task's log: plain text, or an event stream when following.
pub async fn get(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if id.is_empty() || id.contains('/') {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid task id"));
    }
    let key = keys::task(&id);
    let entry = state
        .store
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no task {id}")))?;
    let task: TaskStatus = entry.json()?;
    if !query.follow() {
        let text: String = task.log.iter().map(|l| format!("{l}\n")).collect();
        return Ok(text.into_response());
    }
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1));
    let watch = if is_finished(task.state) {
        None
    } else {
        // From the revision after the one read: no flush between the read and
        // the watch is missed.
        Some(state.store.watch_key(&key, entry.mod_revision + 1).await?)
    };
    let mut follow = Follow {
        pending: VecDeque::new(),
        sent: resume_from,
        watch,
        shutdown: state.shutdown.clone(),
        done: false,
    };
    follow.absorb(&task);
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let event = f.next().await?;
        Some((Ok::<_, Infallible>(event), f))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn is_finished(state: TaskState) -> bool {
    matches!(state, TaskState::Succeeded | TaskState::Failed)
}

/// The state of one followed log.
struct Follow {
    /// Events ready to send.
    pending: VecDeque<Event>,
    /// Log lines sent (or skipped through `Last-Event-ID`).
    sent: usize,
    /// The watch on the task's key; `None` once the task was finished at the start.
    watch: Option<WatchStream>,
    /// The agent's shutdown: an open stream must not hold it up.
    shutdown: CancellationToken,
    /// Nothing comes after the pending events.
    done: bool,
}

impl Follow {
    /// Queues the lines not sent yet and, for a finished task, the end event.
    fn absorb(&mut self, task: &TaskStatus) {
        for (i, line) in task.log.iter().enumerate().skip(self.sent) {
            self.pending
                .push_back(Event::default().id(i.to_string()).data(line));
        }
        // The runner only appends; a shorter log is not sent again.
        self.sent = self.sent.max(task.log.len());
        if is_finished(task.state) {
            let end = serde_json::json!({
                "state": task.state.as_str(),
                "error": task.error,
                "finished_at": task.finished_at,
            });
            self.pending
                .push_back(Event::default().event("end").data(end.to_string()));
            self.done = true;
        }
    }

    /// Queues an `error` event and ends the stream after it.
    fn fail(&mut self, message: &str) {
        self.pending
            .push_back(Event::default().event("error").data(message));
        self.done = true;
    }

    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            let watch = self.watch.as_mut()?;
            let message = tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.fail("agent shutting down; reconnect with Last-Event-ID to resume");
                    continue;
                }
                m = watch.message() => m,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.fail("the etcd watch ended; reconnect to resume");
                    continue;
                }
                Err(e) => {
                    self.fail(&format!("the etcd watch failed: {e}; reconnect to resume"));
                    continue;
                }
            };
            if resp.canceled() {
                self.fail(&format!(
                    "the etcd watch was canceled ({}); reconnect to resume",
                    resp.cancel_reason()
                ));
                continue;
            }
            for event in resp.events() {
                if self.done {
                    break;
                }
                let Some(kv) = event.kv() else { continue };
                if event.event_type() == EventType::Delete {
                    self.fail("the task's record was deleted");
                    continue;
                }
                match serde_json::from_slice::<TaskStatus>(kv.value()) {
                    Ok(task) => self.absorb(&task),
                    Err(e) => self.fail(&format!("the task's record does not decode: {e}")),
                }
            }
        }
    }
}
