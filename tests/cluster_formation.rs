//! Forming a cluster: init + two joins, one leader, hosts healthy everywhere;
//! the etcd child is restarted when it dies; SIGTERM leaves no etcd behind.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

#[test]
fn init_and_two_joins_form_a_three_member_cluster_with_one_leader() {
    let mut c = Cluster::start(1, 3);

    for a in &c.agents {
        let api = a.api();
        wait_for(
            &format!("3 healthy hosts on {}", a.id),
            Duration::from_secs(10),
            || (healthy_hosts(&api).len() == 3).then_some(()),
        );
        let members = members(&api);
        assert_eq!(members.len(), 3, "three etcd members: {members:?}");
        assert!(
            members.iter().all(|m| m["healthy"] == Value::Bool(true)),
            "{members:?}"
        );
    }
    // Everyone agrees on one leader, and exactly one agent says it is leader.
    let leader = wait_for("one agreed leader", Duration::from_secs(10), || {
        let seen: Vec<_> = (0..3).map(|i| c.leader_seen_by(i)).collect();
        (seen[0].is_some() && seen.iter().all(|s| *s == seen[0])).then(|| seen[0].clone())
    });
    let leaders = wait_for("is_leader sums to 1", Duration::from_secs(10), || {
        let sum: f64 = c
            .agents
            .iter()
            .filter_map(|a| {
                metric(
                    &get_text(&format!("{}/metrics", a.api()))?,
                    "pgcd_is_leader",
                )
            })
            .sum();
        (sum == 1.0).then_some(sum)
    });
    assert_eq!(leaders, 1.0);
    assert!(leader.is_some());
    // Every host's facts were collected by a host.facts task.
    wait_for("facts for every host", Duration::from_secs(15), || {
        let hosts = hosts(&c.agents[1].api());
        hosts
            .iter()
            .all(|h| {
                h["facts"]["cores"].as_u64().is_some_and(|n| n > 0)
                    && h["facts"]["docker"].is_boolean()
            })
            .then_some(())
    });
    let metrics = get_text(&format!("{}/metrics", c.agents[2].api())).unwrap_or_default();
    assert!(
        metrics.contains("pgcd_etcd_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "pgcd_hosts_up"), Some(3.0));

    // Kill h3's etcd child: the agent restarts it and h3 stays a healthy member.
    let old = c.agents[2].etcd_pid().expect("h3 has an etcd child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill etcd");
    let new = wait_for("h3's etcd restarted", Duration::from_secs(10), || {
        c.agents[2].etcd_pid().filter(|p| *p != old)
    });
    assert_ne!(new, old);
    let api = c.agents[0].api();
    wait_for("h3's member healthy again", Duration::from_secs(20), || {
        let m = members(&api);
        (m.len() == 3 && m.iter().all(|m| m["healthy"] == Value::Bool(true))).then_some(())
    });
    wait_for(
        "3 healthy hosts after etcd restart",
        Duration::from_secs(20),
        || (healthy_hosts(&api).len() == 3).then_some(()),
    );

    // SIGTERM h2: the agent exits 0 and its etcd is gone with it.
    let etcd = c.agents[1].etcd_pid().expect("h2 has an etcd child");
    c.agents[1].signal(nix::sys::signal::Signal::SIGTERM);
    let mut child = c.agents[1].child.take().expect("h2 running");
    let status = wait_for("h2 exits after SIGTERM", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(status.success(), "agent exit status {status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{etcd}")).exists(),
        "etcd {etcd} outlived its agent"
    );

    // `pgcd status` shows it; `pgcd host remove` refuses a live host and
    // forgets the stopped one with its etcd member.
    let api = c.agents[0].api();
    // Retried: h2 just left, etcd may be electing a raft leader.
    let out = wait_for("pgcd status", Duration::from_secs(20), || {
        Some(pgcd(&["status", "--api", &api, "-o", "json"])).filter(|o| o.status.success())
    });
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(
        status["hosts"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );
    // Retried for the same reason; it must never succeed for a live host.
    wait_for(
        "host remove h1 refused as alive",
        Duration::from_secs(20),
        || {
            let out = pgcd(&["host", "remove", "h1", "--api", &api]);
            assert!(!out.status.success(), "a live host is refused");
            String::from_utf8_lossy(&out.stderr)
                .contains("h1 is alive")
                .then_some(())
        },
    );
    wait_for("pgcd host remove h2", Duration::from_secs(20), || {
        Some(pgcd(&["host", "remove", "h2", "--api", &api])).filter(|o| o.status.success())
    });
    wait_for("h2 forgotten", Duration::from_secs(20), || {
        (hosts(&api).len() == 2 && members(&api).len() == 2).then_some(())
    });
}

fn pgcd(args: &[&str]) -> std::process::Output {
    pgcd_client().args(args).output().expect("run pgcd")
}

#[test]
fn kill_9_of_an_agent_leaves_no_orphan_etcd() {
    let mut c = Cluster::start(7, 1);
    let etcd = c.agents[0].etcd_pid().expect("etcd child");
    c.agents[0].kill9();
    wait_for("etcd killed with its agent", Duration::from_secs(5), || {
        let state = std::fs::read_to_string(format!("/proc/{etcd}/stat")).ok();
        // Gone, or a zombie waiting for init to reap it.
        let gone = match state {
            None => true,
            Some(s) => s.split_whitespace().nth(2) == Some("Z"),
        };
        gone.then_some(())
    });
}

#[test]
fn five_agents_started_at_the_same_instant_all_become_members() {
    let mut c = Cluster::start(2, 1);
    let api = c.agents[0].api();
    // Spawned back to back, without waiting for one another: each join is
    // retried with backoff while etcd adds the members one at a time.
    for i in 1..6 {
        c.add(i);
    }
    wait_for("six healthy hosts", Duration::from_secs(150), || {
        (healthy_hosts(&api).len() == 6).then_some(())
    });
    let members = members(&api);
    assert_eq!(members.len(), 6, "six etcd members: {members:?}");
    assert!(
        members.iter().all(|m| m["healthy"] == Value::Bool(true)),
        "{members:?}"
    );
    for a in &c.agents[1..] {
        let log = a.log();
        assert!(
            !log.contains("Error:") && !log.contains("pgcd: "),
            "{} gave up: {log}",
            a.id
        );
    }
}
