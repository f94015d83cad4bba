//! Leader election on `/pgcd/v1/leader` with etcd's election API, and the
//! `LeaderGuard` through which every leader write goes: each write is a
//! transaction that compares the leader key's create revision, so a deposed
//! leader (paused, partitioned, lease lapsed) cannot write, and steps down.

use super::keys;
use super::reflector::{self, Mirror};
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
    /// When leadership was last confirmed, by a guarded write or by the
    /// heartbeat's read every second: leadership not confirmed for longer
    /// than the lease is given up.
    confirmed: Arc<std::sync::Mutex<Instant>>,
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
            confirmed: Arc::new(std::sync::Mutex::new(Instant::now())),
        }
    }

    /// How long since a guarded write last succeeded.
    pub fn unconfirmed_for(&self) -> Duration {
        self.confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Cancelled when leadership is lost; leader services stop on it.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The create revision of the leader key: it names this term.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The leader's host id.
    pub fn host(&self) -> &HostId {
        &self.host
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Confirms leadership without writing: a linearizable read of the
    /// leader key (etcd serves it by read index: no raft entry, no WAL, no
    /// revision). The key still created at this term's revision means this
    /// host still leads; otherwise the guard steps down as a rejected write
    /// would.
    pub async fn confirm(&self) -> Result<(), ClusterError> {
        let mut c = self.store.client();
        let resp = self.store.timed(c.get(self.key.clone(), None)).await?;
        let held = resp
            .kvs()
            .first()
            .is_some_and(|kv| kv.create_revision() == self.revision);
        if held {
            *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            Ok(())
        } else {
            tracing::warn!(host = %self.host, "leader key gone or replaced: leadership lost; stepping down");
            self.token.cancel();
            Err(ClusterError::NotLeader)
        }
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
        if resp.succeeded() {
            *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        } else {
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

/// Follows the leader (a watch of the election's keys: the candidate with
/// the oldest key leads), logs and counts each change, and publishes it.
pub async fn observe_leader(
    store: Store,
    tx: watch::Sender<Option<String>>,
    cancel: CancellationToken,
) {
    let mut last: Option<String> = None;
    let mut updates =
        reflector::spawn(store.clone(), &format!("{}/", keys::LEADER), cancel.clone());
    let mut mirror = Mirror::default();
    while let Some(u) = updates.recv().await {
        mirror.apply(u);
        let leader = mirror
            .entries
            .values()
            .min_by_key(|e| e.create_revision)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned());
        {
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
        let reason = watch_leadership(&guard, ttl, &mut lease_rx).await;
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

/// One guarded no-op: when the watch says the key is gone, etcd confirms it
/// by rejecting the write (counted in `/metrics`), the same evidence a
/// real write would meet.
async fn confirm_lost(guard: &LeaderGuard) {
    let _ = tokio::time::timeout(Duration::from_secs(1), guard.txn(vec![], vec![], vec![])).await;
}

/// Waits until leadership is lost: the leader key deleted (its lease
/// lapsed, or someone removed it), the host's lease renewed under a new id,
/// a guarded write rejected (the guard cancels its token), or no guarded
/// write confirmed for longer than the lease (etcd out of reach). Nothing
/// here polls etcd: the key is watched, and the heartbeat's linearizable
/// read every second is the confirmation.
async fn watch_leadership(
    guard: &LeaderGuard,
    ttl: Duration,
    lease_rx: &mut watch::Receiver<i64>,
) -> &'static str {
    let full = String::from_utf8_lossy(&guard.key).into_owned();
    let rel = full.trim_start_matches(super::keys::NAMESPACE);
    let mut stream = match guard.store().watch_key(rel, guard.revision + 1).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the leader key; relying on the heartbeat");
            None
        }
    };
    let mut check = tokio::time::interval(ttl / 2);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = async {
            match stream.as_mut() {
                Some(s) => s.message().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = guard.token().cancelled() => return "leadership lost (guarded write rejected) or shutting down",
            changed = lease_rx.changed() => {
                if changed.is_err() {
                    return "shutting down";
                }
                confirm_lost(guard).await;
                return "the host lease was renewed under a new id: the old leader key is gone";
            }
            msg = event => match msg {
                Ok(Some(resp)) => {
                    if resp.events().iter().any(|e| e.event_type() == etcd_client::EventType::Delete) {
                        confirm_lost(guard).await;
                        return "the leader key is gone";
                    }
                    if resp.canceled() {
                        stream = None;
                    }
                }
                _ => stream = None,
            },
            _ = check.tick() => {
                if guard.unconfirmed_for() > ttl {
                    confirm_lost(guard).await;
                    return "cannot confirm leadership with etcd for longer than the lease";
                }
            }
        }
    }
}
