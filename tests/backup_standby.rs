//! A standby built from a backup (`standbys_from_backup`): a node runs on
//! one host with a posix repository, takes a full backup, writes more rows
//! (some archived, some not yet), then gets a second host. Its standby is
//! restored from the backup with `pgbackrest restore --type=standby`,
//! replays the archived WAL and streams from the primary through its slot,
//! with every row.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::steps::{send_step, wait_task};
use common::*;
use pgcd::spec::backup::BackupType;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);
const PORT: u16 = 6642;

fn spec(hosts: &[&String], repo: &Path, from_backup: bool) -> String {
    let list: Vec<&str> = hosts.iter().map(|h| h.as_str()).collect();
    format!(
        r#"database_name: ledger
postgres_version: "17"
port: {PORT}
nodes:
  - name: n1
    host_ids: [{}]
backup_config:
  repositories:
    - id: nfs
      type: posix
      base_path: {}
{}"#,
        list.join(", "),
        repo.display(),
        if from_backup {
            "  standbys_from_backup: true\n"
        } else {
            ""
        }
    )
}

#[test]
fn a_standby_restored_from_a_backup_streams_with_every_row() {
    require_image(17);
    let block = 102;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let repo = dir.path().join("nfs");
    let commit = |text: String, msg: &str| {
        std::fs::write(work.join("databases/ledger.yaml"), text).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", msg]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let sha = commit(spec(&[&ids[0]], &repo, false), "ledger on one host");
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    let su = std::fs::read_to_string(agents[0].data_dir.join("instances/ledger-n1/superuser.pw"))
        .unwrap();
    let on = |i: usize, q: &str| {
        psql(
            &format!("pgcd-ledger-n1-{}", ids[i]),
            &agents[i].addr,
            PORT,
            "postgres",
            &su,
            "ledger",
            q,
        )
    };
    wait_for("archiving configured", WAIT, || {
        let s = status(&api, "ledger")?;
        (s["instances"][0]["archive"]["archived_count"].as_i64()? >= 1).then_some(())
    });

    // Rows, a full backup, listed.
    on(
        0,
        "CREATE TABLE items (n int); INSERT INTO items SELECT generate_series(1, 1000)",
    )
    .unwrap();
    let desired = pgcd::spec::load(&[pgcd::spec::SourceFile {
        path: "databases/ledger.yaml".into(),
        text: spec(&[&ids[0]], &repo, false),
    }])
    .unwrap();
    let db = &desired.databases[0];
    let host: pgcd::spec::names::HostId = ids[0].parse().unwrap();
    let step =
        pgcd::plan::backup::backup_step(db, &db.nodes[0], &host, "full1", 1, BackupType::Full);
    let etcd = agents[0].etcd();
    let id = send_step(&etcd, &step, "pgcd/postgres:17", "backup-full1", WAIT);
    wait_task(&api, &id, WAIT);
    let label = wait_for("the full backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/ledger/backups"))?;
        let backups = b["nodes"][0]["backups"].as_array()?.clone();
        (backups.len() == 1).then(|| backups[0]["label"].as_str().map(String::from))?
    });

    // After the backup: rows in a segment that is archived, and rows in
    // one that is not yet (the primary streams those).
    on(0, "INSERT INTO items SELECT generate_series(1001, 1500)").unwrap();
    on(0, "SELECT pg_switch_wal()").unwrap();
    on(0, "INSERT INTO items SELECT generate_series(1501, 1700)").unwrap();
    assert_eq!(on(0, "SELECT count(*) FROM items").as_deref(), Some("1700"));

    // The second host, with standbys_from_backup.
    let sha = commit(
        spec(&[&ids[0], &ids[1]], &repo, true),
        "a standby from the backup",
    );
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    let log = task_log(&api, "s-ledger.n1.", "create-standby");
    assert!(
        log.contains(&format!(
            "its data comes from backup {label} in repository nfs"
        )) && log.contains("--type=standby")
            && log.contains("pgbackrest: ")
            && log.contains(&format!(
                "restored from backup {label} (pgbackrest restore --type=standby)"
            )),
        "the standby's task log:\n{log}"
    );
    assert!(
        !agents[1]
            .data_dir
            .join("instances/ledger-n1/basebackup.log")
            .exists(),
        "no pg_basebackup ran"
    );

    // It streams through its slot, and has every row.
    let slot = format!("pgcd_n1_{}", ids[1].replace('-', "_"));
    wait_for("the standby streaming on the primary", WAIT, || {
        on(
            0,
            &format!("SELECT state FROM pg_stat_replication WHERE application_name = '{slot}'"),
        )
        .filter(|s| s == "streaming")
    });
    assert_eq!(
        on(
            0,
            &format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'")
        )
        .as_deref(),
        Some("t")
    );
    assert_eq!(on(1, "SELECT pg_is_in_recovery()").as_deref(), Some("t"));
    wait_for("every row on the standby", WAIT, || {
        on(1, "SELECT count(*) FROM items").filter(|c| c == "1700")
    });
    on(0, "INSERT INTO items SELECT generate_series(1701, 1710)").unwrap();
    wait_for("a new row streamed", WAIT, || {
        on(1, "SELECT count(*) FROM items").filter(|c| c == "1710")
    });
    let auto = std::fs::read_to_string(
        agents[1]
            .data_dir
            .join("instances/ledger-n1/data/postgresql.auto.conf"),
    )
    .unwrap();
    assert!(
        auto.contains(&format!("primary_slot_name = '{slot}'"))
            && auto.contains("primary_conninfo")
            && auto.contains("restore_command"),
        "{auto}"
    );
}
