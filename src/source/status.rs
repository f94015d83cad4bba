//! Commit statuses: `pgcd/validate`, `pgcd/plan`, `pgcd/apply` on the commit
//! they are about, through Git notes (`refs/notes/pgcd`, any Git server) and a
//! GitHub-compatible statuses API (GitHub, Gitea, Forgejo).

use git2::{Oid, Repository, Signature};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The notes ref the Git reporter writes.
pub const NOTES_REF: &str = "refs/notes/pgcd";

/// The state of a status, as the forges spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Work under way.
    Pending,
    /// Done and good.
    Success,
    /// Done and bad (the spec's fault).
    Failure,
    /// pgcd could not do it (its own or the system's fault).
    Error,
}

/// One status of one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStatus {
    /// `pgcd/validate`, `pgcd/plan` or `pgcd/apply`.
    pub context: String,
    /// The state.
    pub state: State,
    /// One line, under 140 characters.
    pub description: String,
    /// Where to read more (the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
}

/// Forges cut descriptions at 140 characters; cut on a char boundary with an ellipsis.
pub fn short_description(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() < 140 {
        return line.to_string();
    }
    let mut s: String = line.chars().take(138).collect();
    s.push('…');
    s
}

impl CommitStatus {
    /// A status with its description cut to fit.
    pub fn new(context: &str, state: State, description: &str, target_url: Option<String>) -> Self {
        Self {
            context: context.to_string(),
            state,
            description: short_description(description),
            target_url,
        }
    }
}

/// Records a status in the commit's note (one JSON object per commit,
/// keyed by context, so later contexts do not erase earlier ones).
pub fn write_note(repo: &Repository, sha: &str, status: &CommitStatus) -> Result<(), git2::Error> {
    let oid = Oid::from_str(sha)?;
    let mut all: BTreeMap<String, CommitStatus> = repo
        .find_note(Some(NOTES_REF), oid)
        .ok()
        .and_then(|n| n.message().and_then(|m| serde_json::from_str(m).ok()))
        .unwrap_or_default();
    all.insert(status.context.clone(), status.clone());
    let text =
        serde_json::to_string_pretty(&all).map_err(|e| git2::Error::from_str(&e.to_string()))?;
    let sig = Signature::now("pgcd", "pgcd@localhost")?;
    repo.note(&sig, &sig, Some(NOTES_REF), oid, &text, true)?;
    Ok(())
}

/// Reads the statuses recorded in a commit's note.
pub fn read_note(repo: &Repository, sha: &str) -> BTreeMap<String, CommitStatus> {
    Oid::from_str(sha)
        .ok()
        .and_then(|oid| repo.find_note(Some(NOTES_REF), oid).ok())
        .and_then(|n| n.message().and_then(|m| serde_json::from_str(m).ok()))
        .unwrap_or_default()
}

/// Pushes `refs/notes/pgcd` to the origin (force: the leader owns the ref).
pub fn push_notes(repo: &Repository) -> Result<(), git2::Error> {
    let mut remote = repo.find_remote("origin")?;
    let spec = format!("+{NOTES_REF}:{NOTES_REF}");
    let rejected = std::cell::RefCell::new(None);
    {
        let mut cb = git2::RemoteCallbacks::new();
        cb.push_update_reference(|r, status| {
            if let Some(s) = status {
                *rejected.borrow_mut() = Some(format!("{r}: {s}"));
            }
            Ok(())
        });
        let mut opts = git2::PushOptions::new();
        opts.remote_callbacks(cb);
        remote.push(&[spec.as_str()], Some(&mut opts))?;
    }
    match rejected.into_inner() {
        Some(why) => Err(git2::Error::from_str(&format!("push rejected: {why}"))),
        None => Ok(()),
    }
}

/// The GitHub-compatible statuses API.
#[derive(Debug, Clone)]
pub struct HttpStatuses {
    /// API base, e.g. `https://api.github.com`.
    pub base_url: String,
    /// `owner/name`.
    pub repository: String,
    /// The token (sent as `Authorization: token ...`).
    pub token: String,
}

impl HttpStatuses {
    /// POSTs one status, retrying with exponential backoff (`attempts` tries,
    /// first wait `backoff`). Each request times out after 10 s.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        sha: &str,
        status: &CommitStatus,
        attempts: u32,
        backoff: Duration,
    ) -> Result<(), String> {
        let url = format!(
            "{}/repos/{}/statuses/{sha}",
            self.base_url.trim_end_matches('/'),
            self.repository
        );
        let mut wait = backoff;
        let mut last = String::new();
        for attempt in 1..=attempts.max(1) {
            let res = client
                .post(&url)
                .header("Authorization", format!("token {}", self.token))
                .header("Accept", "application/vnd.github+json")
                .header("User-Agent", concat!("pgcd/", env!("CARGO_PKG_VERSION")))
                .timeout(Duration::from_secs(10))
                .json(status)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                // 4xx other than 429 will not get better by retrying.
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                    return Err(format!("{url}: HTTP {}", r.status()))
                }
                Ok(r) => last = format!("{url}: HTTP {}", r.status()),
                Err(e) => last = format!("{url}: {e}"),
            }
            if attempt < attempts {
                tracing::debug!(attempt, %last, "commit status not delivered; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_the_forges_limit() {
        let long = "x".repeat(500);
        let d = short_description(&long);
        assert!(d.chars().count() < 140);
        assert_eq!(short_description("two\nlines"), "two");
    }

    #[test]
    fn notes_keep_every_context() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let sig = Signature::now("t", "t@t").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let oid = repo
            .commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        let sha = oid.to_string();
        write_note(
            &repo,
            &sha,
            &CommitStatus::new("pgcd/validate", State::Success, "valid", None),
        )
        .unwrap();
        write_note(
            &repo,
            &sha,
            &CommitStatus::new("pgcd/plan", State::Pending, "planning", None),
        )
        .unwrap();
        let all = read_note(&repo, &sha);
        assert_eq!(all.len(), 2);
        assert_eq!(all["pgcd/validate"].state, State::Success);
    }
}
