//! Source loop figures (issue 4):
//! 1. webhook received → new desired state recorded in etcd, for a
//!    100-database repository (target p95 < 500 ms);
//! 2. CPU of one poll of an unchanged remote (target < 20 ms).
//!
//! Run: `cargo bench --bench source` (prints Markdown rows for bench/source.md).
//! Uses a real agent with embedded etcd on 127.0.60.11 and a repository served
//! by git-daemon (so no file watcher shortcuts the webhook).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

// The tests' harness: its Git helper, CA and HTTPS client.
#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

fn database(i: usize, max_connections: usize) -> String {
    format!(
        "database_name: db_{i}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [h{a}, h{b}]\n  - name: n2\n    host_ids: [h{c}]\ndatabase_users:\n  - username: app_{i}\n    password: {{env: APP_{i}}}\n    db_owner: true\nextensions: [vector, pg_cron]\npostgresql_conf:\n  max_connections: {max_connections}\nbackup_config:\n  repositories:\n    - id: local\n      type: posix\n      base_path: /var/lib/pgbackrest\n  schedules:\n    - id: nightly\n      type: full\n      cron_expression: \"0 2 * * *\"\n",
        port = 10000 + i,
        a = i % 20,
        b = (i + 1) % 20,
        c = (i + 2) % 20,
    )
}

struct Killer(Vec<Child>);
impl Drop for Killer {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("origin.git");
    let work = tmp.path().join("work");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        tmp.path(),
        &["init", "-q", "-b", "main", work.to_str().unwrap()],
    );
    std::fs::create_dir_all(work.join("databases")).unwrap();
    for i in 0..100 {
        std::fs::write(
            work.join(format!("databases/db_{i}.yaml")),
            database(i, 100),
        )
        .unwrap();
    }
    std::fs::write(
        work.join("pgcd.yaml"),
        "source:\n  poll_interval: 10m\nreporters:\n  git_notes:\n    push: false\n",
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "100 databases"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);

    // 2. An unchanged remote, polled in-process through the same mirror code.
    let mirror = pgcd::source::git::Mirror::open(
        &tmp.path().join("mirror"),
        pgcd::source::git::SourceConfig::new(format!("file://{}", bare.display())),
    )
    .unwrap();
    mirror.fetch(&[], Duration::from_secs(10)).unwrap();
    let n = 200;
    let (c0, t0) = (cpu_seconds(), Instant::now());
    for _ in 0..n {
        mirror.fetch(&[], Duration::from_secs(10)).unwrap();
    }
    let cpu_ms = (cpu_seconds() - c0) * 1000.0 / n as f64;
    let wall_ms = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;

    // 1. Webhook → desired state recorded, through a real agent.
    let exec_path = git(tmp.path(), &["--exec-path"]);
    let addr = "127.0.60.11";
    let daemon = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args([
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.60.20",
            "--port=9418",
        ])
        .arg(format!("--base-path={}", tmp.path().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let agent = Command::new(env!("CARGO_BIN_EXE_pgcd"))
        .args([
            "agent",
            "--host-id",
            "h1",
            "--advertise",
            addr,
            "--data-dir",
        ])
        .arg(tmp.path().join("h1"))
        .args(["--init", "--repo", "git://127.0.60.20/origin.git"])
        .arg("--ca")
        .arg(&common::pki().ca_dir)
        .env("PGCD_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _k = Killer(vec![agent, daemon]);
    let api = format!("https://{addr}:7800");
    let applied = || {
        get(&format!("{api}/v1/source"))
            .and_then(|v| v["applied"]["sha"].as_str().map(str::to_string))
    };
    let head = git(&work, &["rev-parse", "HEAD"]);
    let start = Instant::now();
    while applied().as_deref() != Some(head.as_str()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent never applied the first revision"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = common::http().clone();
    let mut times = Vec::new();
    for round in 0..20 {
        std::fs::write(
            work.join(format!("databases/db_{}.yaml", round % 100)),
            database(round % 100, 200 + round),
        )
        .unwrap();
        git(&work, &["commit", "-q", "-am", &format!("round {round}")]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        let head = git(&work, &["rev-parse", "HEAD"]);
        let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
        let sig = format!(
            "sha256={}",
            pgcd::source::webhook::sign(SECRET.as_bytes(), &body)
        );
        let t = Instant::now();
        let res = client
            .post(format!("{api}/v1/webhooks/generic"))
            .header("X-Pgcd-Signature", sig)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 202);
        while applied().as_deref() != Some(head.as_str()) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "round {round} never applied"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("| webhook → desired state recorded (100 databases, 20 rounds) | p50 {:.0} ms | p95 {:.0} ms | max {:.0} ms |", pct(&times, 0.5), pct(&times, 0.95), times[times.len() - 1]);
    println!("| poll of an unchanged remote (file://, {n} polls) | {cpu_ms:.2} ms CPU | {wall_ms:.2} ms wall | |");
}
