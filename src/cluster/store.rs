//! A thin wrapper over `etcd_client::Client`: every key is relative to the
//! `/pgcd/v1/` namespace, every request has a timeout and its latency goes to
//! the `/metrics` histogram.

use super::keys::NAMESPACE;
use super::metrics::Metrics;
use super::ClusterError;
use etcd_client::{
    Client, Compare, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, TxnResponse, WatchOptions,
    WatchStream,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one etcd request may take before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One key-value pair read from etcd, key relative to the namespace.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key without the namespace.
    pub key: String,
    /// The raw value.
    pub value: Vec<u8>,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision of the last change.
    pub mod_revision: i64,
    /// The lease the key is attached to (0 for none).
    pub lease: i64,
}

impl Entry {
    /// Decodes the value as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClusterError> {
        serde_json::from_slice(&self.value).map_err(|source| ClusterError::BadRecord {
            key: self.key.clone(),
            source,
        })
    }
}

/// The etcd store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    client: Client,
    metrics: Arc<Metrics>,
}

/// The full etcd key of a namespaced key.
pub fn full_key(rel: &str) -> String {
    format!("{NAMESPACE}{rel}")
}

impl Store {
    /// Connects to etcd at the given endpoints (`http://host:port`).
    pub async fn connect(
        endpoints: &[String],
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClusterError> {
        Self::connect_tls(endpoints, None, metrics).await
    }

    /// Connects to etcd over TLS (`https://host:port`) with a client
    /// certificate when `tls` is given.
    pub async fn connect_tls(
        endpoints: &[String],
        tls: Option<&crate::pki::client::ClientTls>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClusterError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        if let Some(tls) = tls {
            options = options.with_tls(tls.etcd_options());
        }
        let client =
            tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(endpoints, Some(options)))
                .await
                .map_err(|_| ClusterError::Timeout(REQUEST_TIMEOUT))??;
        Ok(Self { client, metrics })
    }

    /// The raw client, for the election, lease, watch and cluster APIs.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The metrics this store records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs one etcd request with the timeout, recording its latency.
    /// (Writes through [`Store::put`] and [`Store::txn`] are tried again
    /// when etcd refuses them for an old auth revision, see
    /// [`auth_revision_old`].)
    pub async fn timed<T, F>(&self, fut: F) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, fut).await;
        self.metrics.etcd_latency.observe(start.elapsed());
        match result {
            Ok(r) => r.map_err(ClusterError::from),
            Err(_) => Err(ClusterError::Timeout(REQUEST_TIMEOUT)),
        }
    }

    /// Reads one key.
    pub async fn get(&self, rel: &str) -> Result<Option<Entry>, ClusterError> {
        let mut c = self.client.clone();
        let resp = self.timed(c.get(full_key(rel), None)).await?;
        Ok(resp.kvs().first().map(entry))
    }

    /// Reads one key as JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        rel: &str,
    ) -> Result<Option<T>, ClusterError> {
        self.get(rel).await?.map(|e| e.json()).transpose()
    }

    /// Reads every key under a prefix, sorted by key, in pages at one
    /// revision (a prefix such as 10,000 databases' statuses is larger than
    /// gRPC's message limit in one answer).
    pub async fn get_prefix(&self, rel: &str) -> Result<(Vec<Entry>, i64), ClusterError> {
        self.get_prefix_paged(rel, 0).await
    }

    /// Reads every key under a prefix as of one revision (`0`: now), in
    /// pages, so a prefix of any size stays under gRPC's message limit.
    /// Returns the entries sorted by key and the revision read at.
    pub async fn get_prefix_paged(
        &self,
        rel: &str,
        revision: i64,
    ) -> Result<(Vec<Entry>, i64), ClusterError> {
        let prefix = full_key(rel);
        let end = prefix_end(prefix.as_bytes());
        let mut from = prefix.clone().into_bytes();
        let mut at = revision;
        let mut out = Vec::new();
        loop {
            let mut c = self.client.clone();
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if at > 0 {
                options = options.with_revision(at);
            }
            let resp = self.timed(c.get(from.clone(), Some(options))).await?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            let kvs = resp.kvs();
            out.extend(kvs.iter().map(entry));
            match kvs.last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok((out, at)),
            }
        }
    }

    /// Watches every key under a prefix from `start_revision` on (inclusive).
    /// The stream lives until it is dropped; only setting it up is timed.
    pub async fn watch_prefix(
        &self,
        rel: &str,
        start_revision: i64,
    ) -> Result<WatchStream, ClusterError> {
        let mut c = self.client.clone();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start_revision);
        self.timed(c.watch(full_key(rel), Some(options))).await
    }

    /// Writes one key, optionally attached to a lease.
    pub async fn put(
        &self,
        rel: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<(), ClusterError> {
        let mut left = AUTH_RETRIES;
        loop {
            let mut c = self.client.clone();
            let options = lease.map(|id| PutOptions::new().with_lease(id));
            match self
                .timed(c.put(full_key(rel), value.clone(), options))
                .await
            {
                Err(e) if left > 0 && auth_revision_old(&e) => left -= 1,
                r => return r.map(|_| ()),
            }
        }
    }

    /// Writes one key as JSON.
    pub async fn put_json<T: Serialize>(&self, rel: &str, value: &T) -> Result<(), ClusterError> {
        self.put(rel, to_json(value)?, None).await
    }

    /// Deletes one key.
    pub async fn delete(&self, rel: &str) -> Result<(), ClusterError> {
        let mut c = self.client.clone();
        self.timed(c.delete(full_key(rel), None)).await?;
        Ok(())
    }

    /// Watches one key from `start_revision` on (inclusive; pass the
    /// `mod_revision` of a read plus one to miss no change after it). Only
    /// setting up the watch is under the request timeout: the stream lives
    /// until it is dropped.
    pub async fn watch_key(
        &self,
        rel: &str,
        start_revision: i64,
    ) -> Result<WatchStream, ClusterError> {
        let mut c = self.client.clone();
        let options = WatchOptions::new().with_start_revision(start_revision);
        self.timed(c.watch(full_key(rel), Some(options))).await
    }

    /// Runs a transaction.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, ClusterError> {
        let mut left = AUTH_RETRIES;
        loop {
            let mut c = self.client.clone();
            match self.timed(c.txn(txn.clone())).await {
                Err(e) if left > 0 && auth_revision_old(&e) => left -= 1,
                r => return r,
            }
        }
    }

    /// Creates a key only if it does not exist; returns whether it did.
    pub async fn create(&self, rel: &str, value: Vec<u8>) -> Result<bool, ClusterError> {
        let key = full_key(rel);
        let txn = Txn::new()
            .when([Compare::version(
                key.clone(),
                etcd_client::CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.txn(txn).await?.succeeded())
    }
}

/// Keys per page of a paged read: small enough for any pgcd record size.
const PAGE: i64 = 500;

/// The end of the key range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Encodes a value as JSON bytes.
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(value).map_err(|e| ClusterError::Other(format!("encoding JSON: {e}")))
}

/// An entry from a key-value of a response or a watch event.
pub fn entry(kv: &etcd_client::KeyValue) -> Entry {
    let key = String::from_utf8_lossy(kv.key());
    Entry {
        key: key.strip_prefix(NAMESPACE).unwrap_or(&key).to_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
    }
}

/// How often a write refused for an old auth revision is tried again.
const AUTH_RETRIES: u32 = 3;

/// Whether etcd refused a request because the auth store changed between
/// its authentication and its apply (`etcdserver: revision of auth store
/// is old`): a host joining adds its etcd user meanwhile. The request was
/// not applied, and the same request then succeeds.
fn auth_revision_old(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Etcd(e) if e.to_string().contains("revision of auth store is old"))
}
