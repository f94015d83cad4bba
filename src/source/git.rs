//! The leader's mirror of the config repository: a bare repository under
//! `DATA_DIR/source` that fetches only the tracked refs, checks the remote
//! head first so an unchanged remote costs one round trip, and reads specs
//! straight from a commit's tree (no checkout).
//!
//! git2 is blocking: callers on the async runtime go through `spawn_blocking`.

// Every call into this module runs inside spawn_blocking (git2 blocks too).
#![allow(clippy::disallowed_methods)]

use super::remote::{self, redact_url, Authenticator};
use crate::spec::{self, SourceFile};
use git2::{Direction, FetchOptions, Oid, RemoteCallbacks, Repository};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// Errors of the mirror, with what a person needs to fix them.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 failed (network, auth, corrupt repository, ...).
    #[error("git {action} {url}: {}", super::remote::describe(source))]
    Git {
        /// What was being done.
        action: &'static str,
        /// The remote (a password in it shown as `***`).
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

pub use super::remote::SourceConfig;

/// The file in the mirror's directory that remembers how to reach the
/// origin (references only, never secrets), so the reporter can push notes
/// back with the same credentials.
const REMOTE_FILE: &str = "pgcd-source.json";

/// How long libgit2 waits for a connection, and for any one read or write
/// on it, before giving up (libgit2 has no limit of its own).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`CONNECT_TIMEOUT`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets libgit2's process-wide network timeouts ([`CONNECT_TIMEOUT`],
/// [`IO_TIMEOUT`]), so a server that accepts and then says nothing cannot
/// hold a fetch forever. Call it once, before any thread starts.
pub fn init_network_timeouts() {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: libgit2 keeps these in plain globals; the binary calls this
    // first thing in `main`, before any other thread exists.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(ms(CONNECT_TIMEOUT));
        let _ = git2::opts::set_server_timeout_in_milliseconds(ms(IO_TIMEOUT));
    }
}

fn tracking_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
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
    /// Why a callback refused the server or had no credentials: libgit2
    /// replaces such a message with its own ("invalid or unknown remote ssh
    /// hostkey"), so the callbacks keep it here for the error.
    refusal: std::cell::RefCell<Option<String>>,
}

impl Mirror {
    /// Opens the mirror at `dir`, creating a bare repository there if needed,
    /// and points its `origin` at the configured URL.
    pub fn open(dir: &Path, config: SourceConfig) -> Result<Self, GitError> {
        let err = |action, source| GitError::Git {
            action,
            url: redact_url(&config.url),
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
        if let Ok(json) = serde_json::to_vec_pretty(&config) {
            // Best effort: without it, notes are pushed without credentials.
            // Every pass opens the mirror; write only what changed.
            let file = repo.path().join(REMOTE_FILE);
            if std::fs::read(&file).ok().as_deref() != Some(json.as_slice()) {
                let _ = std::fs::write(file, json);
            }
        }
        Ok(Self {
            repo,
            config,
            refusal: Default::default(),
        })
    }

    /// Opens an existing mirror with the settings it was last opened with.
    pub fn reopen(dir: &Path) -> Result<Self, GitError> {
        let repo = Repository::open_bare(dir).map_err(|source| GitError::Git {
            action: "open",
            url: dir.display().to_string(),
            source,
        })?;
        let config = std::fs::read(repo.path().join(REMOTE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| {
                SourceConfig::new(
                    repo.find_remote("origin")
                        .ok()
                        .and_then(|r| r.url().map(str::to_string))
                        .unwrap_or_default(),
                )
            });
        Ok(Self {
            repo,
            config,
            refusal: Default::default(),
        })
    }

    /// Pushes `refs/notes/pgcd` to the origin with the source's credentials
    /// (force: the leader owns the ref).
    pub fn push_notes(&self, timeout: Duration) -> Result<(), GitError> {
        let err = |source| self.git_error("push notes to", source);
        let mut remote = self.repo.find_remote("origin").map_err(err)?;
        let spec = format!("+{0}:{0}", super::status::NOTES_REF);
        let rejected = std::cell::RefCell::new(None);
        {
            let mut cb = self.callbacks(Instant::now() + timeout);
            cb.push_update_reference(|r, status| {
                if let Some(s) = status {
                    *rejected.borrow_mut() = Some(format!("{r}: {s}"));
                }
                Ok(())
            });
            let mut opts = git2::PushOptions::new();
            opts.remote_callbacks(cb);
            remote
                .push(&[spec.as_str()], Some(&mut opts))
                .map_err(err)?;
        }
        match rejected.into_inner() {
            Some(why) => Err(err(git2::Error::from_str(&format!("push rejected: {why}")))),
            None => Ok(()),
        }
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
        let err = |source| self.git_error("ls-remote", source);
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
                url: redact_url(&self.config.url),
                branch: self.config.branch.clone(),
            })
    }

    /// The last fetched head of the tracked branch, if any.
    pub fn local_head(&self) -> Option<Oid> {
        self.repo
            .refname_to_id(&tracking_ref(&self.config.branch))
            .ok()
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
            tracking_ref(&self.config.branch)
        )];
        refspecs.extend(extra.iter().cloned());
        self.fetch_refspecs(&refspecs, deadline)?;
        self.local_head().ok_or_else(|| GitError::NoBranch {
            url: redact_url(&self.config.url),
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
        let err = |source| self.git_error("fetch", source);
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

    /// A libgit2 failure, told with the callbacks' own reason when they had one.
    fn git_error(&self, action: &'static str, source: git2::Error) -> GitError {
        let source = match self.refusal.take() {
            Some(why) => git2::Error::new(source.code(), source.class(), why),
            None => source,
        };
        GitError::Git {
            action,
            url: redact_url(&self.config.url),
            source,
        }
    }

    fn callbacks(&self, deadline: Instant) -> RemoteCallbacks<'_> {
        self.refusal.take();
        let mut cb = RemoteCallbacks::new();
        let config = &self.config;
        let refusal = &self.refusal;
        let mut auth = Authenticator::new(config);
        cb.credentials(move |_url, user_from_url, allowed| {
            keep(refusal, auth.credentials(user_from_url, allowed))
        });
        // Abort transfers past the deadline: libgit2 has no timeout of its own.
        cb.transfer_progress(move |_| Instant::now() < deadline);
        cb.sideband_progress(move |_| Instant::now() < deadline);
        cb.certificate_check(move |cert, host| {
            keep(refusal, remote::check_certificate(config, cert, host))
        });
        cb
    }
}

/// Remembers a callback's refusal for the error libgit2 will return.
fn keep<T>(
    slot: &std::cell::RefCell<Option<String>>,
    r: Result<T, git2::Error>,
) -> Result<T, git2::Error> {
    if let Err(e) = &r {
        *slot.borrow_mut() = Some(e.message().to_string());
    }
    r
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
