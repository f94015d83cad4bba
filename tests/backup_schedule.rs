//! A backup schedule for real: every 30 seconds (six-field cron, UTC) on a
//! single-node PostgreSQL 17 database whose host is not the leader's,
//! posix repository. The leader is killed between two runs; the next
//! leader goes on: every scheduled time from the first on runs exactly
//! once (consecutive times, none missed, none doubled), and pgBackRest
//! lists one backup per run.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);

fn leader(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/cluster"))?["leader"]
        .as_str()
        .map(str::to_string)
}

fn schedule(api: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/schedules"))?
        .as_array()?
        .first()
        .cloned()
}

/// The schedule once `runs` runs have started and every one has ended.
fn after_runs(api: &str, runs: u64) -> Value {
    wait_for(&format!("{runs} scheduled runs ended"), WAIT, || {
        let s = schedule(api)?;
        if s["runs"].as_u64()? < runs {
            return None;
        }
        let ended = s["recent"].as_array()?.iter().all(|id| {
            get_json(&format!(
                "{api}/v1/operations/{}",
                id.as_str().unwrap_or("")
            ))
            .is_some_and(|op| op["state"] == "succeeded" || op["state"] == "failed")
        });
        ended.then_some(s)
    })
}

#[test]
fn scheduled_backups_run_once_per_time_across_a_change_of_leader() {
    require_image(17);
    let block = 94;
    let dir = tempfile::tempdir().unwrap();
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    std::fs::set_permissions(&nfs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (mut agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let first = wait_for("a leader", WAIT, || leader(&agents[0].api()));
    let li = agents.iter().position(|a| a.id == first).unwrap();
    let oi = (li + 1) % 3;
    let api = agents[oi].api();
    let spec = format!(
        "database_name: ledger\npostgres_version: \"17\"\nport: 6594\nnodes:\n  - name: n1\n    host_ids: [{}]\nbackup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: {}\n      retention_full: 20\n  schedules:\n    - id: often\n      type: full\n      cron_expression: \"*/30 * * * * *\"\n",
        agents[oi].id,
        nfs.display()
    );
    std::fs::write(work.join("databases/ledger.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &["commit", "-q", "-m", "ledger, backed up every 30 s"],
    );
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "ledger", Some(&sha), WAIT);

    let s = after_runs(&api, 1);
    assert_eq!(s["missed"], 0, "{s:#}");
    // Between two runs: kill the leader; another takes over.
    agents[li].kill9();
    let second = wait_for("a new leader", WAIT, || {
        leader(&api).filter(|l| *l != first)
    });
    assert_ne!(second, first);
    let s = after_runs(&api, 3);

    // Every time from the first on ran once: consecutive, 30 s apart.
    let recent: Vec<String> = s["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(s["missed"], 0, "no time missed: {s:#}");
    assert_eq!(recent.len() as u64, s["runs"].as_u64().unwrap(), "{s:#}");
    let times: Vec<chrono::NaiveDateTime> = recent
        .iter()
        .map(|id| {
            let t = id.rsplit('.').next().unwrap();
            chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dt%H%M%Sz").unwrap()
        })
        .collect();
    for w in times.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            30,
            "consecutive times: {recent:?}"
        );
    }
    let leaders: Vec<String> = recent
        .iter()
        .filter_map(|id| {
            let op = get_json(&format!("{api}/v1/operations/{id}"))?;
            assert_eq!(op["state"], "succeeded", "{op:#}");
            op["leaders"][0].as_str().map(str::to_string)
        })
        .collect();
    assert!(
        leaders.contains(&first) && leaders.contains(&second),
        "runs under both leaders: {leaders:?}"
    );
    // pgBackRest has one backup per run: none doubled.
    let listed = wait_for("every run's backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/ledger/backups"))?;
        let n = b["nodes"][0]["backups"].as_array()?.len();
        (n >= recent.len()).then_some(n)
    });
    let runs = schedule(&api).unwrap()["runs"].as_u64().unwrap() as usize;
    assert!(
        listed == recent.len() || listed == runs,
        "{listed} backups for {runs} runs"
    );
    // And /metrics counts them, none missed.
    let metrics = get_text(&format!("{api}/metrics")).unwrap();
    let missed = metrics
        .lines()
        .find(|l| l.starts_with("pgcd_backup_schedule_missed_total{database=\"ledger\""))
        .unwrap_or_else(|| panic!("no missed counter in {metrics}"));
    assert!(missed.ends_with(" 0"), "{missed}");
    assert!(
        metrics.contains("pgcd_backup_schedule_runs_total{database=\"ledger\""),
        "{metrics}"
    );
}
