//! The reporter task: commit statuses are queued here and delivered in the
//! background (notes, then each forge's API with retries), so a slow or dead
//! forge never holds up the source loop.

use super::forges::StatusApi;
use super::git::Mirror;
use super::status::{self, CommitStatus};
use crate::spec::config::Reporters;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Statuses of one commit, and where to send them.
#[derive(Debug, Clone)]
pub struct StatusJob {
    /// The commit.
    pub sha: String,
    /// Its statuses.
    pub statuses: Vec<CommitStatus>,
    /// The reporter settings of the state in force.
    pub reporters: Reporters,
}

/// A handle to the reporter task.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<StatusJob>,
}

impl Reporter {
    /// Starts the task; it writes notes into the mirror at `mirror_dir`.
    pub fn spawn(cancel: CancellationToken, mirror_dir: PathBuf) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<StatusJob>();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let job = tokio::select! {
                    () = cancel.cancelled() => return,
                    job = rx.recv() => match job { Some(j) => j, None => return },
                };
                deliver(&client, &mirror_dir, job).await;
            }
        });
        Self { tx }
    }

    /// Queues a job; never waits.
    pub fn send(&self, job: StatusJob) {
        if self.tx.send(job).is_err() {
            tracing::warn!("reporter stopped; statuses dropped");
        }
    }
}

/// How long a push of the notes may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

async fn deliver(client: &reqwest::Client, mirror_dir: &std::path::Path, job: StatusJob) {
    if job.reporters.git_notes.enabled != Some(false) {
        let dir = mirror_dir.to_path_buf();
        let push = job.reporters.git_notes.push != Some(false);
        let (sha, statuses) = (job.sha.clone(), job.statuses.clone());
        let res = tokio::task::spawn_blocking(move || -> Result<(), String> {
            // The mirror remembers its origin's credentials (references only).
            let mirror = Mirror::reopen(&dir).map_err(|e| e.to_string())?;
            for s in &statuses {
                status::write_note(mirror.repo(), &sha, s).map_err(|e| e.message().to_string())?;
            }
            if push {
                // An origin that refuses pushes keeps the notes local; that is fine.
                if let Err(e) = mirror.push_notes(PUSH_TIMEOUT) {
                    tracing::info!(error = %e, "notes kept locally: the origin did not accept them");
                }
            }
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => tracing::debug!(sha = %job.sha, "statuses written as notes"),
            Ok(Err(e)) => tracing::warn!(sha = %job.sha, error = %e, "cannot write status notes"),
            Err(e) => tracing::warn!(error = %e, "note task failed"),
        }
    }
    for (name, api) in StatusApi::from_reporters(&job.reporters) {
        let api = match api {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(reporter = name, error = %e, "commit statuses skipped");
                continue;
            }
        };
        for s in &job.statuses {
            if let Err(e) = api
                .post(client, &job.sha, s, 5, Duration::from_secs(1))
                .await
            {
                tracing::warn!(reporter = name, sha = %job.sha, context = %s.context, error = %e, "commit status not delivered");
            }
        }
    }
}
