//! Listing each node's backups: the agent of a node's primary runs
//! `pgbackrest info --output=json` every minute (and right after a backup)
//! for the current cluster and every earlier one (an earlier system
//! identifier's repository paths), and stores the parsed result under
//! `backups/<db>/<node>`, where `GET /v1/databases/{name}/backups` and
//! `/metrics` read it.

use super::info::{self, ArchiveInfo, BackupInfo};
use super::{command, host_dir, run, BackupError, STATE_FILE};
use crate::cluster::store::Store;
use crate::runtime::docker::Runtime;
use crate::state::{BackupConfActual, InstanceId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the backups are listed.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// How long one `info` may take.
const INFO_TIMEOUT: Duration = Duration::from_secs(120);

/// One node's backups, as `backups/<db>/<node>` holds them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeBackups {
    /// The database.
    pub database: String,
    /// The node.
    pub node: String,
    /// The host whose agent listed them (the node's primary).
    pub host: String,
    /// The stanza.
    pub stanza: String,
    /// The node's system identifier now.
    pub system_identifier: Option<String>,
    /// Every backup of every cluster the node has been, oldest first.
    pub backups: Vec<BackupInfo>,
    /// Each cluster: its repository paths, status and archived WAL.
    pub clusters: Vec<ClusterBackups>,
    /// When they were listed (RFC 3339).
    pub at: String,
    /// Why the last listing failed, if it did (the rest is the one before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The backups of one system identifier of a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterBackups {
    /// Its system identifier.
    pub system_identifier: String,
    /// The node's data is this cluster now (new backups go here).
    pub current: bool,
    /// Its repository paths, by index.
    pub repo_paths: BTreeMap<u32, String>,
    /// pgBackRest's status code of the stanza there (0 ok, 2 no backups).
    pub status_code: i64,
    /// And its message.
    pub status_message: String,
    /// Archived WAL, per repository.
    pub archives: Vec<ArchiveInfo>,
}

impl NodeBackups {
    /// The newest backup without errors, by stop time.
    pub fn last_good(&self) -> Option<&BackupInfo> {
        self.backups
            .iter()
            .filter(|b| !b.error)
            .max_by(|a, b| a.stop.cmp(&b.stop))
    }
}

/// What pgcd last wrote on an instance (`pgcd.json`), if anything.
// A few hundred bytes from the local instance directory.
#[allow(clippy::disallowed_methods)]
pub fn written(rt: &Runtime, id: &InstanceId) -> Option<BackupConfActual> {
    let p = host_dir(rt, id).join(STATE_FILE);
    std::fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Lists one instance's node's backups (every cluster it has been).
pub async fn list(rt: &Runtime, id: &InstanceId) -> Result<NodeBackups, BackupError> {
    let state = written(rt, id).ok_or_else(|| {
        BackupError::State(format!(
            "pgBackRest is not configured on {}",
            id.container()
        ))
    })?;
    let mut out = NodeBackups {
        database: id.database.to_string(),
        node: id.node.to_string(),
        host: id.host.to_string(),
        stanza: state.stanza.clone(),
        system_identifier: state.system_identifier.clone(),
        at: crate::cluster::now_rfc3339(),
        ..Default::default()
    };
    let current = (
        state.system_identifier.clone().unwrap_or_default(),
        state.repo_paths.clone(),
        true,
    );
    let earlier = state
        .earlier
        .iter()
        .map(|e| (e.system_identifier.clone(), e.repo_paths.clone(), false));
    for (sysid, paths, is_current) in earlier.chain(std::iter::once(current)) {
        let overrides: Vec<(u32, String)> = if is_current {
            Vec::new()
        } else {
            paths.iter().map(|(n, p)| (*n, p.clone())).collect()
        };
        let json = run::exec_quiet(
            rt,
            id,
            &command::info(&state.stanza, &overrides),
            INFO_TIMEOUT,
        )
        .await?;
        for s in info::parse(&json)? {
            out.backups.extend(s.backups);
            out.clusters.push(ClusterBackups {
                system_identifier: sysid.clone(),
                current: is_current,
                repo_paths: paths.clone(),
                status_code: s.status_code,
                status_message: s.status_message,
                archives: s.archives,
            });
        }
    }
    out.backups.sort_by(|a, b| a.start.cmp(&b.start));
    Ok(out)
}

/// Lists and stores one instance's node's backups; a failure is stored
/// too, beside the last good listing.
pub async fn refresh(rt: &Runtime, store: &Store, id: &InstanceId) -> Result<NodeBackups, String> {
    let key = crate::cluster::keys::backups(&id.database, &id.node);
    match list(rt, id).await {
        Ok(b) => {
            store.put_json(&key, &b).await.map_err(|e| e.to_string())?;
            Ok(b)
        }
        Err(e) => {
            let mut last: NodeBackups = store
                .get_json(&key)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            last.error = Some(e.to_string());
            last.at = crate::cluster::now_rfc3339();
            let _ = store.put_json(&key, &last).await;
            Err(e.to_string())
        }
    }
}

/// Lists the backups of every node whose primary runs on this host.
pub async fn refresh_host(rt: &Runtime, store: &Store) {
    let containers = match rt.list().await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "backup listing: cannot list containers");
            return;
        }
    };
    for c in containers.iter().filter(|c| c.running) {
        // Only where pgcd configured a primary (stanza made, check passed).
        if !written(rt, &c.id).is_some_and(|w| w.checked) {
            continue;
        }
        if let Err(e) = refresh(rt, store, &c.id).await {
            tracing::warn!(instance = %c.id.container(), error = %e, "listing backups failed; next try in a minute");
        }
    }
}

/// The listing loop as a host service.
pub struct InfoLoop {
    rt: Runtime,
}

impl InfoLoop {
    /// Lists this host's nodes' backups every [`INTERVAL`].
    pub fn new(rt: Runtime) -> Self {
        Self { rt }
    }
}

impl crate::cluster::services::HostService for InfoLoop {
    fn name(&self) -> &'static str {
        "backup-info"
    }

    fn run(
        &self,
        store: Store,
        cancel: CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()> {
        use futures::FutureExt;
        let rt = self.rt.clone();
        async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(INTERVAL) => {}
                }
                refresh_host(&rt, &store).await;
            }
        }
        .boxed()
    }
}
