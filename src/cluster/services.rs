//! The cluster core's own leader services: a status heartbeat written
//! through the guard (it finds lost leadership even when nothing else
//! writes) and keeping etcd's raft leader off the pgcd leader's host; and
//! the `HostService` trait for services every agent runs.

use super::election::{LeaderGuard, LeaderService};
use super::keys;
use super::store::to_json;

use super::{now_rfc3339, ClusterError};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::time::Duration;

/// A service every agent runs (not only the leader), from registration
/// until shutdown: observing the host's instances, for one.
pub trait HostService: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Runs until `cancel`.
    fn run(
        &self,
        store: super::store::Store,
        cancel: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

/// Writes `status/leader` (host, since) once per term through the guard,
/// then confirms leadership every second with a read: an idle leader
/// writes nothing.
pub struct Heartbeat;

impl LeaderService for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        async move {
            let since = now_rfc3339();
            if let Err(ClusterError::NotLeader) = record_term(&guard, &since).await {
                return;
            }
            let mut recorded = false;
            loop {
                let beat = if recorded {
                    guard.confirm().await
                } else {
                    let record = serde_json::json!({ "host": guard.host(), "since": since });
                    match to_json(&record) {
                        Ok(v) => guard.put(keys::LEADER_STATUS, v).await,
                        Err(e) => Err(e),
                    }
                };
                match beat {
                    Err(ClusterError::NotLeader) => return,
                    Err(e) => tracing::warn!(error = %e, "leader heartbeat failed"),
                    Ok(()) => recorded = true,
                }
                tokio::select! {
                    () = guard.token().cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        .boxed()
    }
}

/// One leader's term, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderTerm {
    /// The leader's host.
    pub host: String,
    /// When it became leader (RFC 3339).
    pub since: String,
    /// The create revision of its election key: it orders terms.
    pub revision: i64,
}

/// How many terms the history keeps.
const TERMS_KEPT: usize = 200;

/// Appends this leader's term to `status/leader-history` (the newest
/// [`TERMS_KEPT`]), so a cluster that restarts keeps its history.
async fn record_term(guard: &LeaderGuard, since: &str) -> Result<(), ClusterError> {
    let mut backoff = crate::backoff::Backoff::transient().attempts(10);
    loop {
        let mut terms: Vec<LeaderTerm> = guard
            .store()
            .get_json(keys::LEADER_HISTORY)
            .await?
            .unwrap_or_default();
        if terms.iter().any(|t| t.revision == guard.revision()) {
            return Ok(());
        }
        terms.push(LeaderTerm {
            host: guard.host().to_string(),
            since: since.to_string(),
            revision: guard.revision(),
        });
        let drop_n = terms.len().saturating_sub(TERMS_KEPT);
        terms.drain(..drop_n);
        match guard.put(keys::LEADER_HISTORY, to_json(&terms)?).await {
            Ok(()) => return Ok(()),
            Err(ClusterError::NotLeader) => return Err(ClusterError::NotLeader),
            Err(e) => {
                if !backoff.wait(guard.token()).await {
                    return Err(e);
                }
            }
        }
    }
}

/// How often the leader checks where etcd's raft leader is: one status
/// request (no reads), and more only when it must move it.
const RAFT_CHECK: Duration = Duration::from_secs(5);

/// With embedded etcd, keeps the etcd raft leader off the pgcd leader's
/// host: when that host dies, only the pgcd lease must expire, not also a
/// raft election plus the lease extension etcd grants after one, which
/// roughly halves failover time.
pub struct RaftLeaderAway;

impl LeaderService for RaftLeaderAway {
    fn name(&self) -> &'static str {
        "raft-leader-away"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        async move {
            loop {
                // Only to a caught-up member (see below), so at once is safe.
                if let Err(e) = move_raft_leader_away(&guard).await {
                    tracing::debug!(error = %e, "cannot move the etcd raft leader");
                }
                tokio::select! {
                    () = guard.token().cancelled() => return,
                    () = tokio::time::sleep(RAFT_CHECK) => {}
                }
            }
        }
        .boxed()
    }
}

async fn move_raft_leader_away(guard: &LeaderGuard) -> Result<(), ClusterError> {
    let store = guard.store();
    let mut client = store.client();
    let status = store.timed(client.status()).await?;
    let me = status.header().map_or(0, |h| h.member_id());
    if status.leader() != me || me == 0 {
        return Ok(());
    }
    let members = store.timed(client.member_list()).await?;
    // The most caught-up other member, and only if it is close behind.
    let mut best: Option<(u64, u64)> = None;
    for m in members.members() {
        if m.id() == me || m.is_learner() || m.client_urls().is_empty() {
            continue;
        }
        if let Some(index) = member_raft_index(m.client_urls()).await {
            let better = match best {
                None => true,
                Some((_, b)) => index > b,
            };
            if better {
                best = Some((m.id(), index));
            }
        }
    }
    let Some((target, index)) = best else {
        return Ok(());
    };
    if status.raft_index().saturating_sub(index) > 100 {
        return Ok(());
    }
    store.timed(client.move_leader(target)).await?;
    tracing::info!(
        to = format!("{target:x}"),
        "moved the etcd raft leader off the pgcd leader's host"
    );
    Ok(())
}

async fn member_raft_index(urls: &[String]) -> Option<u64> {
    let check = async {
        let options =
            etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
        let mut c = etcd_client::Client::connect(urls, Some(options))
            .await
            .ok()?;
        c.status().await.ok().map(|s| s.raft_index())
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
}
