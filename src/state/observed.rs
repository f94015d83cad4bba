//! What the agents report of their hosts, as etcd holds it: one small
//! record per host (`observed/<host>`: does Docker answer) and one per
//! instance (`observed/<host>/<database>/<node>`), each written only when it
//! changed, so an idle cluster writes nothing and a cluster of 10,000
//! databases never has a value too large for etcd.

use crate::cluster::keys;
use crate::spec::names::HostId;
use crate::state::InstanceActual;
use serde::{Deserialize, Serialize};

/// `observed/<host>`: the host as its agent sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostObservation {
    /// The host.
    pub host: String,
    /// Docker answered.
    pub docker: bool,
}

/// What a key under `observed/` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObservedKey<'a> {
    /// A host's record.
    Host(&'a str),
    /// An instance's record: host, database, node.
    Instance(&'a str, &'a str, &'a str),
}

/// Reads a key under `observed/`.
pub fn parse_key(rel: &str) -> Option<ObservedKey<'_>> {
    let rest = rel.strip_prefix(keys::OBSERVED)?;
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), None, None, None) => Some(ObservedKey::Host(h)),
        (Some(h), Some(d), Some(n), None) => Some(ObservedKey::Instance(h, d, n)),
        _ => None,
    }
}

/// The key of an instance's record.
pub fn instance_key(i: &InstanceActual) -> String {
    keys::observed_instance(&i.host, &i.database, &i.node)
}

/// The key of a host's record.
pub fn host_key(host: &HostId) -> String {
    keys::observed(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_instance_keys_are_told_apart() {
        assert_eq!(parse_key("observed/h1"), Some(ObservedKey::Host("h1")));
        assert_eq!(
            parse_key("observed/h1/orders/n1"),
            Some(ObservedKey::Instance("h1", "orders", "n1"))
        );
        assert_eq!(parse_key("observed/h1/orders"), None);
        assert_eq!(parse_key("status/x"), None);
    }
}
