//! The cluster core: the supervised etcd child, the etcd client wrapper and
//! key layout, the host registry, leader election with guarded writes, the
//! task queue, and the agent that wires them together.
//!
//! This module owns everything that touches etcd. It must not know about
//! databases, plans or Git: later modules plug in through `LeaderService` and
//! the task `Executor` registry.

pub mod agent;
pub mod election;
pub mod etcd;
pub mod executors;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod registry;
pub mod runner;
pub mod services;
pub mod store;
pub mod tasks;

use std::fmt;
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

/// A host's identity in the cluster: letters, digits, `-`, `_`, `.`, 1-63
/// characters, so it is safe as an etcd key segment and an etcd member name.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    /// Validates a host id.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "invalid host id {s:?}: use 1-63 letters, digits, '-', '_' or '.'"
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for HostId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

/// The current time as RFC 3339 text, the format of every timestamp we store.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::HostId;

    #[test]
    fn host_id_rejects_key_separators() {
        assert!(HostId::parse("h1").is_ok());
        assert!(HostId::parse("a/b").is_err());
        assert!(HostId::parse("").is_err());
    }
}
