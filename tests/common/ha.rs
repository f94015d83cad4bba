//! A three-host node for the HA tests and the failover benchmark, and a
//! client that writes through a multi-host connection string
//! (`target_session_attrs=read-write`), keeping every commit it was told of
//! and when.

use super::gitrepo::git;
use super::pg::*;
use super::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the harness waits for anything here.
pub const WAIT: Duration = Duration::from_secs(180);

/// A client inserting one row per transaction into `items (n)` through a
/// connection string naming every host, reconnecting to whichever accepts
/// writes; it keeps the `n` of every insert whose commit it was told of.
pub struct Client {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(i32, Instant)>>>,
    errors: Arc<Mutex<Vec<std::time::SystemTime>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    /// Starts writing to database `db` on `port` of every address.
    pub fn start(addrs: &[String], port: u16, password: &str, db: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let conninfo = format!(
            "host={} port={port} user=postgres password={password} dbname={db} \
             target_session_attrs=read-write connect_timeout=2",
            addrs.join(",")
        );
        let (flag, log, failed) = (stop.clone(), acked.clone(), errors.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut n: i32 = 0;
                while !flag.load(Ordering::Relaxed) {
                    let Ok((client, conn)) =
                        tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await
                    else {
                        failed.lock().unwrap().push(std::time::SystemTime::now());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    tokio::spawn(conn);
                    while !flag.load(Ordering::Relaxed) {
                        n += 1;
                        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&n];
                        let insert = client.execute("INSERT INTO items (n) VALUES ($1)", &params);
                        // A commit that waits longer than this is not acknowledged.
                        match tokio::time::timeout(Duration::from_secs(10), insert).await {
                            Ok(Ok(_)) => log.lock().unwrap().push((n, Instant::now())),
                            _ => {
                                failed.lock().unwrap().push(std::time::SystemTime::now());
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        });
        Self {
            stop,
            acked,
            errors,
            thread: Some(thread),
        }
    }

    /// When each failed connection attempt or insert happened (wall clock,
    /// to compare with the times an operation's record gives).
    pub fn errors(&self) -> Vec<std::time::SystemTime> {
        self.errors.lock().unwrap().clone()
    }

    /// How many commits it was told of.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// The longest time without a commit since `since` (the window in
    /// which writes were not possible).
    pub fn longest_gap(&self, since: Instant) -> Duration {
        let acked = self.acked.lock().unwrap();
        let mut last = since;
        let mut gap = Duration::ZERO;
        for (_, at) in acked.iter().filter(|(_, at)| *at >= since) {
            gap = gap.max(at.duration_since(last));
            last = *at;
        }
        gap
    }

    /// Stops; the `n` of every acknowledged insert.
    pub fn finish(mut self) -> Vec<i32> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        acked.into_iter().map(|(n, _)| n).collect()
    }
}

/// A three-host node `ledger/n1` on `port`, Ready, with table `items`.
pub struct Ha {
    /// See [`Ha::start`].
    pub agents: Vec<AgentGuard>,
    /// See [`Ha::start`].
    pub ids: Vec<String>,
    /// See [`Ha::start`].
    pub addrs: Vec<String>,
    /// See [`Ha::start`].
    pub work: std::path::PathBuf,
    /// See [`Ha::start`].
    pub password: String,
    /// See [`Ha::start`].
    pub port: u16,
    _containers: Containers,
    _dir: tempfile::TempDir,
}

impl Ha {
    /// Three agents (with `args`) in `block`; `ledger/n1` on `port` with
    /// `extra` node fields, Ready; table `items`.
    pub fn start(block: u8, port: u16, extra: &str, args: &[&str]) -> Self {
        Self::start_on(block, port, "17", extra, args)
    }

    /// Like [`Ha::start`], on PostgreSQL `version` (`"17"`, `"17.10"`).
    pub fn start_on(block: u8, port: u16, version: &str, extra: &str, args: &[&str]) -> Self {
        require_tag(version);
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
        let containers = Containers::new(ids.clone());
        let (agents, work) = pg_cluster_with(block, 3, dir.path(), WAIT, args);
        let spec = format!(
            "database_name: ledger\npostgres_version: \"{version}\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}, {}, {}]\n{extra}",
            ids[0], ids[1], ids[2]
        );
        std::fs::write(work.join("databases/ledger.yaml"), spec).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "ledger on three hosts"]);
        let sha = git(&work, &["rev-parse", "HEAD"]);
        wait_ready(&agents[0].api(), "ledger", Some(&sha), WAIT);
        let password =
            std::fs::read_to_string(agents[0].data_dir.join("instances/ledger-n1/superuser.pw"))
                .unwrap();
        let addrs = agents.iter().map(|a| a.addr.clone()).collect();
        let ha = Self {
            agents,
            ids,
            addrs,
            work,
            password,
            port,
            _containers: containers,
            _dir: dir,
        };
        ha.sql(0, "CREATE TABLE items (n int PRIMARY KEY)").unwrap();
        ha
    }

    /// SQL on host `i`'s instance; `None` when it fails (down, read-only).
    pub fn sql(&self, i: usize, sql: &str) -> Option<String> {
        psql(
            &format!("pgcd-ledger-n1-{}", self.ids[i]),
            &self.addrs[i],
            self.port,
            "postgres",
            &self.password,
            "ledger",
            sql,
        )
    }

    /// Host `i` answers as a primary.
    pub fn writable(&self, i: usize) -> bool {
        self.sql(i, "SELECT pg_is_in_recovery()").as_deref() == Some("f")
    }

    /// Host `i` answers as a standby.
    pub fn standby(&self, i: usize) -> bool {
        self.sql(i, "SELECT pg_is_in_recovery()").as_deref() == Some("t")
    }

    /// A [`Client`] of the node.
    pub fn client(&self) -> Client {
        Client::start(&self.addrs, self.port, &self.password, "ledger")
    }

    /// Waits until `client` has `more` commits beyond what it had.
    pub fn writes_go_on(&self, client: &Client, more: usize) {
        let from = client.acked();
        wait_for("the client commits", WAIT, || {
            (client.acked() >= from + more).then_some(())
        });
    }

    /// Every acknowledged insert is on host `i`.
    pub fn assert_all_on(&self, i: usize, acked: &[i32]) {
        let rows = self
            .sql(i, "SELECT string_agg(n::text, ',') FROM items")
            .unwrap();
        let have: BTreeSet<i32> = rows.split(',').filter_map(|n| n.parse().ok()).collect();
        let lost: Vec<i32> = acked
            .iter()
            .filter(|n| !have.contains(n))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes are not on {}: {lost:?}",
            lost.len(),
            acked.len(),
            self.ids[i]
        );
    }

    /// A row written now on host `primary` reaches every other host.
    pub fn all_follow(&self, primary: usize, n: i32) {
        self.sql(primary, &format!("INSERT INTO items VALUES ({n})"))
            .unwrap();
        for i in (0..3).filter(|i| *i != primary) {
            wait_for("a standby follows the new primary", WAIT, || {
                (self.standby(i)
                    && self.sql(i, &format!("SELECT count(*) FROM items WHERE n = {n}"))
                        == Some("1".into()))
                .then_some(())
            });
        }
        let primaries = (0..3).filter(|i| self.writable(*i)).count();
        assert_eq!(primaries, 1, "exactly one writable primary");
    }

    /// The node's primary record, read through host `via`'s etcd.
    pub fn record(&self, via: usize) -> serde_json::Value {
        let out = super::tls::etcdctl(&self.agents[via].etcd())
            .args(["get", "/pgcd/v1/primaries/ledger/n1", "--print-value-only"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // The test failed: the logs of the failed tasks, from any live agent.
        let Some(tasks) = self
            .agents
            .iter()
            .find_map(|a| get_json(&format!("{}/v1/tasks", a.api())).map(|t| (a.api(), t)))
        else {
            return;
        };
        let (api, list) = tasks;
        let failed: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["state"] == "failed")
            .filter_map(|t| t["id"].as_str())
            .collect();
        for id in failed.iter().take(3) {
            let log = get_text(&format!("{api}/v1/tasks/{id}/log")).unwrap_or_default();
            eprintln!("---- log of failed task {id} ----\n{log}");
        }
    }
}
