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
//! - refusals: a `Failover` of a healthy primary without `force` is
//!   refused; a primary whose standbys were cut off (iptables) while it
//!   went on committing is lost, and neither standby, lagging more than
//!   `failover.maximum_lag`, is promoted: the status says why.
//!
//! How fast is `bench/failover.md`'s to say, against Patroni.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::ha::*;
use common::pg::*;
use common::*;

#[test]
fn a_switchover_under_writes_loses_nothing_and_the_old_primary_follows() {
    let ha = Ha::start(71, 6561, "", &[]);
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
    // Where clients connect: the new primary first, every instance, TLS
    // verified against the cluster CA.
    let line = wait_for("pgcd connstr names the new primary first", WAIT, || {
        let out = common::tls::pgcd_client()
            .args(["connstr", "ledger", "--node", "n1", "--api", &api])
            .output()
            .ok()?;
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        line.starts_with(&format!("host={},", ha.addrs[1]))
            .then_some(line)
    });
    for addr in &ha.addrs {
        assert!(line.contains(addr.as_str()), "{line}");
    }
    assert!(line.contains("port=6561,6561,6561"), "{line}");
    assert!(line.contains("target_session_attrs=read-write"), "{line}");
    assert!(line.contains("sslmode=verify-full sslrootcert="), "{line}");
}

#[test]
fn losing_the_leader_and_primary_host_fences_it_and_a_synchronous_standby_takes_over() {
    let mut ha = Ha::start(72, 6562, "    synchronous: true\n", &[]);
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

/// iptables rules dropping every TCP packet to and from a PostgreSQL
/// server's address and port, for the test's life: its standbys stop
/// receiving, while its agent still reaches it through its Unix socket.
struct Cut(#[allow(dead_code)] common::firewall::Chain);

impl Cut {
    fn new(primary: &str, port: u16) -> Self {
        // The containers connect from 127.0.0.1 here (loopback's source
        // address), so the primary's address and port are what is cut.
        let p = port.to_string();
        Self(common::firewall::Chain::new(
            &format!("pgcd-pg-{}-{p}", primary.replace('.', "-")),
            "INPUT",
            &[
                vec!["-d", primary, "-p", "tcp", "--dport", &p, "-j", "DROP"],
                vec!["-s", primary, "-p", "tcp", "--sport", &p, "-j", "DROP"],
            ],
        ))
    }
}

#[test]
fn a_lagging_standby_is_never_promoted_and_a_failover_without_force_is_refused() {
    let mut ha = Ha::start(73, 6563, "", &[]);
    let api = ha.agents[1].api();
    std::fs::create_dir_all(ha.work.join("operations")).unwrap();
    std::fs::write(
        ha.work.join("operations/f1.yaml"),
        "id: f1\nkind: Failover\ndatabase: ledger\nnode: n1\n",
    )
    .unwrap();
    git(&ha.work, &["add", "-A"]);
    git(
        &ha.work,
        &["commit", "-q", "-m", "fail over a healthy primary"],
    );
    let op = wait_for("the failover refused", WAIT, || {
        get_json(&format!("{api}/v1/operations/f1")).filter(|op| op["state"] == "failed")
    });
    assert!(op["reason"].as_str().unwrap().contains("force"), "{op:#}");
    assert!(ha.writable(0), "the primary still serves");

    // Cut both standbys off the primary, which goes on committing several
    // MiB they never receive (written through its socket).
    let _cut = Cut::new(&ha.addrs[0], ha.port);
    let primary = format!("pgcd-ledger-n1-{}", ha.ids[0]);
    docker(&[
        "exec",
        "-u",
        "postgres",
        &primary,
        "psql",
        "-X",
        "-h",
        "/var/lib/pgcd/run",
        "-p",
        "6563",
        "-d",
        "ledger",
        "-c",
        "INSERT INTO items SELECT generate_series(1, 60000); \
         CREATE TABLE pad AS SELECT g, repeat('x', 200) AS t FROM generate_series(1, 20000) g",
    ]);
    let lsn = |a: &serde_json::Value, host: &str| -> Option<i64> {
        a["instances"]
            .as_array()?
            .iter()
            .find(|i| i["database"] == "ledger" && i["host"] == host)?["wal"]["lsn"]
            .as_i64()
    };
    wait_for("the leader sees the standbys 2 MiB behind", WAIT, || {
        let a = get_json(&format!("{api}/v1/actual"))?;
        let p = lsn(&a, &ha.ids[0])?;
        let best = lsn(&a, &ha.ids[1])?.max(lsn(&a, &ha.ids[2])?);
        (p - best > 2 << 20).then_some(())
    });

    // The primary's host is lost (agent and server): its standbys lag it by
    // more than failover.maximum_lag, so none is promoted, and status says so.
    ha.agents[0].kill9();
    docker(&["kill", &primary]);
    let s = wait_for("the refusal in status", WAIT, || {
        status(&api, "ledger").filter(|s| s.to_string().contains("failover.maximum_lag"))
    });
    assert!(s.to_string().contains("it is not promoted"), "{s:#}");
    assert!(
        !ha.writable(1) && !ha.writable(2),
        "no lagging standby promoted"
    );
    assert!(ha.standby(1) && ha.standby(2), "both still standbys");
}
