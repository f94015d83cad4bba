//! How long planning takes for a large cluster: 1,000 databases on 50 hosts,
//! converged (nothing to do) and with 10 changes made by hand. Target: under
//! 50 ms each. Run: `cargo bench --bench plan` (prints Markdown rows for
//! bench/plan.md).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use pgcd::plan::plan;
use pgcd::state::Actual;
#[path = "support/mod.rs"]
mod support;

use pgcd::spec::{load, SourceFile};
use std::time::Instant;
use support::database;

/// Best and median milliseconds of 21 runs after a warm-up, and the plan's step count.
fn time(desired: &pgcd::spec::Desired, actual: &Actual) -> (f64, f64, usize) {
    let steps = plan(desired, actual).steps.len();
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let t = Instant::now();
            let p = plan(desired, actual);
            let e = t.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(p.steps.len(), steps);
            e
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    (times[0], times[times.len() / 2], steps)
}

fn main() {
    let files: Vec<SourceFile> = (0..1000).map(database).collect();
    let desired = load(&files).expect("generated repository is valid");
    let converged = pgcd::plan::converged(&desired);
    let mut changed = converged.clone();
    // Ten changes by hand, on ten different primaries: a setting, a dropped
    // role, a stopped container, a dropped extension, a restart-needing setting.
    for k in 0..10 {
        let i = changed
            .instances
            .iter_mut()
            .find(|i| i.database == format!("db_{}", k * 97) && i.node == "n1")
            .expect("generated instance");
        match k % 5 {
            0 => {
                i.settings.insert("work_mem".into(), "4MB".into());
            }
            1 => i.roles.retain(|r| !r.name.starts_with("app_")),
            2 => i.running = false,
            3 => i.extensions.retain(|e| e.name != "vector"),
            _ => {
                i.settings.insert("shared_buffers".into(), "128MB".into());
            }
        }
    }
    println!(
        "instances: {}, hosts: {}",
        converged.instances.len(),
        converged.hosts.len()
    );
    println!("| case | steps | best | median |");
    println!("|---|---|---|---|");
    for (name, actual) in [
        ("1,000 databases, nothing to do", &converged),
        ("1,000 databases, 10 changes by hand", &changed),
    ] {
        let (best, median, steps) = time(&desired, actual);
        println!("| {name} | {steps} | {best:.2} ms | {median:.2} ms |");
    }
}
