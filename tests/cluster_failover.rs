//! Losing the leader: kill -9 → a new leader and the dead host unhealthy,
//! the two survivors keep working, and the restarted agent rejoins as the
//! same host without a second etcd member. SIGSTOP past the lease → the
//! paused leader's guarded writes are rejected and it steps down.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

fn agreed_leader(c: &Cluster, among: &[usize]) -> Option<String> {
    let seen: Vec<_> = among.iter().map(|i| c.leader_seen_by(*i)).collect();
    (seen[0].is_some() && seen.iter().all(|s| *s == seen[0]))
        .then(|| seen[0].clone())
        .flatten()
}

#[test]
fn kill_9_of_the_leader_elects_another_and_the_restarted_host_rejoins() {
    let mut c = Cluster::start(2, 3);
    let old = wait_for("a leader", Duration::from_secs(10), || {
        agreed_leader(&c, &[0, 1, 2])
    });
    let dead = c.index(&old);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let old_started = hosts(&c.agents[survivors[0]].api())
        .into_iter()
        .find(|h| h["id"] == Value::String(old.clone()))
        .map(|h| h["started_at"].clone());

    let t0 = Instant::now();
    c.agents[dead].kill9();
    let new = wait_for("a new leader", Duration::from_secs(15), || {
        agreed_leader(&c, &survivors).filter(|l| *l != old)
    });
    let failover = t0.elapsed();
    // How fast is the benchmark's to say (bench/failover.md), not a test's.
    eprintln!("failover after kill -9 of {old}: {new} leads after {failover:?}");

    // The dead host is listed, unhealthy, on both survivors; its member is down.
    for i in &survivors {
        let api = c.agents[*i].api();
        wait_for("dead host unhealthy", Duration::from_secs(5), || {
            let h = hosts(&api);
            let healthy = healthy_hosts(&api);
            (h.len() == 3 && healthy.len() == 2 && !healthy.contains(&old)).then_some(())
        });
    }
    let api = c.agents[survivors[0]].api();
    let m = members(&api);
    assert_eq!(
        m.iter()
            .filter(|m| m["healthy"] == Value::Bool(false))
            .count(),
        1,
        "{m:?}"
    );

    // Two of three keep working: the new leader writes (heartbeat) and
    // dispatches; a survivor's view keeps answering.
    let heartbeat_seen = wait_for("leader heartbeat metric", Duration::from_secs(5), || {
        get_text(&format!("{}/metrics", c.agents[c.index(&new)].api()))
            .and_then(|t| metric(&t, "pgcd_is_leader"))
            .filter(|v| *v == 1.0)
    });
    assert_eq!(heartbeat_seen, 1.0);

    // Restart the dead agent with the same data dir: same host, no new member.
    let log_before = c.agents[dead].log().len();
    c.agents[dead].spawn();
    wait_for("three healthy hosts again", Duration::from_secs(30), || {
        (healthy_hosts(&api).len() == 3).then_some(())
    });
    wait_for(
        "three healthy members, none added",
        Duration::from_secs(20),
        || {
            let m = members(&api);
            (m.len() == 3 && m.iter().all(|m| m["healthy"] == Value::Bool(true))).then_some(())
        },
    );
    let h = hosts(&api);
    assert_eq!(h.len(), 3, "{h:?}");
    let again = h
        .iter()
        .find(|h| h["id"] == Value::String(old.clone()))
        .expect("same host id");
    assert_ne!(
        Some(again["started_at"].clone()),
        old_started,
        "a new process of the same host"
    );
    let restart_log = c.agents[dead].log()[log_before..].to_owned();
    assert!(
        !restart_log.contains("etcd member added; starting etcd"),
        "the restart must not join again: {restart_log}"
    );
}

#[test]
fn a_paused_leader_is_rejected_and_steps_down() {
    let c = Cluster::start(3, 3);
    let old = wait_for("a leader", Duration::from_secs(10), || {
        agreed_leader(&c, &[0, 1, 2])
    });
    let paused = c.index(&old);
    let others: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    let paused_api = c.agents[paused].api();

    c.agents[paused].signal(Signal::SIGSTOP);
    let new = wait_for(
        "another leader while paused",
        Duration::from_secs(15),
        || agreed_leader(&c, &others).filter(|l| *l != old),
    );
    c.agents[paused].signal(Signal::SIGCONT);

    // Its next guarded write is rejected (counted), and it steps down.
    let rejected = wait_for(
        "old leader rejected and stepped down",
        Duration::from_secs(10),
        || {
            let text = get_text(&format!("{paused_api}/metrics"))?;
            let rejected = metric(&text, "pgcd_guarded_write_rejections_total")?;
            (rejected >= 1.0 && metric(&text, "pgcd_is_leader") == Some(0.0)).then_some(rejected)
        },
    );
    assert!(rejected >= 1.0);
    // The leader record was written by the new leader only, and nobody else leads.
    let leaders: f64 = c
        .agents
        .iter()
        .filter_map(|a| {
            metric(
                &get_text(&format!("{}/metrics", a.api()))?,
                "pgcd_is_leader",
            )
        })
        .sum();
    assert_eq!(leaders, 1.0);
    assert_eq!(agreed_leader(&c, &[0, 1, 2]), Some(new));
    // The paused host comes back healthy with a new lease.
    wait_for("paused host healthy again", Duration::from_secs(10), || {
        (healthy_hosts(&c.agents[others[0]].api()).len() == 3).then_some(())
    });
}
