//! The naming rules of what pgcd makes: containers, replication slots,
//! publications, subscriptions and the replication role. Every module that
//! needs one of these names takes it from here, so the observer, the planner
//! and the executor can never disagree on them.

use crate::spec::names::{DatabaseName, HostId, NodeName};
use serde::{Deserialize, Serialize};

/// The fence file in an instance's directory (see `agent::fence`): while it
/// exists, the instance runs as a primary only until the time it holds.
pub const FENCE_FILE: &str = "fence";

/// One instance: a node's server on one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceId {
    /// The database.
    pub database: DatabaseName,
    /// The node.
    pub node: NodeName,
    /// The host.
    pub host: HostId,
}

impl InstanceId {
    /// Makes an id.
    pub fn new(database: &DatabaseName, node: &NodeName, host: &HostId) -> Self {
        Self {
            database: database.clone(),
            node: node.clone(),
            host: host.clone(),
        }
    }

    /// The container name, `pgcd-<database>-<node>-<host>`.
    pub fn container(&self) -> String {
        format!("pgcd-{}-{}-{}", self.database, self.node, self.host)
    }
}

/// Every sequence of a natively replicated database steps by this much, and
/// node `k` (1-based, in spec order) takes the values `≡ k (mod stride)`, so
/// nodes inserting at once never generate the same key. At most this many
/// nodes.
pub const SEQUENCE_STRIDE: i64 = 16;

/// The publication each node of a natively replicated database has.
pub fn publication_name() -> &'static str {
    "pgcd_all"
}

/// The subscription (and its slot on the publisher) by which `subscriber`
/// receives `publisher`'s changes.
pub fn subscription_name(publisher: &str, subscriber: &str) -> String {
    format!("pgcd_sub_{publisher}_to_{subscriber}")
}

/// The role standbys connect as.
pub const REPLICATION_ROLE: &str = "pgcd_replication";

/// The slot and `application_name` of a node's standby on a host.
pub fn standby_name(node: &str, host: &str) -> String {
    let clean: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("pgcd_{node}_{clean}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_convention() {
        assert_eq!(
            InstanceId::new(
                &"orders".parse().unwrap(),
                &"n1".parse().unwrap(),
                &"h1".parse().unwrap()
            )
            .container(),
            "pgcd-orders-n1-h1"
        );
    }

    #[test]
    fn standby_slots_are_lowercase_identifiers() {
        assert_eq!(standby_name("n1", "t3-5-h2"), "pgcd_n1_t3_5_h2");
        assert_eq!(subscription_name("n1", "n2"), "pgcd_sub_n1_to_n2");
    }
}
