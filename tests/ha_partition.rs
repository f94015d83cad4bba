//! A network partition, for real, on three hosts with PostgreSQL 17 in
//! Docker: the host running the primary (and the pgcd leader) is cut off
//! from the other two hosts by iptables, while a checker can still reach
//! every host. The checker writes to each host's address directly all
//! along, from an address of its own, and keeps the time of every commit
//! it was told of. Asserted:
//! - a standby is promoted, and the old primary acknowledged no write after
//!   the new primary acknowledged its first: never two writable primaries,
//!   whatever the clients see;
//! - once the partition heals, the old primary is a standby following the
//!   new one, and exactly one primary is writable.
//!
//! On loopback every connection leaves from 127.0.0.1, so addresses alone
//! cannot tell one host's traffic from another's. Each agent here runs with
//! a group id of its own (its etcd inherits it), and iptables' `owner`
//! match, with connection marks for the replies, cuts exactly the cut
//! host's traffic: its agent and etcd reach only themselves, and nothing
//! but the checker reaches its address.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::ha::*;
use common::pg::*;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The address block of this file.
const BLOCK: u8 = 74;

#[test]
fn a_partitioned_primary_stops_acknowledging_before_a_standby_is_promoted_and_rejoins_as_a_standby()
{
    AGENT_GIDS.store(true, Ordering::Relaxed);
    let ha = Ha::start(BLOCK, 6564, "", &[]);
    let record = ha.record(0);
    assert_eq!(record["host"], ha.ids[0].as_str(), "{record}");

    let checker_addr = ip(BLOCK, 50);
    let checker = Checker::start(&checker_addr, &ha.addrs, ha.port, &ha.password);
    wait_for("the checker commits on the primary", WAIT, || {
        (checker.acked(0) >= 20).then_some(())
    });

    let cut_at = Instant::now();
    let cut = Partition::new(
        &ha.addrs[0],
        &agent_gid(&ha.addrs[0]).to_string(),
        &checker_addr,
    );
    let new = wait_for("a standby promoted and committing", WAIT, || {
        (1..3).find(|i| checker.first_ack_after(*i, cut_at).is_some())
    });
    // Let the old primary's side run on for a while: whatever it does, it
    // must not acknowledge anything any more.
    let first_new = checker.first_ack_after(new, cut_at).unwrap();
    wait_for("the new primary commits on", WAIT, || {
        (checker.last_ack(new)? > first_new + Duration::from_secs(5)).then_some(())
    });
    let last_old = checker.last_ack(0).unwrap();
    assert!(
        last_old < first_new,
        "the old primary acknowledged a write {:?} after the new primary's first",
        last_old - first_new
    );
    let api = ha.agents[new].api();
    let record = ha.record(new);
    assert_eq!(record["host"], ha.ids[new].as_str(), "{record}");
    assert_eq!(record["term"], 2, "{record}");
    eprintln!(
        "partition: the old primary's last commit {:?} after the cut, the new primary's first {:?} after it",
        last_old.saturating_duration_since(cut_at),
        first_new - cut_at
    );

    // The partition heals: the old primary comes back as a standby.
    drop(cut);
    let rows = checker.finish();
    assert!(rows.iter().any(|(host, _)| *host == new));
    ha.all_follow(new, -1);
    let s = wait_ready(&api, "ledger", None, WAIT);
    assert!(!condition(&s, "Degraded"), "{s}");
    assert_eq!(ha.record(new)["term"], 2, "no further failover");
}

/// Writers, one per host address, each inserting one row per transaction
/// straight into that host's server (no `target_session_attrs`: a standby
/// just refuses), connecting from the checker's own address so that the
/// partition lets them through.
struct Checker {
    stop: Arc<AtomicBool>,
    /// (host index, when the commit was acknowledged).
    acks: Arc<Mutex<Vec<(usize, Instant)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Checker {
    fn start(from: &str, addrs: &[String], port: u16, password: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let from: std::net::IpAddr = from.parse().unwrap();
        let threads = addrs
            .iter()
            .enumerate()
            .map(|(host, addr)| {
                let to = std::net::SocketAddr::new(addr.parse().unwrap(), port);
                let (stop, acks, password) = (stop.clone(), acks.clone(), password.to_owned());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(write_to(host, from, to, password, stop, acks));
                })
            })
            .collect();
        Self {
            stop,
            acks,
            threads,
        }
    }

    fn acked(&self, host: usize) -> usize {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| *h == host)
            .count()
    }

    fn first_ack_after(&self, host: usize, since: Instant) -> Option<Instant> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, at)| *h == host && *at > since)
            .map(|(_, at)| *at)
            .min()
    }

    fn last_ack(&self, host: usize) -> Option<Instant> {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| *h == host)
            .map(|(_, at)| *at)
            .max()
    }

    fn finish(mut self) -> Vec<(usize, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.acks.lock().unwrap())
    }
}

async fn write_to(
    host: usize,
    from: std::net::IpAddr,
    to: std::net::SocketAddr,
    password: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<(usize, Instant)>>>,
) {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").password(&password).dbname("ledger");
    // Each writer has its own range of keys, so rows never collide.
    let mut n = (host as i32 + 1) * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        let connect = async {
            let socket = tokio::net::TcpSocket::new_v4().ok()?;
            socket.bind(std::net::SocketAddr::new(from, 0)).ok()?;
            let stream = socket.connect(to).await.ok()?;
            config.connect_raw(stream, tokio_postgres::NoTls).await.ok()
        };
        let Ok(Some((client, conn))) = tokio::time::timeout(Duration::from_secs(2), connect).await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(conn);
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&n];
            let insert = client.execute("INSERT INTO items (n) VALUES ($1)", &params);
            match tokio::time::timeout(Duration::from_secs(2), insert).await {
                Ok(Ok(_)) => acks.lock().unwrap().push((host, Instant::now())),
                // A standby refuses, a cut server times out: reconnect.
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// iptables rules, in a chain of their own jumped to from `OUTPUT` (every
/// loopback packet passes it), that cut host `addr` (its agent and etcd run
/// with group `gid`; its PostgreSQL listens on `addr`) off from the other
/// hosts while `checker` still reaches it:
/// 1. the cut host's own connections to its address (agent to its etcd)
///    are marked and pass both ways;
/// 2. the checker and the cut address reach each other;
/// 3. nothing else reaches the cut address or leaves from it;
/// 4. no connection of the cut host's agent or etcd to anywhere else
///    passes, in either direction (marked on its first packet).
struct Partition(#[allow(dead_code)] common::firewall::Chain);

impl Partition {
    fn new(addr: &str, gid: &str, checker: &str) -> Self {
        let own = ["-m", "owner", "--gid-owner", gid];
        let rules: Vec<Vec<&str>> = vec![
            vec!["-m", "connmark", "--mark", "7", "-j", "ACCEPT"],
            [
                &["-d", addr][..],
                &own,
                &["-j", "CONNMARK", "--set-mark", "7"],
            ]
            .concat(),
            [&["-d", addr][..], &own, &["-j", "ACCEPT"]].concat(),
            vec!["-s", checker, "-d", addr, "-j", "ACCEPT"],
            vec!["-s", addr, "-d", checker, "-j", "ACCEPT"],
            vec!["-d", addr, "-j", "DROP"],
            vec!["-s", addr, "-j", "DROP"],
            [&own[..], &["-j", "CONNMARK", "--set-mark", "8"]].concat(),
            vec!["-m", "connmark", "--mark", "8", "-j", "DROP"],
        ];
        let chain = format!("pgcd-cut-{}", addr.replace('.', "-"));
        Self(common::firewall::Chain::new(&chain, "OUTPUT", &rules))
    }
}
