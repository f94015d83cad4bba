//! Secrets for real: an `{age: ...}` password from `pgcd secret encrypt` is
//! decrypted on the host and the user logs in with it; the replication
//! password pgcd makes is sealed in etcd; and neither secret appears in
//! etcd, the agents' logs, the task logs or any API answer.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

fn encrypt(api: &str, value: &str) -> String {
    let mut child = pgcd_client()
        .args(["secret", "encrypt", "--api", api])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgcd secret encrypt");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write the secret");
    let out = child.wait_with_output().expect("encrypt");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn an_age_password_logs_in_and_no_secret_is_readable_anywhere() {
    require_image(17);
    let block = 155;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let port = 6562;
    let password = format!("pw-{}", pgcd::cluster::identity::random_hex(12));
    let age = encrypt(&api, &password);
    assert!(
        age.starts_with("age: |\n  -----BEGIN AGE ENCRYPTED FILE-----"),
        "{age}"
    );
    assert!(!age.contains(&password));
    let indented: String = age.lines().map(|l| format!("      {l}\n")).collect();
    let spec = format!(
        "database_name: safe\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}, {}]\ndatabase_users:\n  - username: app\n    db_owner: true\n    attributes: [LOGIN]\n    password:\n{indented}",
        ids[0], ids[1]
    );
    std::fs::write(work.join("databases/safe.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "safe: an age password"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "safe", Some(&sha), WAIT);

    // The host decrypted it: app logs in with the plain password, not another.
    let container = format!("pgcd-safe-n1-{}", ids[0]);
    let as_app = |pw: &str| {
        psql(
            &container,
            &agents[0].addr,
            port,
            "app",
            pw,
            "safe",
            "SELECT current_user",
        )
    };
    assert_eq!(as_app(&password).as_deref(), Some("app"));
    assert!(as_app("not-the-password").is_none());

    // The replication password is sealed in etcd; opened with the
    // cluster's identity it is what the standby streams with.
    let out = etcdctl(&agents[0].etcd())
        .args(["get", "/pgcd/v1/", "--prefix"])
        .output()
        .expect("etcdctl");
    assert!(out.status.success());
    let etcd_dump = String::from_utf8_lossy(&out.stdout).to_string();
    let out = etcdctl(&agents[0].etcd())
        .args([
            "get",
            "--print-value-only",
            "/pgcd/v1/secrets/replication/safe",
        ])
        .output()
        .expect("etcdctl");
    let sealed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{sealed}"
    );
    pgcd::secrets::install_identity_file(&agents[0].data_dir.join("pki/age.key"))
        .expect("identity");
    let replication = pgcd::secrets::open_stored(&sealed).expect("open");
    assert_eq!(replication.len(), 32);
    let standby = format!("pgcd-safe-n1-{}", ids[1]);
    wait_for("the standby streams", WAIT, || {
        let su = std::fs::read_to_string(agents[0].data_dir.join("instances/safe-n1/superuser.pw"))
            .ok()?;
        psql(
            &standby,
            &agents[1].addr,
            port,
            "postgres",
            &su,
            "safe",
            "SELECT status FROM pg_stat_wal_receiver",
        )
        .filter(|s| s == "streaming")
    });

    // Scan everything a reader could see for both secrets.
    let mut seen: Vec<(String, String)> = vec![("etcd".into(), etcd_dump)];
    for a in &agents {
        seen.push((format!("{} log", a.id), a.log()));
        let etcd_log = std::fs::read_to_string(a.data_dir.join("etcd.log")).unwrap_or_default();
        seen.push((format!("{} etcd log", a.id), etcd_log));
    }
    for path in [
        "/",
        "/metrics",
        "/v1/cluster",
        "/v1/hosts",
        "/v1/desired",
        "/v1/actual",
        "/v1/databases",
        "/v1/databases/safe",
        "/v1/databases/safe/plan",
        "/v1/revisions",
        "/v1/source",
        "/v1/tasks",
        "/v1/certificates",
    ] {
        seen.push((
            path.into(),
            get_text(&format!("{api}{path}")).unwrap_or_default(),
        ));
    }
    let tasks = get_json(&format!("{api}/v1/tasks")).expect("tasks");
    let ids_of_tasks: Vec<String> = tasks
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert!(!ids_of_tasks.is_empty());
    for id in &ids_of_tasks {
        let log = get_text(&format!("{api}/v1/tasks/{id}/log")).unwrap_or_default();
        seen.push((format!("task {id} log"), log));
    }
    // The audit records, every step's reason and error included.
    let audits = get_json(&format!("{api}/v1/audit")).expect("audit records");
    for sha in audits
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["sha"].as_str())
    {
        let record = get_text(&format!("{api}/v1/audit/{sha}")).unwrap_or_default();
        seen.push((format!("audit {sha}"), record));
    }
    for (name, text) in &seen {
        assert!(
            !text.contains(&password),
            "the user's password is in {name}"
        );
        assert!(
            !text.contains(&replication),
            "the replication password is in {name}"
        );
    }
    // The scan read real material (not empty answers).
    assert!(seen
        .iter()
        .any(|(n, t)| n.starts_with("task ") && t.contains("app")));
}
