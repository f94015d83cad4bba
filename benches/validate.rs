//! How long validating a large repository takes: 1,000 generated database
//! files (plus operations), single-threaded. Target: under 1 s.
//! Run: `cargo bench --bench validate` (prints a Markdown row for bench/validate.md).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

#[path = "support/mod.rs"]
mod support;

use pgcd::spec::{load, SourceFile};
use std::time::Instant;
use support::database;

fn main() {
    let mut files: Vec<SourceFile> = (0..1000).map(database).collect();
    files.extend((0..100).map(|i| SourceFile {
        path: format!("operations/backup-{i}.yaml"),
        text: format!("id: backup-{i}\nkind: Backup\ndatabase: db_{i}\nnode: n1\n"),
    }));
    let bytes: usize = files.iter().map(|f| f.text.len()).sum();
    // Warm up once, then take the best and median of several runs.
    load(&files).expect("generated repository is valid");
    let mut times = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let desired = load(&files).expect("valid");
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(desired.databases.len(), 1000);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| 1,000 databases + 100 operations ({:.1} MiB of YAML) | {:.0} ms | {:.0} ms |",
        bytes as f64 / (1 << 20) as f64,
        times[0] * 1000.0,
        times[times.len() / 2] * 1000.0
    );
}
