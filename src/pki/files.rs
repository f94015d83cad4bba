//! The files of a PKI directory (`DATA_DIR/pki/` on a host, or the
//! directory `pgcd cert ca` writes): `ca.crt`, `ca.key` (0600, never in
//! etcd), and one `<kind>.crt`/`<kind>.key` pair per host certificate.
//! Every write is atomic (temporary file, then rename), so etcd and the API,
//! which read the files at each new connection, never see half a file.

// Small PEM files, read and written at start-up, at a join and at a
// certificate rotation: blocking for microseconds is accepted here.
#![allow(clippy::disallowed_methods)]

use super::PkiError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A host certificate's purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CertKind {
    /// etcd's peer listener and its connections to the other members.
    EtcdPeer,
    /// etcd's client listener, and the agent's own client identity towards
    /// etcd (CN `pgcd-host-<id>`, an etcd user).
    EtcdClient,
    /// The agent's HTTPS API.
    Api,
    /// The host's PostgreSQL instances.
    Postgres,
}

impl CertKind {
    /// Every kind, in the order they are issued.
    pub const ALL: [CertKind; 4] = [
        CertKind::EtcdPeer,
        CertKind::EtcdClient,
        CertKind::Api,
        CertKind::Postgres,
    ];

    /// The file stem and the `kind` label of metrics.
    pub fn name(self) -> &'static str {
        match self {
            CertKind::EtcdPeer => "etcd-peer",
            CertKind::EtcdClient => "etcd-client",
            CertKind::Api => "api",
            CertKind::Postgres => "postgres",
        }
    }
}

/// A directory holding a CA and host certificates.
#[derive(Debug, Clone)]
pub struct PkiDir {
    dir: PathBuf,
}

impl PkiDir {
    /// The PKI directory of an agent's data directory.
    pub fn of_data_dir(data_dir: &Path) -> Self {
        Self::new(data_dir.join("pki"))
    }

    /// A PKI directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `ca.crt`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// `age.key`: the cluster's age identity (0600, never in etcd).
    pub fn age_key(&self) -> PathBuf {
        self.dir.join("age.key")
    }

    /// A host certificate's file.
    pub fn cert(&self, kind: CertKind) -> PathBuf {
        self.dir.join(format!("{}.crt", kind.name()))
    }

    /// A host key's file.
    pub fn key(&self, kind: CertKind) -> PathBuf {
        self.dir.join(format!("{}.key", kind.name()))
    }

    /// Whether the CA (certificate and key) is here.
    pub fn has_ca(&self) -> bool {
        self.ca_cert().is_file() && self.ca_key().is_file()
    }

    /// Whether every host certificate is here.
    pub fn has_host_certs(&self) -> bool {
        CertKind::ALL
            .iter()
            .all(|k| self.cert(*k).is_file() && self.key(*k).is_file())
    }

    /// Creates the directory (0700).
    pub fn create(&self) -> Result<(), PkiError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| PkiError::file(&self.dir, e))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| PkiError::file(&self.dir, e))
    }
}

/// Reads a text file.
pub fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::file(path, e))
}

/// Writes a public file (0644) atomically.
pub fn write_public(path: &Path, text: &str) -> Result<(), PkiError> {
    write_atomic(path, text.as_bytes(), 0o644)
}

/// Writes a private file (0600) atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, bytes, 0o600)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| PkiError::file(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| PkiError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| PkiError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_written_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write_private(&p, b"secret").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_private(&p, b"again").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"again");
    }
}
