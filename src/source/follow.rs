//! The leader's source loop: wait for a poll tick, a webhook (through etcd)
//! or a file change; look at the remote head; when it moved, fetch, validate
//! and record the revision — the new desired state and its history record in
//! one leader-guarded transaction, so a leader killed half-way leaves
//! nothing half-done and its successor processes the same revision once.
//! Commit statuses go to a reporter task and never hold the loop up.

use super::git::{Mirror, SourceConfig};
use super::records::{self, Applied, FetchState, FetchStatus, RevisionRecord, RevisionState};
use super::report::{Reporter, StatusJob};
use super::status::{CommitStatus, State};
use crate::cluster::election::{LeaderGuard, LeaderService};
use crate::cluster::keys;
use crate::cluster::store::{full_key, to_json};
use crate::cluster::ClusterError;
use crate::spec::{self, Desired};
use crate::state::desired::{items as desired_items, set_digest, InForce, Item};
use etcd_client::{Compare, CompareOp, TxnOp};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Poll interval when neither `source/config` nor `pgcd.yaml` set one.
pub const DEFAULT_POLL: Duration = Duration::from_secs(15);
/// Fetch timeout when neither sets one.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Operations per transaction when storing a desired state (etcd refuses
/// more than 128 by default).
const TXN_OPS: usize = 64;
/// Bytes per transaction, well under etcd's 1.5 MiB request limit.
const TXN_BYTES: usize = 512 * 1024;
/// Test-only fault: the host whose id this names aborts after a fetch,
/// before recording (a real crash at the worst moment; see tests/source_loop.rs).
pub const FAULT_ABORT_AFTER_FETCH: &str = "PGCD_FAULT_ABORT_AFTER_FETCH";

/// The source loop as a leader service.
pub struct Follower {
    data_dir: PathBuf,
    api_url: String,
}

impl Follower {
    /// A follower keeping its mirror under `data_dir/source`; `api_url` is
    /// this agent's API, used in statuses' target URLs.
    pub fn new(data_dir: PathBuf, api_url: String) -> Self {
        Self { data_dir, api_url }
    }
}

impl LeaderService for Follower {
    fn name(&self) -> &'static str {
        "source"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        let dir = self.data_dir.join("source");
        let api = self.api_url.clone();
        async move {
            let mut loop_ = Loop::new(guard, dir, api);
            loop_.run().await;
        }
        .boxed()
    }
}

struct Loop {
    guard: LeaderGuard,
    dir: PathBuf,
    api: String,
    wake: Arc<Notify>,
    reporter: Reporter,
    _watcher: Option<notify::RecommendedWatcher>,
    watched: Option<String>,
    /// The desired state in force, read back from its commit in the mirror.
    applied: Option<(String, Desired)>,
    /// The fetch status last written to `source/status`.
    fetch_status: Option<FetchStatus>,
    /// The digest of every item of the desired state in force in etcd, by
    /// key: a new revision writes only the items whose digest changed.
    stored: Option<BTreeMap<String, String>>,
}

/// What one pass found, for logs and tests.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    Unchanged,
    Recorded(RevisionState),
    /// The remote could not be reached, refused pgcd, or is not who it
    /// claims to be; nothing changed.
    FetchFailed(String),
}

impl Loop {
    fn new(guard: LeaderGuard, dir: PathBuf, api: String) -> Self {
        let reporter = Reporter::spawn(guard.token().clone(), dir.clone());
        Self {
            guard,
            dir,
            api,
            wake: Arc::new(Notify::new()),
            reporter,
            _watcher: None,
            watched: None,
            applied: None,
            fetch_status: None,
            stored: None,
        }
    }

    async fn run(&mut self) {
        tracing::info!("source loop started: following the config repository");
        self.spawn_etcd_wake();
        if let Err(e) = self.migrate_legacy().await {
            tracing::warn!(error = %e, "cannot move the desired state to its per-database keys yet; retrying at the next revision");
        }
        let mut resent = false;
        loop {
            let (cfg, poll) = match self.config().await {
                Ok(c) => c,
                Err(ClusterError::NotLeader) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the source configuration; retrying");
                    (None, Duration::from_secs(2))
                }
            };
            if let Some(cfg) = cfg {
                self.watch_local(&cfg);
                let url = super::remote::redact_url(&cfg.url);
                let fetched = match self.pass(cfg).await {
                    Ok(Pass::Unchanged) => {
                        tracing::trace!("remote head unchanged");
                        Some(Ok(()))
                    }
                    Ok(Pass::Recorded(state)) => {
                        tracing::info!(?state, "revision recorded");
                        Some(Ok(()))
                    }
                    Ok(Pass::FetchFailed(error)) => {
                        tracing::warn!(%error, "cannot fetch the config repository; the desired state in force stays; retrying at the next tick");
                        Some(Err(error))
                    }
                    Err(ClusterError::NotLeader) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "source pass failed; retrying at the next tick");
                        None // not the remote's doing: the fetch status stays
                    }
                };
                if let Some(fetched) = fetched {
                    match self.record_fetch(url, fetched).await {
                        Err(ClusterError::NotLeader) => return,
                        Err(e) => tracing::warn!(error = %e, "cannot record the fetch status"),
                        Ok(()) => {}
                    }
                }
                if !resent {
                    // After the first pass, so the reporter settings in force are known.
                    self.resend_unreported().await;
                    resent = true;
                }
            }
            tokio::select! {
                () = self.guard.token().cancelled() => return,
                () = self.wake.notified() => tracing::debug!("woken"),
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Writes `source/status` when what it says changed.
    async fn record_fetch(
        &mut self,
        url: String,
        res: Result<(), String>,
    ) -> Result<(), ClusterError> {
        let (state, error) = match res {
            Ok(()) => (FetchState::Ok, None),
            Err(e) => (FetchState::Failed, Some(e)),
        };
        let status = FetchStatus {
            state,
            url,
            since: crate::cluster::now_rfc3339(),
            leader: self.guard.host().to_string(),
            error,
        };
        if self
            .fetch_status
            .as_ref()
            .is_some_and(|s| s.same_as(&status))
        {
            return Ok(());
        }
        self.guard
            .put(keys::SOURCE_STATUS, to_json(&status)?)
            .await?;
        self.fetch_status = Some(status);
        Ok(())
    }

    /// The source settings: `source/config`, with the poll interval and
    /// fetch timeout of the desired state's `pgcd.yaml` unless set there.
    async fn config(&self) -> Result<(Option<SourceConfig>, Duration), ClusterError> {
        let store = self.guard.store();
        let cfg: Option<SourceConfig> = store.get_json(keys::SOURCE_CONFIG).await?;
        let mut poll = cfg
            .as_ref()
            .and_then(|c| c.poll_interval.as_deref())
            .and_then(parse_duration);
        if poll.is_none() {
            poll = self
                .applied_desired()
                .and_then(|d| d.config.source.poll_interval.as_ref().map(|p| p.as_std()));
        }
        Ok((cfg, poll.unwrap_or(DEFAULT_POLL)))
    }

    /// The desired state in force (its `pgcd.yaml` settings steer this loop).
    fn applied_desired(&self) -> Option<&Desired> {
        self.applied.as_ref().map(|(_, d)| d)
    }

    fn spawn_etcd_wake(&self) {
        let store = self.guard.store().clone();
        let wake = self.wake.clone();
        let cancel = self.guard.token().clone();
        tokio::spawn(async move {
            let mut client = store.client();
            let Ok(mut stream) = client.watch(full_key(keys::SOURCE_WAKE), None).await else {
                tracing::warn!("cannot watch the wake key; webhooks wait for the next poll");
                return;
            };
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    msg = stream.message() => match msg {
                        Ok(Some(_)) => wake.notify_one(),
                        _ => return,
                    }
                }
            }
        });
    }

    /// A local repository wakes the loop on any change of its refs.
    fn watch_local(&mut self, cfg: &SourceConfig) {
        let path = cfg.url.strip_prefix("file://").unwrap_or(&cfg.url);
        if !path.starts_with('/') || self.watched.as_deref() == Some(path) {
            return;
        }
        use notify::Watcher;
        let wake = self.wake.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Only a change of the refs is a push. Reading the repository
            // (the fetch itself opens its files) must not wake the loop, or
            // every fetch would wake the next one.
            if res.is_ok_and(|e| {
                matches!(
                    e.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(_)
                        | notify::EventKind::Remove(_)
                )
            }) {
                wake.notify_one();
            }
        });
        match watcher {
            Ok(mut w) => {
                let root = std::path::Path::new(path);
                let git_dir = if root.join(".git").is_dir() {
                    root.join(".git")
                } else {
                    root.to_path_buf()
                };
                let ok = w
                    .watch(&git_dir.join("refs"), notify::RecursiveMode::Recursive)
                    .is_ok();
                let _ = w.watch(&git_dir, notify::RecursiveMode::NonRecursive); // packed-refs
                if ok {
                    tracing::info!(path, "watching the local repository for pushes");
                    self._watcher = Some(w);
                    self.watched = Some(path.to_string());
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch the local repository; polling only"),
        }
    }

    async fn pass(&mut self, cfg: SourceConfig) -> Result<Pass, ClusterError> {
        let timeout = cfg
            .fetch_timeout
            .as_deref()
            .and_then(parse_duration)
            .unwrap_or(DEFAULT_FETCH_TIMEOUT);
        let dir = self.dir.clone();
        let branch_ref = format!("refs/heads/{}", cfg.branch);
        let applied: Option<Applied> = self.guard.store().get_json(keys::SOURCE_APPLIED).await?;
        let cached = self.applied.take();

        // Fetch and read off the runtime: git2 blocks.
        let cfg2 = cfg.clone();
        let want = applied.as_ref().map(|a| a.sha.clone());
        let (cached, fetched) =
            tokio::task::spawn_blocking(move || fetch_and_read(&dir, cfg2, timeout, want, cached))
                .await
                .map_err(|e| ClusterError::Other(format!("fetch task failed: {e}")))?;
        self.applied = cached;
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) => return Ok(Pass::FetchFailed(e.to_string())),
        };
        let desired = self.applied.as_ref().map(|(_, d)| d.clone());
        let signers = desired
            .as_ref()
            .filter(|d| d.config.source.require_signed_commits == Some(true))
            .map(|d| d.config.source.allowed_signers.clone());
        if std::env::var(FAULT_ABORT_AFTER_FETCH).is_ok_and(|h| h == self.guard.host().as_str()) {
            tracing::error!("fault injection: aborting after fetch, before recording");
            std::process::abort();
        }

        let mut outcome = Pass::Unchanged;
        for rev in fetched {
            if self
                .guard
                .store()
                .get(&keys::revision(&rev.info.sha))
                .await?
                .is_some()
            {
                continue; // processed already (by this leader or a predecessor)
            }
            let tracked = rev.git_ref == branch_ref;
            if tracked && applied.as_ref().is_some_and(|a| a.sha == rev.info.sha) {
                continue;
            }
            let span =
                tracing::info_span!("revision", revision = %rev.info.sha, git_ref = %rev.git_ref);
            let state = tracing::Instrument::instrument(
                self.record(rev, tracked, signers.as_deref(), desired.as_ref()),
                span,
            )
            .await?;
            outcome = Pass::Recorded(state);
            self.applied = None; // re-read the state in force at the next pass
        }
        Ok(outcome)
    }

    /// Validates one fetched revision and records it (and, when it is the
    /// tracked branch and valid, the new desired state) in one guarded txn.
    async fn record(
        &mut self,
        rev: Fetched,
        tracked: bool,
        signers: Option<&[String]>,
        current: Option<&Desired>,
    ) -> Result<RevisionState, ClusterError> {
        let sha = rev.info.sha.clone();
        let mut record = RevisionRecord {
            sha: sha.clone(),
            git_ref: rev.git_ref.clone(),
            author: rev.info.author.clone(),
            subject: rev.info.subject.clone(),
            committed_at: chrono::DateTime::from_timestamp(rev.info.time, 0)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
            fetched_at: crate::cluster::now_rfc3339(),
            leader: self.guard.host().to_string(),
            state: RevisionState::Failed,
            summary: String::new(),
            errors: Vec::new(),
            reported: false,
            plan: None,
            refused: Vec::new(),
        };
        let mut desired = None;
        match (&rev.files, &rev.signature) {
            (Err(e), _) => {
                record.summary = short(&format!("cannot read the commit: {e}"));
            }
            (_, Some(Err(why))) if signers.is_some() => {
                record.state = RevisionState::Rejected;
                record.summary = short(&format!("not applied: {why}"));
            }
            (Ok(files), _) => match spec::load_checked(
                files,
                &spec::images::ImageCatalog::read_dir(&spec::images::ImageCatalog::default_dir()),
            ) {
                Ok(d) => {
                    record.state = if tracked {
                        RevisionState::Applied
                    } else {
                        RevisionState::PlannedOnly
                    };
                    record.summary = short(&summary(&d, current));
                    // The plan against the cluster as observed now: what a
                    // merge would do (the pgcd/plan status).
                    if let Ok(actual) = crate::state::assemble::actual(self.guard.store()).await {
                        let p = crate::plan::plan(&d, &actual);
                        record.refused = p
                            .notes
                            .iter()
                            .filter(|n| n.kind == crate::plan::NoteKind::Refused)
                            .map(|n| n.message.clone())
                            .collect();
                        record.plan = Some(p.summary());
                    }
                    desired = Some(d);
                }
                Err(errors) => {
                    record.summary =
                        short(&format!("{} error(s); first: {}", errors.len(), errors[0]));
                    record.errors = errors;
                }
            },
        }
        // A valid revision's own pgcd.yaml says where its statuses go.
        let reporters = desired.as_ref().map(|d| d.config.reporters.clone());
        let mut ops = vec![TxnOp::put(
            full_key(&keys::revision(&sha)),
            to_json(&record)?,
            None,
        )];
        if tracked {
            if let (RevisionState::Applied, Some(d)) = (record.state, desired) {
                let applied = Applied {
                    sha: sha.clone(),
                    at: record.fetched_at.clone(),
                };
                let settings = records::Settings {
                    webhook_secret: d.config.source.webhook_secret.clone(),
                    plan_refs: d.config.source.plan_refs.clone(),
                };
                ops.push(TxnOp::put(
                    full_key(keys::SOURCE_SETTINGS),
                    to_json(&settings)?,
                    None,
                ));
                let in_force = self.store_items(&sha, &d).await?;
                ops.push(TxnOp::put(
                    full_key(keys::DESIRED_REVISION),
                    to_json(&in_force)?,
                    None,
                ));
                ops.push(TxnOp::put(
                    full_key(keys::SOURCE_APPLIED),
                    to_json(&applied)?,
                    None,
                ));
                let audit = crate::state::audit::AuditRecord {
                    sha: sha.clone(),
                    author: record.author.clone(),
                    subject: record.subject.clone(),
                    committed_at: record.committed_at.clone(),
                    in_force_at: record.fetched_at.clone(),
                    leader: record.leader.clone(),
                    signature_required: signers.is_some(),
                    signer: rev
                        .signature
                        .as_ref()
                        .and_then(|s| s.as_ref().ok())
                        .cloned(),
                    plan: record.plan.clone(),
                    steps: Vec::new(),
                    steps_dropped: 0,
                };
                ops.push(TxnOp::put(
                    full_key(&keys::audit(&sha)),
                    to_json(&audit)?,
                    None,
                ));
                if let Some(prev) = self.previous_applied().await? {
                    ops.push(TxnOp::put(
                        full_key(&keys::revision(&prev.sha)),
                        to_json(&prev)?,
                        None,
                    ));
                }
            }
        }
        // Only if nobody recorded this revision meanwhile: exactly once.
        let absent = Compare::version(full_key(&keys::revision(&sha)), CompareOp::Equal, 0);
        let resp = self.guard.txn(vec![absent], ops, vec![]).await?;
        if !resp.succeeded() {
            // Recorded by a predecessor meanwhile: what is in force is theirs.
            self.stored = None;
            return Ok(record.state);
        }
        tracing::info!(revision = %sha, git_ref = %record.git_ref, state = ?record.state, summary = %record.summary, "revision recorded");
        self.report(&record, tracked, reporters).await?;
        Ok(record.state)
    }

    /// Writes the items of `desired` that differ from those in force (and
    /// deletes those it no longer has), in transactions of bounded size;
    /// returns the revision record to write last, which puts them in force.
    /// Until then readers keep the revision in force (its record's digest
    /// does not match the items).
    async fn store_items(&mut self, sha: &str, desired: &Desired) -> Result<InForce, ClusterError> {
        let old = match self.stored.take() {
            Some(d) => d,
            None => self.stored_digests().await?,
        };
        let items = desired_items(desired);
        let mut ops: Vec<TxnOp> = Vec::new();
        let mut bytes = 0usize;
        let mut written = (0usize, 0usize);
        for (key, item) in &items {
            if old.get(key) == Some(&item.digest) {
                continue;
            }
            let value = to_json(item)?;
            bytes += value.len() + key.len();
            written.0 += 1;
            written.1 += value.len() + key.len();
            ops.push(TxnOp::put(full_key(key), value, None));
            if ops.len() >= TXN_OPS || bytes >= TXN_BYTES {
                self.guard
                    .txn(vec![], std::mem::take(&mut ops), vec![])
                    .await?;
                bytes = 0;
            }
        }
        for key in old.keys().filter(|k| !items.contains_key(*k)) {
            written.0 += 1;
            ops.push(TxnOp::delete(full_key(key), None));
            if ops.len() >= TXN_OPS {
                self.guard
                    .txn(vec![], std::mem::take(&mut ops), vec![])
                    .await?;
            }
        }
        if !ops.is_empty() {
            self.guard.txn(vec![], ops, vec![]).await?;
        }
        let digests: BTreeMap<String, String> = items
            .iter()
            .map(|(k, i)| (k.clone(), i.digest.clone()))
            .collect();
        let in_force = InForce {
            revision: sha.to_string(),
            recorded_at: crate::cluster::now_rfc3339(),
            set_digest: set_digest(digests.iter().map(|(k, d)| (k, d.as_str()))),
            databases: desired.databases.len(),
            operations: desired.operations.len(),
        };
        tracing::info!(
            revision = %sha,
            items = items.len(),
            written = written.0,
            bytes = written.1,
            "desired state stored: only the items that changed were written"
        );
        self.stored = Some(digests);
        Ok(in_force)
    }

    /// The digests of the items in etcd now (every key under `desired/`).
    async fn stored_digests(&self) -> Result<BTreeMap<String, String>, ClusterError> {
        let (entries, _) = self
            .guard
            .store()
            .get_prefix_paged(keys::DESIRED, 0)
            .await?;
        Ok(entries
            .iter()
            .filter(|e| e.key != keys::DESIRED_REVISION)
            .filter_map(|e| Some((e.key.clone(), e.json::<Item>().ok()?.digest)))
            .collect())
    }

    /// A cluster that ran an older pgcd holds the desired state in one
    /// value (`desired`): store it per item and delete the old value.
    async fn migrate_legacy(&mut self) -> Result<(), ClusterError> {
        let store = self.guard.store().clone();
        if store.get(keys::DESIRED_REVISION).await?.is_some() {
            return Ok(());
        }
        let Some(old) = store.get(keys::DESIRED_LEGACY).await? else {
            return Ok(());
        };
        let v: serde_json::Value = old.json()?;
        let sha = v
            .get("revision")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string();
        let desired = Desired::from_json(v.get("desired").unwrap_or(&serde_json::Value::Null))
            .map_err(ClusterError::Other)?;
        let in_force = self.store_items(&sha, &desired).await?;
        self.guard
            .txn(
                vec![],
                vec![
                    TxnOp::put(full_key(keys::DESIRED_REVISION), to_json(&in_force)?, None),
                    TxnOp::delete(full_key(keys::DESIRED_LEGACY), None),
                ],
                vec![],
            )
            .await?;
        tracing::info!(revision = %sha, "the desired state in force now has a key per database");
        Ok(())
    }

    /// The record of the revision in force, marked superseded.
    async fn previous_applied(&self) -> Result<Option<RevisionRecord>, ClusterError> {
        let Some(applied) = self
            .guard
            .store()
            .get_json::<Applied>(keys::SOURCE_APPLIED)
            .await?
        else {
            return Ok(None);
        };
        let prev: Option<RevisionRecord> = self
            .guard
            .store()
            .get_json(&keys::revision(&applied.sha))
            .await?;
        Ok(prev.map(|mut p| {
            p.state = RevisionState::Superseded;
            p
        }))
    }

    async fn report(
        &self,
        record: &RevisionRecord,
        tracked: bool,
        reporters: Option<crate::spec::config::Reporters>,
    ) -> Result<(), ClusterError> {
        let url = Some(format!(
            "{}/v1/revisions/{}",
            self.api.trim_end_matches('/'),
            record.sha
        ));
        let mut statuses = Vec::new();
        let validate = match record.state {
            RevisionState::Applied | RevisionState::PlannedOnly | RevisionState::Superseded => {
                CommitStatus::new(
                    "pgcd/validate",
                    State::Success,
                    &record.summary,
                    url.clone(),
                )
            }
            RevisionState::Failed => CommitStatus::new(
                "pgcd/validate",
                State::Failure,
                &record.summary,
                url.clone(),
            ),
            RevisionState::Rejected => {
                CommitStatus::new("pgcd/validate", State::Error, &record.summary, url.clone())
            }
        };
        statuses.push(validate);
        if record.state == RevisionState::PlannedOnly
            || (tracked && record.state == RevisionState::Applied)
        {
            statuses.push(match record.refused.first() {
                Some(why) => CommitStatus::new(
                    "pgcd/plan",
                    State::Failure,
                    &format!("refused: {why}"),
                    url.clone(),
                ),
                None => CommitStatus::new(
                    "pgcd/plan",
                    State::Success,
                    record.plan.as_deref().unwrap_or(&record.summary),
                    url.clone(),
                ),
            });
        }
        if tracked && record.state == RevisionState::Applied {
            statuses.push(CommitStatus::new(
                "pgcd/apply",
                State::Pending,
                "desired state recorded; waiting for the reconciler",
                url,
            ));
        }
        let settings = reporters
            .or_else(|| self.applied_desired().map(|d| d.config.reporters.clone()))
            .unwrap_or_default();
        self.reporter.send(StatusJob {
            sha: record.sha.clone(),
            statuses,
            reporters: settings,
        });
        let mut done = record.clone();
        done.reported = true;
        let key = full_key(&keys::revision(&record.sha));
        self.guard
            .txn(vec![], vec![TxnOp::put(key, to_json(&done)?, None)], vec![])
            .await?;
        Ok(())
    }

    /// A predecessor may have died between recording and reporting.
    async fn resend_unreported(&self) {
        let Ok((entries, _)) = self.guard.store().get_prefix(keys::REVISIONS).await else {
            return;
        };
        for e in entries {
            if let Ok(r) = e.json::<RevisionRecord>() {
                if !r.reported {
                    let tracked = r.git_ref.starts_with("refs/heads/")
                        && r.state != RevisionState::PlannedOnly;
                    let _ = self.report(&r, tracked, None).await;
                }
            }
        }
    }
}

/// The desired state in force and its commit, as cached by the loop.
type Cached = Option<(String, Desired)>;
/// The heads a pass fetched.
type FetchResult = Result<Vec<Fetched>, super::git::GitError>;

/// One fetched head.
struct Fetched {
    git_ref: String,
    info: super::git::CommitInfo,
    files: Result<Vec<spec::SourceFile>, super::git::GitError>,
    signature: Option<Result<String, String>>,
}

/// Fetches the tracked branch and the plan refs, reads back the desired
/// state in force (`want`, unless `cached` already holds it) and every new
/// head's files and signature.
fn fetch_and_read(
    dir: &std::path::Path,
    cfg: SourceConfig,
    timeout: Duration,
    want: Option<String>,
    cached: Option<(String, Desired)>,
) -> (Cached, FetchResult) {
    let mirror = match Mirror::open(dir, cfg) {
        Ok(m) => m,
        Err(e) => return (cached, Err(e)),
    };
    let tracked = format!("refs/heads/{}", mirror.config().branch);
    let head = match mirror.fetch(&[], timeout) {
        Ok(h) => h,
        Err(e) => return (cached, Err(e)),
    };
    let cached = match (want, cached) {
        (Some(sha), Some((have, d))) if sha == have => Some((have, d)),
        (Some(sha), _) => git2::Oid::from_str(&sha)
            .ok()
            .and_then(|oid| mirror.read_specs(oid).ok())
            .and_then(|files| spec::load(&files).ok())
            .map(|d| (sha, d)),
        (None, _) => None,
    };
    let settings = cached
        .as_ref()
        .map(|(_, d)| d.config.source.clone())
        .unwrap_or_default();
    let mut heads = vec![(tracked.clone(), head)];
    if !settings.plan_refs.is_empty() {
        match mirror.fetch_plan_refs(&settings.plan_refs, timeout) {
            Ok(more) => heads.extend(more.into_iter().filter(|(name, _)| *name != tracked)),
            Err(e) => tracing::warn!(error = %e, "cannot fetch the plan refs"),
        }
    }
    let git_dir = mirror.repo().path().to_path_buf();
    let fetched = heads
        .into_iter()
        .filter_map(|(git_ref, oid)| {
            let info = mirror.commit_info(oid).ok()?;
            let signature = settings
                .require_signed_commits
                .filter(|r| *r)
                .map(|_| super::signing::verify(&git_dir, &info.sha, &settings.allowed_signers));
            Some(Fetched {
                git_ref,
                info,
                files: mirror.read_specs(oid),
                signature,
            })
        })
        .collect();
    (cached, Ok(fetched))
}

/// One line: what the revision holds and what it changes against the
/// state in force (the same text `pgcd plan` prints).
pub fn summary(d: &Desired, current: Option<&Desired>) -> String {
    let old = current.and_then(|c| serde_json::to_value(c).ok());
    let plan = spec::diff::diff(d, old.as_ref());
    format!(
        "valid: {} databases, {} operations; plan: {plan}",
        d.databases.len(),
        d.operations.len()
    )
}

fn short(s: &str) -> String {
    super::status::short_description(s)
}

fn parse_duration(s: &str) -> Option<Duration> {
    spec::values::duration_ms(s).map(Duration::from_millis)
}
