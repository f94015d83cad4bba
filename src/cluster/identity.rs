//! `DATA_DIR/pgcd-host.json`: who this data directory belongs to (host id,
//! cluster id, etcd member name and how etcd was first started), so a restart
//! with the same directory rejoins without adding a member again and a
//! directory of another cluster is refused.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "pgcd-host.json";

/// What a data directory remembers about its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIdentity {
    /// The host id the directory was created for.
    pub host_id: String,
    /// The pgcd cluster the directory belongs to.
    pub cluster_id: String,
    /// The etcd member name (empty when etcd is external).
    pub etcd_member_name: String,
    /// The `--initial-cluster` string etcd was first started with.
    #[serde(default)]
    pub initial_cluster: String,
    /// `new` or `existing`, as etcd was first started.
    #[serde(default)]
    pub initial_cluster_state: String,
    /// A random id of this data directory: tells a restart of this host apart
    /// from another agent using the same host id.
    pub instance: String,
}

/// Errors reading or writing the identity file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file exists but could not be read or decoded.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl HostIdentity {
    /// Loads the identity of a data directory, `None` when it has none yet.
    // Read once at start-up, before any task runs.
    #[allow(clippy::disallowed_methods)]
    pub fn load(data_dir: &Path) -> Result<Option<Self>, IdentityError> {
        let path = data_dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(IdentityError::Read {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| IdentityError::Read {
                path,
                reason: e.to_string(),
            })
    }

    /// Writes the identity atomically (temporary file, then rename).
    // Written at start-up, before any task runs.
    #[allow(clippy::disallowed_methods)]
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = data_dir.join(FILE_NAME);
        let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|e| IdentityError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| IdentityError::Write { path, source })
    }
}

/// A random lowercase hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HostIdentity::load(dir.path()).unwrap(), None);
        let id = HostIdentity {
            host_id: "h1".into(),
            cluster_id: random_hex(8),
            etcd_member_name: "h1".into(),
            initial_cluster: "h1=http://127.0.0.1:2380".into(),
            initial_cluster_state: "new".into(),
            instance: random_hex(8),
        };
        id.save(dir.path()).unwrap();
        assert_eq!(HostIdentity::load(dir.path()).unwrap(), Some(id));
    }
}
