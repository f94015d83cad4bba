//! The host registry: each agent keeps `/pgcd/v1/hosts/<id>` alive under a
//! short lease, and a persistent copy under `known/<id>` so a dead host is
//! still listed (unhealthy) until `pgcd host remove` forgets it.

use super::keys;
use super::store::{to_json, Store};
use super::ClusterError;
use crate::spec::names::HostId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What a host says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host id.
    pub id: HostId,
    /// The advertise address.
    pub address: String,
    /// The agent's API URL.
    pub api_url: String,
    /// Labels such as region and zone.
    pub labels: BTreeMap<String, String>,
    /// The pgcd version of the agent.
    pub version: String,
    /// When this agent process started (RFC 3339).
    pub started_at: String,
    /// The data directory's random instance id (see `HostIdentity`).
    pub instance: String,
}

/// A host as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostView {
    /// The host id.
    pub id: HostId,
    /// The advertise address.
    pub address: String,
    /// The agent's API URL.
    pub api_url: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The pgcd version.
    pub version: String,
    /// When the agent started.
    pub started_at: String,
    /// Whether the host's lease is alive.
    pub healthy: bool,
    /// The last `host.facts` result, if any.
    pub facts: Option<serde_json::Value>,
}

/// Lists every known host with its health and facts.
pub async fn list_hosts(store: &Store) -> Result<Vec<HostView>, ClusterError> {
    let (known, _) = store.get_prefix(keys::KNOWN).await?;
    let (alive, _) = store.get_prefix(keys::HOSTS).await?;
    let (facts, _) = store.get_prefix(keys::FACTS).await?;
    let mut hosts: BTreeMap<String, (HostRecord, bool)> = BTreeMap::new();
    for e in &known {
        if let Ok(r) = e.json::<HostRecord>() {
            hosts.insert(r.id.to_string(), (r, false));
        }
    }
    for e in alive
        .iter()
        .filter(|e| keys::host_id_of_record(&e.key).is_some())
    {
        if let Ok(r) = e.json::<HostRecord>() {
            hosts.insert(r.id.to_string(), (r, true));
        }
    }
    let facts: BTreeMap<String, serde_json::Value> = facts
        .iter()
        .filter_map(|e| {
            let id = e.key.strip_prefix(keys::FACTS)?;
            Some((id.to_owned(), e.json().ok()?))
        })
        .collect();
    Ok(hosts
        .into_iter()
        .map(|(id, (r, healthy))| HostView {
            facts: facts.get(&id).cloned(),
            id: r.id,
            address: r.address,
            api_url: r.api_url,
            labels: r.labels,
            version: r.version,
            started_at: r.started_at,
            healthy,
        })
        .collect())
}

/// Fails when another live agent holds this host id.
pub async fn check_host_id_free(store: &Store, record: &HostRecord) -> Result<(), ClusterError> {
    if let Some(e) = store.get(&keys::host(&record.id)).await? {
        let live: HostRecord = e.json()?;
        if live.instance != record.instance {
            return Err(ClusterError::HostIdTaken {
                id: record.id.to_string(),
                address: live.address,
            });
        }
    }
    Ok(())
}

/// This agent's registration: its record and the lease that keeps it alive.
pub struct Registry {
    store: Store,
    record: HostRecord,
    ttl: i64,
    lease_tx: watch::Sender<i64>,
    /// When the request of the last lease renewal that succeeded was sent
    /// (wall clock): the lease lives at least `ttl` past it on etcd's side,
    /// so a primary fenced to this time plus less than `ttl` is stopped
    /// before anyone else may be promoted (see `agent::fence`).
    renewed: watch::Sender<Option<std::time::SystemTime>>,
}

impl Registry {
    /// Grants a lease and writes the host record under it. The receiver
    /// tells the current lease id (it changes when a lapsed lease is renewed).
    pub async fn register(
        store: Store,
        record: HostRecord,
        ttl: Duration,
    ) -> Result<(Self, watch::Receiver<i64>), ClusterError> {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(2).max(1);
        let sent = std::time::SystemTime::now();
        let lease = grant_and_put(&store, &record, ttl).await?;
        let (lease_tx, lease_rx) = watch::channel(lease);
        let (renewed, _) = watch::channel(Some(sent));
        Ok((
            Self {
                store,
                record,
                ttl,
                lease_tx,
                renewed,
            },
            lease_rx,
        ))
    }

    /// Follows the send time of every lease renewal that succeeded.
    pub fn renewals(&self) -> watch::Receiver<Option<std::time::SystemTime>> {
        self.renewed.subscribe()
    }

    /// The lease's time to live.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl as u64)
    }

    /// The current lease id.
    pub fn lease(&self) -> i64 {
        *self.lease_tx.borrow()
    }

    /// Keeps the lease alive until cancelled; renews it (new lease, record
    /// written again) when it lapsed, e.g. after the process was paused.
    pub async fn keep_alive(&self, cancel: CancellationToken) {
        let interval = Duration::from_millis((self.ttl as u64 * 1000 / 4).max(200));
        let mut session = None;
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
            let lease = self.lease();
            let sent = std::time::SystemTime::now();
            let result = tokio::time::timeout(Duration::from_secs(1), async {
                let mut client = self.store.client();
                match &mut session {
                    None => {
                        // Opening the stream sends a first renewal and reads
                        // its answer (a lease not found is an error).
                        let pair = client.lease_keep_alive(lease).await?;
                        session = Some(pair);
                        Ok::<i64, etcd_client::Error>(1)
                    }
                    Some((keeper, stream)) => {
                        keeper.keep_alive().await?;
                        match stream.message().await? {
                            Some(resp) => Ok(resp.ttl()),
                            None => Err(etcd_client::Error::LeaseKeepAliveError(
                                "keep-alive stream ended".into(),
                            )),
                        }
                    }
                }
            })
            .await;
            let lost = match result {
                Ok(Ok(ttl)) if ttl > 0 => {
                    if failing_since.take().is_some() {
                        tracing::info!(lease, "lease keep-alive works again");
                    }
                    let _ = self.renewed.send(Some(sent));
                    false
                }
                Ok(Ok(_)) => true,
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(msg)))
                    if msg.contains("not found") =>
                {
                    true
                }
                Ok(Err(e)) => {
                    session = None;
                    if failing_since.is_none() {
                        tracing::warn!(error = %e, "lease keep-alive failed; retrying");
                        failing_since = Some(std::time::Instant::now());
                    }
                    false
                }
                Err(_) => {
                    session = None;
                    failing_since.get_or_insert_with(std::time::Instant::now);
                    false
                }
            };
            if lost {
                session = None;
                tracing::warn!(
                    lease,
                    "host lease lapsed; registering again with a new lease"
                );
                let sent = std::time::SystemTime::now();
                match grant_and_put(&self.store, &self.record, self.ttl).await {
                    Ok(new) => {
                        let _ = self.lease_tx.send(new);
                        let _ = self.renewed.send(Some(sent));
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew the host lease; retrying"),
                }
            }
        }
    }

    /// Revokes the lease: the host record goes away at once (clean shutdown).
    pub async fn revoke(&self) {
        let mut client = self.store.client();
        let lease = self.lease();
        if let Err(e) = self.store.timed(client.lease_revoke(lease)).await {
            tracing::warn!(error = %e, "cannot revoke the host lease; it will lapse");
        }
    }
}

async fn grant_and_put(store: &Store, record: &HostRecord, ttl: i64) -> Result<i64, ClusterError> {
    let mut client = store.client();
    let lease = store.timed(client.lease_grant(ttl, None)).await?.id();
    let value = to_json(record)?;
    store
        .put(&keys::host(&record.id), value.clone(), Some(lease))
        .await?;
    store.put(&keys::known(&record.id), value, None).await?;
    Ok(lease)
}
