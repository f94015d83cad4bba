//! Leader election on `/pgcd/v1/leader` with etcd's election API, and the
//! `LeaderGuard` through which every leader write goes: each write is a
//! transaction that compares the leader key's create revision, so a deposed
//! leader (paused, partitioned, lease lapsed) cannot write, and steps down.

use super::keys;
use super::store::{full_key, Store};
use super::ClusterError;
use crate::spec::names::HostId;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse, TxnResponse};
use futures::future::BoxFuture;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A service that runs only on the leader (later issues: fetch, plan, apply).
pub trait LeaderService: Send + Sync {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Runs until `guard.token()` is cancelled (leadership lost or shutdown).
    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()>;
}

/// Proof of leadership: the leader key and its create revision. Cheap to clone.
#[derive(Clone)]
pub struct LeaderGuard {
    store: Store,
    key: Vec<u8>,
    revision: i64,
    host: HostId,
    token: CancellationToken,
}

impl LeaderGuard {
    /// Makes a guard for a leader key held at `revision`; `token` is cancelled
    /// when a guarded write finds leadership lost.
    pub fn new(
        store: Store,
        key: Vec<u8>,
        revision: i64,
        host: HostId,
        token: CancellationToken,
    ) -> Self {
        Self {
            store,
            key,
            revision,
            host,
            token,
        }
    }

    /// Cancelled when leadership is lost; leader services stop on it.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The leader's host id.
    pub fn host(&self) -> &HostId {
        &self.host
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Writes one key, only while still the leader.
    pub async fn put(&self, rel: &str, value: Vec<u8>) -> Result<(), ClusterError> {
        self.txn(vec![], vec![TxnOp::put(full_key(rel), value, None)], vec![])
            .await
            .map(drop)
    }

    /// Deletes one key, only while still the leader.
    pub async fn delete(&self, rel: &str) -> Result<(), ClusterError> {
        self.txn(vec![], vec![TxnOp::delete(full_key(rel), None)], vec![])
            .await
            .map(drop)
    }

    /// Runs `if compares then ops else otherwise` only while still the leader;
    /// returns the inner transaction's response. Keys are full keys (use
    /// `store::full_key`). On lost leadership returns `NotLeader` and steps down.
    pub async fn txn(
        &self,
        compares: Vec<Compare>,
        then: Vec<TxnOp>,
        otherwise: Vec<TxnOp>,
    ) -> Result<TxnResponse, ClusterError> {
        let inner = Txn::new().when(compares).and_then(then).or_else(otherwise);
        let outer = Txn::new()
            .when([Compare::create_revision(
                self.key.clone(),
                CompareOp::Equal,
                self.revision,
            )])
            .and_then([TxnOp::txn(inner)]);
        let resp = self.store.txn(outer).await?;
        if !resp.succeeded() {
            self.store
                .metrics()
                .not_leader_rejections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(host = %self.host, "guarded write rejected: leadership lost; stepping down");
            self.token.cancel();
            return Err(ClusterError::NotLeader);
        }
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Txn(inner)) => Ok(inner),
            _ => Err(ClusterError::Other(
                "etcd answered a nested transaction without its response".into(),
            )),
        }
    }
}

/// Campaigns until this host is the leader; returns the leader key and its
/// create revision.
pub async fn campaign(
    store: &Store,
    host: &HostId,
    lease: i64,
) -> Result<(Vec<u8>, i64), ClusterError> {
    let mut client = store.client();
    let resp = client
        .campaign(full_key(keys::LEADER), host.as_str(), lease)
        .await?;
    let leader = resp
        .leader()
        .ok_or_else(|| ClusterError::Other("campaign answered without a leader key".into()))?;
    Ok((leader.key().to_vec(), leader.rev()))
}

/// The current leader's host id, if there is one.
pub async fn current_leader(store: &Store) -> Result<Option<String>, ClusterError> {
    let (entries, _) = store.get_prefix(&format!("{}/", keys::LEADER)).await?;
    Ok(entries
        .iter()
        .min_by_key(|e| e.create_revision)
        .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
}

/// Polls the leader, logs and counts each change, and publishes it.
pub async fn observe_leader(
    store: Store,
    tx: watch::Sender<Option<String>>,
    cancel: CancellationToken,
) {
    let mut last: Option<String> = None;
    loop {
        if let Ok(leader) = current_leader(&store).await {
            if leader != last {
                if leader.is_some() {
                    store
                        .metrics()
                        .leader_changes
                        .fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(
                    from = last.as_deref().unwrap_or("none"),
                    to = leader.as_deref().unwrap_or("none"),
                    "leader changed"
                );
                last.clone_from(&leader);
                let _ = tx.send(leader);
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Campaigns, runs the leader services while leader, steps down when the
/// leader key is gone, the lease changed or a guarded write was rejected,
/// and campaigns again; until `cancel`.
pub async fn run_election(
    store: Store,
    host: HostId,
    mut lease_rx: watch::Receiver<i64>,
    ttl: Duration,
    services: Vec<Arc<dyn LeaderService>>,
    cancel: CancellationToken,
) {
    loop {
        let lease = *lease_rx.borrow_and_update();
        let won = tokio::select! {
            () = cancel.cancelled() => return,
            r = campaign(&store, &host, lease) => r,
            _ = lease_rx.changed() => continue,
        };
        let (key, revision) = match won {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "campaign failed; campaigning again");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        let token = cancel.child_token();
        let guard = LeaderGuard::new(
            store.clone(),
            key.clone(),
            revision,
            host.clone(),
            token.clone(),
        );
        store.metrics().is_leader.store(true, Ordering::SeqCst);
        tracing::info!(host = %host, revision, "became the leader; starting leader services");
        let handles: Vec<_> = services
            .iter()
            .map(|s| {
                tracing::info!(service = s.name(), "leader service starting");
                tokio::spawn(s.run(guard.clone()))
            })
            .collect();
        let reason = watch_leadership(&guard, ttl).await;
        token.cancel();
        store.metrics().is_leader.store(false, Ordering::SeqCst);
        for h in handles {
            let _ = h.await;
        }
        tracing::warn!(host = %host, reason, "stepped down as leader");
        // Give up the key if it is still ours, so a successor need not wait.
        let mut client = store.client();
        let _ = store.timed(client.delete(key, None)).await;
    }
}

/// Confirms leadership every 250 ms with an empty guarded transaction, so
/// losing it (lease lapsed while paused, key deleted) is always found by a
/// rejected guarded write.
async fn watch_leadership(guard: &LeaderGuard, ttl: Duration) -> &'static str {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = guard.token().cancelled() => return "leadership lost (guarded write rejected) or shutting down",
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        match guard.txn(vec![], vec![], vec![]).await {
            Ok(_) => last_ok = Instant::now(),
            Err(ClusterError::NotLeader) => {
                return "guarded check rejected: the leader key is gone"
            }
            Err(e) if last_ok.elapsed() > ttl => {
                tracing::warn!(error = %e, "cannot confirm leadership");
                return "cannot reach etcd for longer than the lease";
            }
            Err(_) => {}
        }
    }
}
