//! `Backup` and `Restore` operations committed to the repository, for
//! real: a primary with two standbys on PostgreSQL 17, a posix repository
//! (a directory standing in for NFS) set as a node override. A full backup,
//! rows written before and after a time, then an in-place point-in-time
//! restore to that time: exactly the rows before it remain, both standbys
//! are rebuilt from the restored primary and follow it, the database is
//! Ready again, and backups go on afterwards.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::ha::*;
use common::pg::{condition, wait_ready};
use common::*;
use std::os::unix::fs::PermissionsExt;

fn commit_op(ha: &Ha, id: &str, body: &str) {
    std::fs::create_dir_all(ha.work.join("operations")).unwrap();
    std::fs::write(
        ha.work.join(format!("operations/{id}.yaml")),
        format!("id: {id}\n{body}"),
    )
    .unwrap();
    git(&ha.work, &["add", "-A"]);
    git(
        &ha.work,
        &["commit", "-q", "-m", &format!("operation {id}")],
    );
}

fn wait_op(api: &str, id: &str) -> serde_json::Value {
    let op = wait_for(&format!("operation {id} ended"), WAIT, || {
        get_json(&format!("{api}/v1/operations/{id}")).filter(|op| {
            matches!(
                op["state"].as_str(),
                Some("succeeded" | "failed" | "unsupported")
            )
        })
    });
    assert_eq!(op["state"], "succeeded", "{op:#}");
    op
}

fn phase_names(op: &serde_json::Value) -> Vec<String> {
    op["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_committed_restore_brings_the_primary_back_to_a_time_and_rebuilds_its_standbys() {
    let repo = tempfile::tempdir().unwrap();
    let nfs = repo.path().join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    std::fs::set_permissions(&nfs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let extra = format!(
        "    backup_config:\n      repositories:\n        - id: nfs\n          type: posix\n          base_path: {}\n",
        nfs.display()
    );
    let ha = Ha::start(93, 6593, &extra, &[]);
    let api = ha.agents[0].api();
    ha.sql(0, "INSERT INTO items SELECT generate_series(1, 100)")
        .unwrap();

    commit_op(
        &ha,
        "full1",
        "kind: Backup\ndatabase: ledger\nnode: n1\ntype: full\nrepository: nfs\n",
    );
    let op = wait_op(&api, "full1");
    assert_eq!(phase_names(&op), [format!("backup-n1-{}", ha.ids[0])]);
    let listed = wait_for("the full backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/ledger/backups"))?;
        let backups = b["nodes"][0]["backups"].as_array()?.clone();
        (backups.len() == 1).then_some(backups)
    });
    assert_eq!(listed[0]["type"], "full");

    // pgBackRest picks the newest backup that stopped before the target,
    // with its stop time in whole seconds: let the clock pass it.
    let stop = listed[0]["stop"].as_str().unwrap().to_string();
    wait_for("the clock a second past the backup's stop", WAIT, || {
        ha.sql(
            0,
            &format!("SELECT now() > '{stop}'::timestamptz + interval '1 second'"),
        )
        .filter(|t| t == "t")
    });
    ha.sql(0, "INSERT INTO items SELECT generate_series(101, 150)")
        .unwrap();
    let target = ha.sql(0, "SELECT clock_timestamp()").unwrap();
    ha.sql(0, "INSERT INTO items SELECT generate_series(151, 400)")
        .unwrap();
    // On every standby too, before the restore.
    for i in 1..3 {
        wait_for("the standby has every row", WAIT, || {
            (ha.sql(i, "SELECT count(*) FROM items").as_deref() == Some("400")).then_some(())
        });
    }

    commit_op(
        &ha,
        "pitr",
        &format!(
            "kind: Restore\ndatabase: ledger\ntarget_nodes: [n1]\nrepository: nfs\nrestore_options:\n  type: time\n  target: \"{target}\"\n"
        ),
    );
    let op = wait_op(&api, "pitr");
    let (h1, h2, h3) = (&ha.ids[0], &ha.ids[1], &ha.ids[2]);
    assert_eq!(
        phase_names(&op),
        [
            format!("stop-n1-{h2}"),
            format!("stop-n1-{h3}"),
            format!("restore-n1-{h1}"),
            format!("slot-n1-{h2}"),
            format!("rebuild-n1-{h2}"),
            format!("slot-n1-{h3}"),
            format!("rebuild-n1-{h3}"),
        ],
        "{op:#}"
    );
    assert!(ha.writable(0), "the restored primary is the primary");
    assert_eq!(
        ha.sql(0, "SELECT count(*) FROM items").as_deref(),
        Some("150"),
        "exactly the rows before {target}"
    );
    // Both standbys were copied afresh from the restored primary (their
    // former data directories kept aside) and follow it.
    for i in 1..3 {
        assert!(ha.standby(i), "{} is a standby", ha.ids[i]);
        let kept = std::fs::read_dir(ha.agents[i].data_dir.join("instances/ledger-n1"))
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("data.former-"));
        assert!(kept, "{}'s former data directory is kept", ha.ids[i]);
    }
    ha.all_follow(0, 1000);
    for i in 1..3 {
        assert_eq!(
            ha.sql(i, "SELECT count(*) FROM items").as_deref(),
            Some("151")
        );
    }
    let s = wait_ready(&api, "ledger", None, WAIT);
    assert!(!condition(&s, "Degraded"), "{s:#}");

    // Backups go on after the restore (same cluster, a new timeline).
    commit_op(
        &ha,
        "incr1",
        "kind: Backup\ndatabase: ledger\nnode: n1\ntype: incr\n",
    );
    wait_op(&api, "incr1");
    wait_for("both backups listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/ledger/backups"))?;
        (b["nodes"][0]["backups"].as_array()?.len() == 2).then_some(())
    });
}
