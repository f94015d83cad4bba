//! A database created from another database's backups (`restore_config`),
//! for real: `ledger` on one host with a posix repository (a directory
//! standing in for NFS) and a full backup; then `copy`, on the other host
//! with a standby on the first, restored from that backup. Both hold the
//! same rows; the copy is its own database (renamed, its own superuser
//! password, its standby streaming, its own stanza and backups), and not
//! one WAL segment of the copy reaches the source's archive.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);

/// SQL through an instance's socket as the superuser; `None` on error.
fn sql(container: &str, db: &str, q: &str) -> Option<String> {
    // The port is the database's: ledger-* 6599, copy-* 6598.
    let port = if container.starts_with("pgcd-ledger-") {
        "6599"
    } else {
        "6598"
    };
    let out = Command::new("docker")
        .args(["exec", "-u", "postgres", container])
        .args(["env", &format!("PGPORT={port}")])
        .args([
            "psql",
            "-X",
            "-At",
            "-h",
            "/var/lib/pgcd/run",
            "-U",
            "postgres",
        ])
        .args(["-d", db, "-c", q])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "psql on {container}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit(work: &Path, file: &str, body: &str, msg: &str) -> String {
    let path = work.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["rev-parse", "HEAD"])
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

/// Every file name under `dir`, recursively.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

const CHECKSUM: &str =
    "SELECT count(*) || ' ' || md5(string_agg(n::text || ':' || v, ',' ORDER BY n)) FROM items";

#[test]
fn a_database_with_restore_config_is_created_from_another_databases_backup() {
    require_image(17);
    let block = 99;
    let dir = tempfile::tempdir().unwrap();
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&nfs).unwrap();
    std::fs::set_permissions(&nfs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let repository = format!(
        "  repository:\n    id: nfs\n    type: posix\n    base_path: {}\n",
        nfs.display()
    );
    let backups = format!(
        "backup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: {}\n",
        nfs.display()
    );
    let sha = commit(
        &work,
        "databases/ledger.yaml",
        &format!(
            "database_name: ledger\npostgres_version: \"17\"\nport: 6599\nnodes:\n  - name: n1\n    host_ids: [{}]\n{backups}",
            ids[0]
        ),
        "ledger",
    );
    wait_ready(&api, "ledger", Some(&sha), WAIT);
    let source = format!("pgcd-ledger-n1-{}", ids[0]);
    sql(
        &source,
        "ledger",
        "CREATE TABLE items (n int PRIMARY KEY, v text); \
         INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 300) g",
    )
    .unwrap();
    let before = sql(&source, "ledger", CHECKSUM).unwrap();
    assert!(before.starts_with("300 "), "{before}");

    commit(
        &work,
        "operations/full1.yaml",
        "id: full1\nkind: Backup\ndatabase: ledger\nnode: n1\ntype: full\n",
        "backup ledger",
    );
    wait_op(&api, "full1");
    wait_for("the backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/ledger/backups"))?;
        (b["nodes"][0]["backups"].as_array()?.len() == 1).then_some(())
    });

    // The copy: on the other host, a standby on the first, backups of its own.
    let sha = commit(
        &work,
        "databases/copy.yaml",
        &format!(
            "database_name: copy\npostgres_version: \"17\"\nport: 6598\nnodes:\n  - name: n1\n    host_ids: [{}, {}]\n{backups}restore_config:\n  source_database_id: ledger\n  source_node_name: n1\n{repository}",
            ids[1], ids[0]
        ),
        "copy of ledger from its backup",
    );
    wait_ready(&api, "copy", Some(&sha), WAIT);
    let copy = format!("pgcd-copy-n1-{}", ids[1]);
    let standby = format!("pgcd-copy-n1-{}", ids[0]);
    assert_eq!(
        sql(&copy, "copy", CHECKSUM).as_deref(),
        Some(before.as_str()),
        "the copy holds the source's rows"
    );
    assert_eq!(
        sql(&copy, "postgres", "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE NOT datistemplate").as_deref(),
        Some("copy,postgres"),
        "the source's database is renamed to the spec's"
    );
    let log = task_log(&api, "s-copy.n1.", "create-instance");
    assert!(log.contains("created from a backup of ledger-n1"), "{log}");

    // Its own: writes do not reach the source, its standby follows it.
    sql(&copy, "copy", "INSERT INTO items VALUES (301, 'copy only')").unwrap();
    wait_for("the copy's standby has the new row", WAIT, || {
        (sql(&standby, "copy", "SELECT count(*) FROM items").as_deref() == Some("301"))
            .then_some(())
    });
    assert_eq!(
        sql(&source, "ledger", "SELECT count(*) FROM items").as_deref(),
        Some("300")
    );
    // The source's superuser password no longer opens the copy over TCP;
    // the copy's own does.
    let pw = |db: &str, host: usize| {
        std::fs::read_to_string(
            agents[host]
                .data_dir
                .join(format!("instances/{db}-n1/superuser.pw")),
        )
        .unwrap()
    };
    let tcp = |password: &str| {
        psql(
            &copy,
            &agents[1].addr,
            6598,
            "postgres",
            password,
            "copy",
            "SELECT 1",
        )
    };
    assert_eq!(tcp(&pw("copy", 1)).as_deref(), Some("1"));
    assert_eq!(tcp(&pw("ledger", 0)), None);

    // Backups of the copy go to its own stanza.
    commit(
        &work,
        "operations/copyfull.yaml",
        "id: copyfull\nkind: Backup\ndatabase: copy\nnode: n1\ntype: full\n",
        "backup copy",
    );
    wait_op(&api, "copyfull");
    let listed = wait_for("the copy's backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/copy/backups"))?;
        let node = b["nodes"][0].clone();
        (node["backups"].as_array()?.len() == 1).then_some(node)
    });
    assert_eq!(listed["stanza"], "copy-n1", "{listed:#}");

    // Not one segment of the copy's timeline is in the source's archive,
    // and the source still archives and checks.
    let archived = files(&nfs.join("ledger-n1"));
    assert!(
        archived.iter().any(|f| f.starts_with("00000001")),
        "{archived:?}"
    );
    assert!(
        !archived.iter().any(|f| f.starts_with("00000002")),
        "the copy's timeline reached the source's archive: {archived:?}"
    );
    let check = Command::new("docker")
        .args(["exec", "-u", "postgres", &source, "pgbackrest"])
        .args([
            "--config=/var/lib/pgcd/pgbackrest/pgbackrest.conf",
            "--stanza=ledger-n1",
            "check",
        ])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
