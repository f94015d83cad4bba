//! What the source loop keeps in etcd: the desired state in force, the
//! revision it came from, and the history of revisions with their outcome.

use crate::spec::Diagnostic;
use serde::{Deserialize, Serialize};

/// What became of a revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionState {
    /// Valid; its desired state is the one in force.
    Applied,
    /// Valid and was in force, until a newer revision replaced it.
    Superseded,
    /// Did not parse or validate; nothing changed. `errors` says why.
    Failed,
    /// Not signed by an allowed key while signatures are required; nothing changed.
    Rejected,
    /// A plan ref (branch, pull request): validated and planned, never applied.
    PlannedOnly,
}

/// One revision as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// Full commit id.
    pub sha: String,
    /// The ref it was fetched from (`refs/heads/main`, `refs/pull/7/head`).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `Name <email>`.
    pub author: String,
    /// First line of the message.
    pub subject: String,
    /// Commit time (RFC 3339).
    pub committed_at: String,
    /// When the leader fetched it (RFC 3339).
    pub fetched_at: String,
    /// Which leader processed it.
    pub leader: String,
    /// The outcome.
    pub state: RevisionState,
    /// One line: what it holds or what is wrong.
    pub summary: String,
    /// Every validation error (empty unless failed).
    #[serde(default)]
    pub errors: Vec<Diagnostic>,
    /// Whether its commit statuses were delivered to the reporters' queue.
    #[serde(default)]
    pub reported: bool,
    /// The summary of its plan against the live cluster when it was
    /// recorded (valid revisions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// What its plan refuses to carry out (a minor downgrade): the
    /// `pgcd/plan` status fails with it. The validator cannot see what
    /// runs, so this is where such a change is caught.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// `source/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Where the webhook secret is on each host.
    #[serde(default)]
    pub webhook_secret: Option<crate::spec::secret::SecretRef>,
    /// Refs that are planned, not applied.
    #[serde(default)]
    pub plan_refs: Vec<String>,
}

/// `source/applied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The commit in force.
    pub sha: String,
    /// When it was recorded.
    pub at: String,
}

/// Whether the leader can reach the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchState {
    /// The last look at the remote worked.
    Ok,
    /// The last look failed (`error` says why); the desired state in force stays.
    Failed,
}

/// `source/status`: how the leader's last look at the remote went. It is
/// written when the state or the error changes, not on every poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchStatus {
    /// Ok or failed.
    pub state: FetchState,
    /// The remote (a password in the URL shown as `***`).
    pub url: String,
    /// Since when (RFC 3339) it has been in this state with this error.
    pub since: String,
    /// The leader that looked.
    pub leader: String,
    /// Why the fetch failed, with what to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FetchStatus {
    /// Whether two statuses say the same (their times aside).
    pub fn same_as(&self, other: &Self) -> bool {
        self.state == other.state
            && self.url == other.url
            && self.error == other.error
            && self.leader == other.leader
    }
}
