//! High availability for real, on three hosts with PostgreSQL 17 in Docker
//! and a client that writes all along through a multi-host connection
//! string (`target_session_attrs=read-write`), recording every commit it
//! was told of:
//! - a `Switchover` operation committed to the repository moves the primary
//!   to the named standby; the old primary follows it as a standby; every
//!   acknowledged write is on the new primary;
//! - `kill -9` of the agent on the host that runs both the primary and the
//!   leader: the container's watchdog stops that primary by itself (its
//!   fence lapses, nobody told it), a new leader records and promotes the
//!   synchronous standby once the lease has expired, nothing acknowledged
//!   is lost, and the old primary's agent, restarted, makes it a standby
//!   (never a second primary). The failover is counted in `/metrics`.
//!
//! How fast is `bench/failover.md`'s to say, against Patroni.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

/// A client inserting one row per transaction into `items (n)` through a
/// connection string naming every host, reconnecting to whichever accepts
/// writes; it keeps the `n` of every insert whose commit it was told of.
struct Client {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i32>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(addrs: &[String], port: u16, password: &str, db: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let conninfo = format!(
            "host={} port={port} user=postgres password={password} dbname={db} \
             target_session_attrs=read-write connect_timeout=2",
            addrs.join(",")
        );
        let (flag, log) = (stop.clone(), acked.clone());
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
                            Ok(Ok(_)) => log.lock().unwrap().push(n),
                            _ => break,
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        });
        Self {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(mut self) -> Vec<i32> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.acked.lock().unwrap())
    }
}

/// A three-host node `ledger/n1` on `port`, Ready, with table `items`.
struct Ha {
    agents: Vec<AgentGuard>,
    ids: Vec<String>,
    addrs: Vec<String>,
    work: std::path::PathBuf,
    password: String,
    port: u16,
    _containers: Containers,
    _dir: tempfile::TempDir,
}

impl Ha {
    fn start(block: u8, port: u16, extra: &str) -> Self {
        require_image(17);
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
        let containers = Containers::new(ids.clone());
        let (agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
        let spec = format!(
            "database_name: ledger\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}, {}, {}]\n{extra}",
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
    fn sql(&self, i: usize, sql: &str) -> Option<String> {
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

    fn writable(&self, i: usize) -> bool {
        self.sql(i, "SELECT pg_is_in_recovery()").as_deref() == Some("f")
    }

    fn standby(&self, i: usize) -> bool {
        self.sql(i, "SELECT pg_is_in_recovery()").as_deref() == Some("t")
    }

    fn client(&self) -> Client {
        Client::start(&self.addrs, self.port, &self.password, "ledger")
    }

    /// Waits until `client` has `more` commits beyond what it had.
    fn writes_go_on(&self, client: &Client, more: usize) {
        let from = client.acked();
        wait_for("the client commits", WAIT, || {
            (client.acked() >= from + more).then_some(())
        });
    }

    /// Every acknowledged insert is on host `i`.
    fn assert_all_on(&self, i: usize, acked: &[i32]) {
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
    fn all_follow(&self, primary: usize, n: i32) {
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

    fn record(&self, via: usize) -> serde_json::Value {
        let out = common::tls::etcdctl(&self.agents[via].etcd())
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

#[test]
fn a_switchover_under_writes_loses_nothing_and_the_old_primary_follows() {
    let ha = Ha::start(71, 6561, "");
    let api = ha.agents[0].api();
    let client = ha.client();
    ha.writes_go_on(&client, 50);

    std::fs::create_dir_all(ha.work.join("operations")).unwrap();
    std::fs::write(
        ha.work.join("operations/move.yaml"),
        format!(
            "id: move\nkind: Switchover\ndatabase: ledger\nnode: n1\ncandidate: {}\n",
            ha.ids[1]
        ),
    )
    .unwrap();
    git(&ha.work, &["add", "-A"]);
    git(&ha.work, &["commit", "-q", "-m", "switch over to h2"]);
    let op = wait_for("the switchover succeeded", WAIT, || {
        get_json(&format!("{api}/v1/operations/move")).filter(|op| op["state"] == "succeeded")
    });
    let phases: Vec<&str> = op["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(phases.len(), 3, "stop, record, promote: {op}");
    assert!(ha.writable(1), "the candidate is the primary");
    let record = ha.record(0);
    assert_eq!(record["host"], ha.ids[1].as_str(), "{record}");
    assert_eq!(record["term"], 2, "{record}");

    // Writes go on, on the new primary; none acknowledged was lost.
    ha.writes_go_on(&client, 50);
    let acked = client.finish();
    ha.assert_all_on(1, &acked);
    // The old primary rejoined as a standby; the third follows the new one.
    ha.all_follow(1, -1);
    let s = wait_ready(&api, "ledger", None, WAIT);
    assert!(!condition(&s, "Degraded"), "{s}");
}

#[test]
fn losing_the_leader_and_primary_host_fences_it_and_a_synchronous_standby_takes_over() {
    let mut ha = Ha::start(72, 6562, "    synchronous: true\n");
    let record = ha.record(0);
    assert_eq!(record["host"], ha.ids[0].as_str(), "{record}");
    let client = ha.client();
    ha.writes_go_on(&client, 50);

    // h1 runs the leader and the primary. Its agent dies; nobody stops its
    // container: the fence lapses and the container's watchdog stops the
    // primary itself.
    ha.agents[0].kill9();
    wait_for("h1's primary fenced itself", WAIT, || {
        (!ha.writable(0)).then_some(())
    });
    let new = wait_for("a standby promoted", WAIT, || {
        (1..3).find(|i| ha.writable(*i))
    });
    let record = ha.record(new);
    assert_eq!(record["host"], ha.ids[new].as_str(), "{record}");
    assert_eq!(record["term"], 2, "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("failover"),
        "{record}"
    );
    assert!(!ha.writable(0), "never two primaries");

    ha.writes_go_on(&client, 50);
    let acked = client.finish();
    ha.assert_all_on(new, &acked);
    let api = ha.agents[new].api();
    let failovers = wait_for("the failover counted", WAIT, || {
        let text = get_text(&format!("{api}/metrics"))?;
        metric(&text, "pgcd_failovers_total").filter(|n| *n >= 1.0)
    });
    assert_eq!(failovers, 1.0);

    // h1 comes back: its old primary rejoins as a standby of the new one.
    ha.agents[0].spawn();
    ha.all_follow(new, -1);
    let s = wait_ready(&api, "ledger", None, WAIT);
    assert!(!condition(&s, "Degraded"), "{s}");
}
