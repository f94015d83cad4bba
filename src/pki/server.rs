//! Server-side TLS for the API: a rustls configuration whose certificate
//! can be swapped while serving (rotation), which asks every client for a
//! certificate of the cluster CA and refuses, in the handshake, one of
//! another CA. A client without one still connects, so the routes that
//! need none (`/healthz`, webhooks, the join) work; every other route
//! answers 401 to it (`api::auth`).

use super::files::{self, CertKind, PkiDir};
use super::PkiError;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, RwLock};

/// The API's certificate, swapped in place by [`ReloadingCert::reload`].
#[derive(Debug)]
pub struct ReloadingCert {
    pki: PkiDir,
    kind: CertKind,
    current: RwLock<Arc<CertifiedKey>>,
}

fn certified_key(pki: &PkiDir, kind: CertKind) -> Result<Arc<CertifiedKey>, PkiError> {
    let cert_path = pki.cert(kind);
    let key_path = pki.key(kind);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(files::read(&cert_path)?.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| PkiError::file(&cert_path, e))?;
    let key = PrivateKeyDer::from_pem_slice(files::read(&key_path)?.as_bytes())
        .map_err(|e| PkiError::file(&key_path, e))?;
    let key = super::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PkiError::file(&key_path, e))?;
    Ok(Arc::new(CertifiedKey::new(certs, key)))
}

impl ReloadingCert {
    /// Loads `kind`'s pair from `pki`.
    pub fn load(pki: &PkiDir, kind: CertKind) -> Result<Arc<Self>, PkiError> {
        Ok(Arc::new(Self {
            current: RwLock::new(certified_key(pki, kind)?),
            pki: pki.clone(),
            kind,
        }))
    }

    /// Reads the files again; new handshakes use the new pair, connections
    /// already open keep theirs.
    pub fn reload(&self) -> Result<(), PkiError> {
        let next = certified_key(&self.pki, self.kind)?;
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = next;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a whole key: a panic cannot leave half of one.
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The CA certificates of a PEM file as a root store.
pub fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| PkiError::Tls(format!("the CA certificate: {e}")))?;
        store
            .add(cert)
            .map_err(|e| PkiError::Tls(format!("the CA certificate: {e}")))?;
    }
    Ok(store)
}

/// The API's rustls configuration: the reloading certificate, client
/// certificates of the cluster CA verified when offered (and required by
/// the routes that need them), HTTP/2 and HTTP/1.1.
pub fn api_config(pki: &PkiDir, cert: Arc<ReloadingCert>) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = super::provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&files::read(&pki.ca_cert())?)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| PkiError::Tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CN of a verified client certificate (the first one presented).
pub fn peer_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let first = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref()).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    cn
}
