//! The reconciler: the leader service that keeps running PostgreSQL equal
//! to the desired state in force. In the manner of kube-rs's controller
//! runtime:
//! - it watches etcd (the desired state, the agents' observations, hosts,
//!   operations' records, tasks) through one reflector and never polls;
//! - on any change, and every resync interval, it plans the whole cluster
//!   (a pure function, cheap) and hands each database its slice;
//! - each database has its own worker, requeue and backoff: a database
//!   whose step runs for minutes never delays another; a `scripts` list
//!   that failed is held, not retried, until the database's spec changes
//!   (its status keeps the hold, for the next leader too);
//! - every status is derived by a pure function (`conditions`) and written
//!   only when it changed, so an idle cluster writes nothing.
//!
//! The planner alone decides, operations included; workers only carry out
//! (omicron's reconfigurator).

mod audit;
pub mod conditions;
mod dispatch;
mod operations;
mod primaries;
mod report;
pub mod status;
mod worker;

use crate::backoff::Backoff;
use crate::cluster::election::{LeaderGuard, LeaderService};
use crate::cluster::keys;
use crate::cluster::reflector::{self, Change, Update};
use crate::cluster::store::{full_key, to_json};
use crate::cluster::tasks::{TaskSpec, TaskState, TaskStatus};
use crate::cluster::{now_rfc3339, ClusterError};
use crate::plan::Plan;
use crate::spec::names::DatabaseName;
use crate::state::assemble::{ActualCache, PREFIXES};
use crate::state::desired::{DesiredCache, Snapshot};
use crate::state::InstanceActual;
use conditions::{Activity, Inputs};
use futures::future::BoxFuture;
use futures::FutureExt;
use status::{DatabaseStatus, ReconcilerStats};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::Instrument;
use worker::{Batch, BatchOutcome, Shared};

/// How many steps run at once on one host, by default: measured on the
/// demo's hosts (`bench/reconcile.md`), more than this only queues work in
/// Docker and PostgreSQL start-up on two cores.
pub const DEFAULT_STEPS_PER_HOST: usize = 4;

/// Changes that arrive within this long of one another are planned together.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The reconciler service.
pub struct Reconciler {
    resync: Duration,
    mirror_dir: PathBuf,
    api: String,
    steps_per_host: usize,
}

impl Reconciler {
    /// A reconciler that also plans every `resync` (to find drift),
    /// reporting the `pgcd/apply` commit status through the Git mirror at
    /// `mirror_dir` (status links point at `api`), with at most
    /// `steps_per_host` steps at once on a host.
    pub fn new(resync: Duration, mirror_dir: PathBuf, api: String, steps_per_host: usize) -> Self {
        Self {
            resync,
            mirror_dir,
            api,
            steps_per_host,
        }
    }
}

impl LeaderService for Reconciler {
    fn name(&self) -> &'static str {
        "reconciler"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        let reporter =
            report::ApplyReporter::new(&guard, self.mirror_dir.clone(), self.api.clone());
        let (resync, per_host) = (self.resync, self.steps_per_host);
        async move {
            let mut s = Supervisor::new(guard, resync, per_host, reporter).await;
            s.run().await;
        }
        .boxed()
    }
}

/// What the supervisor knows of one database's worker.
struct DbState {
    /// A batch runs now.
    running: bool,
    /// A failover's batch runs now (beside the other, if any).
    urgent: bool,
    /// A batch ended since the status was last derived.
    last: Option<BatchOutcome>,
    /// The last batch's failure, until a batch succeeds.
    failed: Option<String>,
    /// The plain steps of the last batch that succeeded ([`same_step`]).
    last_ok: BTreeSet<String>,
    /// How many successful batches in a row had exactly those steps.
    repeats: u32,
    /// Retries after failures (or steps that keep coming back).
    backoff: Backoff,
    /// Not before this time (backoff).
    not_before: Option<Instant>,
    /// A failure not retried until the spec changes (a `scripts` list).
    held: Option<status::Held>,
    /// The digest of the spec the running batch was planned from.
    planned_spec: Option<String>,
}

impl Default for DbState {
    fn default() -> Self {
        Self {
            running: false,
            urgent: false,
            last: None,
            failed: None,
            last_ok: BTreeSet::new(),
            repeats: 0,
            backoff: Backoff::step(),
            not_before: None,
            held: None,
            planned_spec: None,
        }
    }
}

/// Something the supervisor reacts to.
enum Event {
    /// etcd changed.
    Etcd(Update),
    /// A database's batch ended.
    Done(BatchOutcome),
    /// A database's failover batch ended.
    UrgentDone(BatchOutcome),
    /// A predecessor's step on the database ended.
    Inherited(String),
    /// A restore rehearsal's step ended (its operation id).
    Rehearsed(String),
}

struct Supervisor {
    guard: LeaderGuard,
    shared: Arc<Shared>,
    reporter: report::ApplyReporter,
    resync: Duration,
    desired: DesiredCache,
    actual: ActualCache,
    statuses: HashMap<String, DatabaseStatus>,
    dbs: HashMap<String, DbState>,
    /// Databases whose predecessor's steps still run.
    inherited: BTreeMap<String, usize>,
    /// The restore rehearsals running beside the databases' workers, by
    /// operation id.
    rehearsing: BTreeSet<String>,
    stats: ReconcilerStats,
    stats_written: ReconcilerStats,
    stats_flushed: Instant,
    /// The revision last written to `status/revision`.
    status_revision: Option<String>,
    events_tx: mpsc::Sender<Event>,
    events: mpsc::Receiver<Event>,
    /// The etcd reflector has listed everything at least once.
    listed: bool,
    /// How long the steps clients feel took (`reconcile/durations`): the
    /// leader's own, read once when it takes over.
    durations: crate::state::durations::StepDurations,
}

impl Supervisor {
    async fn new(
        guard: LeaderGuard,
        resync: Duration,
        per_host: usize,
        reporter: report::ApplyReporter,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(1024);
        let stats: ReconcilerStats = guard
            .store()
            .get_json(keys::RECONCILER_STATS)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let durations = guard
            .store()
            .get_json(keys::DURATIONS)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let shared = Arc::new(Shared {
            dispatcher: dispatch::Dispatcher::new(guard.clone(), per_host),
            recorder: operations::Recorder::new(guard.clone()),
            guard: guard.clone(),
        });
        Self {
            shared,
            reporter,
            resync,
            desired: DesiredCache::default(),
            actual: ActualCache::default(),
            statuses: HashMap::new(),
            dbs: HashMap::new(),
            inherited: BTreeMap::new(),
            rehearsing: BTreeSet::new(),
            stats_written: stats.clone(),
            stats,
            stats_flushed: Instant::now(),
            status_revision: None,
            events_tx,
            events,
            listed: false,
            durations,
            guard,
        }
    }

    async fn run(&mut self) {
        self.stats.leader = self.guard.host().to_string();
        if let Ok((entries, _)) = self
            .guard
            .store()
            .get_prefix_paged(keys::DATABASE_STATUS, 0)
            .await
        {
            for e in entries {
                if let Ok(s) = e.json::<DatabaseStatus>() {
                    // A predecessor's hold stands: its scripts do not run
                    // again because the leader changed.
                    if let Some(h) = &s.held {
                        let st = self.dbs.entry(s.name.clone()).or_default();
                        st.failed = Some(h.failure.clone());
                        st.held = Some(h.clone());
                    }
                    self.statuses.insert(s.name.clone(), s);
                }
            }
        }
        let mut prefixes: Vec<&str> = vec![keys::DESIRED];
        prefixes.extend(PREFIXES);
        let mut updates = reflector::spawn_many(
            self.guard.store().clone(),
            &prefixes,
            &[keys::TASKS],
            self.guard.token().clone(),
        );
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            while let Some(u) = updates.recv().await {
                if tx.send(Event::Etcd(u)).await.is_err() {
                    return;
                }
            }
        });
        if let Err(ClusterError::NotLeader) = self.adopt_inflight().await {
            return;
        }
        let mut resync = tokio::time::interval(self.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.next_wake();
            let first = tokio::select! {
                () = self.guard.token().cancelled() => return,
                e = self.events.recv() => match e { Some(e) => Some(e), None => return },
                _ = resync.tick() => None,
                () = sleep_until(wake) => None,
            };
            if let Some(e) = first {
                self.handle(e).await;
                // Gather what arrives together into one pass.
                let until = tokio::time::Instant::now() + DEBOUNCE;
                loop {
                    let more = tokio::select! {
                        () = tokio::time::sleep_until(until) => None,
                        e = self.events.recv() => e,
                    };
                    match more {
                        Some(e) => self.handle(e).await,
                        None => break,
                    }
                }
            }
            if !self.listed {
                continue;
            }
            match self.pass().await {
                Ok(()) => {}
                Err(ClusterError::NotLeader) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile pass failed; the next change or resync tries again")
                }
            }
        }
    }

    async fn handle(&mut self, e: Event) {
        match e {
            Event::Etcd(u) => self.apply(u).await,
            Event::Done(outcome) => {
                self.record_durations(&outcome).await;
                self.batch_ended(outcome);
            }
            Event::UrgentDone(outcome) => {
                self.record_durations(&outcome).await;
                let st = self.dbs.entry(outcome.database.to_string()).or_default();
                st.urgent = false;
                self.count_steps(&outcome);
            }
            Event::Rehearsed(id) => {
                self.rehearsing.remove(&id);
            }
            Event::Inherited(db) => {
                if let Some(n) = self.inherited.get_mut(&db) {
                    *n -= 1;
                    if *n == 0 {
                        self.inherited.remove(&db);
                    }
                }
            }
        }
    }

    /// Records how long each step clients feel took, for the impact plan's
    /// estimates; written only when such a step ran (an idle leader writes
    /// nothing). A failed write is logged: the estimates are advice.
    async fn record_durations(&mut self, outcome: &BatchOutcome) {
        let mut any = false;
        for o in outcome.outcomes.iter().filter(|o| o.error.is_none()) {
            if let Some(kind) = crate::plan::impact::kind(&o.step.action) {
                self.durations.record(kind, o.seconds);
                any = true;
            }
        }
        if !any || outcome.deposed {
            return;
        }
        let json = serde_json::to_vec(&self.durations).unwrap_or_default();
        if let Err(e) = self.guard.put(keys::DURATIONS, json).await {
            tracing::warn!(error = %e, "cannot record step durations; the impact plan keeps older estimates");
        }
    }

    /// Applies an etcd update to the caches, then tells task waiters (in
    /// this order: a task's end is seen after what its agent observed).
    async fn apply(&mut self, u: Update) {
        let reset = matches!(u, Update::Reset { .. });
        let mut by_prefix: BTreeMap<&str, Vec<Change>> = BTreeMap::new();
        let mut tasks = Vec::new();
        let (changes, revision) = match u {
            Update::Reset { entries, revision } => {
                (entries.into_iter().map(Change::Put).collect(), revision)
            }
            Update::Changes { changes, revision } => (changes, revision),
        };
        for c in changes {
            let key = match &c {
                Change::Put(e) => e.key.as_str(),
                Change::Delete(k) => k.as_str(),
            };
            if key.starts_with(keys::TASKS) {
                tasks.push(c);
                continue;
            }
            let prefix = std::iter::once(keys::DESIRED)
                .chain(PREFIXES)
                .find(|p| key.starts_with(p));
            if let Some(p) = prefix {
                by_prefix.entry(p).or_default().push(c);
            }
        }
        if reset {
            for p in std::iter::once(keys::DESIRED).chain(PREFIXES) {
                let entries = by_prefix
                    .remove(p)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| match c {
                        Change::Put(e) => Some(e),
                        Change::Delete(_) => None,
                    })
                    .collect();
                self.feed(p, Update::Reset { entries, revision });
            }
            self.listed = true;
            self.shared.dispatcher.refresh().await;
        } else {
            for (p, changes) in by_prefix {
                self.feed(p, Update::Changes { changes, revision });
            }
        }
        for c in tasks {
            if let Change::Put(e) = c {
                self.shared.dispatcher.task_changed(&e);
            }
        }
    }

    fn feed(&mut self, prefix: &str, u: Update) {
        if prefix == keys::DESIRED {
            match self.desired.apply(u) {
                Ok(true) => {
                    if let Some(s) = self.desired.in_force() {
                        tracing::info!(revision = %s.revision, databases = s.desired.databases.len(), "a new revision is in force");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the desired state in force is unreadable; keeping the last one read")
                }
            }
        } else {
            self.actual.apply(prefix, u);
        }
    }

    /// A predecessor's steps that still run on live hosts: their databases
    /// wait for them, so no step runs twice at once on an instance (a dead
    /// host's runner fails its interrupted tasks when it comes back).
    async fn adopt_inflight(&mut self) -> Result<(), ClusterError> {
        let store = self.guard.store().clone();
        let (hosts, _) = store.get_prefix_paged(keys::HOSTS, 0).await?;
        let live: BTreeSet<&str> = hosts
            .iter()
            .filter_map(|e| keys::host_id_of_record(&e.key))
            .collect();
        let mut waits = Vec::new();
        for e in hosts
            .iter()
            .filter(|e| keys::host_id_of_record(&e.key).is_none())
        {
            let Ok(spec) = e.json::<TaskSpec>() else {
                continue;
            };
            if spec.kind != crate::exec::KIND {
                continue;
            }
            let host = e
                .key
                .strip_prefix(keys::HOSTS)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default();
            if !live.contains(host) {
                continue;
            }
            let Some(state) = store.get_json::<TaskStatus>(&keys::task(&spec.id)).await? else {
                continue;
            };
            if !matches!(state.state, TaskState::Pending | TaskState::Running) {
                continue;
            }
            let Some(db) = spec
                .args
                .pointer("/step/database")
                .and_then(|d| d.as_str())
                .map(str::to_owned)
            else {
                continue;
            };
            // A rehearsal holds no database; the plan carries it on.
            if spec
                .args
                .pointer("/step/action/kind")
                .and_then(|k| k.as_str())
                == Some("rehearse_restore")
            {
                continue;
            }
            waits.push((db, spec.id));
        }
        for (db, id) in waits {
            tracing::info!(task = %id, database = %db, "waiting for a step the previous leader started");
            *self.inherited.entry(db.clone()).or_default() += 1;
            let shared = self.shared.clone();
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                let _ = shared
                    .dispatcher
                    .wait_existing(&id, Duration::from_secs(330))
                    .await;
                let _ = tx.send(Event::Inherited(db)).await;
            });
        }
        Ok(())
    }

    fn batch_ended(&mut self, outcome: BatchOutcome) {
        self.count_steps(&outcome);
        let st = self.dbs.entry(outcome.database.to_string()).or_default();
        st.running = false;
        if outcome.deposed {
            return;
        }
        let planned_spec = st.planned_spec.take();
        match outcome.failed() {
            Some(f) => {
                let error = f.error.as_deref().unwrap_or("");
                let failure = format!(
                    "step {} failed after {} attempt(s): {error}",
                    f.step.id,
                    f.tasks.len(),
                );
                st.repeats = 0;
                match planned_spec.filter(|_| worker::script_failed(&f.step, error)) {
                    Some(spec) => {
                        let failure = format!(
                            "{failure}; not tried again until the spec of {} changes",
                            outcome.database
                        );
                        tracing::warn!(database = %outcome.database, step = %f.step.id, "a script failed: the database is held until its spec changes");
                        st.failed = Some(failure.clone());
                        st.held = Some(status::Held {
                            spec,
                            failure,
                            since: now_rfc3339(),
                        });
                        st.not_before = None;
                    }
                    None => {
                        st.failed = Some(failure);
                        st.not_before = st.backoff.next_delay().map(|d| Instant::now() + d);
                    }
                }
            }
            None => {
                let ids: BTreeSet<String> = outcome
                    .outcomes
                    .iter()
                    .filter(|o| o.step.operation.is_none())
                    .map(|o| same_step(&o.step))
                    .collect();
                if !ids.is_empty() && ids == st.last_ok {
                    st.repeats += 1;
                } else {
                    st.repeats = 0;
                }
                st.last_ok = ids;
                st.failed = None;
                st.backoff.reset();
                st.not_before = None;
            }
        }
        st.last = Some(outcome);
    }

    /// Counts a batch's steps in the statistics.
    fn count_steps(&mut self, outcome: &BatchOutcome) {
        if outcome.deposed {
            return;
        }
        for o in &outcome.outcomes {
            self.stats.steps_total += 1;
            if o.error.is_some() {
                self.stats.apply_failures_total += 1;
            } else if o.step.drift {
                self.stats.drift_corrections_total += 1;
            }
            if o.error.is_none()
                && matches!(o.step.action, crate::plan::Action::RecordPrimary { .. })
                && o.step.id.contains("/failover-")
            {
                self.stats.failovers_total += 1;
            }
        }
    }

    /// The earliest moment a database's backoff ends or an operation's
    /// time comes.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        self.dbs
            .values()
            .filter(|d| !d.running)
            .filter_map(|d| d.not_before)
            .filter(|t| *t > now)
            .min()
    }

    async fn pass(&mut self) -> Result<(), ClusterError> {
        let Some(snap) = self.desired.in_force() else {
            return Ok(());
        };
        let span = tracing::info_span!("pass", revision = %short(&snap.revision));
        self.pass_at(snap).instrument(span).await
    }

    async fn pass_at(&mut self, snap: Arc<Snapshot>) -> Result<(), ClusterError> {
        let started = Instant::now();
        let cpu = process_cpu_seconds();
        let now = chrono::Utc::now();
        let mut actual = self.actual.actual();
        actual.durations = self.durations.clone();
        let plan = crate::plan::plan_at(&snap.desired, &actual, Some(now));
        for op in plan.operations.iter().filter(|o| o.transition.is_some()) {
            let span = tracing::info_span!("operation", operation = %op.id, database = op.database.as_deref().unwrap_or(""));
            self.shared.recorder.apply(op).instrument(span).await?;
        }
        let mut op_wake: Option<chrono::DateTime<chrono::Utc>> = plan.wake_at.filter(|t| *t > now);
        for op in &plan.operations {
            if let Some(t) = op.not_before.filter(|t| *t > now) {
                op_wake = Some(op_wake.map_or(t, |w| w.min(t)));
            }
        }
        let mut slices = slice(&plan);
        self.rehearse(&snap, &mut slices);
        let mut of_db: BTreeMap<&str, Vec<&InstanceActual>> = BTreeMap::new();
        for i in &actual.instances {
            of_db.entry(i.database.as_str()).or_default().push(i);
        }
        let applied: BTreeMap<&str, &str> = actual
            .databases
            .iter()
            .map(|d| (d.name.as_str(), d.applied_spec.as_str()))
            .collect();
        let specs: BTreeMap<&str, &crate::spec::Database> = snap
            .desired
            .databases
            .iter()
            .map(|d| (d.database_name.as_str(), d))
            .collect();
        let mut names: BTreeSet<&str> = specs.keys().copied().collect();
        names.extend(slices.keys().map(String::as_str));
        let stamp = now_rfc3339();
        let empty = Plan::default();
        let mut started_batches = 0usize;
        for name in names {
            let slice = slices.get(name).unwrap_or(&empty);
            let st = self.dbs.entry(name.to_string()).or_default();
            if self.inherited.contains_key(name) {
                continue;
            }
            // A failure stands while its work is left to do. With nothing
            // left (the failed step's task succeeded after its batch gave
            // up on an etcd error, or the instance got there by itself),
            // it no longer does: the database is not Stalled on it forever.
            if !st.running && st.failed.is_some() && slice.steps.is_empty() {
                tracing::info!(
                    database = name,
                    "nothing is left to do: the last failure no longer stands"
                );
                st.failed = None;
                st.held = None;
                st.not_before = None;
                st.backoff.reset();
            }
            // A held failure stands until the spec it failed with changes.
            let digest = st
                .held
                .as_ref()
                .map(|_| specs.get(name).map(|d| crate::state::spec_digest(d)));
            if let (Some(h), Some(now_spec)) = (&st.held, digest) {
                if now_spec.as_deref() != Some(h.spec.as_str()) {
                    tracing::info!(
                        database = name,
                        "the spec changed: the held failure is tried again"
                    );
                    st.held = None;
                    st.failed = None;
                    st.not_before = None;
                    st.backoff.reset();
                }
            }
            let waiting = st.not_before.is_some_and(|t| Instant::now() < t);
            if st.running || waiting {
                // A failover does not wait for the database's other batch
                // (its steps may wait on the lost host) nor for a backoff.
                let urgent: Vec<crate::plan::Step> = slice
                    .steps
                    .iter()
                    .filter(|s| crate::plan::ha::urgent(s))
                    .cloned()
                    .collect();
                if !urgent.is_empty() && !st.urgent {
                    if let Ok(database) = DatabaseName::parse(name) {
                        st.urgent = true;
                        let batch = Batch {
                            database,
                            revision: snap.revision.clone(),
                            steps: urgent,
                            config: Arc::new(snap.desired.config.clone()),
                            replication: specs.get(name).and_then(|d| d.replication),
                        };
                        let shared = self.shared.clone();
                        let tx = self.events_tx.clone();
                        tokio::spawn(async move {
                            let outcome = worker::run(shared, batch).await;
                            let _ = tx.send(Event::UrgentDone(outcome)).await;
                        });
                    }
                }
                if st.running {
                    continue;
                }
            }
            // Maintenance mode, or a held failure: only the steps of
            // operations committed for the database run; the rest are
            // planned, shown and held.
            let suspended = specs
                .get(name)
                .is_some_and(|d| crate::plan::suspended(d, &snap.desired.config));
            let runnable: Vec<crate::plan::Step> = if suspended || st.held.is_some() {
                slice
                    .steps
                    .iter()
                    .filter(|s| s.operation.is_some())
                    .cloned()
                    .collect()
            } else {
                slice.steps.clone()
            };
            let ids: BTreeSet<String> = runnable
                .iter()
                .filter(|s| s.operation.is_none())
                .map(same_step)
                .collect();
            let repeating = !ids.is_empty() && ids == st.last_ok && st.repeats >= 1;
            let start = !runnable.is_empty() && !repeating && !waiting && !st.urgent;
            let activity = if start {
                Activity::Applying
            } else {
                Activity::Idle {
                    failed: st.failed.as_deref(),
                    repeating,
                    held: st.held.is_some(),
                }
            };
            let instances = of_db.get(name).map_or(&[][..], Vec::as_slice);
            let inputs = Inputs {
                name,
                spec: specs.get(name).copied(),
                revision: &snap.revision,
                plan: slice,
                actual: &actual,
                instances,
                applied: applied.get(name).copied(),
                activity,
                ended: st.last.as_ref(),
                now: &stamp,
                suspended,
            };
            let mut derived = conditions::derive(self.statuses.get(name), &inputs);
            if let Some(s) = derived.status.as_mut() {
                s.held = st.held.clone();
            }
            st.last = None;
            if repeating && st.not_before.is_none() {
                st.not_before = st.backoff.next_delay().map(|d| Instant::now() + d);
            }
            if start {
                st.running = true;
                st.not_before = None;
                st.planned_spec = specs.get(name).map(|d| crate::state::spec_digest(d));
                started_batches += 1;
                let Ok(database) = DatabaseName::parse(name) else {
                    continue;
                };
                let spec = specs.get(name).copied();
                let batch = Batch {
                    database,
                    revision: snap.revision.clone(),
                    steps: runnable,
                    config: Arc::new(snap.desired.config.clone()),
                    replication: spec.and_then(|d| d.replication),
                };
                let shared = self.shared.clone();
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    let outcome = worker::run(shared, batch).await;
                    let _ = tx.send(Event::Done(outcome)).await;
                });
            }
            self.store_status(name, derived).await?;
        }
        // Every status is now derived at this revision: one key says so,
        // rather than N statuses rewritten only for their revision.
        if self.status_revision.as_deref() != Some(snap.revision.as_str()) {
            self.guard
                .put(keys::STATUS_REVISION, snap.revision.clone().into_bytes())
                .await?;
            self.status_revision = Some(snap.revision.clone());
        }
        let (ready, stalled) = self.reporter.report(&snap, &self.statuses);
        let took = started.elapsed().as_secs_f64();
        self.stats.passes += 1;
        self.stats.last_pass_seconds = took;
        self.stats.last_pass_cpu_seconds = process_cpu_seconds() - cpu;
        self.stats.pass_seconds_sum += took;
        self.stats.last_plan_steps = plan.steps.len() as u64;
        self.flush_stats(started_batches > 0).await?;
        if started_batches > 0 {
            tracing::info!(
                steps = plan.steps.len(),
                databases = started_batches,
                ready,
                stalled,
                seconds = took,
                "reconcile pass started batches"
            );
        }
        if let Some(t) = op_wake {
            let wait = (t - now).to_std().unwrap_or_default();
            let tx = self.events_tx.clone();
            let cancel = self.guard.token().clone();
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(wait) => {
                        let _ = tx.send(Event::Inherited(String::new())).await;
                    }
                }
            });
        }
        Ok(())
    }

    /// Takes the restore rehearsals' steps out of the databases' slices and
    /// runs each beside the database's worker: a rehearsal touches nothing
    /// of its database, so its other steps do not wait for it, nor does its
    /// status show it reconciling.
    fn rehearse(&mut self, snap: &Snapshot, slices: &mut BTreeMap<String, Plan>) {
        for (name, slice) in slices.iter_mut() {
            let (side, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut slice.steps)
                .into_iter()
                .partition(|s| matches!(s.action, crate::plan::Action::RehearseRestore(_)));
            slice.steps = rest;
            for step in side {
                let Some(op) = step.operation.as_ref().map(|o| o.id.clone()) else {
                    continue;
                };
                if !self.rehearsing.insert(op.clone()) {
                    continue;
                }
                let Ok(database) = DatabaseName::parse(name) else {
                    continue;
                };
                tracing::info!(operation = %op, host = %step.host, "restore rehearsal starts beside the database's worker");
                let batch = Batch {
                    database,
                    revision: snap.revision.clone(),
                    steps: vec![step],
                    config: Arc::new(snap.desired.config.clone()),
                    replication: None,
                };
                let shared = self.shared.clone();
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    let _ = worker::run(shared, batch).await;
                    let _ = tx.send(Event::Rehearsed(op)).await;
                });
            }
        }
    }

    async fn store_status(
        &mut self,
        name: &str,
        derived: conditions::Derived,
    ) -> Result<(), ClusterError> {
        match derived.status {
            None => {
                if self.statuses.remove(name).is_some() {
                    self.guard.delete(&keys::database_status(name)).await?;
                }
                self.guard.delete(&keys::applied_spec(name)).await?;
                self.dbs.remove(name);
            }
            Some(mut st) => {
                if conditions::changed(self.statuses.get(name), &st) {
                    st.updated_at = now_rfc3339();
                    self.guard
                        .put(&keys::database_status(name), to_json(&st)?)
                        .await?;
                    self.statuses.insert(name.to_string(), st);
                }
                if let Some(digest) = derived.applied {
                    self.guard
                        .put(&keys::applied_spec(name), digest.into_bytes())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Writes the counters when steps ran, or when only the pass counters
    /// moved, at most every six resync intervals: an idle pass writes nothing.
    async fn flush_stats(&mut self, steps_ran: bool) -> Result<(), ClusterError> {
        let counters_moved = self.stats.passes != self.stats_written.passes;
        let meaningful = self.stats.steps_total != self.stats_written.steps_total
            || self.stats.leader != self.stats_written.leader;
        let due = self.stats_flushed.elapsed() >= self.resync * 6;
        if !(steps_ran || meaningful || (counters_moved && due)) {
            return Ok(());
        }
        self.stats.updated_at = now_rfc3339();
        self.guard
            .put(keys::RECONCILER_STATS, to_json(&self.stats)?)
            .await?;
        self.stats_written = self.stats.clone();
        self.stats_flushed = Instant::now();
        Ok(())
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// What makes two steps the same for "the same steps succeeded twice": the
/// whole step, not its id. A step id is stable (`<db>/<node>/<host>/settings`),
/// so a second change of a setting has the id of the first; only the same
/// change planned again after it succeeded is a step that does not stick.
fn same_step(step: &crate::plan::Step) -> String {
    serde_json::to_string(step).unwrap_or_else(|_| step.id.clone())
}

/// Each database's slice of a plan, in one walk over it.
fn slice(plan: &Plan) -> BTreeMap<String, Plan> {
    let mut out: BTreeMap<String, Plan> = BTreeMap::new();
    for s in &plan.steps {
        out.entry(s.database.to_string())
            .or_default()
            .steps
            .push(s.clone());
    }
    for n in &plan.notes {
        out.entry(n.database.to_string())
            .or_default()
            .notes
            .push(n.clone());
    }
    for o in &plan.operations {
        if let Some(db) = &o.database {
            out.entry(db.to_string())
                .or_default()
                .operations
                .push(o.clone());
        }
    }
    out
}

/// Makes the database's replication password once (kept in etcd; the
/// agents read it to set the role's password and to connect standbys).
pub(crate) async fn ensure_replication_secret(
    guard: &LeaderGuard,
    database: &str,
) -> Result<(), ClusterError> {
    use etcd_client::{Compare, CompareOp, TxnOp};
    let key = full_key(&keys::replication_secret(database));
    guard
        .txn(
            vec![Compare::version(key.clone(), CompareOp::Equal, 0)],
            vec![TxnOp::put(
                key,
                // Sealed to the cluster's age identity: etcd never holds it in clear.
                crate::secrets::seal(&crate::cluster::identity::random_hex(16)).map_err(|e| {
                    ClusterError::Other(format!("sealing the replication secret: {e}"))
                })?,
                None,
            )],
            vec![],
        )
        .await?;
    Ok(())
}

/// User and system CPU time of this process so far, seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
