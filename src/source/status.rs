//! Commit statuses: `pgcd/validate`, `pgcd/plan`, `pgcd/apply` on the commit
//! they are about, through Git notes (`refs/notes/pgcd`, any Git server) and
//! the forges' statuses APIs (`forges`).

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

/// The GitHub-compatible statuses API (GitHub, Gitea, Forgejo).
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
        super::forges::StatusApi::Github {
            base_url: self.base_url.clone(),
            repository: self.repository.clone(),
            token: self.token.clone(),
        }
        .post(client, sha, status, attempts, backoff)
        .await
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
