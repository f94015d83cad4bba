//! Benchmark: leader failover time after `kill -9` of the leader's agent
//! (p50/p95 over `PGCD_BENCH_KILLS` kills, default 20), and the resident
//! memory of idle agents and their etcd after `PGCD_BENCH_IDLE_SECS`
//! (default 300). Real agents and etcd on 127.<net>.20.x (failover)
//! and 127.<net>.21.x (idle); `PGCD_BENCH_SETTLE_SECS` (default 3) of steady state
//! before each kill. Run: `cargo bench --bench failover`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn is_leader(agent: &Agent) -> bool {
    get_text(&format!("{}/metrics", agent.api())).and_then(|t| metric(&t, "pgcd_is_leader"))
        == Some(1.0)
}

fn leader_index(c: &Cluster) -> Option<usize> {
    let leaders: Vec<usize> = (0..c.agents.len())
        .filter(|i| c.agents[*i].child.is_some() && is_leader(&c.agents[*i]))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let kills = env_num("PGCD_BENCH_KILLS", 20) as usize;
    let idle = Duration::from_secs(env_num("PGCD_BENCH_IDLE_SECS", 300));
    let settle = env_num("PGCD_BENCH_SETTLE_SECS", 3);
    let started = Instant::now();
    let idle_cluster = Cluster::start(21, 3);
    let mut c = Cluster::start(20, 3);

    let mut times = Vec::with_capacity(kills);
    for round in 0..kills {
        let dead = wait_for("one leader", Duration::from_secs(30), || leader_index(&c));
        let t0 = Instant::now();
        c.agents[dead].kill9();
        let (new, took) = wait_for("a new leader", Duration::from_secs(30), || {
            let i = (0..3).find(|i| *i != dead && is_leader(&c.agents[*i]))?;
            Some((i, t0.elapsed()))
        });
        eprintln!(
            "kill {:>2}: {} -> {} in {:.3} s",
            round + 1,
            c.agents[dead].id,
            c.agents[new].id,
            took.as_secs_f64()
        );
        times.push(took);
        c.agents[dead].spawn();
        let api = c.agents[new].api();
        wait_for("3 healthy hosts", Duration::from_secs(60), || {
            (healthy_hosts(&api).len() == 3).then_some(())
        });
        wait_for("3 healthy members", Duration::from_secs(60), || {
            let m = members(&api);
            (m.len() == 3
                && m.iter()
                    .all(|m| m["healthy"] == serde_json::Value::Bool(true)))
            .then_some(())
        });
        // Steady state before the next kill: a failure in the first moments
        // of a new leader's term may still find the etcd raft leader on its host.
        std::thread::sleep(Duration::from_secs(settle));
    }
    times.sort();
    println!("## Leader failover after kill -9 of the leader's agent");
    println!();
    println!("kills: {kills}, {settle} s steady state before each, lease TTL 2 s (default), 3 agents with embedded etcd on one 2-core machine");
    println!();
    if !times.is_empty() {
        println!(
            "| p50 | p95 | min | max |\n|---|---|---|---|\n| {:.2} s | {:.2} s | {:.2} s | {:.2} s |",
            percentile(&times, 0.5).as_secs_f64(),
            percentile(&times, 0.95).as_secs_f64(),
            times[0].as_secs_f64(),
            times[times.len() - 1].as_secs_f64()
        );
    }
    drop(c);

    let remaining = idle.saturating_sub(started.elapsed());
    eprintln!(
        "waiting {} s more for the idle cluster",
        remaining.as_secs()
    );
    std::thread::sleep(remaining);
    println!();
    println!(
        "## Idle resident memory (VmRSS) after {} s",
        started.elapsed().as_secs()
    );
    println!();
    println!("| host | agent | its etcd |\n|---|---|---|");
    for a in &idle_cluster.agents {
        let agent = a.pid().and_then(vm_rss_kib).unwrap_or(0);
        let etcd = a.etcd_pid().and_then(vm_rss_kib).unwrap_or(0);
        println!(
            "| {} | {:.1} MiB | {:.1} MiB |",
            a.id,
            agent as f64 / 1024.0,
            etcd as f64 / 1024.0
        );
    }
}
