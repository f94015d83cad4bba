//! Replication figures (issue 6), with real agents and PostgreSQL 17
//! containers on simulated hosts (127.0.x.11-13):
//! 1. commit → a three-node active-active database `Ready` with its six
//!    links streaming (target under 45 s), 3 rounds;
//! 2. replication lag between two active-active nodes under a steady
//!    pgbench write load on both: each transaction on n1 also inserts a
//!    heartbeat row stamped `clock_timestamp()`, whose copy on n2 has a
//!    column defaulting to `clock_timestamp()` at apply (same machine, same
//!    clock), so every heartbeat gives one exact lag;
//! 3. adding a third node to a two-node database of about 1 GB while a
//!    writer inserts on each existing node: time from commit to the new
//!    node's links streaming, the join step's own time, and the writers'
//!    throughput during the addition over their throughput before it.
//!
//! Run: `cargo bench --bench replication` (prints Markdown for
//! bench/replication.md; `PGCD_BENCH_GB` sets the size of the third part,
//! `PGCD_BENCH_ONLY=ready|lag|join` runs one part).
//! Needs Docker and the image pgcd/postgres:17.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

#[path = "../tests/common/mod.rs"]
mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(900);

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn spec(db: &str, port: u16, ids: &[String], nodes: usize) -> String {
    let mut s = format!(
        "database_name: {db}\npostgres_version: \"17\"\nport: {port}\nreplication: native\nnodes:\n"
    );
    for (k, id) in ids.iter().enumerate().take(nodes) {
        s.push_str(&format!("  - name: n{}\n    host_ids: [{id}]\n", k + 1));
    }
    s
}

fn commit(work: &Path, db: &str, text: &str) -> String {
    std::fs::write(work.join(format!("databases/{db}.yaml")), text).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", db]);
    git(work, &["rev-parse", "HEAD"])
}

fn streaming(api: &str, db: &str) -> usize {
    status(api, db)
        .and_then(|s| {
            s["links"]
                .as_array()
                .map(|l| l.iter().filter(|l| l["state"] == "streaming").count())
        })
        .unwrap_or(0)
}

struct Node<'a> {
    dir: &'a Path,
    block: u8,
    ids: &'a [String],
    db: &'a str,
    port: u16,
}

impl Node<'_> {
    fn password(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(&self.ids[i]).join(format!(
            "instances/{}-n{}/superuser.pw",
            self.db,
            i + 1
        )))
        .unwrap()
    }

    fn container(&self, i: usize) -> String {
        format!("pgcd-{}-n{}-{}", self.db, i + 1, self.ids[i])
    }

    fn sql(&self, i: usize, sql: &str) -> Option<String> {
        psql(
            &self.container(i),
            &addr(self.block, i),
            self.port,
            "postgres",
            &self.password(i),
            self.db,
            sql,
        )
    }

    /// Runs a shell command in node `i`'s container with its password.
    fn shell(&self, i: usize, script: &str) -> String {
        docker(&[
            "exec",
            "-e",
            &format!("PGPASSWORD={}", self.password(i)),
            "-e",
            &format!("PGHOST={}", addr(self.block, i)),
            "-e",
            &format!("PGPORT={}", self.port),
            "-e",
            "PGUSER=postgres",
            "-e",
            &format!("PGDATABASE={}", self.db),
            &self.container(i),
            "bash",
            "-c",
            script,
        ])
    }

    /// The instance directory of node `i` (mounted at /var/lib/pgcd).
    fn instance_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir
            .join(&self.ids[i])
            .join(format!("instances/{}-n{}", self.db, i + 1))
    }
}

fn three_node_ready(api: &str, work: &Path, ids: &[String]) -> Vec<f64> {
    let mut times = Vec::new();
    for round in 0..3 {
        let db = format!("tri{round}");
        let started = Instant::now();
        let sha = commit(work, &db, &spec(&db, 6600 + round as u16, ids, 3));
        wait_for("three nodes Ready", WAIT, || {
            let s = status(api, &db)?;
            (s["observed_revision"] == sha.as_str() && condition(&s, "Ready")).then_some(())
        });
        wait_for("six links", WAIT, || {
            (streaming(api, &db) == 6).then_some(())
        });
        times.push(started.elapsed().as_secs_f64());
    }
    times
}

/// Lag samples (seconds) of heartbeats written on n1 and applied on n2
/// under `rate` transactions per second on each node for `seconds`.
fn lag_under_load(n: &Node, rate: u32, seconds: u32) -> (Vec<f64>, String) {
    for i in 0..2 {
        // Created by hand on each node (pgcd's sessions are not captured),
        // so the copy on n2 can stamp the arrival.
        let arrival = if i == 1 {
            ", arrived timestamptz DEFAULT clock_timestamp()"
        } else {
            ""
        };
        n.sql(
            i,
            &format!(
                "SET application_name = 'pgcd'; \
                 CREATE TABLE beat (id bigserial PRIMARY KEY, sent timestamptz NOT NULL{arrival}); \
                 CREATE TABLE load (id bigserial PRIMARY KEY, node int, payload text)"
            ),
        )
        .unwrap();
    }
    for i in 0..2 {
        wait_for("tables in the subscription", WAIT, || {
            n.sql(
                i,
                "SELECT (SELECT count(*) FROM pg_subscription_rel) = \
                 (SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgcd_all')",
            )
            .filter(|v| v == "t")
        });
        wait_for("sequences aligned", WAIT, || {
            n.sql(
                i,
                "SELECT count(*) FROM pg_sequences WHERE sequencename IN ('beat_id_seq', 'load_id_seq') AND increment_by = 16",
            )
            .filter(|v| v == "2")
        });
    }
    let scripts = [
        "INSERT INTO load (node, payload) VALUES (1, repeat('x', 200));\nINSERT INTO beat (sent) VALUES (clock_timestamp());\n",
        "INSERT INTO load (node, payload) VALUES (2, repeat('y', 200));\n",
    ];
    for (i, script) in scripts.iter().enumerate() {
        std::fs::write(n.instance_dir(i).join("bench.sql"), script).unwrap();
    }
    let summary = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|i| {
                s.spawn(move || {
                    n.shell(
                        i,
                        &format!(
                            "pgbench -n -c 2 -j 1 -T {seconds} -R {rate} -f /var/lib/pgcd/bench.sql 2>&1 | grep -E '^(tps|latency average|number of failed)'"
                        ),
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap().replace('\n', "; "))
            .collect::<Vec<_>>()
            .join(" | ")
    });
    let beats = n
        .sql(0, "SELECT count(*) FROM beat")
        .unwrap()
        .parse::<u64>()
        .unwrap();
    wait_for("every heartbeat on n2", WAIT, || {
        n.sql(1, "SELECT count(*) FROM beat")
            .filter(|c| c.parse::<u64>().ok() == Some(beats))
    });
    let out = n
        .sql(
            1,
            "SELECT string_agg(extract(epoch FROM arrived - sent)::text, ',') FROM beat",
        )
        .unwrap();
    let mut lags: Vec<f64> = out.split(',').filter_map(|v| v.parse().ok()).collect();
    lags.sort_by(f64::total_cmp);
    (lags, summary)
}

struct Addition {
    bytes: i64,
    load_seconds: f64,
    to_links: f64,
    join_step: String,
    before_tps: f64,
    during_tps: f64,
    writes: Vec<Writes>,
}

fn node_addition(api: &str, work: &Path, n: &Node, gb: f64) -> Addition {
    n.sql(
        0,
        "CREATE TABLE items (id bigserial PRIMARY KEY, node text NOT NULL, n int NOT NULL); \
         CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL)",
    )
    .unwrap();
    for i in 0..2 {
        wait_for("the tables subscribed and aligned", WAIT, || {
            let rel = n.sql(
                i,
                "SELECT (SELECT count(*) FROM pg_subscription_rel) = \
                 (SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgcd_all')",
            )?;
            let seq = n.sql(
                i,
                "SELECT increment_by FROM pg_sequences WHERE sequencename = 'items_id_seq'",
            )?;
            (rel == "t" && seq == "16").then_some(())
        });
    }
    // About 1.1 KB a row.
    let rows = (gb * 1024.0 * 1024.0 * 1024.0 / 1100.0) as i64;
    let started = Instant::now();
    let mut at = 0;
    while at < rows {
        let to = (at + 100_000).min(rows);
        n.sql(
            0,
            &format!(
                "INSERT INTO big SELECT g, repeat(md5(g::text), 32) FROM generate_series({}, {to}) g",
                at + 1
            ),
        )
        .unwrap();
        at = to;
    }
    wait_for("the data on n2", WAIT, || {
        n.sql(1, "SELECT count(*) FROM big")
            .filter(|c| c.parse::<i64>().ok() == Some(rows))
    });
    let load_seconds = started.elapsed().as_secs_f64();
    let bytes: i64 = n
        .sql(0, "SELECT pg_database_size(current_database())")
        .unwrap()
        .parse()
        .unwrap();
    let writers: Vec<Writer> = (0..2)
        .map(|i| {
            Writer::start(
                &addr(n.block, i),
                n.port,
                &n.password(i),
                n.db,
                &format!("w{}", i + 1),
            )
        })
        .collect();
    let total = |w: &[Writer]| w.iter().map(|w| w.writes().ok).sum::<u64>();
    std::thread::sleep(Duration::from_secs(5));
    let (t0, c0) = (Instant::now(), total(&writers));
    std::thread::sleep(Duration::from_secs(20));
    let before_tps = (total(&writers) - c0) as f64 / t0.elapsed().as_secs_f64();
    let (t1, c1) = (Instant::now(), total(&writers));
    commit(work, n.db, &spec(n.db, n.port, n.ids, 3));
    wait_for("six links", WAIT, || {
        (streaming(api, n.db) == 6).then_some(())
    });
    let to_links = t1.elapsed().as_secs_f64();
    let during_tps = (total(&writers) - c1) as f64 / to_links;
    let writes: Vec<Writes> = writers.into_iter().map(Writer::finish).collect();
    let log = task_log(api, &format!("s-{}.n3.", n.db), ".join-");
    let join_step = log
        .lines()
        .filter(|l| l.contains("copied ") || l.contains("restored ") || l.contains("step took"))
        .map(|l| {
            l.split_once(' ')
                .map_or(l, |(_, rest)| rest)
                .trim()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("; ");
    Addition {
        bytes,
        load_seconds,
        to_links,
        join_step,
        before_tps,
        during_tps,
        writes,
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    require_image(17);
    let gb: f64 = std::env::var("PGCD_BENCH_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let block = 71;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let api = agents[0].api();

    let only = std::env::var("PGCD_BENCH_ONLY").ok();
    let runs = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if runs("ready") {
        ready_part(&api, &work, &ids);
    }
    if runs("lag") {
        lag_part(&api, &work, &ids, dir.path(), block);
    }
    if runs("join") {
        join_part(&api, &work, &ids, dir.path(), block, gb);
    }
}

fn ready_part(api: &str, work: &Path, ids: &[String]) {
    let ready = three_node_ready(api, work, ids);
    let mut sorted = ready.clone();
    sorted.sort_by(f64::total_cmp);
    println!("## Commit → three-node active-active database Ready (six links streaming)\n");
    println!("| round | seconds |\n|---|---|");
    for (i, t) in ready.iter().enumerate() {
        println!("| {} | {t:.1} |", i + 1);
    }
    println!("\np50 **{:.1} s** (target under 45 s)\n", pct(&sorted, 0.5));
}

/// Commits `n`'s database on two nodes and waits until it is Ready.
fn two_nodes<'a>(api: &str, work: &Path, n: Node<'a>) -> Node<'a> {
    let sha = commit(work, n.db, &spec(n.db, n.port, n.ids, 2));
    wait_ready(api, n.db, Some(&sha), WAIT);
    n
}

fn lag_part(api: &str, work: &Path, ids: &[String], dir: &Path, block: u8) {
    let lagdb = two_nodes(
        api,
        work,
        Node {
            dir,
            block,
            ids,
            db: "lag",
            port: 6620,
        },
    );
    let (rate, seconds) = (200, 60);
    let (lags, summary) = lag_under_load(&lagdb, rate, seconds);
    println!("## Replication lag n1 → n2 under write load on both nodes\n");
    println!(
        "pgbench on each node, 2 clients, {rate} tx/s for {seconds} s (n1: an insert of 200 bytes and a heartbeat; n2: an insert); pgbench said: {summary}\n"
    );
    println!(
        "| heartbeats | p50 | p95 | p99 | max |\n|---|---|---|---|---|\n| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |\n",
        lags.len(),
        pct(&lags, 0.5) * 1e3,
        pct(&lags, 0.95) * 1e3,
        pct(&lags, 0.99) * 1e3,
        lags.last().copied().unwrap_or(0.0) * 1e3
    );
}

fn join_part(api: &str, work: &Path, ids: &[String], dir: &Path, block: u8, gb: f64) {
    let big = two_nodes(
        api,
        work,
        Node {
            dir,
            block,
            ids,
            db: "grow",
            port: 6630,
        },
    );
    let a = node_addition(api, work, &big, gb);
    println!("## Adding a third node to a two-node database under write load\n");
    println!(
        "Database size {:.2} GB (`pg_database_size` on n1; loaded and replicated to n2 in {:.0} s). One writer per existing node, one-row transactions with a 5 ms pause.\n",
        a.bytes as f64 / 1e9,
        a.load_seconds
    );
    println!(
        "| commit → six links streaming | join step | writers before | writers during | ratio | failed writes |\n|---|---|---|---|---|---|\n| {:.1} s | {} | {:.0} rows/s | {:.0} rows/s | {:.2} | {} |",
        a.to_links,
        a.join_step,
        a.before_tps,
        a.during_tps,
        a.during_tps / a.before_tps,
        a.writes.iter().map(|w| w.failed).sum::<u64>()
    );
}
