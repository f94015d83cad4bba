//! Assembling `Actual` from etcd: the registered hosts and their health,
//! each host's observations, the specs last carried out in full and the
//! operations' records.
//!
//! [`ActualCache`] keeps it current from reflectors (the leader's view,
//! updated by events, never by polling); [`actual`] reads it once (the API,
//! plans of pull requests).

use super::observed::{parse_key, HostObservation, ObservedKey};
use super::operation::OperationRecord;
use super::primary::PrimaryRecord;
use super::rehearsal::RestoreCheck;
use super::schedule::ScheduleRecord;
use crate::cluster::keys;
use crate::cluster::reflector::{Change, Update};
use crate::cluster::registry::HostRecord;
use crate::cluster::store::{Entry, Store};
use crate::cluster::ClusterError;
use crate::spec::names::HostId;
use crate::state::actual::{BackupActual, HostActual, NodeBackupsActual};
use crate::state::{Actual, DatabaseActual, InstanceActual};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The prefixes an [`ActualCache`] is fed from, one reflector each.
pub const PREFIXES: [&str; 9] = [
    keys::KNOWN,
    keys::HOSTS,
    keys::OBSERVED,
    keys::APPLIED_SPECS,
    keys::OPERATIONS,
    keys::PRIMARIES,
    keys::SCHEDULES,
    keys::RESTORE_CHECKS,
    keys::BACKUPS,
];

/// The observed state, kept current from reflector updates.
#[derive(Debug, Clone)]
pub struct ActualCache {
    known: BTreeMap<String, HostRecord>,
    live: BTreeMap<String, HostRecord>,
    docker: BTreeMap<String, bool>,
    instances: BTreeMap<String, InstanceActual>,
    applied: BTreeMap<String, String>,
    operations: BTreeMap<String, OperationRecord>,
    primaries: BTreeMap<String, PrimaryRecord>,
    schedules: BTreeMap<String, ScheduleRecord>,
    restore_checks: BTreeMap<String, RestoreCheck>,
    /// Each node's backups without errors, by `db/node`.
    backups: BTreeMap<String, NodeBackupsActual>,
    /// When a host's lease was seen gone, by host.
    host_down: BTreeMap<String, DateTime<Utc>>,
    /// When an instance was seen not answering, by its observation key.
    instance_down: BTreeMap<String, DateTime<Utc>>,
    /// Bumped on every change that can change a plan.
    version: u64,
    /// When this view began (what "down since" a host never seen live means).
    began: DateTime<Utc>,
}

impl Default for ActualCache {
    fn default() -> Self {
        Self {
            known: BTreeMap::new(),
            live: BTreeMap::new(),
            docker: BTreeMap::new(),
            instances: BTreeMap::new(),
            applied: BTreeMap::new(),
            operations: BTreeMap::new(),
            primaries: BTreeMap::new(),
            schedules: BTreeMap::new(),
            restore_checks: BTreeMap::new(),
            backups: BTreeMap::new(),
            host_down: BTreeMap::new(),
            instance_down: BTreeMap::new(),
            version: 0,
            began: Utc::now(),
        }
    }
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
            keys::PRIMARIES => self.primaries.clear(),
            keys::SCHEDULES => self.schedules.clear(),
            keys::RESTORE_CHECKS => self.restore_checks.clear(),
            keys::BACKUPS => self.backups.clear(),
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
            self.host_down.remove(id);
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
                if i.running {
                    self.instance_down.remove(k);
                } else {
                    self.instance_down
                        .entry(k.to_string())
                        .or_insert_with(Utc::now);
                }
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
        if let Some(id) = k.strip_prefix(keys::PRIMARIES) {
            return e.json::<PrimaryRecord>().ok().is_some_and(|r| {
                self.primaries.insert(id.to_string(), r.clone()).as_ref() != Some(&r)
            });
        }
        if let Some(id) = k.strip_prefix(keys::SCHEDULES) {
            return e.json::<ScheduleRecord>().ok().is_some_and(|r| {
                self.schedules.insert(id.to_string(), r.clone()).as_ref() != Some(&r)
            });
        }
        if let Some(id) = k.strip_prefix(keys::RESTORE_CHECKS) {
            return e.json::<RestoreCheck>().ok().is_some_and(|r| {
                self.restore_checks
                    .insert(id.to_string(), r.clone())
                    .as_ref()
                    != Some(&r)
            });
        }
        if let Some(id) = k.strip_prefix(keys::BACKUPS) {
            // Only what plans read: a listing's time changes at every poll.
            return e
                .json::<crate::backup::poll::NodeBackups>()
                .ok()
                .is_some_and(|l| {
                    let r = NodeBackupsActual {
                        database: l.database,
                        node: l.node,
                        backups: l
                            .backups
                            .into_iter()
                            .filter(|b| !b.error)
                            .map(|b| BackupActual {
                                label: b.label,
                                repo: b.repo,
                                stop: b.stop,
                                system_identifier: b.system_identifier,
                            })
                            .collect(),
                    };
                    self.backups.insert(id.to_string(), r.clone()).as_ref() != Some(&r)
                });
        }
        false
    }

    fn delete(&mut self, k: &str) -> bool {
        if let Some(id) = k.strip_prefix(keys::KNOWN) {
            return self.known.remove(id).is_some();
        }
        if let Some(id) = keys::host_id_of_record(k) {
            self.host_down
                .entry(id.to_string())
                .or_insert_with(Utc::now);
            return self.live.remove(id).is_some();
        }
        match parse_key(k) {
            Some(ObservedKey::Host(h)) => return self.docker.remove(h).is_some(),
            Some(ObservedKey::Instance(..)) => {
                self.instance_down.remove(k);
                return self.instances.remove(k).is_some();
            }
            None => {}
        }
        if let Some(db) = k.strip_prefix(keys::APPLIED_SPECS) {
            return self.applied.remove(db).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::OPERATIONS) {
            return self.operations.remove(id).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::PRIMARIES) {
            return self.primaries.remove(id).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::SCHEDULES) {
            return self.schedules.remove(id).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::RESTORE_CHECKS) {
            return self.restore_checks.remove(id).is_some();
        }
        if let Some(id) = k.strip_prefix(keys::BACKUPS) {
            return self.backups.remove(id).is_some();
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
                started_at: self
                    .live
                    .get(id)
                    .and_then(|l| DateTime::parse_from_rfc3339(&l.started_at).ok())
                    .map(|t| t.with_timezone(&Utc)),
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
        out.primaries = self.primaries.values().cloned().collect();
        out.schedules = self.schedules.values().cloned().collect();
        out.restore_checks = self.restore_checks.values().cloned().collect();
        out.backups = self.backups.values().cloned().collect();
        // A host not live since this view began is down since then.
        let began = self.began;
        for (key, i) in &self.instances {
            let host_down = if self.live.contains_key(i.host.as_str()) {
                None
            } else {
                Some(
                    self.host_down
                        .get(i.host.as_str())
                        .copied()
                        .unwrap_or(began),
                )
            };
            let since = [host_down, self.instance_down.get(key).copied()]
                .into_iter()
                .flatten()
                .min();
            if let Some(t) = since {
                out.down_since
                    .insert(format!("{}/{}/{}", i.database, i.node, i.host), t);
            }
        }
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
    let mut out = cache.actual();
    // The impact plan's estimates (the leader's key; absent on a new cluster).
    if let Ok(Some(d)) = store.get_json(keys::DURATIONS).await {
        out.durations = d;
    }
    Ok(out)
}
