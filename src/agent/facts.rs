//! `host.facts`: what a host is (OS, kernel, cores, memory, free disk,
//! Docker), collected on the host once per start and stored under
//! `facts/<host>`; the leader's `FactsDispatcher` asks every newly started host.

use crate::cluster::election::{LeaderGuard, LeaderService};
use crate::cluster::keys;
use crate::cluster::reflector::{self, Mirror};
use crate::cluster::registry::HostRecord;
use crate::cluster::store::to_json;
use crate::cluster::tasks::{dispatch, Executor, TaskContext, TaskSpec};
use crate::cluster::ClusterError;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// The kind of the host facts task.
pub const HOST_FACTS: &str = "host.facts";

/// Collects OS, kernel, cores, memory, free disk of the data dir and Docker
/// availability; stores them under `facts/<host>` too.
pub struct HostFacts;

impl Executor for HostFacts {
    fn run(&self, ctx: TaskContext, _args: Value) -> BoxFuture<'static, Result<Value, String>> {
        async move {
            let dir = ctx.data_dir.clone();
            let facts = tokio::task::spawn_blocking(move || collect_facts(&dir))
                .await
                .map_err(|e| format!("collecting facts: {e}"))?;
            ctx.log(format!("facts: {facts}"));
            let value = to_json(&facts).map_err(|e| e.to_string())?;
            // Retried: an etcd election may pass while we store them.
            let mut attempt = 0;
            loop {
                attempt += 1;
                match ctx
                    .store
                    .put(&keys::facts(&ctx.host), value.clone(), None)
                    .await
                {
                    Ok(()) => return Ok(facts),
                    Err(e) if attempt < 10 => {
                        ctx.log(format!("storing facts failed ({e}); retrying"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => return Err(format!("storing facts: {e}")),
                }
            }
        }
        .boxed()
    }
}

fn collect_facts(data_dir: &Path) -> Value {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let docker_socket = Path::new("/var/run/docker.sock");
    let docker = std::os::unix::net::UnixStream::connect(docker_socket).is_ok();
    json!({
        "os": sysinfo::System::long_os_version(),
        "kernel": sysinfo::System::kernel_version(),
        "cores": cores,
        "memory_bytes": sys.total_memory(),
        "data_dir": data_dir.display().to_string(),
        "data_dir_free_bytes": free_bytes(data_dir),
        "docker": docker,
        "collected_at": crate::cluster::now_rfc3339(),
    })
}

fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// Dispatches `host.facts` once to each host each time it starts.
pub struct FactsDispatcher;

/// The facts task id for one start of a host.
pub fn facts_task_id(record: &HostRecord) -> String {
    let stamp: String = record
        .started_at
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("facts-{}-{stamp}", record.id)
}

impl LeaderService for FactsDispatcher {
    fn name(&self) -> &'static str {
        "facts-dispatcher"
    }

    fn run(&self, guard: LeaderGuard) -> BoxFuture<'static, ()> {
        async move {
            let mut done: HashSet<String> = HashSet::new();
            let mut updates =
                reflector::spawn(guard.store().clone(), keys::HOSTS, guard.token().clone());
            let mut hosts = Mirror::default();
            // A failed dispatch is tried again at the next change, or soon.
            let mut retry = false;
            loop {
                let update = if retry {
                    tokio::select! {
                        u = updates.recv() => u,
                        () = tokio::time::sleep(Duration::from_secs(1)) => None,
                    }
                } else {
                    match updates.recv().await {
                        Some(u) => Some(u),
                        None => return,
                    }
                };
                if guard.token().is_cancelled() {
                    return;
                }
                if let Some(u) = update {
                    hosts.apply(u);
                }
                retry = false;
                for e in hosts
                    .entries
                    .values()
                    .filter(|e| keys::host_id_of_record(&e.key).is_some())
                {
                    let Ok(record) = e.json::<HostRecord>() else {
                        continue;
                    };
                    let id = facts_task_id(&record);
                    if done.contains(&id) {
                        continue;
                    }
                    let deadline = chrono::Utc::now() + chrono::Duration::seconds(60);
                    let spec = TaskSpec {
                        id: id.clone(),
                        kind: HOST_FACTS.into(),
                        args: serde_json::Value::Null,
                        deadline: deadline.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    };
                    match dispatch(&guard, &record.id, &spec).await {
                        Ok(_) => {
                            done.insert(id);
                        }
                        Err(ClusterError::NotLeader) => return,
                        Err(e) => {
                            retry = true;
                            tracing::warn!(error = %e, "cannot dispatch host.facts; trying again");
                        }
                    }
                }
            }
        }
        .boxed()
    }
}
