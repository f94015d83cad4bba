//! The host's certificates: the CA made at `--init` (or brought with
//! `--ca DIR`, or received at a join), the host certificates issued from
//! it, etcd's users, and the watcher that puts renewed certificates in
//! force without a restart (`pgcd cert rotate` writes the files; the API
//! swaps its certificate, etcd reads the files at each new connection,
//! PostgreSQL instances get a reload) and publishes every expiry to etcd.

use super::{AgentConfig, AgentError};
use crate::api::routes::certificates::HostCertificates;
use crate::cluster::keys;
use crate::cluster::now_rfc3339;
use crate::cluster::services::HostService;
use crate::cluster::store::Store;
use crate::pki::client::ClientTls;
use crate::pki::issue::{cert_info, pin_of_pem};
use crate::pki::server::ReloadingCert;
use crate::pki::{files, host_cn, Ca, CertKind, PkiDir, PkiError, ETCD_ROOT_CN};
use crate::spec::names::HostId;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

fn pki_error(e: PkiError) -> AgentError {
    AgentError::DataDir(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PkiError> + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::DataDir(format!("certificate work failed: {e}")))?
        .map_err(pki_error)
}

/// `--init` on an empty data dir: the CA from `--ca DIR` or a new one,
/// then this host's certificates.
pub(super) async fn init_ca(
    cfg: &AgentConfig,
    pki: &PkiDir,
    cluster_id: &str,
) -> Result<(), AgentError> {
    let (ca_dir, pki, host, addr, name) = (
        cfg.ca_dir.clone(),
        pki.clone(),
        cfg.host_id.to_string(),
        cfg.advertise,
        cluster_id.to_owned(),
    );
    blocking(move || {
        let ca = match &ca_dir {
            Some(dir) => Ca::load(&PkiDir::new(dir))?,
            None => Ca::generate(&name)?,
        };
        ca.save(&pki)?;
        adopt_age_identity(ca_dir.as_deref(), &pki)?;
        tracing::info!(pin = %ca.pin(), from = ?ca_dir, "cluster CA in place");
        ca.issue_host_set(&pki, &host, &[addr])
    })
    .await
}

/// A restart (or external etcd): the CA must be here already (or come
/// with `--ca DIR`); missing host certificates are issued.
pub(super) async fn ensure_local(cfg: &AgentConfig, pki: &PkiDir) -> Result<(), AgentError> {
    let (ca_dir, pki, host, addr) = (
        cfg.ca_dir.clone(),
        pki.clone(),
        cfg.host_id.to_string(),
        cfg.advertise,
    );
    blocking(move || {
        if !pki.has_ca() {
            match &ca_dir {
                Some(dir) => Ca::load(&PkiDir::new(dir))?.save(&pki)?,
                None => {
                    return Err(PkiError::file(
                        pki.ca_cert(),
                        "this data dir has no cluster CA; pass --ca DIR (a directory with ca.crt and ca.key, from `pgcd cert ca`)",
                    ))
                }
            }
        }
        if !pki.has_host_certs() {
            Ca::load(&pki)?.issue_host_set(&pki, &host, &[addr])?;
        }
        if !pki.age_key().is_file() {
            adopt_age_identity(ca_dir.as_deref(), &pki)?;
        }
        Ok(())
    })
    .await
}

/// A join: keeps the CA the cluster sent (checked against the pin again)
/// and issues this host's certificates from it.
/// Puts the cluster's age identity in place: the one beside `--ca DIR`'s
/// CA, or a new one (at `--init`; also what a data dir from before age
/// keys gets).
fn adopt_age_identity(ca_dir: Option<&std::path::Path>, pki: &PkiDir) -> Result<(), PkiError> {
    let from = ca_dir.map(|d| PkiDir::new(d).age_key());
    let identity = match from.filter(|p| p.is_file()) {
        Some(p) => files::read(&p)?,
        None => crate::secrets::generate_identity(),
    };
    files::write_private(&pki.age_key(), identity.trim().as_bytes())
}

pub(super) async fn adopt_ca(
    cfg: &AgentConfig,
    pki: &PkiDir,
    cert_pem: &str,
    key_pem: &str,
    age_identity: &str,
    pin: &str,
) -> Result<(), AgentError> {
    if pin_of_pem(cert_pem).map_err(pki_error)? != pin {
        return Err(AgentError::Join(
            "the CA in the join answer is not the one the token pins".into(),
        ));
    }
    let (cert, key, age, pki, host, addr) = (
        cert_pem.to_owned(),
        key_pem.to_owned(),
        age_identity.to_owned(),
        pki.clone(),
        cfg.host_id.to_string(),
        cfg.advertise,
    );
    blocking(move || {
        let ca = Ca::from_pem(&cert, &key)?;
        ca.save(&pki)?;
        if !age.trim().is_empty() {
            files::write_private(&pki.age_key(), age.trim().as_bytes())?;
        }
        ca.issue_host_set(&pki, &host, &[addr])
    })
    .await
}

/// The TLS material of an external etcd (`--etcd-ca`, `--etcd-cert`,
/// `--etcd-key`), if given.
pub(super) fn external_etcd_tls(cfg: &AgentConfig) -> Result<Option<ClientTls>, AgentError> {
    match &cfg.etcd_ca {
        Some(ca) => ClientTls::from_files(ca, cfg.etcd_cert.as_deref(), cfg.etcd_key.as_deref())
            .map(Some)
            .map_err(pki_error),
        None if cfg.etcd_cert.is_some() || cfg.etcd_key.is_some() => Err(AgentError::DataDir(
            "--etcd-cert/--etcd-key need --etcd-ca".into(),
        )),
        None => Ok(None),
    }
}

/// Turns etcd's authentication on (idempotent): a `root` user with the
/// root role, and this host's user (its client certificate's CN) with it
/// too. With `--client-cert-auth`, etcd takes the user from the CN, so a
/// certificate of the cluster CA with another name (a person's, for the
/// API) gets no access to etcd at all.
pub(super) async fn ensure_etcd_auth(store: &Store, host: &HostId) -> Result<(), AgentError> {
    let mut client = store.client();
    for user in [ETCD_ROOT_CN.to_owned(), host_cn(host.as_str())] {
        // Nobody logs in with a password: the CN is the login. A random
        // one keeps password logins closed.
        let password = crate::cluster::identity::random_hex(24);
        if let Err(e) = store
            .timed(client.user_add(user.as_str(), password, None))
            .await
        {
            if !e.to_string().contains("already exists") {
                return Err(e.into());
            }
        }
        store
            .timed(client.user_grant_role(user.as_str(), ETCD_ROOT_CN))
            .await?;
    }
    store.timed(client.auth_enable()).await?;
    Ok(())
}

/// Puts renewed certificates in force and publishes every expiry.
pub struct CertWatcher {
    pki: PkiDir,
    host: HostId,
    api: Arc<ReloadingCert>,
}

impl CertWatcher {
    /// A watcher of `pki` swapping `api`'s certificate.
    pub fn new(pki: PkiDir, host: HostId, api: Arc<ReloadingCert>) -> Self {
        Self { pki, host, api }
    }
}

/// The modification times of the host's certificate files.
fn stamps(pki: &PkiDir) -> BTreeMap<CertKind, Option<SystemTime>> {
    CertKind::ALL
        .iter()
        .map(|k| {
            let t = std::fs::metadata(pki.cert(*k))
                .and_then(|m| m.modified())
                .ok();
            (*k, t)
        })
        .collect()
}

/// Host certificates are renewed by the agent itself this long before
/// they expire (a year's certificate: after about eleven months).
pub const RENEW_BEFORE_SECONDS: i64 = 30 * 24 * 3600;

/// Whether a host certificate (not the CA) expires within `before` seconds.
pub fn needs_renewal(record: &HostCertificates, before: i64) -> bool {
    record
        .certificates
        .iter()
        .filter(|(kind, _)| kind.as_str() != "ca")
        .any(|(_, c)| crate::pki::issue::seconds_left(c.not_after_unix) < before)
}

/// What `pgcd cert rotate` does: the host's certificates again, for the
/// addresses its API certificate names.
pub fn renew(pki: &PkiDir, host: &str) -> Result<(), PkiError> {
    let ips = crate::pki::issue::cert_ips(&files::read(&pki.cert(CertKind::Api))?)?;
    if ips.is_empty() {
        return Err(PkiError::cert(
            "renewing",
            "the API certificate names no address",
        ));
    }
    Ca::load(pki)?.issue_host_set(pki, host, &ips)
}

/// Reads every certificate's subject and expiry.
pub fn read_record(pki: &PkiDir, host: &HostId) -> HostCertificates {
    let mut certificates = BTreeMap::new();
    let mut one = |name: &str, path: std::path::PathBuf| {
        if let Ok(info) = files::read(&path).and_then(|t| cert_info(&t)) {
            certificates.insert(name.to_owned(), info);
        }
    };
    one("ca", pki.ca_cert());
    for k in CertKind::ALL {
        one(k.name(), pki.cert(k));
    }
    HostCertificates {
        host: host.to_string(),
        certificates,
        updated_at: now_rfc3339(),
    }
}

impl HostService for CertWatcher {
    fn name(&self) -> &'static str {
        "certificates"
    }

    fn run(&self, store: Store, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        let (pki, host, api) = (self.pki.clone(), self.host.clone(), self.api.clone());
        Box::pin(async move {
            let mut seen = stamps(&pki);
            let mut published: Option<HostCertificates> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = stamps(&pki);
                if now != seen {
                    match api.reload() {
                        Ok(()) => {
                            tracing::info!("certificates renewed: the API serves the new one")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot load the renewed API certificate; keeping the old one")
                        }
                    }
                    seen = now;
                }
                let record = read_record(&pki, &host);
                if needs_renewal(&record, RENEW_BEFORE_SECONDS) {
                    let (pki, host) = (pki.clone(), host.to_string());
                    match tokio::task::spawn_blocking(move || renew(&pki, &host)).await {
                        Ok(Ok(())) => tracing::info!(
                            "host certificates near expiry renewed; putting them in force"
                        ),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot renew the host certificates; retrying")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot renew the host certificates; retrying")
                        }
                    }
                    continue;
                }
                let changed = published
                    .as_ref()
                    .is_none_or(|p| p.certificates != record.certificates);
                if changed {
                    match store.put_json(&keys::certificates(&host), &record).await {
                        Ok(()) => published = Some(record),
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot publish the certificates yet")
                        }
                    }
                }
            }
        })
    }
}

/// Puts a renewed PostgreSQL certificate in force in the host's running
/// instances (copy into each instance, then a reload), within seconds of
/// `pgcd cert rotate`.
pub struct PostgresCertReload {
    pki: PkiDir,
    rt: crate::runtime::docker::Runtime,
}

impl PostgresCertReload {
    /// A reloader for the instances of `rt`.
    pub fn new(pki: PkiDir, rt: crate::runtime::docker::Runtime) -> Self {
        Self { pki, rt }
    }
}

impl HostService for PostgresCertReload {
    fn name(&self) -> &'static str {
        "postgres-certificates"
    }

    fn run(&self, _store: Store, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        let (pki, rt) = (self.pki.clone(), self.rt.clone());
        Box::pin(async move {
            let stamp = || {
                std::fs::metadata(pki.cert(CertKind::Postgres))
                    .and_then(|m| m.modified())
                    .ok()
            };
            let mut seen = stamp();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = stamp();
                if now == seen {
                    continue;
                }
                match rt.reload_tls().await {
                    Ok(n) => {
                        tracing::info!(
                            instances = n,
                            "PostgreSQL certificate renewed and reloaded"
                        );
                        seen = now;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reload the renewed PostgreSQL certificate yet; retrying")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::issue::CertInfo;

    fn record(kind: &str, left: i64) -> HostCertificates {
        let now = chrono::Utc::now().timestamp();
        HostCertificates {
            host: "h1".into(),
            certificates: [(
                kind.to_owned(),
                CertInfo {
                    subject: "x".into(),
                    not_after_unix: now + left,
                    not_after: String::new(),
                },
            )]
            .into(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn host_certificates_near_expiry_are_renewed_and_the_ca_is_not() {
        assert!(needs_renewal(&record("api", 3600), RENEW_BEFORE_SECONDS));
        assert!(!needs_renewal(
            &record("api", 300 * 86_400),
            RENEW_BEFORE_SECONDS
        ));
        assert!(!needs_renewal(&record("ca", 3600), RENEW_BEFORE_SECONDS));
    }

    #[test]
    fn renewal_reissues_for_the_same_address() {
        let dir = tempfile::tempdir().unwrap();
        let pki = PkiDir::new(dir.path());
        let ca = Ca::generate("t").unwrap();
        ca.save(&pki).unwrap();
        let ip: std::net::IpAddr = "127.0.0.11".parse().unwrap();
        ca.issue_host_set(&pki, "h1", &[ip]).unwrap();
        let before = files::read(&pki.cert(CertKind::Postgres)).unwrap();
        renew(&pki, "h1").unwrap();
        let after = files::read(&pki.cert(CertKind::Postgres)).unwrap();
        assert_ne!(before, after);
        assert_eq!(crate::pki::issue::cert_ips(&after).unwrap(), vec![ip]);
    }
}
