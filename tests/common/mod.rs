//! Test harness: real `pgcd agent` processes with embedded etcd on loopback
//! addresses `127.<net>.<block>.11`, `.12`, ... Each test takes its own block so
//! test binaries and tests can run at once. Children are killed on drop.

#![allow(dead_code)]

pub mod firewall;
pub mod gitrepo;
pub mod ha;
pub mod pg;
pub mod servers;
pub mod steps;
pub mod tls;

pub use tls::*;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When set (by a test binary that partitions hosts with iptables), every
/// agent runs with a group id of its own, [`agent_gid`], which its etcd
/// inherits: iptables' `owner` match then tells one host's traffic from
/// another's, although all of it leaves from 127.0.0.1 on loopback.
pub static AGENT_GIDS: AtomicBool = AtomicBool::new(false);

/// The group id an agent on `addr` runs with when [`AGENT_GIDS`] is set.
pub fn agent_gid(addr: &str) -> u32 {
    let octets: Vec<u32> = addr.split('.').filter_map(|o| o.parse().ok()).collect();
    40_000 + octets[2] * 256 + octets[3]
}

/// The pgcd binary, hard-linked away from the shared target dir so another
/// build replacing `target/debug/pgcd` cannot change it under a running test.
pub fn pgcd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_BIN_EXE_pgcd"));
        let dir = std::env::temp_dir().join("pgcd-test-bins");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let pid = e
                    .file_name()
                    .to_string_lossy()
                    .trim_start_matches("pgcd-")
                    .to_owned();
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let dst = dir.join(format!("pgcd-{}", std::process::id()));
        let _ = std::fs::remove_file(&dst);
        match std::fs::hard_link(&src, &dst).or_else(|_| std::fs::copy(&src, &dst).map(drop)) {
            Ok(()) => dst,
            Err(_) => src,
        }
    })
    .clone()
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GETs JSON from a URL; `None` on any failure.
pub fn get_json(url: &str) -> Option<Value> {
    let resp = http().get(url).send().ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().ok()
}

/// GETs text from a URL; `None` on any failure.
pub fn get_text(url: &str) -> Option<String> {
    http().get(url).send().ok()?.text().ok()
}

/// Reads one metric's value from Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One agent process.
pub struct Agent {
    /// Host id.
    pub id: String,
    /// Loopback address.
    pub addr: String,
    /// Data dir.
    pub data_dir: PathBuf,
    /// Extra mode arguments (`--init ...` or `--join ...`).
    pub mode: Vec<String>,
    /// The running process.
    pub child: Option<Child>,
}

impl Agent {
    /// The API base URL.
    pub fn api(&self) -> String {
        format!("https://{}:7800", self.addr)
    }

    /// The etcd client URL.
    pub fn etcd(&self) -> String {
        format!("https://{}:2379", self.addr)
    }

    /// The pid of the agent.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The pid of its etcd child.
    pub fn etcd_pid(&self) -> Option<u32> {
        let pid = self.pid()?;
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok();
        // The etcd child belongs to the supervisor thread, not the main thread: scan all threads.
        let mut all = children.unwrap_or_default();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    all.push(' ');
                    all.push_str(&c);
                }
            }
        }
        all.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .find(|p: &u32| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "etcd")
            })
    }

    /// The mode arguments with what security needs added: `--init` (and
    /// external etcd) uses the process's CA; a first `--join` gets a fresh join token from the
    /// agent it joins (a restart needs none).
    fn secured_mode(&self) -> Vec<String> {
        let mut mode = self.mode.clone();
        let has = |flag: &str| self.mode.iter().any(|a| a == flag);
        if (has("--init") || has("--etcd-endpoints")) && !has("--ca") {
            mode.push("--ca".into());
            mode.push(pki().ca_dir.display().to_string());
        }
        let first_join = !self.data_dir.join("pgcd-host.json").exists();
        if has("--join") && !has("--join-token") && first_join {
            if let Some(i) = mode.iter().position(|a| a == "--join") {
                let token = join_token(&mode[i + 1]);
                mode.push("--join-token".into());
                mode.push(token);
            }
        }
        mode
    }

    /// Starts the agent process.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.id);
        let mode = self.secured_mode();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("agent log file");
        let mut command = Command::new(pgcd_bin());
        if AGENT_GIDS.load(Ordering::Relaxed) {
            std::os::unix::process::CommandExt::gid(&mut command, agent_gid(&self.addr));
        }
        let child = command
            .args([
                "agent",
                "--host-id",
                &self.id,
                "--advertise",
                &self.addr,
                "--data-dir",
            ])
            .arg(&self.data_dir)
            .args(&mode)
            .env("RUST_LOG", "info")
            // Only tests that ask for it (`--runtime docker`) run PostgreSQL.
            .env("PGCD_RUNTIME", "none")
            // The `debug.sleep` task kind exists only for tests.
            .env("PGCD_TEST_EXECUTORS", "1")
            // A test binary that slows steps down says so for all its agents.
            .env(
                "PGCD_TEST_SLOW_STEPS",
                std::env::var("PGCD_TEST_SLOW_STEPS").unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn pgcd agent");
        self.child = Some(child);
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// kill -9 the agent and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// What a failed test prints of this agent: the last `lines` of its log
    /// and the last lines of its etcd member's log (etcd's own reason when
    /// it would not start).
    pub fn failure_report(&self, lines: usize) -> String {
        let tail = |text: &str, n: usize| {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(n)..].join("\n")
        };
        let mut out = format!(
            "---- last log lines of {} ({}) ----\n{}",
            self.id,
            self.addr,
            tail(&self.log(), lines)
        );
        if let Ok(etcd) = std::fs::read_to_string(self.data_dir.join("etcd.log")) {
            out.push_str(&format!(
                "\n---- last etcd log lines of {} ----\n{}",
                self.id,
                tail(&etcd, 6)
            ));
        }
        out
    }
}

impl Agent {
    /// Wraps the agent so it is killed when the guard drops (also on a panic).
    pub fn guarded(self) -> AgentGuard {
        AgentGuard(self)
    }
}

/// Kills its agent on drop.
pub struct AgentGuard(pub Agent);

impl std::ops::Deref for AgentGuard {
    type Target = Agent;
    fn deref(&self) -> &Agent {
        &self.0
    }
}

impl std::ops::DerefMut for AgentGuard {
    fn deref_mut(&mut self) -> &mut Agent {
        &mut self.0
    }
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what the agent said last.
            eprintln!("{}", self.0.failure_report(40));
        }
        self.0.kill9();
    }
}

/// A cluster of agents on `127.0.<block>.11..`.
pub struct Cluster {
    /// The agents, h1 first.
    pub agents: Vec<Agent>,
    /// Keeps the data dirs.
    pub dir: tempfile::TempDir,
    /// The address block.
    pub block: u8,
}

/// The second octet of this test process's addresses (`127.<net>.<block>.<host>`):
/// derived from the pid, so two test runs at once on one machine (two
/// worktrees) rarely meet; `PGCD_TEST_NET` pins it.
pub fn net() -> u8 {
    static NET: OnceLock<u8> = OnceLock::new();
    *NET.get_or_init(|| {
        std::env::var("PGCD_TEST_NET")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| 1 + (std::process::id() % 250) as u8)
    })
}

/// A loopback address of this test process: `127.<net>.<block>.<host>`.
pub fn ip(block: u8, host: u8) -> String {
    format!("127.{}.{block}.{host}", net())
}

/// The address of host `i` (0-based) in a block.
pub fn addr(block: u8, i: usize) -> String {
    ip(block, 11 + i as u8)
}

impl Cluster {
    /// Starts `n` agents: h1 with `--init`, the others joining h1 one by one;
    /// waits until all are healthy.
    pub fn start(block: u8, n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = Self {
            agents: vec![],
            dir,
            block,
        };
        for i in 0..n {
            cluster.add(i);
            let api = cluster.agents[0].api();
            let what = format!("{} healthy hosts on h1", i + 1);
            wait_for(&what, Duration::from_secs(60), || {
                (healthy_hosts(&api).len() == i + 1).then_some(())
            });
        }
        cluster
    }

    /// Like `start`, with h1 following the Git repository at `repo`.
    pub fn start_with_repo(block: u8, n: usize, repo: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cluster = Self {
            agents: vec![],
            dir,
            block,
        };
        for i in 0..n {
            if i == 0 {
                let mut h1 = Agent {
                    id: "h1".into(),
                    addr: addr(block, 0),
                    data_dir: cluster.dir.path().join("h1"),
                    mode: vec!["--init".into(), "--repo".into(), repo.into()],
                    child: None,
                };
                h1.spawn();
                cluster.agents.push(h1);
            } else {
                cluster.add(i);
            }
            let api = cluster.agents[0].api();
            let what = format!("{} healthy hosts on h1", i + 1);
            wait_for(&what, Duration::from_secs(60), || {
                (healthy_hosts(&api).len() == i + 1).then_some(())
            });
        }
        cluster
    }

    /// Adds and starts agent `i` (h<i+1>).
    pub fn add(&mut self, i: usize) {
        let id = format!("h{}", i + 1);
        let mode = if i == 0 {
            vec![
                "--init".into(),
                "--repo".into(),
                "file:///nonexistent".into(),
            ]
        } else {
            vec![
                "--join".into(),
                format!("https://{}:7800", addr(self.block, 0)),
            ]
        };
        let mut agent = Agent {
            data_dir: self.dir.path().join(&id),
            id,
            addr: addr(self.block, i),
            mode,
            child: None,
        };
        agent.spawn();
        self.agents.push(agent);
    }

    /// The leader as agent `i` sees it.
    pub fn leader_seen_by(&self, i: usize) -> Option<String> {
        get_json(&format!("{}/v1/cluster", self.agents[i].api()))?
            .get("leader")?
            .as_str()
            .map(str::to_owned)
    }

    /// Index of an agent by host id.
    pub fn index(&self, id: &str) -> usize {
        self.agents
            .iter()
            .position(|a| a.id == id)
            .expect("known host id")
    }
}

/// The newest leader term the cluster records (`leader_history` of
/// `GET /v1/cluster` from `api`): its host and election revision, which
/// grows with every new term.
pub fn newest_term(api: &str) -> Option<(String, i64)> {
    let v = get_json(&format!("{api}/v1/cluster"))?;
    v["leader"].as_str()?;
    let t = v["leader_history"].as_array()?.last()?.clone();
    Some((t["host"].as_str()?.to_string(), t["revision"].as_i64()?))
}

/// Waits until `api` reports a leader term newer than `after`'s.
pub fn wait_new_term(api: &str, after: &(String, i64), deadline: Duration) -> (String, i64) {
    wait_for("a new leader term", deadline, || {
        newest_term(api).filter(|t| t.1 > after.1)
    })
}

/// The ids of healthy hosts per the API at `api`.
pub fn healthy_hosts(api: &str) -> Vec<String> {
    hosts(api)
        .into_iter()
        .filter(|h| h.get("healthy").and_then(Value::as_bool) == Some(true))
        .filter_map(|h| h.get("id")?.as_str().map(str::to_owned))
        .collect()
}

/// `/v1/hosts` from `api`.
pub fn hosts(api: &str) -> Vec<Value> {
    get_json(&format!("{api}/v1/hosts"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// `/v1/cluster` members from `api`.
pub fn members(api: &str) -> Vec<Value> {
    get_json(&format!("{api}/v1/cluster"))
        .and_then(|v| v.get("members")?.as_array().cloned())
        .unwrap_or_default()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: show what each agent said last.
            for a in &self.agents {
                eprintln!("{}", a.failure_report(25));
            }
        }
        for a in &mut self.agents {
            // Continue a stopped agent so SIGKILL is delivered promptly.
            a.signal(nix::sys::signal::Signal::SIGCONT);
            a.kill9();
        }
    }
}

/// A bare etcd server for library-level tests; killed on drop.
pub struct BareEtcd {
    child: Child,
    /// The client URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl BareEtcd {
    /// Starts etcd on `addr` and waits until it answers.
    pub fn start(addr: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://{addr}:2379");
        let peer = format!("http://{addr}:2380");
        let child = Command::new("etcd")
            .args([
                "--name=t",
                &format!("--data-dir={}", dir.path().join("etcd").display()),
                &format!("--listen-client-urls={url}"),
                &format!("--advertise-client-urls={url}"),
                &format!("--listen-peer-urls={peer}"),
                &format!("--initial-advertise-peer-urls={peer}"),
                &format!("--initial-cluster=t={peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd");
        let health = format!("{url}/health");
        wait_for("bare etcd healthy", Duration::from_secs(20), || {
            get_text(&health).filter(|t| t.contains("true"))
        });
        Self {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for BareEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the converged observation of every instance of `files` on `host`
/// (at `addr`) into etcd, as the agent of a host with a runtime would
/// (benchmarks of an agent without one start from it).
pub fn observe_converged(etcd: &str, host: &str, addr: &str, files: &[pgcd::spec::SourceFile]) {
    let desired = pgcd::spec::load(files).expect("observe");
    let at = [(host.parse().expect("observe"), addr.to_string())].into();
    let instances = pgcd::plan::converged_at(&desired, &at).instances;
    let rt = tokio::runtime::Runtime::new().expect("observe");
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd], Some(etcd_options()))
            .await
            .expect("observe");
        let record = serde_json::json!({ "host": host, "docker": true });
        c.put(
            format!("/pgcd/v1/observed/{host}"),
            serde_json::to_vec(&record).expect("observe"),
            None,
        )
        .await
        .expect("observe");
        // A few puts in flight at once; etcd serializes them anyway.
        for chunk in instances.chunks(64) {
            let mut puts = Vec::new();
            for i in chunk {
                let mut c = c.clone();
                let key = format!("/pgcd/v1/{}", pgcd::state::observed::instance_key(i));
                let value = serde_json::to_vec(i).expect("observe");
                puts.push(tokio::spawn(async move { c.put(key, value, None).await }));
            }
            for p in puts {
                p.await.expect("observe").expect("observe");
            }
        }
    });
}
