//! Reconciler figures (issue 5), with real agents:
//! 1. commit → `Ready` for a single-node PostgreSQL 17 database, warm image
//!    (target p50 of 5 under 15 s): one agent with the Docker runtime
//!    following a local repository; each round commits one new database.
//! 2. CPU of one reconcile pass on the leader with 50 databases and nothing
//!    to do: an agent without a runtime whose host observation is written
//!    (converged) into etcd by the bench, passing every 500 ms; the figure is
//!    the agent process's CPU during each pass (`last_pass_cpu_seconds`).
//!
//! Run: `cargo bench --bench reconcile` (prints Markdown rows for
//! bench/reconcile.md). Needs the image pgcd/postgres:17 and Docker.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

// The tests' harness: its Git helper, CA and HTTPS client.
#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use pgcd::spec::SourceFile;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent(Child, String);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // The bench's containers go with it.
        if let Ok(out) = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.pgcd.host={}", self.1),
            ])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

fn agent(host: &str, addr: &str, dir: &Path, repo: &Path, extra: &[&str]) -> Agent {
    let log = std::fs::File::create(dir.join(format!("{host}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pgcd"))
        .args([
            "agent",
            "--host-id",
            host,
            "--advertise",
            addr,
            "--data-dir",
        ])
        .arg(dir.join(host))
        .args(["--init", "--repo"])
        .arg(repo)
        .arg("--ca")
        .arg(&common::pki().ca_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env("BENCH_APP_PASSWORD", "bench")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    Agent(child, host.to_string())
}

fn get(url: &str) -> Option<serde_json::Value> {
    common::http()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?
        .json()
        .ok()
}

fn wait<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ready_at(api: &str, db: &str, sha: &str) -> bool {
    get(&format!("{api}/v1/databases/{db}")).is_some_and(|s| {
        s["observed_revision"] == sha
            && s["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == true)
            })
    })
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn database(i: usize, host: &str) -> String {
    format!(
        "database_name: bench_{i}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{host}]\ndatabase_users:\n  - username: app\n    password: {{env: BENCH_APP_PASSWORD}}\n    db_owner: true\n    attributes: [LOGIN]\nextensions: [vector]\npostgresql_conf:\n  work_mem: 16MB\n",
        port = 15432 + i,
    )
}

fn commit_to_ready(tmp: &Path) {
    let host = "bench-r1";
    let addr = "127.0.61.11";
    let api = format!("https://{addr}:7800");
    let work = tmp.join("repo-ready");
    git(tmp, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("databases")).unwrap();
    std::fs::write(work.join("databases/.keep"), "").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "empty"]);
    let _a = agent(
        host,
        addr,
        tmp,
        &work,
        &["--runtime", "docker", "--observe-interval", "1s"],
    );
    wait("agent up", Duration::from_secs(60), || {
        get(&format!("{api}/v1/source"))?["applied"]["sha"]
            .as_str()
            .map(drop)
    });
    let mut secs = Vec::new();
    println!("| round | commit → Ready |");
    println!("|---|---|");
    for i in 0..5 {
        std::fs::write(
            work.join(format!("databases/bench_{i}.yaml")),
            database(i, host),
        )
        .unwrap();
        git(&work, &["add", "-A"]);
        let t = Instant::now();
        git(&work, &["commit", "-q", "-m", &format!("bench_{i}")]);
        let sha = git(&work, &["rev-parse", "HEAD"]);
        wait("Ready", Duration::from_secs(180), || {
            ready_at(&api, &format!("bench_{i}"), &sha).then_some(())
        });
        let s = t.elapsed().as_secs_f64();
        println!("| {} | {s:.2} s |", i + 1);
        secs.push(s);
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    println!("\ncommit → Ready, PostgreSQL 17, warm image: p50 {:.2} s, best {:.2} s, worst {:.2} s (5 rounds)\n", pct(&secs, 0.5), secs[0], secs[4]);
}

fn pass_cpu(tmp: &Path) {
    let host = "h1";
    let addr = "127.0.61.12";
    let api = format!("https://{addr}:7800");
    let work = tmp.join("repo-cpu");
    git(tmp, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("databases")).unwrap();
    let mut files = Vec::new();
    for i in 0..50 {
        let text = database(i, host);
        std::fs::write(work.join(format!("databases/bench_{i}.yaml")), &text).unwrap();
        files.push(SourceFile {
            path: format!("databases/bench_{i}.yaml"),
            text,
        });
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "50 databases"]);
    let _a = agent(
        host,
        addr,
        tmp,
        &work,
        &["--runtime", "none", "--resync-interval", "500ms"],
    );
    wait("agent up", Duration::from_secs(60), || {
        get(&format!("{api}/v1/source"))?["applied"]["sha"]
            .as_str()
            .map(drop)
    });
    common::observe_converged(&format!("https://{addr}:2379"), host, addr, &files);
    wait("50 databases Ready", Duration::from_secs(60), || {
        let all = get(&format!("{api}/v1/databases"))?;
        let n = all
            .as_array()?
            .iter()
            .filter(|d| {
                d["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == true)
                })
            })
            .count();
        (n == 50).then_some(())
    });
    let stats = |k: &str| -> Option<f64> {
        let m = reqwest::blocking::get(format!("{api}/metrics"))
            .ok()?
            .text()
            .ok()?;
        m.lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
    };
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    let mut last = stats("pgcd_reconcile_passes_total").unwrap();
    while cpu.len() < 40 {
        let p = wait("next pass", Duration::from_secs(10), || {
            stats("pgcd_reconcile_passes_total").filter(|p| *p > last)
        });
        last = p;
        let steps = stats("pgcd_plan_steps").unwrap();
        assert_eq!(steps, 0.0, "a converged cluster has nothing to do");
        cpu.push(stats("pgcd_reconcile_last_cpu_seconds").unwrap() * 1000.0);
        wall.push(stats("pgcd_reconcile_last_duration_seconds").unwrap() * 1000.0);
    }
    cpu.sort_by(|a, b| a.total_cmp(b));
    wall.sort_by(|a, b| a.total_cmp(b));
    println!("| 50 databases, nothing to do (40 passes) | p50 | p95 |");
    println!("|---|---|---|");
    println!(
        "| CPU of the leader's process per pass | {:.1} ms | {:.1} ms |",
        pct(&cpu, 0.5),
        pct(&cpu, 0.95)
    );
    println!(
        "| wall time per pass | {:.1} ms | {:.1} ms |",
        pct(&wall, 0.5),
        pct(&wall, 0.95)
    );
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let only = std::env::args().nth(1).unwrap_or_default();
    if only.is_empty() || only == "ready" || only == "--bench" {
        commit_to_ready(tmp.path());
    }
    if only.is_empty() || only == "cpu" || only == "--bench" {
        pass_cpu(tmp.path());
    }
}
