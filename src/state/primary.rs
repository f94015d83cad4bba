//! Which host's instance of a node may run as its primary: the leader's
//! record under `primaries/<db>/<node>`, written only through leader-guarded
//! writes, changed only by a switchover or a failover.
//!
//! It is the authority the whole HA design rests on:
//! - the planner makes the recorded host's instance the primary and every
//!   other instance of the node a standby (promoting, repointing, rejoining);
//! - each agent fences its instances by it (`agent::fence`): an instance
//!   runs as a primary only while its host is the recorded one and its
//!   agent keeps renewing its host lease;
//! - so the leader may record a new primary, and promote it, only once the
//!   old one is stopped or its host's lease has expired.
//!
//! A node gets a record once it has standbys; a node of one instance has
//! nothing to fail over to and is never fenced.

use crate::spec::names::{DatabaseName, HostId, NodeName};
use serde::{Deserialize, Serialize};

/// `primaries/<db>/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryRecord {
    /// The database.
    pub database: DatabaseName,
    /// The node.
    pub node: NodeName,
    /// The host whose instance is the node's primary.
    pub host: HostId,
    /// Counts the changes of primary: a fenced instance compares it.
    pub term: u64,
    /// Since when (RFC 3339).
    pub since: String,
    /// Why it is this host (`first primary`, `switchover s1`, `failover: h1 lost`).
    pub reason: String,
}
