//! The task kinds this issue provides: `host.facts` (what the host is) and
//! `debug.sleep` (a test aid that proves exactly-once execution).

use super::keys;
use super::store::to_json;
use super::tasks::{Executor, Executors, TaskContext};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The registry with every built-in executor. `debug.sleep`, a test aid,
/// is there only when `PGCD_TEST_EXECUTORS=1` (the test harness sets it).
pub fn builtin() -> Executors {
    let mut map: Executors = Executors::new();
    map.insert(HOST_FACTS, Box::new(HostFacts));
    if std::env::var("PGCD_TEST_EXECUTORS").as_deref() == Ok("1") {
        map.insert(DEBUG_SLEEP, Box::new(DebugSleep));
    }
    map
}

/// The kind of the host facts task.
pub const HOST_FACTS: &str = "host.facts";
/// The kind of the sleeping test task.
pub const DEBUG_SLEEP: &str = "debug.sleep";

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
        "collected_at": super::now_rfc3339(),
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

/// Sleeps `args.ms` milliseconds and appends `<task-id> <pid>` to
/// `DATA_DIR/debug-runs.log` when it starts, so tests can count runs.
pub struct DebugSleep;

impl Executor for DebugSleep {
    fn run(&self, ctx: TaskContext, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        async move {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(1000);
            let path = ctx.data_dir.join("debug-runs.log");
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("opening {}: {e}", path.display()))?;
            writeln!(f, "{} {}", ctx.task_id, std::process::id())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            ctx.log(format!("sleeping {ms} ms"));
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        }
        .boxed()
    }
}
