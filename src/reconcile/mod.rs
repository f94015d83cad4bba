//! The reconciler: the leader service that turns the desired state in force
//! into running PostgreSQL. Each pass assembles `Actual` from what the
//! agents observed, plans, carries the plan out as tasks on the right hosts
//! (databases in parallel, each database's steps in order) and records each
//! database's status. A pass runs when the desired state changes, right
//! after a pass that changed something (to confirm it converged), and every
//! resync interval (which is how drift is found).

pub mod apply;
pub mod status;

use crate::cluster::election::{LeaderGuard, LeaderService};
use crate::cluster::keys;
use crate::cluster::registry::list_hosts;
use crate::cluster::store::to_json;
use crate::cluster::tasks::{dispatch, list_tasks, TaskSpec, TaskState};
use crate::cluster::{now_rfc3339, ClusterError};
use crate::exec::{StepArgs, KIND};
use crate::plan::{Action, NoteKind, Plan, Step};
use crate::source::report::{Reporter, StatusJob};
use crate::source::status::{CommitStatus, State};
use crate::spec::database::DatabaseState;
use crate::spec::names::HostId;
use crate::spec::operation::Action as OpAction;
use crate::spec::{ClusterConfig, Desired};
use crate::state::Actual;
use futures::future::BoxFuture;
use futures::FutureExt;
use status::{ConditionType as C, DatabaseStatus, InstanceStatus, PlanRecord, ReconcilerStats};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The reconciler service.
pub struct Reconciler {
    resync: Duration,
    mirror_dir: PathBuf,
    api: String,
}

impl Reconciler {
    /// A reconciler that passes at least every `resync`, reporting the
    /// `pgcd/apply` commit status through the Git mirror at `mirror_dir`
    /// (status links point at `api`).
    pub fn new(resync: Duration, mirror_dir: PathBuf, api: String) -> Self {
        Self {
            resync,
            mirror_dir,
            api,
        }
    }
}

impl LeaderService for Reconciler {
    fn name(&self) -> &'static str {
        "reconciler"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        let reporter = Reporter::spawn(guard.token().clone(), self.mirror_dir.clone());
        run(guard, self.resync, reporter, self.api.clone()).boxed()
    }
}

/// The image of a PostgreSQL major: the config's, else pgcd's own.
pub fn image(config: &ClusterConfig, major: u16) -> String {
    config
        .images
        .get(&major.to_string())
        .cloned()
        .unwrap_or_else(|| format!("pgcd/postgres:{major}"))
}

struct Loop {
    guard: LeaderGuard,
    reporter: Reporter,
    api: String,
    /// The last `pgcd/apply` state reported, per revision.
    applied: Option<(String, State)>,
    statuses: HashMap<String, DatabaseStatus>,
    stats: ReconcilerStats,
    last_steps: BTreeSet<String>,
}

async fn run(guard: LeaderGuard, resync: Duration, reporter: Reporter, api: String) {
    let mut lp = Loop {
        reporter,
        api,
        applied: None,
        statuses: HashMap::new(),
        stats: guard
            .store()
            .get_json(keys::RECONCILER_STATS)
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        guard,
        last_steps: BTreeSet::new(),
    };
    lp.stats.leader = lp.guard.host().to_string();
    if let Ok((entries, _)) = lp.guard.store().get_prefix(keys::DATABASE_STATUS).await {
        for e in entries {
            if let Ok(s) = e.json::<DatabaseStatus>() {
                lp.statuses.insert(s.name.clone(), s);
            }
        }
    }
    // A predecessor's steps may still run: wait for them, so no step runs
    // twice at once on an instance.
    if let Err(ClusterError::NotLeader) = lp.wait_inflight().await {
        return;
    }
    let mut seen_revision = -1;
    let mut immediate = true;
    let mut last_pass = Instant::now();
    loop {
        if lp.guard.token().is_cancelled() {
            return;
        }
        let entry = match lp.guard.store().get(keys::DESIRED).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the desired state");
                None
            }
        };
        if let Some(entry) = entry {
            let due =
                immediate || entry.mod_revision != seen_revision || last_pass.elapsed() >= resync;
            if due {
                seen_revision = entry.mod_revision;
                last_pass = Instant::now();
                match read_desired(&entry) {
                    Ok(rec) => match lp.pass(&rec).await {
                        Ok(again) => immediate = again,
                        Err(ClusterError::NotLeader) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "reconcile pass failed");
                            immediate = false;
                        }
                    },
                    Err(e) => tracing::error!(error = %e, "the desired state record is unreadable"),
                }
            }
        }
        tokio::select! {
            () = lp.guard.token().cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

impl Loop {
    /// Waits for the `pg.step` tasks a predecessor left pending or running
    /// on live hosts (a dead host's runner fails its interrupted tasks when
    /// it comes back, and steps are idempotent).
    async fn wait_inflight(&self) -> Result<(), ClusterError> {
        let tasks = list_tasks(self.guard.store()).await?;
        let live: BTreeSet<String> = list_hosts(self.guard.store())
            .await?
            .into_iter()
            .filter(|h| h.healthy)
            .map(|h| h.id.to_string())
            .collect();
        for t in tasks.iter().filter(|t| {
            t.kind == KIND
                && matches!(t.state, TaskState::Pending | TaskState::Running)
                && live.contains(&t.host)
        }) {
            tracing::info!(task = %t.id, "waiting for a step the previous leader started");
            let _ = apply::wait_task(&self.guard, &t.id, Duration::from_secs(330)).await?;
        }
        Ok(())
    }

    /// One pass; returns whether to pass again at once (steps ran and all
    /// succeeded, so the next plan should be empty).
    async fn pass(&mut self, rec: &DesiredRecord) -> Result<bool, ClusterError> {
        let started = Instant::now();
        let cpu = process_cpu_seconds();
        let store = self.guard.store().clone();
        let actual = crate::state::assemble::actual(&store).await?;
        let plan = crate::plan::plan(&rec.desired, &actual);
        let mut by_db: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for s in &plan.steps {
            by_db
                .entry(s.database.to_string())
                .or_default()
                .push(s.clone());
        }
        let ids: BTreeSet<String> = plan.steps.iter().map(|s| s.id.clone()).collect();
        let repeating = !ids.is_empty() && ids == self.last_steps;
        self.last_steps = ids;

        let now = now_rfc3339();
        for (db, steps) in &by_db {
            let st = self.status_mut(db, &now);
            st.set(
                C::Reconciling,
                true,
                "Applying",
                format!(
                    "carrying out {} step(s) of revision {}",
                    steps.len(),
                    short(&rec.revision)
                ),
                &now,
            );
            st.last_plan = Some(plan_record(rec, &plan, db, &now));
            self.write_status(db).await?;
        }

        let results = futures::future::join_all(
            by_db
                .values()
                .map(|steps| apply_database(&self.guard, &rec.desired, steps)),
        )
        .await;
        let mut outcomes: BTreeMap<String, Vec<apply::StepOutcome>> = BTreeMap::new();
        for r in results {
            let list = r?;
            if let Some(first) = list.first() {
                outcomes.insert(first.step.database.to_string(), list);
            }
        }
        self.operations(&rec.desired, &actual).await?;

        let after = if plan.steps.is_empty() {
            actual
        } else {
            crate::state::assemble::actual(&store).await?
        };
        let all_ok = outcomes.values().flatten().all(|o| o.error.is_none());
        self.record(rec, &plan, &after, &outcomes, repeating)
            .await?;

        let took = started.elapsed().as_secs_f64();
        self.stats.passes += 1;
        self.stats.last_pass_seconds = took;
        self.stats.last_pass_cpu_seconds = process_cpu_seconds() - cpu;
        self.stats.pass_seconds_sum += took;
        self.stats.last_plan_steps = plan.steps.len() as u64;
        for o in outcomes.values().flatten() {
            self.stats.steps_total += 1;
            if o.error.is_some() {
                self.stats.apply_failures_total += 1;
            } else if o.step.drift {
                self.stats.drift_corrections_total += 1;
            }
        }
        self.stats.updated_at = now_rfc3339();
        self.guard
            .put(keys::RECONCILER_STATS, to_json(&self.stats)?)
            .await?;
        if !plan.steps.is_empty() {
            tracing::info!(
                steps = plan.steps.len(),
                ok = all_ok,
                seconds = took,
                "reconcile pass"
            );
        }
        self.report_apply(rec);
        Ok(!plan.steps.is_empty() && all_ok && !repeating)
    }

    /// Sends `pgcd/apply` for the revision when its outcome changed:
    /// success once every database of the spec is Ready, failure while one
    /// is Stalled (pending, sent when the revision was recorded, otherwise).
    fn report_apply(&mut self, rec: &DesiredRecord) {
        let names: Vec<&str> = rec
            .desired
            .databases
            .iter()
            .filter(|d| d.state != Some(DatabaseState::Absent))
            .map(|d| d.database_name.as_str())
            .collect();
        let of = |n: &str| self.statuses.get(n);
        let stalled = names
            .iter()
            .filter_map(|n| of(n))
            .find(|s| s.is(C::Stalled));
        let ready = names.iter().all(|n| of(n).is_some_and(|s| s.is(C::Ready)));
        let (state, description) = if let Some(s) = stalled {
            let why = s
                .condition(C::Stalled)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            (State::Failure, format!("{} stalled: {why}", s.name))
        } else if ready {
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
            return;
        };
        if self.applied.as_ref() == Some(&(rec.revision.clone(), state)) {
            return;
        }
        self.applied = Some((rec.revision.clone(), state));
        self.reporter.send(StatusJob {
            sha: rec.revision.clone(),
            statuses: vec![CommitStatus::new(
                "pgcd/apply",
                state,
                &description,
                Some(format!("{}/v1/databases", self.api.trim_end_matches('/'))),
            )],
            reporters: rec.desired.config.reporters.clone(),
        });
    }

    fn status_mut(&mut self, db: &str, now: &str) -> &mut DatabaseStatus {
        self.statuses
            .entry(db.to_string())
            .or_insert_with(|| DatabaseStatus::new(db, now))
    }

    async fn write_status(&mut self, db: &str) -> Result<(), ClusterError> {
        let Some(st) = self.statuses.get_mut(db) else {
            return Ok(());
        };
        st.updated_at = now_rfc3339();
        self.guard
            .put(&keys::database_status(db), to_json(st)?)
            .await
    }

    /// Computes and stores every database's status after a pass.
    async fn record(
        &mut self,
        rec: &DesiredRecord,
        plan: &Plan,
        actual: &Actual,
        outcomes: &BTreeMap<String, Vec<apply::StepOutcome>>,
        repeating: bool,
    ) -> Result<(), ClusterError> {
        let now = now_rfc3339();
        let mut names: BTreeSet<String> = rec
            .desired
            .databases
            .iter()
            .map(|d| d.database_name.to_string())
            .collect();
        for n in &plan.notes {
            names.insert(n.database.to_string());
        }
        for name in names {
            let spec = rec
                .desired
                .databases
                .iter()
                .find(|d| d.database_name.as_str() == name);
            let instances: Vec<InstanceStatus> = actual
                .instances
                .iter()
                .filter(|i| i.database == name)
                .map(|i| InstanceStatus {
                    node: i.node.to_string(),
                    host: i.host.to_string(),
                    endpoint: format!(
                        "{}:{}",
                        actual.host(&i.host).map_or("?", |h| h.address.as_str()),
                        i.port
                    ),
                    role: i.role,
                    lag_bytes: standby_lag(actual, i).and_then(|r| r.lag_bytes),
                    lag_seconds: standby_lag(actual, i).and_then(|r| r.lag_seconds),
                    streaming: standby_lag(actual, i).map(|r| r.state.clone()),
                    state: if i.running {
                        "running"
                    } else if i.container_exists {
                        "stopped"
                    } else {
                        "missing"
                    }
                    .into(),
                    version: i.version.clone(),
                })
                .collect();
            if spec.is_some_and(|d| d.state == Some(DatabaseState::Absent)) && instances.is_empty()
            {
                // Deleted as instructed: nothing left to report.
                if self.statuses.remove(&name).is_some() {
                    self.guard.delete(&keys::database_status(&name)).await?;
                }
                self.guard.delete(&keys::applied_spec(&name)).await?;
                continue;
            }
            let notes: Vec<&crate::plan::Note> =
                plan.notes.iter().filter(|n| n.database == name).collect();
            // A database without a spec is Orphaned; an instance the spec of
            // a database has no place for (a node or host removed) only
            // degrades it.
            let whole = |n: &&&crate::plan::Note| n.kind == NoteKind::Orphaned && spec.is_none();
            let orphaned: Vec<&str> = notes
                .iter()
                .filter(whole)
                .map(|n| n.message.as_str())
                .collect();
            let degraded: Vec<&str> = notes
                .iter()
                .filter(|n| !whole(n))
                .map(|n| n.message.as_str())
                .collect();
            let had_steps = plan.steps.iter().any(|s| s.database == name);
            let outcome = outcomes.get(&name);
            let failed = outcome.and_then(|o| o.iter().find(|s| s.error.is_some()));
            let st = self
                .statuses
                .entry(name.clone())
                .or_insert_with(|| DatabaseStatus::new(&name, &now));
            let before = st.clone();
            st.observed_revision = Some(rec.revision.clone());
            st.instances = instances;
            (st.links, st.ddl_log) = mesh_status(actual, &name, spec);
            if had_steps || !notes.is_empty() {
                st.last_plan = Some(plan_record(rec, plan, &name, &now));
            }
            if let Some(o) = outcome {
                st.tasks = o.iter().flat_map(|s| s.tasks.clone()).collect();
                let drift: Vec<String> = o
                    .iter()
                    .filter(|s| s.step.drift && s.error.is_none())
                    .map(|s| s.step.reason.clone())
                    .collect();
                if !drift.is_empty() {
                    st.drift_corrections += drift.len() as u64;
                    st.last_drift = drift;
                }
            }
            if !orphaned.is_empty() {
                st.set(C::Orphaned, true, "FileRemoved", orphaned.join("; "), &now);
                st.set(
                    C::Ready,
                    false,
                    "NotInSpec",
                    "the database has no spec; its instances are kept as they are".into(),
                    &now,
                );
                st.set(C::Reconciling, false, "NotInSpec", String::new(), &now);
            } else {
                st.set(C::Orphaned, false, "InSpec", String::new(), &now);
                if let Some(f) = failed {
                    let msg = format!(
                        "step {} failed after {} attempt(s): {}",
                        f.step.id,
                        f.tasks.len(),
                        f.error.as_deref().unwrap_or("")
                    );
                    st.set(C::Stalled, true, "StepFailed", msg.clone(), &now);
                    st.set(C::Ready, false, "StepFailed", msg, &now);
                    st.set(C::Reconciling, false, "StepFailed", String::new(), &now);
                } else if had_steps && repeating {
                    let msg = "the same steps succeeded twice but the instance still differs from the spec".to_string();
                    st.set(C::Stalled, true, "NotConverging", msg.clone(), &now);
                    st.set(C::Ready, false, "NotConverging", msg, &now);
                    st.set(C::Reconciling, false, "NotConverging", String::new(), &now);
                } else if had_steps {
                    st.set(C::Stalled, false, "StepsSucceeded", String::new(), &now);
                    st.set(
                        C::Reconciling,
                        true,
                        "Verifying",
                        "steps succeeded; confirming the result".into(),
                        &now,
                    );
                    st.set(
                        C::Ready,
                        false,
                        "Reconciling",
                        "steps of this revision are being carried out".into(),
                        &now,
                    );
                } else {
                    st.set(C::Stalled, false, "Applied", String::new(), &now);
                    st.set(C::Reconciling, false, "Applied", String::new(), &now);
                    st.set(
                        C::Ready,
                        true,
                        "Applied",
                        format!("revision {} is carried out", short(&rec.revision)),
                        &now,
                    );
                    if let Some(db) = spec {
                        let digest = crate::state::spec_digest(db);
                        let current = actual.databases.iter().find(|d| d.name == name);
                        if current.is_none_or(|d| d.applied_spec != digest) {
                            self.guard
                                .put(&keys::applied_spec(&name), digest.into_bytes())
                                .await?;
                        }
                    }
                }
            }
            if degraded.is_empty() {
                st.set(C::Degraded, false, "Healthy", String::new(), &now);
            } else {
                st.set(C::Degraded, true, "SeeNotes", degraded.join("; "), &now);
            }
            let changed = {
                let mut a = before;
                a.updated_at.clear();
                let mut b = st.clone();
                b.updated_at.clear();
                a != b
            };
            if changed {
                self.write_status(&name).await?;
            }
        }
        Ok(())
    }

    /// Runs due `Restart` operations, each exactly once: its tasks have
    /// fixed ids, and a task id is written only when absent.
    async fn operations(&mut self, desired: &Desired, actual: &Actual) -> Result<(), ClusterError> {
        for op in &desired.operations {
            let OpAction::Restart {
                database,
                node,
                host,
                scheduled_at,
            } = &op.action
            else {
                continue;
            };
            if scheduled_at
                .as_ref()
                .is_some_and(|t| t.0 > chrono::Utc::now())
            {
                continue;
            }
            let done_key = keys::operation(op.id.as_str());
            if self.guard.store().get(&done_key).await?.is_some() {
                continue;
            }
            let targets: Vec<_> = actual
                .instances
                .iter()
                .filter(|i| {
                    i.database == database.as_str()
                        && i.container_exists
                        && node.as_ref().is_none_or(|n| n.as_str() == i.node)
                        && host.as_ref().is_none_or(|h| h.as_str() == i.host)
                })
                .collect();
            let mut errors = Vec::new();
            let mut tasks = Vec::new();
            for i in targets {
                let step = Step {
                    id: format!("{}/{}/{}/operation:{}", i.database, i.node, i.host, op.id),
                    database: i.database.clone(),
                    node: i.node.clone(),
                    host: i.host.clone(),
                    action: Action::RestartInstance { settings: vec![] },
                    reason: format!(
                        "operation {} restarts {}/{} on {}",
                        op.id, i.database, i.node, i.host
                    ),
                    disruptive: true,
                    drift: false,
                    depends_on: vec![],
                };
                let task_id = format!("op-{}-{}-{}", op.id, i.node, i.host);
                let spec = TaskSpec {
                    id: task_id.clone(),
                    kind: KIND.into(),
                    args: serde_json::to_value(StepArgs {
                        step,
                        image: String::new(),
                        replication: None,
                    })
                    .map_err(|e| ClusterError::Other(e.to_string()))?,
                    deadline: (chrono::Utc::now() + chrono::Duration::minutes(3))
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                };
                let host_id = HostId::parse(&i.host).map_err(ClusterError::Other)?;
                if !dispatch(&self.guard, &host_id, &spec).await? {
                    tracing::info!(task = %task_id, "operation task exists already; not run again");
                }
                tasks.push(task_id.clone());
                if let Err(e) =
                    apply::wait_task(&self.guard, &task_id, Duration::from_secs(200)).await?
                {
                    errors.push(format!("{task_id}: {e}"));
                }
            }
            let record = serde_json::json!({
                "id": op.id.as_str(),
                "state": if errors.is_empty() { "succeeded" } else { "failed" },
                "tasks": tasks,
                "errors": errors,
                "at": now_rfc3339(),
            });
            self.guard.put(&done_key, to_json(&record)?).await?;
        }
        Ok(())
    }
}

/// Carries out one database's steps in order, stopping at the first step
/// that keeps failing.
async fn apply_database(
    guard: &LeaderGuard,
    desired: &Desired,
    steps: &[Step],
) -> Result<Vec<apply::StepOutcome>, ClusterError> {
    let mut out = Vec::new();
    let replicated = steps.iter().any(|s| {
        matches!(
            s.action,
            Action::CreateStandby { .. }
                | Action::EnsureReplication { .. }
                | Action::CreatePublication { .. }
                | Action::CreateSubscription { .. }
                | Action::JoinMesh { .. }
        )
    });
    if let (true, Some(first)) = (replicated, steps.first()) {
        ensure_replication_secret(guard, &first.database).await?;
    }
    for s in steps {
        let image = match &s.action {
            Action::CreateInstance { version, .. } | Action::CreateStandby { version, .. } => {
                image(&desired.config, version.major)
            }
            _ => String::new(),
        };
        let replication = desired
            .databases
            .iter()
            .find(|d| d.database_name.as_str() == s.database)
            .and_then(|d| d.replication);
        let o = apply::step(guard, s, &image, replication).await?;
        let failed = o.error.is_some();
        out.push(o);
        if failed {
            break;
        }
    }
    Ok(out)
}

/// Makes the database's replication password once (kept in etcd; the
/// agents read it to set the role's password and to connect standbys).
async fn ensure_replication_secret(
    guard: &LeaderGuard,
    database: &str,
) -> Result<(), ClusterError> {
    use etcd_client::{Compare, CompareOp, TxnOp};
    let key = crate::cluster::store::full_key(&keys::replication_secret(database));
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

fn plan_record(rec: &DesiredRecord, plan: &Plan, db: &str, now: &str) -> PlanRecord {
    let only = Plan {
        steps: plan
            .steps
            .iter()
            .filter(|s| s.database == db)
            .cloned()
            .collect(),
        notes: plan
            .notes
            .iter()
            .filter(|n| n.database == db)
            .cloned()
            .collect(),
    };
    PlanRecord {
        revision: Some(rec.revision.clone()),
        planned_at: now.to_string(),
        text: only.to_string(),
        steps: only.steps,
        notes: only.notes,
    }
}

/// The desired state in force, as the source loop recorded it.
#[derive(Debug, Clone)]
pub struct DesiredRecord {
    /// The commit.
    pub revision: String,
    /// The spec.
    pub desired: Desired,
}

/// Reads the `desired` record.
pub fn read_desired(entry: &crate::cluster::store::Entry) -> Result<DesiredRecord, String> {
    let v: serde_json::Value = entry.json().map_err(|e| e.to_string())?;
    let revision = v
        .get("revision")
        .and_then(|r| r.as_str())
        .unwrap_or_default()
        .to_string();
    let desired = Desired::from_json(v.get("desired").unwrap_or(&serde_json::Value::Null))?;
    Ok(DesiredRecord { revision, desired })
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

/// The links and DDL log positions of a natively replicated database.
fn mesh_status(
    actual: &Actual,
    name: &str,
    spec: Option<&crate::spec::Database>,
) -> (Vec<status::LinkStatus>, BTreeMap<String, i64>) {
    let mut links = Vec::new();
    let mut ddl = BTreeMap::new();
    let Some(db) = spec.filter(|d| crate::state::actual::native_mesh(d)) else {
        return (links, ddl);
    };
    for i in actual
        .instances
        .iter()
        .filter(|i| i.database == name && i.role == crate::state::InstanceRole::Primary)
    {
        if let Some(rows) = i.ddl_rows {
            ddl.insert(i.node.to_string(), rows);
        }
        for n in db.nodes.iter().filter(|n| n.name.as_str() != i.node) {
            let sub = crate::state::names::subscription_name(n.name.as_str(), &i.node);
            let found = i.subscriptions.iter().find(|s| s.name == sub);
            let state = match found {
                Some(s) if s.enabled && s.running => "streaming",
                Some(s) if !s.enabled => "disabled",
                _ => "down",
            };
            // The publisher sees the link as a walsender named after it.
            let sender = actual
                .instances
                .iter()
                .filter(|p| {
                    p.database == name
                        && p.node == n.name.as_str()
                        && p.role == crate::state::InstanceRole::Primary
                })
                .flat_map(|p| p.replicas.iter())
                .find(|r| r.name == sub);
            links.push(status::LinkStatus {
                from: n.name.to_string(),
                to: i.node.to_string(),
                state: state.into(),
                lag_bytes: sender.and_then(|r| r.lag_bytes),
                lag_seconds: sender.and_then(|r| r.lag_seconds),
                apply_errors: found.map_or(0, |s| s.apply_errors),
                sync_errors: found.map_or(0, |s| s.sync_errors),
                conflicts: found.map(|s| s.conflicts.clone()).unwrap_or_default(),
                last_error: found.and_then(|s| s.last_error.clone()),
                subscription: sub,
            });
        }
    }
    links.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    (links, ddl)
}

/// What a standby's primary reports of it (`pg_stat_replication`).
fn standby_lag<'a>(
    actual: &'a Actual,
    standby: &crate::state::InstanceActual,
) -> Option<&'a crate::state::actual::ReplicaActual> {
    if standby.role != crate::state::InstanceRole::Standby {
        return None;
    }
    let name = crate::state::names::standby_name(&standby.node, &standby.host);
    actual
        .instances
        .iter()
        .filter(|p| {
            p.database == standby.database
                && p.node == standby.node
                && p.role == crate::state::InstanceRole::Primary
        })
        .flat_map(|p| p.replicas.iter())
        .find(|r| r.name == name)
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
