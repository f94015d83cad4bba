//! The `pgcd/apply` commit status of the revision in force: success once
//! every database of its spec is Ready, failure while one is Stalled, sent
//! once per change of outcome through the source's reporter (Git notes,
//! forges' status APIs), never holding the reconciler up.

use super::status::{ConditionType as C, DatabaseStatus};
use crate::cluster::election::LeaderGuard;
use crate::source::report::{Reporter, StatusJob};
use crate::source::status::{CommitStatus, State};
use crate::spec::database::DatabaseState;
use crate::state::desired::Snapshot;
use std::collections::HashMap;
use std::path::PathBuf;

/// Sends `pgcd/apply` when its outcome changes.
pub struct ApplyReporter {
    reporter: Reporter,
    api: String,
    sent: Option<(String, State)>,
}

impl ApplyReporter {
    /// A reporter writing notes into the mirror at `mirror_dir`, with
    /// status links pointing at `api`.
    pub fn new(guard: &LeaderGuard, mirror_dir: PathBuf, api: String) -> Self {
        Self {
            reporter: Reporter::spawn(guard.token().clone(), mirror_dir),
            api,
            sent: None,
        }
    }

    /// Reports the revision's outcome if it changed; returns how many of
    /// its databases are Ready and how many Stalled.
    pub fn report(
        &mut self,
        snap: &Snapshot,
        statuses: &HashMap<String, DatabaseStatus>,
    ) -> (usize, usize) {
        let names: Vec<&str> = snap
            .desired
            .databases
            .iter()
            .filter(|d| d.state != Some(DatabaseState::Absent))
            .map(|d| d.database_name.as_str())
            .collect();
        let of = |n: &str| statuses.get(n);
        let ready_n = names
            .iter()
            .filter(|n| of(n).is_some_and(|s| s.is(C::Ready)))
            .count();
        let stalled: Vec<&DatabaseStatus> = names
            .iter()
            .filter_map(|n| of(n))
            .filter(|s| s.is(C::Stalled))
            .collect();
        let (state, description) = if let Some(s) = stalled.first() {
            let why = s
                .condition(C::Stalled)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            (State::Failure, format!("{} stalled: {why}", s.name))
        } else if ready_n == names.len() {
            let degraded = names
                .iter()
                .filter(|n| of(n).is_some_and(|s| s.is(C::Degraded)))
                .count();
            let mut d = format!("carried out: {} database(s) Ready", names.len());
            if degraded > 0 {
                d.push_str(&format!(", {degraded} Degraded (see notes)"));
            }
            (State::Success, d)
        } else {
            return (ready_n, stalled.len());
        };
        if self.sent.as_ref() == Some(&(snap.revision.clone(), state)) {
            return (ready_n, stalled.len());
        }
        self.sent = Some((snap.revision.clone(), state));
        self.reporter.send(StatusJob {
            sha: snap.revision.clone(),
            statuses: vec![CommitStatus::new(
                "pgcd/apply",
                state,
                &description,
                Some(format!("{}/v1/databases", self.api.trim_end_matches('/'))),
            )],
            reporters: snap.desired.config.reporters.clone(),
        });
        (ready_n, stalled.len())
    }
}
