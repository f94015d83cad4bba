//! The agent's built-in task kinds: `host.facts` (see `facts`) and
//! `debug.sleep` (a test aid that proves exactly-once execution).

use super::facts::{HostFacts, HOST_FACTS};
use crate::cluster::tasks::{Executor, Executors, TaskContext};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
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

/// The kind of the sleeping test task.
pub const DEBUG_SLEEP: &str = "debug.sleep";

/// Sleeps `args.ms` milliseconds and appends `<task-id> <pid>` to
/// `DATA_DIR/debug-runs.log` when it starts, so tests can count runs.
pub struct DebugSleep;

impl Executor for DebugSleep {
    fn run(&self, ctx: TaskContext, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        async move {
            let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(1000);
            let path = ctx.data_dir.join("debug-runs.log");
            crate::exec::append_line(&path, &format!("{} {}\n", ctx.task_id, std::process::id()))
                .await
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            ctx.log(format!("sleeping {ms} ms"));
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        }
        .boxed()
    }
}
