//! Harness for tests that run real PostgreSQL: agents with the Docker
//! runtime and short observe/resync intervals, host ids unique to the test
//! (container names are machine-wide), containers removed before and after,
//! `psql` run inside an instance's container over TCP with a password.

use super::*;
use std::process::Command;

/// The PostgreSQL image of a major must be built (scripts/build-images.sh).
pub fn require_image(major: u16) {
    require_tag(&major.to_string());
}

/// Like [`require_image`], for a major or an exact version (`17.10`).
pub fn require_tag(version: &str) {
    let ok = Command::new("docker")
        .args(["image", "inspect", &format!("pgcd/postgres:{version}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "image pgcd/postgres:{version} is missing: run scripts/build-images.sh {version} (scripts/test.sh does)"
    );
}

/// Host ids for a test block: unique on this machine while the test runs.
pub fn host_id(block: u8, i: usize) -> String {
    format!("t{}-{block}-h{}", net(), i + 1)
}

/// Removes every container of these hosts (on drop too).
pub struct Containers(pub Vec<String>);

impl Containers {
    /// Removes the hosts' leftovers now and again on drop.
    pub fn new(hosts: Vec<String>) -> Self {
        let c = Self(hosts);
        c.remove_all();
        c
    }

    fn remove_all(&self) {
        for h in &self.0 {
            let out = Command::new("docker")
                .args(["ps", "-aq", "--filter", &format!("label=io.pgcd.host={h}")])
                .output();
            if let Ok(out) = out {
                for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("docker").args(["rm", "-f", id]).output();
                }
            }
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// An agent of host `i` in `block` running PostgreSQL through Docker.
pub fn pg_agent(block: u8, i: usize, dir: &Path, mode: Vec<String>) -> Agent {
    let id = host_id(block, i);
    let mut mode = mode;
    mode.extend(
        [
            "--runtime",
            "docker",
            "--observe-interval",
            "1s",
            "--resync-interval",
            "2s",
        ]
        .map(String::from),
    );
    let mut a = Agent {
        data_dir: dir.join(&id),
        id,
        addr: addr(block, i),
        mode,
        child: None,
    };
    a.spawn();
    a
}

/// A database's status from the API.
pub fn status(api: &str, db: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/databases/{db}")).filter(|v| v.get("name").is_some())
}

/// Whether a condition of a status holds.
pub fn condition(status: &Value, kind: &str) -> bool {
    status["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == true))
}

/// Waits until `db` is Ready at `revision` (when given).
pub fn wait_ready(api: &str, db: &str, revision: Option<&str>, deadline: Duration) -> Value {
    wait_for(&format!("{db} Ready at {revision:?}"), deadline, || {
        let s = status(api, db)?;
        let at = revision.is_none_or(|r| s["observed_revision"] == r);
        (at && condition(&s, "Ready")).then_some(s)
    })
}

/// Runs SQL in an instance's container as `user` over TCP; `None` on error.
pub fn psql(
    container: &str,
    addr: &str,
    port: u16,
    user: &str,
    password: &str,
    db: &str,
    sql: &str,
) -> Option<String> {
    let out = Command::new("docker")
        .args([
            "exec",
            "-e",
            &format!("PGPASSWORD={password}"),
            container,
            "psql",
            "-X",
            "-At",
        ])
        .args([
            "-h",
            addr,
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "psql on {container}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `docker inspect` of a field, e.g. `{{.State.StartedAt}}`.
pub fn inspect(container: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, container])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Runs a docker command, asserting success.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `n` agents running PostgreSQL, h1 following a new local repository
/// (one empty commit) and the others joined one by one; returns them, all
/// healthy, and the repository's working directory.
pub fn pg_cluster(
    block: u8,
    n: usize,
    dir: &Path,
    deadline: Duration,
) -> (Vec<AgentGuard>, std::path::PathBuf) {
    pg_cluster_with(block, n, dir, deadline, &[])
}

/// [`pg_cluster`] with `extra` arguments for every agent (`--lease-ttl 2s`).
pub fn pg_cluster_with(
    block: u8,
    n: usize,
    dir: &Path,
    deadline: Duration,
    extra: &[&str],
) -> (Vec<AgentGuard>, std::path::PathBuf) {
    let with = |mut mode: Vec<String>| {
        mode.extend(extra.iter().map(|a| a.to_string()));
        mode
    };
    let work = dir.join("repo");
    super::gitrepo::git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::create_dir_all(work.join("databases")).unwrap();
    std::fs::write(work.join("databases/.keep"), "").unwrap();
    super::gitrepo::git(&work, &["add", "-A"]);
    super::gitrepo::git(&work, &["commit", "-q", "-m", "empty"]);
    let mut agents = vec![pg_agent(
        block,
        0,
        dir,
        with(vec![
            "--init".into(),
            "--repo".into(),
            work.display().to_string(),
        ]),
    )
    .guarded()];
    for i in 1..n {
        let api = agents[0].api();
        wait_for("previous agents healthy", deadline, || {
            (healthy_hosts(&api).len() == i).then_some(())
        });
        agents.push(pg_agent(block, i, dir, with(vec!["--join".into(), api])).guarded());
    }
    let api = agents[0].api();
    wait_for("every agent healthy", deadline, || {
        (healthy_hosts(&api).len() == n).then_some(())
    });
    (agents, work)
}

/// What a [`Writer`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Writes {
    /// Inserts committed.
    pub ok: u64,
    /// Inserts that failed (an error or a lost connection).
    pub failed: u64,
}

/// A client inserting one row per transaction into `items (node, n)` of a
/// node, over one TCP connection as the superuser, until stopped.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts writing to `addr:port`, database `db`, rows labelled `node`.
    pub fn start(addr: &str, port: u16, password: &str, db: &str, node: &str) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (flag, oks, fails) = (stop.clone(), ok.clone(), failed.clone());
        let conninfo =
            format!("host={addr} port={port} user=postgres password={password} dbname={db}");
        let node = node.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut n: i32 = 0;
                while !flag.load(Ordering::Relaxed) {
                    let client =
                        match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                            Ok((c, conn)) => {
                                tokio::spawn(conn);
                                c
                            }
                            Err(e) => {
                                eprintln!("writer {node}: {e}");
                                fails.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                    while !flag.load(Ordering::Relaxed) {
                        n += 1;
                        match client
                            .execute("INSERT INTO items (node, n) VALUES ($1, $2)", &[&node, &n])
                            .await
                        {
                            Ok(_) => oks.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                eprintln!("writer {node}: {e}");
                                fails.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        });
        Self {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// What it did so far.
    pub fn writes(&self) -> Writes {
        use std::sync::atomic::Ordering;
        Writes {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Stops and returns what it did.
    pub fn finish(mut self) -> Writes {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        self.writes()
    }
}

/// The log of the first task whose id starts with `prefix` and contains
/// `part` (`s-<db>.<node>.` and `.join-` find a node's join step).
pub fn task_log(api: &str, prefix: &str, part: &str) -> String {
    let tasks = get_json(&format!("{api}/v1/tasks")).expect("tasks");
    let id = tasks
        .as_array()
        .expect("a list of tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .find(|id| id.starts_with(prefix) && id.contains(part))
        .unwrap_or_else(|| panic!("no task {prefix}…{part}…"))
        .to_string();
    get_text(&format!("{api}/v1/tasks/{id}/log")).expect("the task's log")
}
