//! Fencing on the host: an instance may run as its node's primary only
//! while this host is the node's recorded primary (`primaries/<db>/<node>`)
//! and this agent keeps renewing its host lease.
//!
//! Each instance of a node that has a record gets a `fence` file in its
//! directory holding a deadline (microseconds since the epoch). The
//! instance's start script (`runtime::docker`) checks it every 100 ms and
//! stops a primary at once (immediate shutdown) when the deadline passes;
//! it does not start a primary whose deadline has passed. This agent moves
//! the deadline forward at each lease renewal that succeeded, to the time
//! the renewal was *sent* plus the lease's TTL minus a margin; for an
//! instance whose host is not the recorded primary it writes 0.
//!
//! So when this agent dies, hangs, or loses etcd, its primaries stop before
//! its lease can expire on etcd's side — and the leader promotes another
//! instance only after that lease has expired, or after it stopped this one
//! itself: two writable primaries are ruled out by construction, not by
//! timing luck. A node without a record (no standbys) has no fence file
//! and is never stopped: there is nothing to fail over to.

use crate::cluster::keys;
use crate::cluster::reflector::{self, Mirror};
use crate::cluster::store::Store;
use crate::spec::names::HostId;
use crate::state::primary::PrimaryRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::state::names::FENCE_FILE;

/// Fences this host's instances.
pub struct FenceKeeper {
    /// `DATA_DIR/instances`.
    root: PathBuf,
    host: HostId,
    ttl: Duration,
}

impl FenceKeeper {
    /// The keeper of the instances under `data_dir`.
    pub fn new(data_dir: &Path, host: HostId, ttl: Duration) -> Self {
        Self {
            root: data_dir.join("instances"),
            host,
            ttl,
        }
    }

    /// How long before the lease could expire a primary is stopped.
    fn margin(&self) -> Duration {
        (self.ttl / 4).max(Duration::from_millis(300))
    }

    /// Runs until `cancel`: on every renewal and every change of the records.
    pub async fn run(
        self,
        store: Store,
        mut renewals: watch::Receiver<Option<SystemTime>>,
        cancel: CancellationToken,
    ) {
        let mut updates = reflector::spawn(store.clone(), keys::PRIMARIES, cancel.clone());
        let mut records = Mirror::default();
        let mut written: BTreeSet<PathBuf> = BTreeSet::new();
        // The lease was granted just before: that counts as a renewal.
        let mut last_renewal: Option<SystemTime> = *renewals.borrow_and_update();
        let mut listed = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                u = updates.recv() => match u {
                    Some(u) => {
                        records.apply(u);
                        listed = true;
                    }
                    None => return,
                },
                changed = renewals.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *renewals.borrow_and_update();
                    // After a gap longer than the lease (etcd unreachable, the
                    // process paused), a failover may have happened meanwhile:
                    // read the records again, linearizably, before moving any
                    // deadline forward.
                    let gap = match (last_renewal, now) {
                        (Some(a), Some(b)) => b.duration_since(a).unwrap_or_default() > self.ttl,
                        _ => true,
                    };
                    last_renewal = now;
                    if gap {
                        match store.get_prefix_paged(keys::PRIMARIES, 0).await {
                            Ok((entries, revision)) => {
                                records.apply(reflector::Update::Reset { entries, revision });
                                listed = true;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the primaries' records; no fence is renewed");
                                continue;
                            }
                        }
                    }
                }
            }
            if !listed {
                continue;
            }
            let deadline = last_renewal
                .and_then(|t| t.checked_add(self.ttl.saturating_sub(self.margin())))
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as i64);
            let wanted = self.wanted(&records, deadline);
            for (dir, value) in &wanted {
                if let Err(e) = write_fence(dir, *value).await {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot write a fence file");
                }
            }
            for gone in written.iter().filter(|d| !wanted.contains_key(*d)) {
                let _ = tokio::fs::remove_file(gone.join(FENCE_FILE)).await;
            }
            written = wanted.into_keys().collect();
        }
    }

    /// Each local instance directory of a node with a record, and what its
    /// fence should hold.
    fn wanted(&self, records: &Mirror, deadline: i64) -> BTreeMap<PathBuf, i64> {
        let mut out = BTreeMap::new();
        for e in records.entries.values() {
            let Ok(r) = e.json::<PrimaryRecord>() else {
                continue;
            };
            let dir = self.root.join(format!("{}-{}", r.database, r.node));
            if !dir.is_dir() {
                continue;
            }
            let value = if r.host == self.host { deadline } else { 0 };
            out.insert(dir, value);
        }
        out
    }
}

/// Writes a fence atomically (a temporary file, then rename).
async fn write_fence(dir: &Path, value: i64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FENCE_FILE}.tmp"));
    tokio::fs::write(&tmp, format!("{value}\n")).await?;
    tokio::fs::rename(&tmp, dir.join(FENCE_FILE)).await
}
