//! The reconciler's core, for real (agents with the Docker runtime):
//! - a database whose step runs for a minute never delays another;
//! - a multi-phase operation survives the death of the leader that started
//!   it: the new leader resumes at the recorded phase and no phase runs
//!   twice;
//! - a scheduled operation whose leader dies before its time runs once, at
//!   its time, under the next leader;
//! - a `Cancel` stops an operation waiting for its time, and refuses one
//!   that has ended.
//!
//! Slow steps come from the test executors (`PGCD_TEST_SLOW_STEPS`, set for
//! every agent of this binary): steps of `slow` wait 60 s, operation steps 8 s.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(150);

fn slow_steps() {
    static SET: Once = Once::new();
    SET.call_once(|| std::env::set_var("PGCD_TEST_SLOW_STEPS", "slow/:60,operation:8"));
}

fn repo(dir: &Path) -> PathBuf {
    let work = dir.join("repo");
    std::fs::create_dir_all(work.join("databases")).unwrap();
    git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    std::fs::write(work.join("databases/.keep"), "").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "empty"]);
    work
}

fn commit(repo: &Path, path: &str, text: &str, msg: &str) -> String {
    let p = repo.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", msg]);
    git(repo, &["rev-parse", "HEAD"])
}

fn plain(name: &str, port: u16, hosts: &[&str]) -> String {
    format!(
        "database_name: {name}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}]\n",
        hosts.join(", ")
    )
}

fn running_task(api: &str, prefix: &str) -> bool {
    get_json(&format!("{api}/v1/tasks"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .any(|t| t["id"].as_str().is_some_and(|i| i.starts_with(prefix)) && t["state"] == "running")
}

#[test]
fn a_database_whose_step_runs_a_minute_never_delays_another() {
    require_image(17);
    slow_steps();
    let block = 81;
    let dir = tempfile::tempdir().unwrap();
    let h1 = host_id(block, 0);
    let _containers = Containers::new(vec![h1.clone()]);
    let work = repo(dir.path());
    let agent = pg_agent(
        block,
        0,
        dir.path(),
        vec!["--init".into(), "--repo".into(), work.display().to_string()],
    )
    .guarded();
    let api = agent.api();
    wait_for("one healthy host", READY, || {
        (healthy_hosts(&api).len() == 1).then_some(())
    });

    // The time a database takes to be Ready while nothing else runs.
    let t = Instant::now();
    let sha = commit(
        &work,
        "databases/base.yaml",
        &plain("base", 6611, &[&h1]),
        "base",
    );
    wait_ready(&api, "base", Some(&sha), READY);
    let alone = t.elapsed();

    // A database whose steps each take a minute...
    commit(
        &work,
        "databases/slow.yaml",
        &plain("slow", 6612, &[&h1]),
        "slow",
    );
    wait_for("a step of slow running", READY, || {
        running_task(&api, "s-slow.").then_some(())
    });
    // ...and one committed meanwhile.
    let t = Instant::now();
    let sha = commit(
        &work,
        "databases/quick.yaml",
        &plain("quick", 6613, &[&h1]),
        "quick",
    );
    wait_ready(&api, "quick", Some(&sha), READY);
    let beside = t.elapsed();
    let slow = status(&api, "slow").unwrap();
    assert!(
        condition(&slow, "Reconciling") && !condition(&slow, "Ready"),
        "slow is still being carried out: {slow}"
    );
    assert!(running_task(&api, "s-slow."), "slow's step still runs");
    // No duration is asserted (a loaded machine stretches a container's
    // start): that quick was Ready while slow's step still ran says it.
    eprintln!("Ready alone: {alone:?}; beside a database whose step runs 60 s: {beside:?}");
}

#[test]
fn a_new_leader_resumes_an_operation_at_its_recorded_phase_runs_no_phase_twice_and_keeps_a_schedule(
) {
    require_image(17);
    slow_steps();
    let block = 82;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let work = repo(dir.path());
    let mut agents = vec![pg_agent(
        block,
        0,
        dir.path(),
        vec!["--init".into(), "--repo".into(), work.display().to_string()],
    )];
    for i in 1..3 {
        agents.push(pg_agent(
            block,
            i,
            dir.path(),
            vec!["--join".into(), agents[0].api()],
        ));
    }
    let mut agents: Vec<AgentGuard> = agents.into_iter().map(Agent::guarded).collect();
    let apis: Vec<String> = agents.iter().map(|a| a.api()).collect();
    wait_for("three healthy hosts", READY, || {
        (healthy_hosts(&apis[0]).len() == 3).then_some(())
    });
    let leader = wait_for("a leader", READY, || {
        get_json(&format!("{}/v1/cluster", apis[0]))?["leader"]
            .as_str()
            .map(str::to_owned)
    });
    let li = agents.iter().position(|a| a.id == leader).unwrap();
    // The database lives on the two other hosts: a primary and a standby.
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let hosts: Vec<&str> = others.iter().map(|i| agents[*i].id.as_str()).collect();
    let api = apis[others[0]].clone();
    let sha = commit(
        &work,
        "databases/ops.yaml",
        &plain("ops", 6621, &hosts),
        "ops",
    );
    wait_ready(&api, "ops", Some(&sha), READY);

    // A Restart of both instances: two phases (the standby, then the primary).
    commit(
        &work,
        "operations/restart-ops.yaml",
        "id: restart-ops\nkind: Restart\ndatabase: ops\n",
        "restart ops",
    );
    let first = wait_for("the first phase running", READY, || {
        let op = get_json(&format!("{api}/v1/operations/restart-ops"))?;
        let phases = op["phases"].as_array()?;
        (phases.len() == 2 && phases[0]["state"] == "running").then_some(op)
    });
    assert_eq!(first["leaders"][0], leader.as_str(), "{first}");
    // The leader dies in the middle of the operation.
    agents[li].kill9();
    let done = wait_for("the operation succeeded", READY, || {
        get_json(&format!("{api}/v1/operations/restart-ops"))
            .filter(|op| op["state"] == "succeeded")
    });
    let leaders: Vec<&str> = done["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(leaders.len(), 2, "both leaders carried it: {done}");
    assert_eq!(leaders[0], leader.as_str());
    assert_ne!(leaders[1], leader.as_str());
    for p in done["phases"].as_array().unwrap() {
        assert_eq!(p["state"], "succeeded", "{done}");
        assert!(
            p["started_at"].is_string() && p["finished_at"].is_string(),
            "{p}"
        );
    }
    assert_eq!(done["tasks"].as_array().unwrap().len(), 2, "{done}");
    // Counted on the hosts: each phase's step ran exactly once.
    for i in &others {
        let runs = std::fs::read_to_string(agents[*i].data_dir.join("step-runs.log")).unwrap();
        let restarts: Vec<&str> = runs
            .lines()
            .filter(|l| l.contains("/operation:restart-ops"))
            .collect();
        assert_eq!(restarts.len(), 1, "{}: {runs}", agents[*i].id);
    }
    wait_ready(&api, "ops", None, READY);

    // A scheduled Restart across a change of leader: the leader that
    // recorded it dies before its time, and the next one runs it once, at
    // its time, not before.
    agents[li].spawn();
    wait_for("three healthy hosts again", READY, || {
        (healthy_hosts(&api).len() == 3).then_some(())
    });
    let at_text = (chrono::Utc::now() + chrono::Duration::seconds(45))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let at = chrono::DateTime::parse_from_rfc3339(&at_text).unwrap();
    commit(
        &work,
        "operations/restart-later.yaml",
        &format!("id: restart-later\nkind: Restart\ndatabase: ops\nscheduled_at: \"{at_text}\"\n"),
        "restart ops later",
    );
    wait_for("the restart scheduled", READY, || {
        get_json(&format!("{api}/v1/operations/restart-later"))
            .filter(|op| op["state"] == "scheduled")
    });
    let term = newest_term(&api).expect("a leader");
    let who = agents.iter().position(|a| a.id == term.0).unwrap();
    agents[who].kill9();
    agents[who].spawn();
    let next = wait_new_term(&api, &term, READY);
    assert!(
        chrono::Utc::now() < at,
        "the new leader ({next:?}) came after the restart's time: nothing is shown"
    );
    let done = wait_for("the scheduled restart succeeded", READY, || {
        get_json(&format!("{api}/v1/operations/restart-later"))
            .filter(|op| op["state"] == "succeeded")
    });
    let started = chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        started >= at,
        "started {started} before its time {at}: {done}"
    );
    let leaders = done["leaders"].as_array().unwrap();
    assert!(leaders.iter().any(|l| l == next.0.as_str()), "{done}");
    for i in &others {
        let runs = std::fs::read_to_string(agents[*i].data_dir.join("step-runs.log")).unwrap();
        let restarts = runs
            .lines()
            .filter(|l| l.contains("/operation:restart-later"))
            .count();
        assert_eq!(restarts, 1, "{}: {runs}", agents[*i].id);
    }
    wait_ready(&api, "ops", None, READY);

    // Cancel: an operation waiting for its time is cancelled and never
    // runs; one that has ended is not, and the Cancel says why.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    commit(
        &work,
        "operations/restart-never.yaml",
        &format!("id: restart-never\nkind: Restart\ndatabase: ops\nscheduled_at: \"{later}\"\n"),
        "restart ops in an hour",
    );
    wait_for("the restart scheduled", READY, || {
        get_json(&format!("{api}/v1/operations/restart-never"))
            .filter(|op| op["state"] == "scheduled")
    });
    commit(
        &work,
        "operations/cancel-1.yaml",
        "id: cancel-1\nkind: Cancel\noperation: restart-never\n",
        "cancel it",
    );
    commit(
        &work,
        "operations/cancel-2.yaml",
        "id: cancel-2\nkind: Cancel\noperation: restart-later\n",
        "cancel one that ended",
    );
    let state = |id: &str| {
        get_json(&format!("{api}/v1/operations/{id}"))
            .filter(|op| op["state"] != "pending" && op["state"] != "running")
    };
    let cancelled = wait_for("restart-never cancelled", READY, || {
        state("restart-never").filter(|op| op["state"] != "scheduled")
    });
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    assert!(
        cancelled["phases"]
            .as_array()
            .is_none_or(|p| p.iter().all(|p| p["state"] != "succeeded")),
        "{cancelled}"
    );
    let one = wait_for("cancel-1 ended", READY, || state("cancel-1"));
    assert_eq!(one["state"], "succeeded", "{one}");
    let two = wait_for("cancel-2 ended", READY, || state("cancel-2"));
    assert_eq!(two["state"], "failed", "{two}");
    assert!(
        two["reason"].as_str().unwrap().contains("already ended"),
        "{two}"
    );
    let done = get_json(&format!("{api}/v1/operations/restart-later")).unwrap();
    assert_eq!(done["state"], "succeeded", "{done}");
}
