//! Where the config repository is and how the leader proves who it is to
//! it and checks who the server is: the `source/config` record, the
//! credentials libgit2 asks for (a token or `user:password` over https, a
//! deploy key over ssh, each from a secret reference resolved on the
//! agent), the server's TLS certificate against a configured CA bundle
//! (or the system roots) and its SSH host key against `known_hosts`.
//!
//! Everything here runs inside libgit2's callbacks, on the blocking thread
//! that fetches; error texts name references and files, never secrets.

// Runs inside spawn_blocking, beside git2.
#![allow(clippy::disallowed_methods)]

use super::known_hosts::{self, Verdict};
use crate::spec::secret::SecretRef;
use git2::{CertificateCheckStatus, Cred, CredentialType};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

/// Where the repository is and how to authenticate (`source/config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// `file://`, a plain path, `git://`, `https://` or `ssh://` (or `user@host:path`).
    pub url: String,
    /// The branch that is applied.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Where the specs live inside the repository (empty: the root).
    #[serde(default)]
    pub path: String,
    /// `https://`: a token (sent as the password of the URL's user, or of
    /// `x-access-token`) or `user:password`, read on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretRef>,
    /// Older form of `credentials: {env: NAME}`; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_env: Option<String>,
    /// Older form of `credentials: {file: PATH}`; still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// `https://`: PEM bundle of the CAs the server's certificate must chain
    /// to, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `ssh://`: the private key, a secret reference (a plain path, the
    /// older form, means `{file: PATH}`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "key_ref"
    )]
    pub ssh_key: Option<SecretRef>,
    /// `ssh://`: the known_hosts file the server's key must be in (default
    /// `~/.ssh/known_hosts` of the agent's user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<PathBuf>,
    /// How often to look for a new head (`15s`); overrides `pgcd.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// Give up a fetch after this long (`60s`); overrides `pgcd.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_timeout: Option<String>,
}

fn default_branch() -> String {
    "main".into()
}

/// `ssh_key` was once a plain path; both forms read.
fn key_ref<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretRef>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Path(String),
        Ref(SecretRef),
    }
    Ok(match Option::<Form>::deserialize(d)? {
        None => None,
        Some(Form::Path(p)) => Some(SecretRef::File(p)),
        Some(Form::Ref(r)) => Some(r),
    })
}

impl SourceConfig {
    /// A source with defaults: branch `main`, the repository root, no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            branch: default_branch(),
            path: String::new(),
            credentials: None,
            credentials_env: None,
            credentials_file: None,
            ca_file: None,
            ssh_key: None,
            known_hosts: None,
            poll_interval: None,
            fetch_timeout: None,
        }
    }

    /// The https credentials in force: `credentials`, else the older fields.
    pub fn credentials_ref(&self) -> Option<SecretRef> {
        self.credentials
            .clone()
            .or_else(|| self.credentials_env.clone().map(SecretRef::Env))
            .or_else(|| {
                self.credentials_file
                    .as_ref()
                    .map(|p| SecretRef::File(p.display().to_string()))
            })
    }

    /// The known_hosts file in force.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.known_hosts.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            Path::new(&home).join(".ssh/known_hosts")
        })
    }

    /// Mistakes a person makes setting the source, one message each: the
    /// files named are on the agents, so they must be absolute paths.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut abs = |field: &str, p: Option<&Path>| {
            if let Some(p) = p.filter(|p| !p.is_absolute()) {
                out.push(format!(
                    "{field}: {} is not an absolute path (it is read on the agents)",
                    p.display()
                ));
            }
        };
        abs("ca_file", self.ca_file.as_deref());
        abs("known_hosts", self.known_hosts.as_deref());
        abs("credentials_file", self.credentials_file.as_deref());
        for (field, r) in [
            ("credentials", &self.credentials),
            ("ssh_key", &self.ssh_key),
        ] {
            if let Some(SecretRef::File(p)) = r {
                abs(field, Some(Path::new(p)));
            }
        }
        out
    }
}

/// Answers libgit2's requests for credentials, once per kind: asked a
/// second time, the server refused what was offered, and saying so beats
/// offering it again.
pub(crate) struct Authenticator<'a> {
    config: &'a SourceConfig,
    offered_key: bool,
    offered_password: bool,
}

impl<'a> Authenticator<'a> {
    pub(crate) fn new(config: &'a SourceConfig) -> Self {
        Self {
            config,
            offered_key: false,
            offered_password: false,
        }
    }

    pub(crate) fn credentials(
        &mut self,
        user_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let fail = |m: String| Err(git2::Error::from_str(&m));
        if allowed.contains(CredentialType::USERNAME) {
            // ssh without a user in the URL: forges take `git`.
            return Cred::username(user_from_url.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            let user = user_from_url.unwrap_or("git");
            let Some(key_ref) = &self.config.ssh_key else {
                return fail(
                    "the server wants an SSH key; set one with `pgcd source set --ssh-key`".into(),
                );
            };
            if self.offered_key {
                return fail(format!(
                    "the server refused the SSH key {key_ref} for user {user} (is it an authorised deploy key?)"
                ));
            }
            self.offered_key = true;
            let mut key = crate::secrets::resolve(key_ref)
                .map_err(|e| git2::Error::from_str(&format!("ssh_key {key_ref}: {e}")))?;
            key.push('\n'); // the reference's trailing newline was trimmed; PEM wants one
            return Cred::ssh_key_from_memory(user, None, &key, None).map_err(|e| {
                git2::Error::from_str(&format!(
                    "ssh_key {key_ref} is not a usable private key: {}",
                    e.message()
                ))
            });
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let Some(secret_ref) = self.config.credentials_ref() else {
                return fail(
                    "the server wants credentials; set a token with `pgcd source set --credentials env:NAME`"
                        .into(),
                );
            };
            let secret = crate::secrets::resolve(&secret_ref)
                .map_err(|e| git2::Error::from_str(&format!("credentials {secret_ref}: {e}")))?;
            let secret = secret.trim();
            let (user, password) = match secret.split_once(':') {
                Some((u, p)) => (u, p),
                None => (user_from_url.unwrap_or("x-access-token"), secret),
            };
            if self.offered_password {
                return fail(format!(
                    "the server refused the credentials {secret_ref} (user {user}): wrong or expired token?"
                ));
            }
            self.offered_password = true;
            return Cred::userpass_plaintext(user, password);
        }
        fail(format!(
            "the server asks for a kind of authentication pgcd does not offer ({allowed:?})"
        ))
    }
}

/// Decides on the server's TLS certificate or SSH host key.
pub(crate) fn check_certificate(
    config: &SourceConfig,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<CertificateCheckStatus, git2::Error> {
    if let Some(hostkey) = cert.as_hostkey() {
        let blob = hostkey.hostkey().ok_or_else(|| {
            git2::Error::from_str(&format!("the host key of {host} cannot be read"))
        })?;
        let port = ssh_host_port(&config.url).map_or(22, |(_, p)| p);
        return check_host_key(&config.known_hosts_file(), host, port, blob)
            .map(|()| CertificateCheckStatus::CertificateOk)
            .map_err(|m| git2::Error::from_str(&m));
    }
    match (cert.as_x509(), &config.ca_file) {
        (Some(x509), Some(ca)) => verify_tls(ca, x509.data(), host)
            .map(|()| CertificateCheckStatus::CertificateOk)
            .map_err(|m| git2::Error::from_str(&m)),
        // No bundle configured: libgit2 has checked against the system roots.
        _ => Ok(CertificateCheckStatus::CertificatePassthrough),
    }
}

/// The server's key must be on record for it in `known_hosts`.
fn check_host_key(known: &Path, host: &str, port: u16, blob: &[u8]) -> Result<(), String> {
    let name = known_hosts::host_entry_name(host, port);
    let kind = known_hosts::key_type(blob).unwrap_or("unknown");
    let offered = format!("{kind} {}", known_hosts::fingerprint(blob));
    let text = match std::fs::read_to_string(known) {
        Ok(t) => t,
        Err(e) => {
            return Err(format!(
                "cannot check the host key of {name} ({offered}): {}: {e}",
                known.display()
            ))
        }
    };
    match known_hosts::check(&text, host, port, blob) {
        Verdict::Known => Ok(()),
        Verdict::Unknown => Err(format!(
            "host key of {name} is not in {}: the server offers {offered}; if that is its key, add it (ssh-keyscan{} {host} >> {})",
            known.display(),
            if port == 22 { String::new() } else { format!(" -p {port}") },
            known.display()
        )),
        Verdict::OtherTypes { types } => Err(format!(
            "host key of {name}: the server offers {offered}, but {} holds only {} keys for it; add its {kind} key",
            known.display(),
            types.join(", ")
        )),
        Verdict::Changed { on_record } => Err(format!(
            "host key of {name} CHANGED: the server offers {offered}, but {} holds {}; refusing (someone may be in between; if the server's key really changed, replace the line)",
            known.display(),
            on_record
                .iter()
                .map(|(line, fp)| format!("{fp} (line {line})"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Verdict::Revoked { line } => Err(format!(
            "host key of {name} ({offered}) is revoked in {} (line {line})",
            known.display()
        )),
    }
}

/// Verifies a server certificate (DER) for `host` against the CAs of a PEM
/// bundle: chain (the bundle's other certificates may serve as
/// intermediates), validity period, server-auth use and name.
fn verify_tls(ca_file: &Path, der: &[u8], host: &str) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let bundle = ca_file.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("ca_file {bundle}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca_file {bundle}: {e}"))?;
    let anchors: Vec<_> = certs
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    if anchors.is_empty() {
        return Err(format!("ca_file {bundle} holds no CA certificate"));
    }
    let leaf = CertificateDer::from(der);
    let cert = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| format!("the TLS certificate of {host} cannot be read: {e}"))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &certs,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::UnknownIssuer => {
            format!("the TLS certificate of {host} is not signed by a CA in {bundle}")
        }
        webpki::Error::CertExpired { .. } => format!("the TLS certificate of {host} has expired"),
        webpki::Error::CertNotValidYet { .. } => {
            format!("the TLS certificate of {host} is not valid yet")
        }
        other => format!("the TLS certificate of {host} is refused ({bundle}): {other}"),
    })?;
    let name = ServerName::try_from(host)
        .map_err(|_| format!("{host} is not a host name a certificate can name"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the TLS certificate is not valid for {host} (its names differ)"))
}

/// Host and port of an ssh remote: `ssh://[user@]host[:port]/path` or the
/// scp-like `[user@]host:path` (port 22).
pub fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    let rest = ["ssh://", "git+ssh://", "ssh+git://"]
        .iter()
        .find_map(|p| url.strip_prefix(p));
    let Some(rest) = rest else {
        if url.contains("://") || url.starts_with('/') {
            return None;
        }
        let (authority, _) = url.split_once(':')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        return Some((host.to_string(), 22));
    };
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host.to_string(), port.unwrap_or(22)));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((hostport.to_string(), 22)),
    }
}

/// A URL fit for logs and status records: a password in it becomes `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

/// libgit2's message, with what to do about the common failures.
pub fn describe(e: &git2::Error) -> String {
    use git2::{ErrorClass, ErrorCode};
    let msg = e.message();
    let hint = if e.code() == ErrorCode::Certificate
        || (e.class() == ErrorClass::Ssl && msg.contains("certificate is invalid"))
    {
        // libgit2's own check (no ca_file) says only "invalid".
        "; the server's TLS certificate is not trusted by the system roots or not valid for its name (set the source's ca_file to the CA bundle that signed it)"
    } else if msg.contains("Resource temporarily unavailable") || msg.contains("timed out") {
        // A read hit libgit2's I/O timeout (set by `git::init_network_timeouts`).
        "; the server accepted the connection but did not answer in time"
    } else if e.code() == ErrorCode::Auth {
        "; check the source's credentials"
    } else if e.class() == ErrorClass::Ssh && msg.contains("authenticat") {
        "; check the source's ssh_key (is it an authorised deploy key?)"
    } else {
        ""
    };
    format!("{msg}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_give_host_and_port() {
        let hp = |u: &str| ssh_host_port(u);
        assert_eq!(
            hp("ssh://git@127.0.0.1:2222/srv/repo.git"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            hp("ssh://gitlab.com/group/repo.git"),
            Some(("gitlab.com".into(), 22))
        );
        assert_eq!(
            hp("git@github.com:acme/config.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(hp("ssh://[::1]:2200/r"), Some(("::1".into(), 2200)));
        assert_eq!(hp("https://github.com/acme/config.git"), None);
        assert_eq!(hp("/srv/repo.git"), None);
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://bot:s3cret@git.example/a.git"),
            "https://bot:***@git.example/a.git"
        );
        assert_eq!(
            redact_url("https://bot@git.example/a.git"),
            "https://bot@git.example/a.git"
        );
        assert_eq!(redact_url("/srv/a.git"), "/srv/a.git");
    }

    #[test]
    fn older_records_still_read() {
        let old: SourceConfig = serde_json::from_str(
            r#"{"url":"ssh://git@h/r","ssh_key":"/etc/pgcd/deploy","credentials_env":"TOKEN"}"#,
        )
        .unwrap();
        assert_eq!(
            old.ssh_key,
            Some(SecretRef::File("/etc/pgcd/deploy".into()))
        );
        assert_eq!(old.credentials_ref(), Some(SecretRef::Env("TOKEN".into())));
        let new: SourceConfig =
            serde_json::from_str(r#"{"url":"u","ssh_key":{"env":"DEPLOY_KEY"}}"#).unwrap();
        assert_eq!(new.ssh_key, Some(SecretRef::Env("DEPLOY_KEY".into())));
        let back: SourceConfig =
            serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        let mut rel = SourceConfig::new("u");
        rel.ca_file = Some("ca.pem".into());
        assert_eq!(rel.problems().len(), 1, "{:?}", rel.problems());
    }
}
