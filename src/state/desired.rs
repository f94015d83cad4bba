//! The desired state in force as etcd holds it: one key per database and
//! per operation, `pgcd.yaml` in its own key, and a small revision record
//! (`desired/revision`) written last. The record names the set by a digest
//! over every item's key and digest, so a reader can tell a whole revision
//! from one half-written: the items of a new revision are written first (in
//! as many transactions as their size needs), the record after them.
//!
//! Readers either read at the record's etcd revision (one consistent view)
//! or keep a [`DesiredCache`] fed by a reflector, which takes a new revision
//! in force only when the items it holds match the record's digest.

use crate::cluster::keys;
use crate::cluster::reflector::{Change, Update};
use crate::cluster::store::{Entry, Store};
use crate::cluster::ClusterError;
use crate::spec::{ClusterConfig, Database, Desired, Operation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// `desired/revision`: the revision in force and the set it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InForce {
    /// The commit.
    pub revision: String,
    /// When it was put in force (RFC 3339).
    pub recorded_at: String,
    /// [`set_digest`] of every item of the revision.
    pub set_digest: String,
    /// How many databases it holds.
    pub databases: usize,
    /// How many operations it holds.
    pub operations: usize,
}

/// One stored item: its spec (validated and defaulted) and its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// SHA-256 of the spec's JSON.
    pub digest: String,
    /// The spec as `Serialize` wrote it.
    pub spec: serde_json::Value,
}

impl Item {
    fn new(spec: serde_json::Value) -> Self {
        let digest = hex::encode(Sha256::digest(spec.to_string().as_bytes()));
        Self { digest, spec }
    }
}

/// Why the desired state in force cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// etcd.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A stored item does not decode (written by another version, or by hand).
    #[error("the stored desired state is unreadable at {key}: {why}")]
    Item {
        /// The item's key.
        key: String,
        /// Why.
        why: String,
    },
    /// The items read do not match the revision record: a revision is being
    /// written (its record comes last), or one was left half-written by a
    /// leader that died; the next leader completes it.
    #[error("the stored desired state is being written (revision {0}); not read yet")]
    Incomplete(String),
}

/// Every item of a desired state, by key.
pub fn items(desired: &Desired) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    out.insert(
        keys::DESIRED_CONFIG.to_string(),
        Item::new(json(&desired.config)),
    );
    for db in &desired.databases {
        out.insert(
            keys::desired_database(&db.database_name),
            Item::new(json(db)),
        );
    }
    for op in &desired.operations {
        out.insert(keys::desired_operation(&op.id), Item::new(json(op)));
    }
    out
}

/// A spec value as JSON; plain spec values always serialise.
fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The digest of a set of items: SHA-256 over `key digest` lines in key order.
pub fn set_digest<'a>(items: impl IntoIterator<Item = (&'a String, &'a str)>) -> String {
    let mut h = Sha256::new();
    for (key, digest) in items {
        h.update(key.as_bytes());
        h.update(b" ");
        h.update(digest.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// One whole revision's desired state.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The commit.
    pub revision: String,
    /// The spec.
    pub desired: Desired,
    /// Each item's digest, by key (what the source loop compares a new
    /// revision with, to write only what changed).
    pub digests: BTreeMap<String, String>,
}

/// Reads the desired state in force (`None` before the first revision) at
/// the revision record's own etcd revision, so nothing written after it is
/// mixed in.
pub async fn read(store: &Store) -> Result<Option<Snapshot>, DesiredError> {
    let Some(record) = store.get(keys::DESIRED_REVISION).await? else {
        return Ok(None);
    };
    let at = record.mod_revision;
    let (entries, _) = match store.get_prefix_paged(keys::DESIRED, at).await {
        Ok(r) => r,
        // Compacted past the record: read now; the digest tells whether it is whole.
        Err(_) => store.get_prefix_paged(keys::DESIRED, 0).await?,
    };
    let mut cache = DesiredCache::default();
    cache.apply(Update::Reset {
        entries,
        revision: at,
    })?;
    match cache.in_force() {
        Some(s) => Ok(Some((*s).clone())),
        None => Err(DesiredError::Incomplete(
            record
                .json::<InForce>()
                .map(|r| r.revision)
                .unwrap_or_default(),
        )),
    }
}

/// A decoded item.
#[derive(Debug, Clone)]
enum Decoded {
    Config(Box<ClusterConfig>),
    Database(Box<Database>),
    Operation(Operation),
}

/// The desired state in force, kept from a reflector of `desired/`.
#[derive(Debug, Default)]
pub struct DesiredCache {
    staged: BTreeMap<String, (String, Decoded)>,
    record: Option<InForce>,
    in_force: Option<Arc<Snapshot>>,
}

impl DesiredCache {
    /// The revision in force, when one has been read whole.
    pub fn in_force(&self) -> Option<Arc<Snapshot>> {
        self.in_force.clone()
    }

    /// Applies a reflector update; `Ok(true)` when a new revision came into
    /// force. An item that does not decode is an error and changes nothing.
    pub fn apply(&mut self, update: Update) -> Result<bool, DesiredError> {
        match update {
            Update::Reset { entries, .. } => {
                let mut old = std::mem::take(&mut self.staged);
                self.record = None;
                for e in entries {
                    self.put(e, &mut old)?;
                }
            }
            Update::Changes { changes, .. } => {
                for c in changes {
                    match c {
                        Change::Put(e) => {
                            let mut none = BTreeMap::new();
                            self.put(e, &mut none)?;
                        }
                        Change::Delete(k) if k == keys::DESIRED_REVISION => self.record = None,
                        Change::Delete(k) => {
                            self.staged.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(self.commit())
    }

    fn put(
        &mut self,
        e: Entry,
        reuse: &mut BTreeMap<String, (String, Decoded)>,
    ) -> Result<(), DesiredError> {
        let bad = |why: String| DesiredError::Item {
            key: e.key.clone(),
            why,
        };
        if e.key == keys::DESIRED_REVISION {
            self.record = Some(e.json().map_err(|err| bad(err.to_string()))?);
            return Ok(());
        }
        let item: Item = e.json().map_err(|err| bad(err.to_string()))?;
        let known = reuse
            .remove(&e.key)
            .or_else(|| self.staged.remove(&e.key))
            .filter(|(d, _)| *d == item.digest);
        let decoded = match known {
            Some((_, d)) => d,
            None => decode(&e.key, &item.spec).map_err(bad)?,
        };
        self.staged.insert(e.key.clone(), (item.digest, decoded));
        Ok(())
    }

    /// Takes the staged items in force when they are the record's set.
    fn commit(&mut self) -> bool {
        let Some(record) = &self.record else {
            return false;
        };
        let whole = self.digest_now() == record.set_digest;
        let same = self
            .in_force
            .as_ref()
            .is_some_and(|s| s.revision == record.revision);
        if !whole || same {
            return false;
        }
        let mut desired = Desired {
            config: ClusterConfig::default(),
            databases: Vec::new(),
            operations: Vec::new(),
        };
        for (_, d) in self.staged.values() {
            match d {
                Decoded::Config(c) => desired.config = (**c).clone(),
                Decoded::Database(db) => desired.databases.push((**db).clone()),
                Decoded::Operation(op) => desired.operations.push(op.clone()),
            }
        }
        let digests = self
            .staged
            .iter()
            .map(|(k, (d, _))| (k.clone(), d.clone()))
            .collect();
        self.in_force = Some(Arc::new(Snapshot {
            revision: record.revision.clone(),
            desired,
            digests,
        }));
        true
    }

    fn digest_now(&self) -> String {
        set_digest(self.staged.iter().map(|(k, (d, _))| (k, d.as_str())))
    }
}

fn decode(key: &str, spec: &serde_json::Value) -> Result<Decoded, String> {
    if key == keys::DESIRED_CONFIG {
        return crate::spec::stored::<ClusterConfig>("pgcd.yaml", spec)
            .map(|c| Decoded::Config(Box::new(c)));
    }
    if let Some(name) = key.strip_prefix(keys::DESIRED_DATABASES) {
        return crate::spec::stored::<Database>(&format!("databases/{name}.yaml"), spec)
            .map(|d| Decoded::Database(Box::new(d)));
    }
    if let Some(id) = key.strip_prefix(keys::DESIRED_OPERATIONS) {
        return crate::spec::stored::<Operation>(&format!("operations/{id}.yaml"), spec)
            .map(Decoded::Operation);
    }
    Err(format!("{key} is not a desired-state key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Desired {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo");
        crate::spec::load(&crate::spec::read_dir(&root).unwrap()).unwrap()
    }

    fn entry(key: &str, value: Vec<u8>, rev: i64) -> Entry {
        Entry {
            key: key.into(),
            value,
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    fn stored(desired: &Desired, revision: &str) -> Vec<Entry> {
        let items = items(desired);
        let record = InForce {
            revision: revision.into(),
            recorded_at: String::new(),
            set_digest: set_digest(items.iter().map(|(k, i)| (k, i.digest.as_str()))),
            databases: desired.databases.len(),
            operations: desired.operations.len(),
        };
        let mut out: Vec<Entry> = items
            .iter()
            .map(|(k, i)| entry(k, serde_json::to_vec(i).unwrap(), 5))
            .collect();
        out.push(entry(
            keys::DESIRED_REVISION,
            serde_json::to_vec(&record).unwrap(),
            6,
        ));
        out
    }

    #[test]
    fn a_stored_revision_reads_back_equal() {
        let d = sample();
        let mut cache = DesiredCache::default();
        let came = cache
            .apply(Update::Reset {
                entries: stored(&d, "abc"),
                revision: 6,
            })
            .unwrap();
        assert!(came);
        let s = cache.in_force().unwrap();
        assert_eq!(s.revision, "abc");
        assert_eq!(s.desired, d);
    }

    #[test]
    fn items_of_a_new_revision_wait_for_its_record() {
        let d = sample();
        let mut cache = DesiredCache::default();
        cache
            .apply(Update::Reset {
                entries: stored(&d, "abc"),
                revision: 6,
            })
            .unwrap();
        // The next revision drops a database: the deletion arrives first.
        let gone = keys::desired_database(&d.databases[0].database_name);
        let came = cache
            .apply(Update::Changes {
                changes: vec![Change::Delete(gone)],
                revision: 7,
            })
            .unwrap();
        assert!(!came, "half a revision is never in force");
        assert_eq!(cache.in_force().unwrap().desired, d);
        let mut next = d.clone();
        next.databases.remove(0);
        let record = stored(&next, "def").pop().unwrap();
        let came = cache
            .apply(Update::Changes {
                changes: vec![Change::Put(record)],
                revision: 8,
            })
            .unwrap();
        assert!(came);
        assert_eq!(cache.in_force().unwrap().desired, next);
        assert_eq!(cache.in_force().unwrap().revision, "def");
    }
}
