//! Restore rehearsals for real: two agents, PostgreSQL 17, a posix
//! repository (a directory standing in for NFS). `ledger` is a primary on
//! h1 with a standby on h2, `stock` a single instance on h1; both are
//! backed up by a committed `Backup`, then get `backup_config.verify` every
//! 20 seconds. The rehearsal of ledger runs on h2 (the host of the node
//! that is not its primary), restores the backup into a scratch instance,
//! reports its RTO and RPO and finds the rows the source had; then a file
//! of ledger's backup set is damaged, and the next rehearsal fails: ledger
//! is `Degraded` with the reason, stock stays Ready and its rehearsals pass.
//! The scratch instances are gone after each rehearsal.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);

fn spec(name: &str, port: u16, hosts: &[&str], nfs: &Path, verify: bool) -> String {
    let mut s = format!(
        "database_name: {name}\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}]\nbackup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: {}\n      retention_full: 5\n",
        hosts.join(", "),
        nfs.display()
    );
    if verify {
        s.push_str("  verify:\n    cron_expression: \"*/20 * * * * *\"\n");
    }
    s
}

fn commit(work: &Path, files: &[(&str, String)], msg: &str) -> String {
    for (path, text) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["rev-parse", "HEAD"])
}

fn wait_op(api: &str, id: &str) {
    let op = wait_for(&format!("operation {id} ended"), WAIT, || {
        get_json(&format!("{api}/v1/operations/{id}"))
            .filter(|op| matches!(op["state"].as_str(), Some("succeeded" | "failed")))
    });
    assert_eq!(op["state"], "succeeded", "{op:#}");
}

/// The newest backup label of a database's node from the API.
fn newest_label(api: &str, db: &str) -> String {
    wait_for(&format!("{db}'s backup listed"), WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/{db}/backups"))?;
        let last = b["nodes"][0]["backups"].as_array()?.last()?.clone();
        last["label"].as_str().map(str::to_string)
    })
}

/// A node's last rehearsal from the database's status once `f` holds for it.
fn check_where(api: &str, db: &str, what: &str, f: impl Fn(&Value) -> bool) -> (Value, Value) {
    wait_for(&format!("{db}: {what}"), WAIT, || {
        let s = status(api, db)?;
        let c = s["restore_checks"].as_array()?.first()?.clone();
        f(&c).then_some((c, s))
    })
}

fn condition_of<'a>(s: &'a Value, kind: &str) -> &'a Value {
    s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()
}

fn no_scratch_left(agents: &[AgentGuard]) {
    let names = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=io.pgcd.rehearsal",
        "--format",
        "{{.Names}}",
    ]);
    let ours: Vec<&str> = names
        .lines()
        .filter(|n| n.contains("pgcd-rehearsal-ledger-") || n.contains("pgcd-rehearsal-stock-"))
        .collect();
    assert!(ours.is_empty(), "scratch containers left: {ours:?}");
    for a in agents {
        for d in ["ledger-n1", "stock-n1"] {
            let dir = a.data_dir.join("rehearsals").join(d);
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
}

#[test]
fn a_rehearsal_restores_the_last_backup_and_a_damaged_one_degrades_only_its_database() {
    require_image(17);
    let block = 97;
    let dir = tempfile::tempdir().unwrap();
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    std::fs::set_permissions(&nfs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let (h1, h2) = (ids[0].as_str(), ids[1].as_str());

    // Two databases with backups and rehearsals every 20 s (which fail
    // until there is a backup), rows, one full backup each.
    let sha = commit(
        &work,
        &[
            (
                "databases/ledger.yaml",
                spec("ledger", 6597, &[h1, h2], &nfs, true),
            ),
            (
                "databases/stock.yaml",
                spec("stock", 6598, &[h1], &nfs, true),
            ),
        ],
        "ledger and stock, backed up and rehearsed",
    );
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    wait_ready(&api, "stock", Some(&sha), WAIT);
    let su = |db: &str| {
        std::fs::read_to_string(
            agents[0]
                .data_dir
                .join(format!("instances/{db}-n1/superuser.pw")),
        )
        .unwrap()
    };
    let on = |db: &str, port: u16, q: &str| {
        psql(
            &format!("pgcd-{db}-n1-{h1}"),
            &agents[0].addr,
            port,
            "postgres",
            &su(db),
            db,
            q,
        )
    };
    on(
        "ledger",
        6597,
        "CREATE TABLE items (n int); INSERT INTO items SELECT generate_series(1, 1000)",
    )
    .unwrap();
    on(
        "stock",
        6598,
        "CREATE TABLE parts (n int); INSERT INTO parts SELECT generate_series(1, 250)",
    )
    .unwrap();
    let items_file = on("ledger", 6597, "SELECT pg_relation_filepath('items')").unwrap();
    commit(
        &work,
        &[
            (
                "operations/ledger-full.yaml",
                "id: ledger-full\nkind: Backup\ndatabase: ledger\nnode: n1\ntype: full\n".into(),
            ),
            (
                "operations/stock-full.yaml",
                "id: stock-full\nkind: Backup\ndatabase: stock\nnode: n1\ntype: full\n".into(),
            ),
        ],
        "full backups",
    );
    wait_op(&api, "ledger-full");
    wait_op(&api, "stock-full");
    let label = newest_label(&api, "ledger");
    let stock_label = newest_label(&api, "stock");

    let (c, s) = check_where(&api, "ledger", "a rehearsal of the backup passed", |c| {
        c["ok"] == true && c["label"] == label.as_str()
    });
    assert_eq!(c["label"], label.as_str(), "{c:#}");
    assert_eq!(c["host"], h2, "the standby's host rehearses: {c:#}");
    eprintln!("passing rehearsal: {c:#}");
    let rto = c["restore_seconds"].as_f64().unwrap();
    let rpo = c["age_seconds"].as_f64().unwrap();
    assert!(rto > 0.0 && rpo > 0.0, "RTO {rto}, RPO {rpo}: {c:#}");
    let ledger_db = c["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["database"] == "ledger")
        .unwrap_or_else(|| panic!("{c:#}"))
        .clone();
    assert_eq!(
        (
            ledger_db["rows"].as_i64(),
            ledger_db["source_rows"].as_i64()
        ),
        (Some(1000), Some(1000)),
        "{c:#}"
    );
    assert!(
        ledger_db["size"].as_i64().unwrap() > 0 && ledger_db["ok"] == true,
        "{c:#}"
    );
    assert!(!condition(&s, "Degraded"), "{s:#}");
    let op = c["operation"].as_str().unwrap().to_string();
    // The result is recorded before the scratch instance is removed: the
    // log's last lines come a moment later.
    let log = wait_for(
        "the rehearsal's log ends with the scratch removed",
        WAIT,
        || {
            let task = get_json(&format!("{api}/v1/operations/{op}"))?["phases"][0]["tasks"][0]
                .as_str()?
                .to_string();
            get_text(&format!("{api}/v1/tasks/{task}/log")).filter(|l| l.contains("removed"))
        },
    );
    assert!(
        log.contains("RTO") && log.contains("--type=immediate"),
        "{log}"
    );
    let (sc, _) = check_where(&api, "stock", "a rehearsal of the backup passed", |c| {
        c["ok"] == true && c["label"] == stock_label.as_str()
    });
    assert_eq!(
        (sc["label"].as_str(), sc["host"].as_str()),
        (Some(stock_label.as_str()), Some(h1)),
        "{sc:#}"
    );

    // Damage ledger's backup: the items table's file in the backup set.
    let set = std::fs::read_dir(nfs.join("ledger-n1"))
        .unwrap()
        .map(|e| e.unwrap().path().join("backup/ledger-n1").join(&label))
        .find(|p| p.is_dir())
        .expect("the backup set's directory");
    let damaged = std::fs::read_dir(
        set.join("pg_data")
            .join(Path::new(&items_file).parent().unwrap()),
    )
    .unwrap()
    .map(|e| e.unwrap().path())
    .find(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.split('.').next() == Path::new(&items_file).file_name().and_then(|f| f.to_str())
        })
    })
    .unwrap_or_else(|| panic!("items' file {items_file} in {}", set.display()));
    let len = std::fs::metadata(&damaged).unwrap().len() as usize;
    std::fs::write(&damaged, vec![0x5a; len.max(64)]).unwrap();
    let failed_before = c["failed"].as_u64().unwrap_or(0);

    let (c, s) = check_where(&api, "ledger", "a rehearsal failed", |c| {
        c["ok"] == false && c["failed"].as_u64() > Some(failed_before)
    });
    eprintln!("failing rehearsal: {c:#}");
    let reason = c["reason"].as_str().unwrap();
    assert!(reason.contains(&label), "{c:#}");
    assert_eq!(c["label"], label.as_str());
    let degraded = wait_for("ledger Degraded", WAIT, || {
        let s = status(&api, "ledger")?;
        condition(&s, "Degraded").then_some(s)
    });
    let d = condition_of(&degraded, "Degraded");
    assert_eq!(d["reason"], "RestoreCheckFailed", "{degraded:#}");
    assert!(d["message"].as_str().unwrap().contains(&label), "{d:#}");
    assert!(condition(&s, "Ready"), "ledger keeps serving: {s:#}");

    // stock: unaffected, still Ready, its rehearsals still pass.
    let before = sc["passed"].as_u64().unwrap();
    let (sc, ss) = check_where(&api, "stock", "another rehearsal passed", |c| {
        c["ok"] == true && c["passed"].as_u64() > Some(before)
    });
    assert!(
        condition(&ss, "Ready") && !condition(&ss, "Degraded"),
        "{ss:#}"
    );
    assert_eq!(
        sc["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["database"] == "stock")
            .unwrap()["rows"],
        250
    );
    let metrics = get_text(&format!("{api}/metrics")).unwrap();
    for want in [
        "pgcd_restore_check_success{database=\"ledger\",node=\"n1\"} 0",
        "pgcd_restore_check_success{database=\"stock\",node=\"n1\"} 1",
        "pgcd_restore_check_duration_seconds{database=\"stock\",node=\"n1\"}",
        "pgcd_restore_check_age_seconds{database=\"ledger\",node=\"n1\"}",
    ] {
        assert!(metrics.contains(want), "{want} missing in /metrics");
    }
    let page = get_text(&format!("{api}/")).unwrap();
    assert!(
        page.contains("restore rehearsal") && page.contains("failed"),
        "the status page shows it"
    );

    // Rehearsals off: once the last one ended, nothing of them is left.
    commit(
        &work,
        &[
            (
                "databases/ledger.yaml",
                spec("ledger", 6597, &[h1, h2], &nfs, false),
            ),
            (
                "databases/stock.yaml",
                spec("stock", 6598, &[h1], &nfs, false),
            ),
        ],
        "no more rehearsals",
    );
    wait_for("no rehearsal running", WAIT, || {
        let ops = get_json(&format!("{api}/v1/operations"))?;
        let running = ops
            .as_array()?
            .iter()
            .any(|o| o["kind"] == "Verify" && o["state"] == "running");
        let off = status(&api, "ledger")?["restore_checks"].is_null();
        (!running && off).then_some(())
    });
    no_scratch_left(&agents);
    let s = status(&api, "ledger").unwrap();
    assert!(
        !condition(&s, "Degraded"),
        "without verify the old failure no longer speaks: {s:#}"
    );
}
