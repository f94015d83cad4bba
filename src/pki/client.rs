//! Client-side TLS: the files a client presents (`--cert`/`--key`/`--ca` or
//! one directory, `PGCD_TLS_DIR`, holding `ca.crt`, `client.crt` and
//! `client.key` as `pgcd cert issue` writes them), and the HTTP and etcd
//! clients built from them.

use super::files::{self, CertKind, PkiDir};
use super::PkiError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// PEM material of one TLS client: the CA to trust and, optionally, the
/// client's certificate and key.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA certificate.
    pub ca_pem: String,
    /// The client certificate and key.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// The file names `pgcd cert issue --client` writes into its `--out` directory.
pub const CLIENT_CERT: &str = "client.crt";
/// See [`CLIENT_CERT`].
pub const CLIENT_KEY: &str = "client.key";
/// See [`CLIENT_CERT`].
pub const CA_CERT: &str = "ca.crt";

impl ClientTls {
    /// Reads explicit files.
    pub fn from_files(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self, PkiError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((files::read(c)?, files::read(k)?)),
            (None, None) => None,
            _ => {
                return Err(PkiError::Tls(
                    "--cert and --key go together: give both or neither".into(),
                ))
            }
        };
        Ok(Self {
            ca_pem: files::read(ca)?,
            identity,
        })
    }

    /// Reads a client directory (`ca.crt`, `client.crt`, `client.key`).
    pub fn from_dir(dir: &Path) -> Result<Self, PkiError> {
        Self::from_files(
            &dir.join(CA_CERT),
            Some(&dir.join(CLIENT_CERT)),
            Some(&dir.join(CLIENT_KEY)),
        )
    }

    /// A host's own etcd client identity (its `etcd-client` pair).
    pub fn host_etcd(pki: &PkiDir) -> Result<Self, PkiError> {
        Self::from_files(
            &pki.ca_cert(),
            Some(&pki.cert(CertKind::EtcdClient)),
            Some(&pki.key(CertKind::EtcdClient)),
        )
    }

    /// The etcd client's TLS options.
    pub fn etcd_options(&self) -> etcd_client::TlsOptions {
        let mut tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(etcd_client::Identity::from_pem(cert, key));
        }
        tls
    }

    fn reqwest_parts(&self) -> Result<(reqwest::Certificate, Option<reqwest::Identity>), PkiError> {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes())
            .map_err(|e| PkiError::Tls(format!("the CA certificate: {e}")))?;
        let identity = match &self.identity {
            Some((cert, key)) => Some(
                reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
                    .map_err(|e| PkiError::Tls(format!("the client certificate: {e}")))?,
            ),
            None => None,
        };
        Ok((ca, identity))
    }

    /// An async HTTP client trusting only the cluster CA.
    pub fn http(&self, timeout: Duration) -> Result<reqwest::Client, PkiError> {
        let (ca, identity) = self.reqwest_parts()?;
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3).min(timeout));
        if let Some(id) = identity {
            b = b.identity(id);
        }
        b.build().map_err(|e| PkiError::Tls(e.to_string()))
    }

    /// A blocking HTTP client trusting only the cluster CA (the CLI's).
    pub fn blocking_http(&self, timeout: Duration) -> Result<reqwest::blocking::Client, PkiError> {
        let (ca, identity) = self.reqwest_parts()?;
        let mut b = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3).min(timeout));
        if let Some(id) = identity {
            b = b.identity(id);
        }
        b.build().map_err(|e| PkiError::Tls(e.to_string()))
    }
}

/// The command-line options of every client verb: `--tls-dir`, or
/// `--cert`/`--key`/`--ca`.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct TlsArgs {
    /// Directory with `ca.crt`, `client.crt`, `client.key` (what
    /// `pgcd cert issue --client NAME --out DIR` writes).
    #[arg(long, env = "PGCD_TLS_DIR", global = true)]
    pub tls_dir: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, env = "PGCD_TLS_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, env = "PGCD_TLS_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// The cluster CA certificate (PEM), or a directory holding `ca.crt`.
    /// For `pgcd agent --init` (or external etcd): a CA directory with
    /// `ca.crt` and `ca.key` (from `pgcd cert ca`) to use instead of a new CA.
    #[arg(long, env = "PGCD_TLS_CA", global = true)]
    pub ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The client material these options name, `None` when none is given
    /// (then only `http://` URLs work).
    pub fn load(&self) -> Result<Option<ClientTls>, PkiError> {
        if let Some(ca) = &self.ca {
            let file = if ca.is_dir() {
                ca.join(CA_CERT)
            } else {
                ca.clone()
            };
            return ClientTls::from_files(&file, self.cert.as_deref(), self.key.as_deref())
                .map(Some);
        }
        if let Some(dir) = &self.tls_dir {
            let mut tls = ClientTls::from_dir(dir)?;
            if let (Some(c), Some(k)) = (&self.cert, &self.key) {
                tls.identity = Some((files::read(c)?, files::read(k)?));
            }
            return Ok(Some(tls));
        }
        if self.cert.is_some() || self.key.is_some() {
            return Err(PkiError::Tls(
                "--cert/--key need the cluster CA too: pass --ca or --tls-dir".into(),
            ));
        }
        Ok(None)
    }

    /// A blocking HTTP client for `api`: with the TLS material when given,
    /// a plain one otherwise.
    pub fn blocking_http(&self, timeout: Duration) -> Result<reqwest::blocking::Client, PkiError> {
        match self.load()? {
            Some(tls) => tls.blocking_http(timeout),
            None => reqwest::blocking::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| PkiError::Tls(e.to_string())),
        }
    }

    /// An async HTTP client, likewise.
    pub fn http(&self, timeout: Duration) -> Result<reqwest::Client, PkiError> {
        match self.load()? {
            Some(tls) => tls.http(timeout),
            None => reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| PkiError::Tls(e.to_string())),
        }
    }
}
