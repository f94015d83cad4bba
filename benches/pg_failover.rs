//! Benchmark: PostgreSQL failover and switchover against Patroni, in the
//! same run.
//!
//! pgcd: three agents, `ledger/n1` on all three hosts (PostgreSQL 17 in
//! Docker), a client writing through a multi-host connection string. Each
//! run loses the primary's host as Patroni's anchor loses its node —
//! `kill -9` of the agent and of the PostgreSQL container — and times until
//! a standby accepts writes (`pg_is_in_recovery() = f`), then brings the
//! host back and waits until it follows as a standby. Whether the lost host
//! was also the leader is reported per run. Then `PGCD_BENCH_SWITCHOVERS`
//! switchovers (default 5) through `operations/`: the time from the commit
//! to a writable candidate, and the client's longest window without a
//! commit. `PGCD_BENCH_RUNS` failovers (default 10) with the default lease
//! (5 s) and as many with `--lease-ttl 2s`; `PGCD_BENCH_SETTLE_SECS`
//! (default 3) of steady state before each loss.
//!
//! Patroni: `../shared/tools/patroni-anchor.sh PGCD_BENCH_PATRONI_RUNS`
//! (default 5; 0 skips it), Patroni's defaults (ttl 30, loop_wait 10).
//!
//! Run: `cargo bench --bench pg_failover` (root, Docker, the images);
//! results go to bench/failover.md by hand.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use common::ha::*;
use common::*;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut xs: Vec<f64>) -> String {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if xs.is_empty() {
        return format!("| {name} | 0 | – | – | – | – |");
    }
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
        xs.len(),
        xs[0],
        pct(&xs, 0.5),
        pct(&xs, 0.95),
        xs[xs.len() - 1]
    )
}

fn is_leader(agent: &Agent) -> bool {
    get_text(&format!("{}/metrics", agent.api())).and_then(|t| metric(&t, "pgcd_is_leader"))
        == Some(1.0)
}

/// `runs` host losses; each: (seconds to a writable standby, the lost host led).
fn failovers(block: u8, port: u16, args: &[&str], runs: u64) -> Vec<(f64, bool)> {
    let mut ha = Ha::start(block, port, "", args);
    let mut out = Vec::new();
    for run in 0..runs {
        let primary = wait_for("one primary", WAIT, || (0..3).find(|i| ha.writable(*i)));
        for i in (0..3).filter(|i| *i != primary) {
            wait_for("the standbys stream", WAIT, || ha.standby(i).then_some(()));
        }
        // Steady state. A standby whose agent started less than 10 s ago
        // holds a failover back (plan::ha), so with a short settle a run
        // right after the last one's return may include that wait.
        std::thread::sleep(Duration::from_secs(env_num("PGCD_BENCH_SETTLE_SECS", 3)));
        let led = is_leader(&ha.agents[primary]);
        let container = format!("pgcd-ledger-n1-{}", ha.ids[primary]);
        let t0 = Instant::now();
        ha.agents[primary].kill9();
        let _ = std::process::Command::new("docker")
            .args(["kill", &container])
            .output();
        let new = wait_for("a standby promoted", WAIT, || {
            (0..3).filter(|i| *i != primary).find(|i| ha.writable(*i))
        });
        let took = t0.elapsed().as_secs_f64();
        eprintln!(
            "pgcd failover run {} ({}): {took:.2} s, {} took over",
            run + 1,
            if led {
                "the leader's host"
            } else {
                "a follower's host"
            },
            ha.ids[new]
        );
        out.push((took, led));
        ha.agents[primary].spawn();
        wait_for("the lost host follows again", WAIT, || {
            ha.standby(primary).then_some(())
        });
    }
    out
}

/// `runs` switchovers under writes: (seconds to a writable candidate,
/// seconds of the longest window without a commit).
fn switchovers(block: u8, port: u16, runs: u64) -> Vec<(f64, f64)> {
    let ha = Ha::start(block, port, "", &[]);
    let api = ha.agents[0].api();
    let client = ha.client();
    std::fs::create_dir_all(ha.work.join("operations")).unwrap();
    let mut out = Vec::new();
    for run in 0..runs {
        let primary = wait_for("one primary", WAIT, || (0..3).find(|i| ha.writable(*i)));
        for i in (0..3).filter(|i| *i != primary) {
            wait_for("the standbys stream", WAIT, || ha.standby(i).then_some(()));
        }
        ha.writes_go_on(&client, 100);
        let candidate = (primary + 1) % 3;
        let id = format!("move-{run}");
        std::fs::write(
            ha.work.join(format!("operations/{id}.yaml")),
            format!(
                "id: {id}\nkind: Switchover\ndatabase: ledger\nnode: n1\ncandidate: {}\n",
                ha.ids[candidate]
            ),
        )
        .unwrap();
        git(&ha.work, &["add", "-A"]);
        let t0 = Instant::now();
        git(&ha.work, &["commit", "-q", "-m", "switch over"]);
        wait_for("the candidate writable", WAIT, || {
            ha.writable(candidate).then_some(())
        });
        let took = t0.elapsed().as_secs_f64();
        wait_for("the switchover succeeded", WAIT, || {
            get_json(&format!("{api}/v1/operations/{id}")).filter(|op| op["state"] == "succeeded")
        });
        ha.writes_go_on(&client, 100);
        let gap = client.longest_gap(t0).as_secs_f64();
        eprintln!("pgcd switchover run {}: {took:.2} s to the candidate, writes paused at most {gap:.2} s", run + 1);
        out.push((took, gap));
    }
    let acked = client.finish();
    let now = wait_for("one primary", WAIT, || (0..3).find(|i| ha.writable(*i)));
    ha.assert_all_on(now, &acked);
    out
}

fn patroni(runs: u64) -> Vec<f64> {
    if runs == 0 {
        return Vec::new();
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/patroni-anchor.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(runs.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    eprint!("{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("patroni failover run "))
        .filter_map(|l| l.split(": ").nth(1)?.trim_end_matches(" s").parse().ok())
        .collect()
}

fn main() {
    let runs = env_num("PGCD_BENCH_RUNS", 10);
    let switch_runs = env_num("PGCD_BENCH_SWITCHOVERS", 5);
    let patroni_runs = env_num("PGCD_BENCH_PATRONI_RUNS", 5);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load before: {}", load.trim());

    let default_ttl = failovers(91, 6591, &[], runs);
    let short_ttl = failovers(92, 6592, &["--lease-ttl", "2s"], runs);
    let switched = switchovers(93, 6593, switch_runs);
    let anchor = patroni(patroni_runs);

    let secs = |xs: &[(f64, bool)], led: Option<bool>| -> Vec<f64> {
        xs.iter()
            .filter(|(_, l)| led.is_none_or(|want| *l == want))
            .map(|(s, _)| *s)
            .collect()
    };
    println!("| what | runs | min s | p50 s | p95 s | max s |");
    println!("|---|---|---|---|---|---|");
    println!(
        "{}",
        summary(
            "pgcd failover, lease 5 s (default)",
            secs(&default_ttl, None)
        )
    );
    println!(
        "{}",
        summary(
            "… the lost host was the leader's",
            secs(&default_ttl, Some(true))
        )
    );
    println!(
        "{}",
        summary(
            "… the lost host was a follower's",
            secs(&default_ttl, Some(false))
        )
    );
    println!(
        "{}",
        summary("pgcd failover, lease 2 s", secs(&short_ttl, None))
    );
    println!(
        "{}",
        summary(
            "… the lost host was the leader's",
            secs(&short_ttl, Some(true))
        )
    );
    println!(
        "{}",
        summary(
            "… the lost host was a follower's",
            secs(&short_ttl, Some(false))
        )
    );
    println!(
        "{}",
        summary(
            "pgcd switchover: commit to a writable candidate",
            switched.iter().map(|s| s.0).collect()
        )
    );
    println!(
        "{}",
        summary(
            "pgcd switchover: longest window without a commit",
            switched.iter().map(|s| s.1).collect()
        )
    );
    println!(
        "{}",
        summary("Patroni failover (ttl 30, loop_wait 10)", anchor.clone())
    );
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (!xs.is_empty()).then(|| pct(&xs, 0.5))
    };
    if let (Some(p), Some(d), Some(s)) = (
        median(anchor),
        median(secs(&default_ttl, None)),
        median(secs(&short_ttl, None)),
    ) {
        println!();
        println!(
            "Patroni's p50 / pgcd's p50: {:.1}× with the default lease, {:.1}× with a 2 s lease",
            p / d,
            p / s
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load after: {}", load.trim());
}
