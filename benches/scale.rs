//! The reconcile core at scale (issue 11): one agent without a container
//! runtime (`--runtime none`) follows a repository of N single-node
//! databases on its own host, at N = 100, 1,000 and 10,000. The bench writes
//! a converged observation of every instance into etcd before the commit, so
//! the planner has nothing to do once the revision is in force. It reports:
//! - commit → every database `Ready` at that commit;
//! - per idle resync pass: the leader's CPU (`pgcd_reconcile_last_cpu_seconds`,
//!   the whole process: lease keep-alive and heartbeat included) and wall time;
//! - etcd writes while idle: revisions (one per put or delete) and WAL bytes
//!   (`etcd_disk_wal_write_bytes_total`), per pass and per minute;
//! - idle cost over 30 s: CPU of the agent and of its etcd, etcd requests a
//!   second, and the agent's RSS;
//! - one database added: commit → that database `Ready`, and the etcd
//!   revisions and WAL bytes the new revision cost.
//!
//! Run: `cargo bench --bench scale` (all three sizes) or
//! `cargo bench --bench scale -- 1000` (one size). Prints Markdown rows for
//! `bench/scale.md`. Needs etcd; no Docker.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // benches may panic and block

#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use common::{get_json, get_text, metric, wait_for};
use pgcd::spec::SourceFile;
use std::path::Path;
use std::time::{Duration, Instant};

/// The resync interval of the bench's agent: short, to collect passes fast.
const RESYNC: &str = "1s";
/// Idle passes measured per size.
const PASSES: usize = 20;
/// The idle window for CPU, requests and RSS.
const IDLE: Duration = Duration::from_secs(30);

fn database(i: usize) -> String {
    format!(
        "database_name: scale_{i:05}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [h1]\ndatabase_users:\n  - username: app\n    password: {{env: BENCH_APP_PASSWORD}}\n    db_owner: true\n    attributes: [LOGIN]\nextensions: [vector]\npostgresql_conf:\n  work_mem: 16MB\n",
        port = 10000 + i,
    )
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// Clock ticks a second (`getconf CLK_TCK`).
fn clock_ticks() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Resident set size of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// etcd's own figures, read from its plain-HTTP metrics listener.
#[derive(Clone, Copy)]
struct EtcdFigures {
    revision: f64,
    wal_bytes: f64,
    requests: f64,
}

fn etcd_figures(metrics_url: &str) -> EtcdFigures {
    let text = reqwest::blocking::get(metrics_url).unwrap().text().unwrap();
    let requests = text
        .lines()
        .filter(|l| l.starts_with("grpc_server_handled_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    EtcdFigures {
        revision: metric(&text, "etcd_debugging_mvcc_current_revision").unwrap(),
        wal_bytes: metric(&text, "etcd_disk_wal_write_bytes_total").unwrap_or(f64::NAN),
        requests,
    }
}

/// How many databases are `Ready` at `sha`.
fn ready_at(api: &str, sha: &str) -> usize {
    get_json(&format!("{api}/v1/databases"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|d| {
            d["observed_revision"] == sha
                && d["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == true)
                })
        })
        .count()
}

fn one_ready_at(api: &str, db: &str, sha: &str) -> bool {
    get_json(&format!("{api}/v1/databases/{db}")).is_some_and(|d| {
        d["observed_revision"] == sha
            && d["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == true)
            })
    })
}

/// The keys written between two etcd revisions (inclusive), by key with its
/// last segment cut off, and how often.
fn written_keys(etcd: &str, from: i64, to: i64) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    if from > to {
        return out;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd], Some(common::etcd_options()))
            .await
            .unwrap();
        let opts = etcd_client::WatchOptions::new()
            .with_prefix()
            .with_start_revision(from);
        let mut stream = c.watch("/", Some(opts)).await.unwrap();
        'events: while let Some(resp) = stream.message().await.unwrap() {
            for e in resp.events() {
                let kv = e.kv().unwrap();
                let key = String::from_utf8_lossy(kv.key());
                let class = key
                    .rsplit_once('/')
                    .map_or(key.to_string(), |(k, _)| format!("{k}/…"));
                *out.entry(class).or_insert(0) += 1;
                if kv.mod_revision() >= to {
                    break 'events;
                }
            }
        }
    });
    out
}

fn run(n: usize, tmp: &Path, metrics_port: u16) {
    let dir = tmp.join(format!("n{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    let work = dir.join("repo");
    git(&dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("databases")).unwrap();
    std::fs::write(work.join("databases/.keep"), "").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "empty"]);

    // etcd takes its metrics listener from the environment the agent passes on.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    std::env::set_var(
        "ETCD_LISTEN_METRICS_URLS",
        format!("http://127.0.0.1:{metrics_port}"),
    );
    let mut agent = common::Agent {
        id: "h1".into(),
        addr: common::addr(common::net(), 1),
        data_dir: dir.join("h1"),
        mode: [
            "--init",
            "--repo",
            work.to_str().unwrap(),
            "--resync-interval",
            RESYNC,
        ]
        .map(String::from)
        .to_vec(),
        child: None,
    }
    .guarded();
    std::env::set_var("BENCH_APP_PASSWORD", "bench");
    agent.spawn();
    let api = agent.api();
    wait_for(
        "agent applies the empty repository",
        Duration::from_secs(120),
        || {
            get_json(&format!("{api}/v1/source"))?["applied"]["sha"]
                .as_str()
                .map(drop)
        },
    );

    let mut files = Vec::new();
    for i in 0..n {
        let text = database(i);
        let path = format!("databases/scale_{i:05}.yaml");
        std::fs::write(work.join(&path), &text).unwrap();
        files.push(SourceFile { path, text });
    }
    common::observe_converged(&agent.etcd(), "h1", &agent.addr, &files);

    git(&work, &["add", "-A"]);
    let t = Instant::now();
    git(&work, &["commit", "-q", "-m", &format!("{n} databases")]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    // The whole list is large at 10,000 (17 MB): ask once a second there.
    let poll = Duration::from_millis(if n >= 5000 { 900 } else { 0 });
    wait_for("every database Ready", Duration::from_secs(1800), || {
        std::thread::sleep(poll);
        (ready_at(&api, &sha) == n).then_some(())
    });
    let to_ready = t.elapsed().as_secs_f64();
    eprintln!("{n}: every database Ready after {to_ready:.1} s; idle window");

    // Idle passes: the figures of each pass as the leader publishes them.
    let stats = |k: &str| get_text(&format!("{api}/metrics")).and_then(|m| metric(&m, k));
    let settle = stats("pgcd_reconcile_passes_total").unwrap();
    wait_for("two more passes", Duration::from_secs(120), || {
        stats("pgcd_reconcile_passes_total").filter(|p| *p >= settle + 2.0)
    });
    // The idle window: nothing asks the agent anything meanwhile.
    let (pid, etcd_pid) = (agent.pid().unwrap(), agent.etcd_pid().unwrap());
    let e0 = etcd_figures(&metrics_url);
    let (a0, c0, w0) = (cpu_secs(pid), cpu_secs(etcd_pid), Instant::now());
    let passes0 = stats("pgcd_reconcile_passes_total").unwrap();
    std::thread::sleep(IDLE);
    let e1 = etcd_figures(&metrics_url);
    let secs = w0.elapsed().as_secs_f64();
    let agent_cpu = (cpu_secs(pid) - a0) / secs * 100.0;
    let etcd_cpu = (cpu_secs(etcd_pid) - c0) / secs * 100.0;
    let passes = stats("pgcd_reconcile_passes_total").unwrap() - passes0;
    let (rss, etcd_rss) = (rss_mib(pid), rss_mib(etcd_pid));
    let written = written_keys(&agent.etcd(), e0.revision as i64 + 1, e1.revision as i64);

    eprintln!("{n}: idle window done; per-pass figures");
    // Each pass's own figures, as the leader publishes them.
    let mut last = stats("pgcd_reconcile_passes_total").unwrap();
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    while cpu.len() < PASSES {
        last = wait_for("next pass", Duration::from_secs(120), || {
            std::thread::sleep(Duration::from_millis(150));
            stats("pgcd_reconcile_passes_total").filter(|p| *p > last)
        });
        assert_eq!(
            stats("pgcd_plan_steps"),
            Some(0.0),
            "a converged cluster has nothing to do"
        );
        cpu.push(stats("pgcd_reconcile_last_cpu_seconds").unwrap() * 1000.0);
        wall.push(stats("pgcd_reconcile_last_duration_seconds").unwrap() * 1000.0);
    }
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);

    // One more file: its instance is observed first (an instance no
    // revision names is only noted), so the revision needs no step.
    let one = format!("scale_{n:05}");
    let path = format!("databases/{one}.yaml");
    let text = database(n);
    std::fs::write(work.join(&path), &text).unwrap();
    common::observe_converged(
        &agent.etcd(),
        "h1",
        &agent.addr,
        &[SourceFile { path, text }],
    );
    let e2 = etcd_figures(&metrics_url);
    git(&work, &["add", "-A"]);
    let t = Instant::now();
    git(&work, &["commit", "-q", "-m", "one more database"]);
    let sha2 = git(&work, &["rev-parse", "HEAD"]);
    wait_for("the new database Ready", Duration::from_secs(600), || {
        one_ready_at(&api, &one, &sha2).then_some(())
    });
    let change_to_ready = t.elapsed().as_secs_f64();
    let e3 = etcd_figures(&metrics_url);

    println!(
        "| {n} | {to_ready:.1} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.0} B | {agent_cpu:.2} % | {etcd_cpu:.2} % | {:.1} | {rss:.0} MiB | {etcd_rss:.0} MiB | {change_to_ready:.2} s | {:.0} | {:.0} kB |",
        pct(&cpu, 0.5),
        pct(&cpu, 0.95),
        pct(&wall, 0.5),
        (e1.revision - e0.revision) / passes,
        (e1.wal_bytes - e0.wal_bytes) / passes,
        (e1.requests - e0.requests) / secs,
        e3.revision - e2.revision,
        (e3.wal_bytes - e2.wal_bytes) / 1000.0,
    );
    eprintln!("{n} databases, written while idle for {secs:.0} s: {written:?}");
    drop(agent);
    std::env::remove_var("ETCD_LISTEN_METRICS_URLS");
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 1000, 10_000]
    } else {
        sizes
    };
    println!("| databases | commit → all Ready | CPU/pass p50 | CPU/pass p95 | wall/pass p50 | etcd revisions/pass | etcd WAL bytes/pass | agent CPU idle | etcd CPU idle | etcd requests/s | agent RSS | etcd RSS | one added → Ready | etcd revisions for it | etcd WAL for it |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (k, n) in sizes.into_iter().enumerate() {
        run(n, tmp.path(), 23790 + k as u16);
    }
}
