//! Assembling `Actual` from etcd: the registered hosts and their health,
//! each host's observations, the specs last carried out in full and the
//! operations' records.
//!
//! [`ActualCache`] keeps it current from reflectors (the leader's view,
//! updated by events, never by polling); [`actual`] reads it once (the API,
//! plans of pull requests).

use super::observed::{parse_key, HostObservation, ObservedKey};
use super::operation::OperationRecord;
use crate::cluster::keys;
use crate::cluster::reflector::{Change, Update};
use crate::cluster::registry::HostRecord;
use crate::cluster::store::{Entry, Store};
use crate::cluster::ClusterError;
use crate::spec::names::HostId;
use crate::state::actual::HostActual;
use crate::state::{Actual, DatabaseActual, InstanceActual};
use std::collections::BTreeMap;

/// The prefixes an [`ActualCache`] is fed from, one reflector each.
pub const PREFIXES: [&str; 5] = [
    keys::KNOWN,
    keys::HOSTS,
    keys::OBSERVED,
    keys::APPLIED_SPECS,
    keys::OPERATIONS,
];

/// The observed state, kept current from reflector updates.
#[derive(Debug, Default, Clone)]
pub struct ActualCache {
    known: BTreeMap<String, HostRecord>,
    live: BTreeMap<String, HostRecord>,
    docker: BTreeMap<String, bool>,
    instances: BTreeMap<String, InstanceActual>,
    applied: BTreeMap<String, String>,
    operations: BTreeMap<String, OperationRecord>,
    /// Bumped on every change that can change a plan.
    version: u64,
}

impl ActualCache {
    /// A counter that moves whenever what the cache holds changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Applies an update of one of [`PREFIXES`]; returns whether anything
    /// the planner reads changed.
    pub fn apply(&mut self, prefix: &str, update: Update) -> bool {
        let changes: Vec<Change> = match update {
            Update::Reset { entries, .. } => {
                self.clear(prefix);
                entries.into_iter().map(Change::Put).collect()
            }
            Update::Changes { changes, .. } => changes,
        };
        let mut changed = false;
        for c in changes {
            changed |= match c {
                Change::Put(e) => self.put(&e),
                Change::Delete(k) => self.delete(&k),
            };
        }
        if changed {
            self.version += 1;
        }
        changed
    }

    fn clear(&mut self, prefix: &str) {
        match prefix {
            keys::KNOWN => self.known.clear(),
            keys::HOSTS => self.live.clear(),
            keys::OBSERVED => {
                self.docker.clear();
                self.instances.clear();
            }
            keys::APPLIED_SPECS => self.applied.clear(),
            keys::OPERATIONS => self.operations.clear(),
            _ => {}
        }
    }

    fn put(&mut self, e: &Entry) -> bool {
        let k = e.key.as_str();
        if let Some(id) = k.strip_prefix(keys::KNOWN) {
            return e.json::<HostRecord>().ok().is_some_and(|r| {
                self.known.insert(id.to_string(), r.clone()).as_ref() != Some(&r)
            });
        }
        if let Some(id) = keys::host_id_of_record(k) {
            return e
                .json::<HostRecord>()
                .ok()
                .is_some_and(|r| self.live.insert(id.to_string(), r.clone()).as_ref() != Some(&r));
        }
        if k.starts_with(keys::HOSTS) {
            return false; // a task of a host's queue
        }
        match parse_key(k) {
            Some(ObservedKey::Host(h)) => {
                let Ok(o) = e.json::<HostObservation>() else {
                    return false;
                };
                return self.docker.insert(h.to_string(), o.docker) != Some(o.docker);
            }
            Some(ObservedKey::Instance(..)) => {
                let Ok(i) = e.json::<InstanceActual>() else {
                    tracing::warn!(key = k, "an observation does not decode; ignored");
                    return false;
                };
                return self.instances.insert(k.to_string(), i.clone()).as_ref() != Some(&i);
            }
            None => {}
        }
        if let Some(db) = k.strip_prefix(keys::APPLIED_SPECS) {
            let digest = String::from_utf8_lossy(&e.value).into_owned();
            return self.applied.insert(db.to_string(), digest.clone()) != Some(digest);
        }
        if let Some(id) = k.strip_prefix(keys::OPERATIONS) {
            return e.json::<OperationRecord>().ok().is_some_and(|r| {
                self.operations.insert(id.to_string(), r.clone()).as_ref() != Some(&r)
            });
        }
        false
    }

    fn delete(&mut self, k: &str) -> bool {
        if let Some(id) = k.strip_prefix(keys::KNOWN) {
            return self.known.remove(id).is_some();
        }
        if let Some(id) = keys::host_id_of_record(k) {
            return self.live.remove(id).is_some();
        }
        match parse_key(k) {
            Some(ObservedKey::Host(h)) => return self.docker.remove(h).is_some(),
            Some(ObservedKey::Instance(..)) => return self.instances.remove(k).is_some(),
            None => {}
        }
        if let Some(db) = k.strip_prefix(keys::APPLIED_SPECS) {
            return self.applied.remove(db).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::OPERATIONS) {
            return self.operations.remove(id).is_some();
        }
        false
    }

    /// The operations' records, by id.
    pub fn operations(&self) -> &BTreeMap<String, OperationRecord> {
        &self.operations
    }

    /// The live host records, by id.
    pub fn live_hosts(&self) -> &BTreeMap<String, HostRecord> {
        &self.live
    }

    /// The observed state: every host that ever joined (healthy while its
    /// agent holds its lease), the instances of every host, the digests
    /// last carried out and the operations' records.
    pub fn actual(&self) -> Actual {
        let mut out = Actual::default();
        let mut ids: Vec<&String> = self.known.keys().chain(self.live.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let Some(r) = self.live.get(id).or_else(|| self.known.get(id)) else {
                continue;
            };
            let Ok(hid) = HostId::parse(id) else {
                continue;
            };
            out.hosts.push(HostActual {
                id: hid,
                healthy: self.live.contains_key(id),
                docker: self.docker.get(id).copied().unwrap_or(false),
                address: r.address.clone(),
            });
        }
        out.instances = self.instances.values().cloned().collect();
        out.databases = self
            .applied
            .iter()
            .map(|(name, digest)| DatabaseActual {
                name: name.clone(),
                applied_spec: digest.clone(),
            })
            .collect();
        out.operations = self.operations.values().cloned().collect();
        out
    }
}

/// Reads hosts, observations, applied digests and operations into an
/// `Actual`, once.
pub async fn actual(store: &Store) -> Result<Actual, ClusterError> {
    let mut cache = ActualCache::default();
    for prefix in PREFIXES {
        let (entries, revision) = store.get_prefix_paged(prefix, 0).await?;
        cache.apply(prefix, Update::Reset { entries, revision });
    }
    Ok(cache.actual())
}
