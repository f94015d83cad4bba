//! A mirror of etcd prefixes kept current by a watch, in the manner of
//! kube-rs's reflector: the prefixes are listed once at one revision (in
//! pages), then every change after that revision is streamed in order.
//! When the watch breaks, or falls behind a compaction, they are listed
//! again and the consumer is told to start over. Consumers keep their own
//! view (a [`Mirror`] is the plain one) and never poll.
//!
//! Several prefixes share one watch (of their common parent), so changes to
//! all of them arrive in etcd's revision order: a consumer that sees a task
//! finish has already seen the observation its agent wrote before.

use super::store::{entry, Entry, Store};
use crate::backoff::Backoff;
use std::collections::BTreeMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One change to a key under the prefix.
#[derive(Debug, Clone)]
pub enum Change {
    /// The key was written; the entry is its new value.
    Put(Entry),
    /// The key was deleted (or its lease expired).
    Delete(String),
}

/// What the reflector tells its consumer.
#[derive(Debug, Clone)]
pub enum Update {
    /// Everything under the prefix as of `revision` (the first list, or a
    /// list after the watch broke): the consumer replaces its view.
    Reset {
        /// The entries, sorted by key.
        entries: Vec<Entry>,
        /// The revision they were read at.
        revision: i64,
    },
    /// Changes since the previous update, in revision order.
    Changes {
        /// The changes.
        changes: Vec<Change>,
        /// The revision of the last of them.
        revision: i64,
    },
}

/// Starts mirroring `prefix` (relative to the namespace) until `cancel`.
/// Updates arrive in order on the returned channel.
pub fn spawn(store: Store, prefix: &str, cancel: CancellationToken) -> mpsc::Receiver<Update> {
    spawn_many(store, &[prefix], &[], cancel)
}

/// Mirrors several prefixes through one watch: they are listed at one
/// revision and their changes arrive in revision order. Keys under
/// `watch_only` are streamed as changes but never listed (a task's state,
/// awaited from now on).
pub fn spawn_many(
    store: Store,
    prefixes: &[&str],
    watch_only: &[&str],
    cancel: CancellationToken,
) -> mpsc::Receiver<Update> {
    let (tx, rx) = mpsc::channel(256);
    let listed: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
    let streamed: Vec<String> = prefixes
        .iter()
        .chain(watch_only)
        .map(|p| p.to_string())
        .collect();
    tokio::spawn(async move {
        let mut backoff = Backoff::transient();
        loop {
            match run_once(&store, &listed, &streamed, &tx, &cancel).await {
                Ok(()) => return,
                Err(e) => {
                    if backoff.should_log() {
                        tracing::warn!(prefixes = ?listed, error = %e, "watch of etcd broke; listing again");
                    }
                    if !backoff.wait(&cancel).await {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Lists and watches until the watch breaks (an error), the consumer is
/// gone or `cancel` fired (both `Ok`).
async fn run_once(
    store: &Store,
    listed: &[String],
    streamed: &[String],
    tx: &mpsc::Sender<Update>,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let mut entries = Vec::new();
    let mut revision = 0;
    for prefix in listed {
        let (mut e, r) = store
            .get_prefix_paged(prefix, revision)
            .await
            .map_err(|e| e.to_string())?;
        revision = r;
        entries.append(&mut e);
    }
    if revision == 0 {
        // Nothing listed (watch-only): start from now.
        revision = current_revision(store).await?;
    }
    if tx.send(Update::Reset { entries, revision }).await.is_err() {
        return Ok(());
    }
    let parent = common_parent(streamed);
    let mut stream = store
        .watch_prefix(&parent, revision + 1)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let msg = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            m = stream.message() => m.map_err(|e| e.to_string())?,
        };
        let Some(resp) = msg else {
            return Err("the watch stream ended".into());
        };
        if resp.canceled() || resp.compact_revision() > 0 {
            return Err(format!(
                "the watch was cancelled ({}; compacted at {})",
                resp.cancel_reason(),
                resp.compact_revision()
            ));
        }
        let mut last = 0;
        let changes: Vec<Change> = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kv = ev.kv()?;
                last = last.max(kv.mod_revision());
                let e = entry(kv);
                if !streamed.iter().any(|p| e.key.starts_with(p.as_str())) {
                    return None;
                }
                Some(match ev.event_type() {
                    etcd_client::EventType::Put => Change::Put(e),
                    etcd_client::EventType::Delete => Change::Delete(e.key),
                })
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        if tx
            .send(Update::Changes {
                changes,
                revision: last,
            })
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// The revision of the store now.
async fn current_revision(store: &Store) -> Result<i64, String> {
    store
        .get_prefix_paged(crate::cluster::keys::CLUSTER_ID, 0)
        .await
        .map(|(_, r)| r)
        .map_err(|e| e.to_string())
}

/// The longest common prefix of the prefixes, cut at a `/`: the one key
/// range a single watch covers them with.
fn common_parent(prefixes: &[String]) -> String {
    let Some(first) = prefixes.first() else {
        return String::new();
    };
    let mut len = first.len();
    for p in &prefixes[1..] {
        len = len.min(
            first
                .bytes()
                .zip(p.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    if prefixes.len() == 1 {
        return first.clone();
    }
    let cut = first[..len].rfind('/').map_or(0, |i| i + 1);
    first[..cut].to_string()
}

/// The plain view of a mirrored prefix: key → entry.
#[derive(Debug, Default, Clone)]
pub struct Mirror {
    /// The entries by key (relative to the namespace).
    pub entries: BTreeMap<String, Entry>,
    /// The revision of the last update applied.
    pub revision: i64,
}

impl Mirror {
    /// Applies an update; returns the keys that changed (all of them on a reset).
    pub fn apply(&mut self, update: Update) -> Vec<String> {
        match update {
            Update::Reset { entries, revision } => {
                let mut changed: Vec<String> = self.entries.keys().cloned().collect();
                self.entries = entries.into_iter().map(|e| (e.key.clone(), e)).collect();
                changed.extend(self.entries.keys().cloned());
                changed.sort();
                changed.dedup();
                self.revision = revision;
                changed
            }
            Update::Changes { changes, revision } => {
                self.revision = revision;
                changes
                    .into_iter()
                    .map(|c| match c {
                        Change::Put(e) => {
                            let k = e.key.clone();
                            self.entries.insert(k.clone(), e);
                            k
                        }
                        Change::Delete(k) => {
                            self.entries.remove(&k);
                            k
                        }
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::common_parent;

    #[test]
    fn one_watch_covers_every_prefix() {
        let p = |v: &[&str]| common_parent(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["observed/"]), "observed/");
        assert_eq!(p(&["desired/", "observed/"]), "");
        assert_eq!(
            p(&["reconcile/applied/", "reconcile/operations/"]),
            "reconcile/"
        );
    }
}
