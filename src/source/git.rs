//! The leader's mirror of the config repository: a bare repository under
//! `DATA_DIR/source` that fetches only the tracked refs, checks the remote
//! head first so an unchanged remote costs one round trip, and reads specs
//! straight from a commit's tree (no checkout).
//!
//! git2 is blocking: callers on the async runtime go through `spawn_blocking`.

use crate::spec::{self, SourceFile};
use git2::{Cred, CredentialType, Direction, FetchOptions, Oid, RemoteCallbacks, Repository};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of the mirror, with what a person needs to fix them.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 failed (network, auth, corrupt repository, ...).
    #[error("git {action} {url}: {source}")]
    Git {
        /// What was being done.
        action: &'static str,
        /// The remote.
        url: String,
        /// libgit2's error.
        source: git2::Error,
    },
    /// The remote has no such branch.
    #[error("{url} has no branch {branch}")]
    NoBranch {
        /// The remote.
        url: String,
        /// The branch asked for.
        branch: String,
    },
    /// A spec file is not UTF-8 or the tree is unreadable.
    #[error("commit {sha}: {message}")]
    Tree {
        /// The commit.
        sha: String,
        /// What is wrong.
        message: String,
    },
}

/// Where the repository is and how to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// `file://`, a plain path, `https://` or `ssh://` (or `user@host:path`).
    pub url: String,
    /// The branch that is applied.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Where the specs live inside the repository (empty: the root).
    #[serde(default)]
    pub path: String,
    /// `https://`: environment variable holding a token (sent as the password of user `x-access-token`)
    /// or `user:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_env: Option<String>,
    /// `https://`: file holding the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// `ssh://`: private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<PathBuf>,
    /// `ssh://`: known_hosts file the server's key must be in.
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

impl SourceConfig {
    /// A source with defaults: branch `main`, the repository root, no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            branch: default_branch(),
            path: String::new(),
            credentials_env: None,
            credentials_file: None,
            ssh_key: None,
            known_hosts: None,
            poll_interval: None,
            fetch_timeout: None,
        }
    }

    fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }
}

/// A commit as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// Full hex id.
    pub sha: String,
    /// `Name <email>`.
    pub author: String,
    /// First line of the message.
    pub subject: String,
    /// Commit time, seconds since the epoch.
    pub time: i64,
}

/// The bare mirror.
pub struct Mirror {
    repo: Repository,
    config: SourceConfig,
}

impl Mirror {
    /// Opens the mirror at `dir`, creating a bare repository there if needed,
    /// and points its `origin` at the configured URL.
    pub fn open(dir: &Path, config: SourceConfig) -> Result<Self, GitError> {
        let err = |action, source| GitError::Git {
            action,
            url: config.url.clone(),
            source,
        };
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(dir).map_err(|e| err("init", e))?,
        };
        let url = normalise_url(&config.url);
        match repo.find_remote("origin") {
            Ok(r) if r.url() == Some(url.as_str()) => {}
            Ok(_) => repo
                .remote_set_url("origin", &url)
                .map_err(|e| err("set url", e))?,
            Err(_) => {
                repo.remote("origin", &url)
                    .map_err(|e| err("add remote", e))?;
            }
        }
        Ok(Self { repo, config })
    }

    /// The configuration this mirror follows.
    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    /// The underlying repository (notes, plan refs).
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Heads of the remote matching `patterns` (e.g. `refs/heads/main`,
    /// `refs/pull/*/head`), without downloading anything.
    pub fn remote_heads(
        &self,
        patterns: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, Oid)>, GitError> {
        let err = |source| GitError::Git {
            action: "ls-remote",
            url: self.config.url.clone(),
            source,
        };
        let mut remote = self.repo.find_remote("origin").map_err(err)?;
        let conn = remote
            .connect_auth(
                Direction::Fetch,
                Some(self.callbacks(Instant::now() + timeout)),
                None,
            )
            .map_err(err)?;
        let heads = conn
            .list()
            .map_err(err)?
            .iter()
            .filter(|h| patterns.iter().any(|p| ref_matches(p, h.name())))
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        Ok(heads)
    }

    /// The remote's head of the tracked branch.
    pub fn remote_head(&self, timeout: Duration) -> Result<Oid, GitError> {
        let want = format!("refs/heads/{}", self.config.branch);
        self.remote_heads(std::slice::from_ref(&want), timeout)?
            .into_iter()
            .find(|(name, _)| *name == want)
            .map(|(_, oid)| oid)
            .ok_or_else(|| GitError::NoBranch {
                url: self.config.url.clone(),
                branch: self.config.branch.clone(),
            })
    }

    /// The last fetched head of the tracked branch, if any.
    pub fn local_head(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.config.tracking_ref()).ok()
    }

    /// Fetches the tracked branch (and `extra` refspecs) when the remote
    /// moved; returns the tracked head. Aborts after `timeout`.
    pub fn fetch(&self, extra: &[String], timeout: Duration) -> Result<Oid, GitError> {
        let deadline = Instant::now() + timeout;
        let remote_head = self.remote_head(timeout)?;
        if self.local_head() == Some(remote_head) && extra.is_empty() {
            return Ok(remote_head);
        }
        let mut refspecs = vec![format!(
            "+refs/heads/{}:{}",
            self.config.branch,
            self.config.tracking_ref()
        )];
        refspecs.extend(extra.iter().cloned());
        self.fetch_refspecs(&refspecs, deadline)?;
        self.local_head().ok_or_else(|| GitError::NoBranch {
            url: self.config.url.clone(),
            branch: self.config.branch.clone(),
        })
    }

    /// Fetches the remote heads matching `patterns` (branches, pull
    /// requests) into `refs/pgcd/plan/...`; returns each ref and its head.
    pub fn fetch_plan_refs(
        &self,
        patterns: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, Oid)>, GitError> {
        let heads = self.remote_heads(patterns, timeout)?;
        let stale: Vec<&(String, Oid)> = heads
            .iter()
            .filter(|(name, oid)| self.repo.refname_to_id(&plan_ref(name)).ok() != Some(*oid))
            .collect();
        if !stale.is_empty() {
            let refspecs: Vec<String> = stale
                .iter()
                .map(|(name, _)| format!("+{name}:{}", plan_ref(name)))
                .collect();
            self.fetch_refspecs(&refspecs, Instant::now() + timeout)?;
        }
        Ok(heads)
    }

    /// Fetches refspecs from the origin, without tags, aborting at `deadline`.
    fn fetch_refspecs(&self, refspecs: &[String], deadline: Instant) -> Result<(), GitError> {
        let err = |source| GitError::Git {
            action: "fetch",
            url: self.config.url.clone(),
            source,
        };
        let mut remote = self.repo.find_remote("origin").map_err(err)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks(deadline));
        opts.download_tags(git2::AutotagOption::None);
        remote.fetch(refspecs, Some(&mut opts), None).map_err(err)
    }

    /// Author, subject and time of a commit.
    pub fn commit_info(&self, oid: Oid) -> Result<CommitInfo, GitError> {
        let c = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.tree_err(oid, e.message()))?;
        let author = c.author();
        Ok(CommitInfo {
            sha: oid.to_string(),
            author: format!(
                "{} <{}>",
                author.name().unwrap_or("?"),
                author.email().unwrap_or("?")
            ),
            subject: c.summary().unwrap_or("").to_string(),
            time: c.time().seconds(),
        })
    }

    fn tree_err(&self, oid: Oid, message: &str) -> GitError {
        GitError::Tree {
            sha: oid.to_string(),
            message: message.to_string(),
        }
    }

    /// The spec files of a commit, read from its tree (paths relative to
    /// the configured spec path).
    pub fn read_specs(&self, oid: Oid) -> Result<Vec<SourceFile>, GitError> {
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|e| self.tree_err(oid, e.message()))?;
        let mut tree = commit.tree().map_err(|e| self.tree_err(oid, e.message()))?;
        let base = self.config.path.trim_matches('/');
        if !base.is_empty() {
            let entry = tree.get_path(Path::new(base)).map_err(|_| {
                self.tree_err(oid, &format!("no directory {base} in the repository"))
            })?;
            tree = self
                .repo
                .find_tree(entry.id())
                .map_err(|_| self.tree_err(oid, &format!("{base} is not a directory")))?;
        }
        let mut files = Vec::new();
        let mut failure = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let path = format!("{dir}{}", entry.name().unwrap_or(""));
            if entry.kind() == Some(git2::ObjectType::Blob) && spec::is_spec_path(&path) {
                match self.repo.find_blob(entry.id()) {
                    Ok(blob) => match std::str::from_utf8(blob.content()) {
                        Ok(text) => files.push(SourceFile {
                            path,
                            text: text.to_string(),
                        }),
                        Err(_) => failure = Some(format!("{path} is not UTF-8")),
                    },
                    Err(e) => failure = Some(format!("{path}: {}", e.message())),
                }
            }
            git2::TreeWalkResult::Ok
        })
        .map_err(|e| self.tree_err(oid, e.message()))?;
        match failure {
            Some(message) => Err(self.tree_err(oid, &message)),
            None => {
                files.sort_by(|a, b| a.path.cmp(&b.path));
                Ok(files)
            }
        }
    }

    fn callbacks(&self, deadline: Instant) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let config = &self.config;
        let mut attempts = 0;
        cb.credentials(move |url, user_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str(
                    "authentication failed (credentials refused)",
                ));
            }
            credentials(config, url, user_from_url, allowed)
        });
        // Abort transfers past the deadline: libgit2 has no timeout of its own.
        cb.transfer_progress(move |_| Instant::now() < deadline);
        cb.sideband_progress(move |_| Instant::now() < deadline);
        if let Some(known) = config.known_hosts.clone() {
            cb.certificate_check(move |cert, host| check_host_key(&known, cert, host));
        }
        cb
    }
}

fn credentials(
    config: &SourceConfig,
    _url: &str,
    user_from_url: Option<&str>,
    allowed: CredentialType,
) -> Result<Cred, git2::Error> {
    if allowed.contains(CredentialType::SSH_KEY) {
        let key = config.ssh_key.as_ref().ok_or_else(|| {
            git2::Error::from_str("the server wants an SSH key; set the source's ssh_key")
        })?;
        return Cred::ssh_key(user_from_url.unwrap_or("git"), None, key, None);
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        let secret = match (&config.credentials_env, &config.credentials_file) {
            (Some(var), _) => std::env::var(var).map_err(|_| {
                git2::Error::from_str(&format!("environment variable {var} is not set"))
            })?,
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| git2::Error::from_str(&format!("{}: {e}", file.display())))?,
            (None, None) => {
                return Err(git2::Error::from_str(
                    "the server wants credentials; set credentials_env or credentials_file",
                ))
            }
        };
        let secret = secret.trim();
        return match secret.split_once(':') {
            Some((user, pass)) => Cred::userpass_plaintext(user, pass),
            None => Cred::userpass_plaintext(user_from_url.unwrap_or("x-access-token"), secret),
        };
    }
    Cred::default()
}

fn check_host_key(
    known_hosts: &Path,
    cert: &git2::cert::Cert<'_>,
    host: &str,
) -> Result<git2::CertificateCheckStatus, git2::Error> {
    use base64::Engine;
    let Some(hostkey) = cert.as_hostkey().and_then(|h| h.hostkey()) else {
        // Not SSH: TLS certificates are checked by libgit2 against the system store.
        return Ok(git2::CertificateCheckStatus::CertificatePassthrough);
    };
    let text = std::fs::read_to_string(known_hosts)
        .map_err(|e| git2::Error::from_str(&format!("{}: {e}", known_hosts.display())))?;
    let known = text.lines().any(|line| {
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let host_ok = hosts
            .split(',')
            .any(|h| h == host || h.trim_start_matches('[').split(']').next() == Some(host));
        host_ok
            && base64::engine::general_purpose::STANDARD
                .decode(key)
                .is_ok_and(|k| k == hostkey)
    });
    if known {
        Ok(git2::CertificateCheckStatus::CertificateOk)
    } else {
        Err(git2::Error::from_str(&format!(
            "host key of {host} is not in {}",
            known_hosts.display()
        )))
    }
}

/// Where a plan ref's head is kept in the mirror.
fn plan_ref(name: &str) -> String {
    format!("refs/pgcd/plan/{}", name.trim_start_matches("refs/"))
}

/// A plain path becomes a `file://` URL; anything else is left alone.
fn normalise_url(url: &str) -> String {
    if url.starts_with('/') {
        format!("file://{url}")
    } else {
        url.to_string()
    }
}

/// Whether a ref name matches a pattern with `*` wildcards (each `*` matches
/// within one path component, as in `refs/pull/*/head`).
pub fn ref_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    if p.len() != n.len() && !pattern.ends_with("/*") {
        return false;
    }
    for (i, part) in p.iter().enumerate() {
        if *part == "*" && i == p.len() - 1 {
            return n.len() > i; // a trailing * matches the rest
        }
        let Some(seg) = n.get(i) else { return false };
        if !glob(part, seg) {
            return false;
        }
    }
    p.len() == n.len()
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((pre, post)) => {
            text.len() >= pre.len() + post.len() && text.starts_with(pre) && text.ends_with(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_patterns() {
        assert!(ref_matches("refs/heads/*", "refs/heads/main"));
        assert!(ref_matches("refs/heads/*", "refs/heads/feature/x"));
        assert!(ref_matches("refs/pull/*/head", "refs/pull/12/head"));
        assert!(!ref_matches("refs/pull/*/head", "refs/pull/12/merge"));
        assert!(!ref_matches("refs/heads/main", "refs/heads/mainline"));
        assert!(ref_matches("refs/heads/release-*", "refs/heads/release-1"));
    }
}
