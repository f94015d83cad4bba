//! Benchmark: a full pgBackRest backup through pgcd against the same
//! `pgbackrest backup` run by hand, in the same run, on the same instance
//! and repository; then an in-place restore through pgcd, split by phase.
//!
//! One agent, `ledger/n1` (PostgreSQL 17 in Docker) with a posix
//! repository and `PGCD_BENCH_BACKUP_MB` of rows (default 1024). Then
//! `PGCD_BENCH_BACKUP_RUNS` rounds (default 3), each: a full backup by
//! hand (`docker exec -u postgres … pgbackrest … backup`, the command line
//! pgcd runs) and a full backup through pgcd (an `operations/<id>.yaml`
//! `Backup` committed: from the commit to the operation `succeeded`, and
//! the phase's own time from its record). The order alternates by round.
//! Last, a `Restore` (to the end of the WAL) committed: from the commit to
//! the operation `succeeded` and to the database `Ready`.
//!
//! Run: `cargo bench --bench backup` (root, Docker, the images); results
//! go to bench/backup.md by hand.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use pgcd::spec::backup::BackupType;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(3600);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn commit_op(work: &std::path::Path, id: &str, body: &str) -> Instant {
    std::fs::create_dir_all(work.join("operations")).unwrap();
    std::fs::write(
        work.join(format!("operations/{id}.yaml")),
        format!("id: {id}\n{body}"),
    )
    .unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", &format!("operation {id}")]);
    Instant::now()
}

/// Waits for the operation to succeed; returns its record.
fn succeeded(api: &str, id: &str) -> serde_json::Value {
    let op = wait_for(&format!("operation {id} ended"), LONG, || {
        get_json(&format!("{api}/v1/operations/{id}"))
            .filter(|op| matches!(op["state"].as_str(), Some("succeeded" | "failed")))
    });
    assert_eq!(op["state"], "succeeded", "{op:#}");
    op
}

fn seconds_between(a: &serde_json::Value, b: &serde_json::Value) -> f64 {
    let t =
        |v: &serde_json::Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    (t(b) - t(a)).num_milliseconds() as f64 / 1000.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    require_image(17);
    let mb = env_num("PGCD_BENCH_BACKUP_MB", 1024);
    let runs = env_num("PGCD_BENCH_BACKUP_RUNS", 3);
    let block = 95;
    let dir = tempfile::tempdir().unwrap();
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    std::fs::set_permissions(&nfs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ids: Vec<String> = (0..1).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 1, dir.path(), LONG);
    let api = agents[0].api();
    let spec = format!(
        "database_name: ledger\npostgres_version: \"17\"\nport: 6595\nnodes:\n  - name: n1\n    host_ids: [{}]\nbackup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: {}\n      retention_full: 50\n",
        ids[0],
        nfs.display()
    );
    std::fs::write(work.join("databases/ledger.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "ledger"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "ledger", Some(&sha), LONG);
    let container = format!("pgcd-ledger-n1-{}", ids[0]);
    let su = std::fs::read_to_string(agents[0].data_dir.join("instances/ledger-n1/superuser.pw"))
        .unwrap();
    let on = |q: &str| {
        psql(
            &container,
            &agents[0].addr,
            6595,
            "postgres",
            &su,
            "ledger",
            q,
        )
    };
    // About 250 bytes a row on disk.
    let rows = mb * 1024 * 1024 / 250;
    let t = Instant::now();
    on(&format!(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || repeat('x', 180) AS pad FROM generate_series(1, {rows}) g; CHECKPOINT"
    ))
    .unwrap();
    let size = on("SELECT pg_database_size('ledger')").unwrap();
    eprintln!(
        "loaded {rows} rows ({} MB) in {:.0} s",
        size.parse::<u64>().unwrap() / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    let argv = pgcd::backup::command::backup("ledger-n1", 1, BackupType::Full);
    let by_hand = || {
        let t = Instant::now();
        let out = Command::new("docker")
            .args(["exec", "-u", "postgres", &container])
            .args(&argv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed().as_secs_f64()
    };
    let (mut hand, mut commit, mut phase) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let through_pgcd = || {
            let id = format!("full{r}");
            let t = commit_op(
                &work,
                &id,
                "kind: Backup\ndatabase: ledger\nnode: n1\ntype: full\n",
            );
            let op = succeeded(&api, &id);
            let c = t.elapsed().as_secs_f64();
            let ph = &op["phases"][0];
            let p = seconds_between(&ph["started_at"], &ph["finished_at"]);
            (c, p)
        };
        let (h, (c, p)) = if r % 2 == 0 {
            let h = by_hand();
            (h, through_pgcd())
        } else {
            let cp = through_pgcd();
            (by_hand(), cp)
        };
        eprintln!("round {r}: by hand {h:.2} s, pgcd commit→succeeded {c:.2} s, phase {p:.2} s");
        hand.push(h);
        commit.push(c);
        phase.push(p);
    }
    let min = |xs: &[f64]| xs.iter().copied().fold(f64::INFINITY, f64::min);
    let (hm, cm, pm) = (min(&hand), min(&commit), min(&phase));
    let (h, c, p) = (median(hand), median(commit), median(phase));
    println!("| full backup of {size} bytes, {runs} rounds | median | ratio | fastest | ratio |");
    println!("|---|---|---|---|---|");
    println!("| `pgbackrest backup` by hand | {h:.2} s | | {hm:.2} s | |");
    println!(
        "| through pgcd, phase (task) | {p:.2} s | {:.3} | {pm:.2} s | {:.3} |",
        p / h,
        pm / hm
    );
    println!(
        "| through pgcd, commit → succeeded | {c:.2} s | {:.3} | {cm:.2} s | {:.3} |",
        c / h,
        cm / hm
    );

    // In-place restore to the end of the WAL, through pgcd.
    let t = commit_op(
        &work,
        "restore1",
        "kind: Restore\ndatabase: ledger\ntarget_nodes: [n1]\n",
    );
    let op = succeeded(&api, "restore1");
    let done = t.elapsed().as_secs_f64();
    wait_ready(&api, "ledger", None, LONG);
    let ready = t.elapsed().as_secs_f64();
    let ph = &op["phases"][0];
    let restore_phase = seconds_between(&ph["started_at"], &ph["finished_at"]);
    let log = op["tasks"][0]["id"]
        .as_str()
        .and_then(|id| get_text(&format!("{api}/v1/tasks/{id}/log")))
        .unwrap_or_default();
    let at = |needle: &str| -> Option<f64> {
        // Task log lines start with an RFC 3339 time.
        let line = log.lines().find(|l| l.contains(needle))?;
        let stamp = line.split_whitespace().next()?;
        let first = log.lines().next()?.split_whitespace().next()?;
        let p = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
        Some((p(stamp)? - p(first)?).num_milliseconds() as f64 / 1000.0)
    };
    println!();
    println!("| in-place restore of {size} bytes | seconds |");
    println!("|---|---|");
    println!("| commit → operation succeeded | {done:.2} |");
    println!("| commit → database Ready | {ready:.2} |");
    println!("| the restore phase | {restore_phase:.2} |");
    for (what, needle) in [
        ("phase start → instance stopped", "stopped"),
        ("→ pgbackrest restore started", "running pgbackrest"),
        ("→ instance started, recovering", "started; recovery"),
        ("→ restored and promoted", "restored and promoted"),
    ] {
        if let Some(s) = at(needle) {
            println!("| {what} | {s:.2} |");
        }
    }
    assert_eq!(
        on("SELECT count(*) FROM big").as_deref(),
        Some(rows.to_string().as_str()),
        "every row is back"
    );
}
