//! The rustls configuration of the agents' own PostgreSQL connections to
//! other hosts' instances (as the replication role: a publisher's slot, a
//! node's join): `sslmode=verify-full` as libpq means it, the server's
//! certificate checked against the cluster CA and against the address
//! dialled (a host's PostgreSQL certificate names its advertise address).

use super::files::{self, PkiDir};
use super::PkiError;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector for `tokio_postgres` that verifies the server like
/// `sslmode=verify-full` with the cluster CA of `pki` as `sslrootcert`.
/// Used with `SslMode::Require`: a server that offers no TLS is refused.
pub fn verify_full(pki: &PkiDir) -> Result<MakeRustlsConnect, PkiError> {
    let roots = super::server::roots(&files::read(&pki.ca_cert())?)?;
    let config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertKind, IssuedCert};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Dials `127.0.0.1` as `tokio_postgres` does with `sslmode=require`
    /// and the connector of a PKI directory holding `client_ca`, against a
    /// server that answers the SSLRequest and presents `served`: whether
    /// the TLS handshake completed.
    async fn handshake(client_ca: &Ca, served: &IssuedCert) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        client_ca.save(&pki).unwrap();
        let certs = CertificateDer::pem_slice_iter(served.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(served.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(crate::pki::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            s.read_exact(&mut request).await.unwrap();
            s.write_all(b"S").await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
                .accept(s)
                .await
                .is_ok()
        });
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(port)
            .user("pgcd_replication")
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(std::time::Duration::from_secs(5));
        // The server goes away after the handshake: the connection fails
        // either way, the server tells how far it got.
        let _ = cfg.connect(verify_full(&pki).unwrap()).await;
        server.await.unwrap()
    }

    #[tokio::test]
    async fn the_server_must_hold_a_certificate_of_the_cluster_ca_for_the_address_dialled() {
        let ca = Ca::generate("t").unwrap();
        let at = |ip: &str| {
            ca.issue_host("h1", CertKind::Postgres, &[ip.parse().unwrap()])
                .unwrap()
        };
        assert!(handshake(&ca, &at("127.0.0.1")).await);
        assert!(
            !handshake(&ca, &at("127.0.0.2")).await,
            "a certificate for another address"
        );
        let other = Ca::generate("other").unwrap();
        assert!(
            !handshake(&other, &at("127.0.0.1")).await,
            "a certificate of another CA"
        );
    }

    #[test]
    fn a_missing_ca_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = verify_full(&PkiDir::new(dir.path())).err().unwrap();
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }
}
