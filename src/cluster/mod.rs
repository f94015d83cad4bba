//! The cluster core: the supervised etcd child, the etcd client wrapper and
//! key layout, the host registry, leader election with guarded writes, the
//! task queue. The agent that wires them together is `crate::agent`.
//!
//! This module owns everything that touches etcd. It must not know about
//! databases, plans or Git: later modules plug in through `LeaderService` and
//! the task `Executor` registry.

pub mod election;
pub mod etcd;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod reflector;
pub mod registry;
pub mod runner;
pub mod services;
pub mod store;
pub mod tasks;

use std::time::Duration;

/// Errors of the cluster core, with the context a person needs to act.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An etcd request failed.
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// An etcd request did not answer in time.
    #[error("etcd request timed out after {0:?}")]
    Timeout(Duration),
    /// A guarded write was rejected: this agent no longer holds the leader key.
    #[error("not the leader: the leader key changed, this agent steps down")]
    NotLeader,
    /// A record in etcd could not be decoded.
    #[error("bad record at {key}: {source}")]
    BadRecord {
        /// The key holding the record.
        key: String,
        /// Why it did not decode.
        source: serde_json::Error,
    },
    /// The host id is held by another live agent.
    #[error("host id {id} is already taken by a live host at {address}; pick another --host-id or stop that agent")]
    HostIdTaken {
        /// The host id asked for.
        id: String,
        /// The address of the live host that holds it.
        address: String,
    },
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
}

/// The current time as RFC 3339 text, the format of every timestamp we store.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
