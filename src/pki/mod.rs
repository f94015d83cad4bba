//! The cluster CA and every certificate pgcd uses: making the CA (ECDSA
//! P-256, with `rcgen`), issuing each host's etcd peer, etcd client, API
//! server and PostgreSQL server certificates and people's client
//! certificates, reading expiries, and the rustls configurations built on
//! them. Keys are generated where they are used; only the CA key travels,
//! once, to a host that proved a join token (see README "Security").
//!
//! No I/O but the files of a PKI directory (`files`); no hand-rolled crypto.

pub mod client;
pub mod files;
pub mod issue;
pub mod postgres;
pub mod server;
pub mod token;

pub use files::{CertKind, PkiDir};
pub use issue::{Ca, IssuedCert};

use std::path::PathBuf;

/// The CN of the etcd user that holds etcd's `root` role: a client
/// certificate with this name administers etcd (etcdctl, `pgcd source set`).
pub const ETCD_ROOT_CN: &str = "root";

/// Where an instance finds the cluster CA inside its container (its
/// directory is mounted at `/var/lib/pgcd`): libpq's `sslrootcert` for
/// `sslmode=verify-full` (standbys, subscriptions).
pub const INSTANCE_CA_FILE: &str = "/var/lib/pgcd/tls/ca.crt";

/// The libpq options of a connection that checks the server against the
/// cluster CA and the address dialled (a host's PostgreSQL certificate
/// names its advertise address): every pgcd replication connection, and
/// what a client given `ca_file` (the CA on its machine) should use.
pub fn verify_full_options(ca_file: &str) -> String {
    format!("sslmode=verify-full sslrootcert={ca_file}")
}

/// The CN (and etcd user name) of a host's own client certificate.
pub fn host_cn(host: &str) -> String {
    format!("pgcd-host-{host}")
}

/// Errors of the PKI layer.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Certificate generation or parsing failed.
    #[error("{what}: {reason}")]
    Cert {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
    /// A TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A join token that is not of the form pgcd prints.
    #[error("{0}")]
    Token(String),
}

impl PkiError {
    pub(crate) fn cert(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Cert {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// The rustls crypto provider pgcd uses everywhere (ring: already in the
/// build through reqwest; aws-lc would add a C toolchain step).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide rustls provider, for the libraries
/// (tonic, reqwest) that ask rustls for the default. Idempotent.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
