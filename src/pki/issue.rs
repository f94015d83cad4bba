//! Making the CA and issuing certificates from it (rcgen, ECDSA P-256).

use super::files::{self, CertKind, PkiDir};
use super::{host_cn, PkiError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long host and client certificates are valid (renewed by `pgcd cert rotate`).
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A CA that can issue: its certificate and its private key.
pub struct Ca {
    cert_pem: String,
    cert_der: Vec<u8>,
    key: KeyPair,
}

/// One issued certificate and its freshly generated key, PEM.
pub struct IssuedCert {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

fn not_before() -> time::OffsetDateTime {
    // An hour back: hosts whose clocks differ a little still accept it.
    time::OffsetDateTime::now_utc() - time::Duration::hours(1)
}

fn until(validity: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + validity
}

fn pem_to_der(pem_text: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| PkiError::cert(format!("reading {what}"), e))?;
    Ok(pem.contents)
}

impl Ca {
    /// Makes a new CA named after the cluster.
    pub fn generate(name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::cert("generating the CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("pgcd cluster CA {name}"));
        dn.push(DnType::OrganizationName, "pgcd");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before();
        params.not_after = until(CA_VALIDITY);
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::cert("signing the CA certificate", e))?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// A CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| PkiError::cert("reading the CA key", e))?;
        let cert_der = pem_to_der(cert_pem, "the CA certificate")?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key,
        })
    }

    /// Loads the CA of a PKI directory.
    pub fn load(dir: &PkiDir) -> Result<Self, PkiError> {
        let cert = files::read(&dir.ca_cert())?;
        let key = files::read(&dir.ca_key())?;
        Self::from_pem(&cert, &key)
    }

    /// Writes the CA into a PKI directory (`ca.key` 0600).
    pub fn save(&self, dir: &PkiDir) -> Result<(), PkiError> {
        dir.create()?;
        files::write_private(&dir.ca_key(), self.key.serialize_pem().as_bytes())?;
        files::write_public(&dir.ca_cert(), &self.cert_pem)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key, PEM: only ever written to a host's `ca.key` or sent, over
    /// pinned TLS, to a host that proved a join token.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The pin a join token carries: SHA-256 of the CA certificate's DER, hex.
    pub fn pin(&self) -> String {
        hex::encode(Sha256::digest(&self.cert_der))
    }

    fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key)
            .map_err(|e| PkiError::cert("reading the CA certificate", e))
    }

    fn sign(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::cert(format!("generating a key for {cn}"), e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "pgcd");
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.extended_key_usages = ekus;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before();
        params.not_after = until(validity);
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| PkiError::cert(format!("signing the certificate of {cn}"), e))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues one host certificate of `kind` for `host` at `addresses`.
    pub fn issue_host(
        &self,
        host: &str,
        kind: CertKind,
        addresses: &[IpAddr],
    ) -> Result<IssuedCert, PkiError> {
        let mut sans: Vec<SanType> = addresses.iter().map(|a| SanType::IpAddress(*a)).collect();
        // etcd checks that a peer connects from an address its certificate
        // names. Between simulated hosts on loopback the kernel picks
        // 127.0.0.1 as the source, whatever address the host advertises;
        // a real host's source is its own address and gets nothing extra.
        let localhost = IpAddr::from([127, 0, 0, 1]);
        if kind == CertKind::EtcdPeer
            && addresses.iter().all(IpAddr::is_loopback)
            && !addresses.contains(&localhost)
        {
            sans.push(SanType::IpAddress(localhost));
        }
        let (cn, ekus) = match kind {
            // Peers dial each other: both ends present this certificate.
            CertKind::EtcdPeer => (
                format!("pgcd-etcd-peer-{host}"),
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            // etcd's client listener, and the agent's identity as an etcd
            // client: the CN is the etcd user name.
            CertKind::EtcdClient => (
                host_cn(host),
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            ),
            CertKind::Api => (
                format!("pgcd-api-{host}"),
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            ),
            CertKind::Postgres => (
                format!("pgcd-postgres-{host}"),
                vec![ExtendedKeyUsagePurpose::ServerAuth],
            ),
        };
        self.sign(&cn, sans, ekus, LEAF_VALIDITY)
    }

    /// Issues a client certificate for a person or a CI job.
    pub fn issue_client(&self, name: &str, validity: Duration) -> Result<IssuedCert, PkiError> {
        self.sign(
            name,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }

    /// Issues (or renews) every host certificate into `dir`, each written
    /// atomically: a reader sees the old pair or the new one.
    pub fn issue_host_set(
        &self,
        dir: &PkiDir,
        host: &str,
        addresses: &[IpAddr],
    ) -> Result<(), PkiError> {
        dir.create()?;
        for kind in CertKind::ALL {
            let issued = self.issue_host(host, kind, addresses)?;
            // Key first: a reader pairing a new key with the old certificate
            // fails one handshake and retries; the reverse order would too.
            files::write_private(&dir.key(kind), issued.key_pem.as_bytes())?;
            files::write_public(&dir.cert(kind), &issued.cert_pem)?;
        }
        Ok(())
    }
}

/// The SHA-256 pin of a PEM CA certificate.
pub fn pin_of_pem(cert_pem: &str) -> Result<String, PkiError> {
    Ok(hex::encode(Sha256::digest(pem_to_der(
        cert_pem,
        "the CA certificate",
    )?)))
}

/// What status shows of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    /// The subject's CN.
    pub subject: String,
    /// Not after, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Not after, RFC 3339.
    pub not_after: String,
}

/// Reads the subject and expiry of a PEM certificate.
pub fn cert_info(cert_pem: &str) -> Result<CertInfo, PkiError> {
    let der = pem_to_der(cert_pem, "a certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::cert("parsing a certificate", e))?;
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let not_after_unix = cert.validity().not_after.timestamp();
    let not_after = chrono::DateTime::from_timestamp(not_after_unix, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    Ok(CertInfo {
        subject,
        not_after_unix,
        not_after,
    })
}

/// The IP addresses a PEM certificate names (its SANs): what a renewal
/// issues the new certificate for.
pub fn cert_ips(cert_pem: &str) -> Result<Vec<IpAddr>, PkiError> {
    let der = pem_to_der(cert_pem, "a certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::cert("parsing a certificate", e))?;
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::IPAddress(bytes) = name {
                match bytes.len() {
                    4 => ips.push(IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => ips.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => {}
                }
            }
        }
    }
    Ok(ips)
}

/// Seconds from now until `not_after_unix` (negative when expired).
pub fn seconds_left(not_after_unix: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    not_after_unix - now
}

/// A PKCS#12 file of a client certificate, for importing into a browser.
pub fn pkcs12(issued: &IssuedCert, ca_pem: &str, password: &str) -> Result<Vec<u8>, PkiError> {
    let key_der = rustls_pki_types::pem::PemObject::from_pem_slice(issued.key_pem.as_bytes())
        .map(|k: rustls_pki_types::PrivatePkcs8KeyDer<'_>| k.secret_pkcs8_der().to_vec())
        .map_err(|e| PkiError::cert("reading the client key", e))?;
    let leaf = p12_keystore::Certificate::from_der(&pem_to_der(
        &issued.cert_pem,
        "the client certificate",
    )?)
    .map_err(|e| PkiError::cert("reading the client certificate", e))?;
    let ca = p12_keystore::Certificate::from_der(&pem_to_der(ca_pem, "the CA certificate")?)
        .map_err(|e| PkiError::cert("reading the CA certificate", e))?;
    let key = p12_keystore::PrivateKey::from_der(&key_der)
        .map_err(|e| PkiError::cert("reading the client key", e))?;
    let chain = p12_keystore::PrivateKeyChain::new(
        Sha256::digest(&key_der)[..20].to_vec(),
        key,
        [leaf, ca],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("pgcd", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .write()
        .map_err(|e| PkiError::cert("writing the PKCS#12 file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_certificates_carry_the_address_and_expire_after_the_ca_does_not() {
        let ca = Ca::generate("t").unwrap();
        let ip: IpAddr = "127.0.0.11".parse().unwrap();
        let c = ca.issue_host("h1", CertKind::EtcdClient, &[ip]).unwrap();
        let info = cert_info(&c.cert_pem).unwrap();
        assert_eq!(info.subject, "pgcd-host-h1");
        assert_eq!(cert_ips(&c.cert_pem).unwrap(), vec![ip]);
        let left = seconds_left(info.not_after_unix);
        assert!(left > 360 * 24 * 3600 && left <= 365 * 24 * 3600, "{left}");
        let ca_left = seconds_left(cert_info(ca.cert_pem()).unwrap().not_after_unix);
        assert!(ca_left > left);
        // The pin is stable across a save and a load.
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        ca.save(&pki).unwrap();
        assert_eq!(Ca::load(&pki).unwrap().pin(), ca.pin());
        assert_eq!(pin_of_pem(ca.cert_pem()).unwrap(), ca.pin());
    }

    #[test]
    fn a_client_certificate_exports_as_pkcs12() {
        let ca = Ca::generate("t").unwrap();
        let c = ca.issue_client("alice", LEAF_VALIDITY).unwrap();
        let p12 = pkcs12(&c, ca.cert_pem(), "pw").unwrap();
        let back = p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "pw",
            p12_keystore::Pkcs12ImportPolicy::Relaxed,
        );
        assert!(back.is_ok());
        assert!(p12_keystore::KeyStore::from_pkcs12(
            &p12,
            "wrong",
            p12_keystore::Pkcs12ImportPolicy::Relaxed
        )
        .is_err());
    }
}
