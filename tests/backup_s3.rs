//! pgBackRest against S3 for real: moto's S3 server on loopback behind
//! nginx's TLS with a certificate from a CA the test makes, verified by pgBackRest
//! (`storage-ca-file`, no `verify-tls=n`), path-style URIs. An agent
//! archives to it, backs up and restores in place to a point in time.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::steps::{send_step, wait_task};
use common::*;
use pgcd::plan::backup::RestoreTarget;
use pgcd::spec::backup::{BackupType, RestoreType};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);

/// moto's S3 server on plain HTTP behind nginx's TLS; both killed on drop.
/// (moto's own `--ssl` server ends TLS connections without close_notify,
/// which pgBackRest rightly treats as an error.)
struct S3 {
    moto: Child,
    nginx: Child,
    port: u16,
    ca: PathBuf,
}

impl Drop for S3 {
    fn drop(&mut self) {
        // SIGTERM: nginx's master then stops its workers (a SIGKILL would
        // leave them holding the port).
        for c in [&mut self.nginx, &mut self.moto] {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for `localhost` signed by it.
fn certificates(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pgcd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "s3.key",
            "-out",
            "s3.csr",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "s3.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "s3.crt",
        ],
    );
    dir.join("ca.crt")
}

fn curl(s3: &S3, method: &str, path: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", "--cacert"])
        .arg(&s3.ca)
        .args([
            "-X",
            method,
            &format!("https://localhost:{}{path}", s3.port),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn start_s3(dir: &Path) -> S3 {
    let moto =
        PathBuf::from(std::env::var("PGCD_CACHE").unwrap_or_else(|_| "/var/cache/pgcd".into()))
            .join("moto-venv/bin/moto_server");
    assert!(
        moto.exists(),
        "{} is missing: run scripts/install-deps.sh",
        moto.display()
    );
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx (scripts/install-deps.sh installs nginx-light)");
    let ca = certificates(dir);
    // Ports of this test run's own (PGCD_TEST_NET keeps runs apart).
    let port = 20000 + u16::from(net()) * 10 + 1;
    let plain = port + 1;
    let moto = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &plain.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let conf = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/nginx.err;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/s3.crt;\n    ssl_certificate_key {d}/s3.key;\n    client_max_body_size 0;\n    location / {{\n      proxy_pass http://127.0.0.1:{plain};\n      proxy_http_version 1.1;\n      proxy_request_buffering off;\n      proxy_set_header Host $http_host;\n    }}\n  }}\n}}\n",
        d = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-p"])
        .arg(dir)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let s3 = S3 {
        moto,
        nginx,
        port,
        ca,
    };
    wait_for(
        "moto answers through nginx's TLS",
        Duration::from_secs(60),
        || curl(&s3, "GET", "/"),
    );
    curl(&s3, "PUT", "/pgcd-backups").expect("create the bucket");
    s3
}

#[test]
fn s3_backup_and_point_in_time_restore_through_the_agent() {
    require_image(17);
    let block = 92;
    let dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(dir.path());
    std::fs::write(dir.path().join("s3.key-id"), "AKIDPGCDTEST\n").unwrap();
    std::fs::write(dir.path().join("s3.secret"), "pgcd-test-secret-value\n").unwrap();
    let ids: Vec<String> = (0..1).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 1, dir.path(), WAIT);
    let api = agents[0].api();
    let spec = format!(
        r#"database_name: vault
postgres_version: "17"
port: 6591
nodes:
  - name: n1
    host_ids: [{}]
backup_config:
  repositories:
    - id: s3
      type: s3
      base_path: /pgcd
      s3_bucket: pgcd-backups
      s3_region: us-east-1
      s3_endpoint: https://localhost:{}
      s3_key: {{file: {}}}
      s3_key_secret: {{file: {}}}
      custom_options:
        s3-uri-style: path
        storage-ca-file: {}
"#,
        ids[0],
        s3.port,
        dir.path().join("s3.key-id").display(),
        dir.path().join("s3.secret").display(),
        s3.ca.display()
    );
    std::fs::write(work.join("databases/vault.yaml"), &spec).unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "vault with S3 backups"]);
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "vault", Some(&sha), WAIT);
    let container = format!("pgcd-vault-n1-{}", ids[0]);
    let su = std::fs::read_to_string(agents[0].data_dir.join("instances/vault-n1/superuser.pw"))
        .unwrap();
    let on = |q: &str| {
        psql(
            &container,
            &agents[0].addr,
            6591,
            "postgres",
            &su,
            "vault",
            q,
        )
    };

    // The stanza and archived WAL are objects in the bucket; the secrets are
    // in the configuration file only, never in the task log.
    let sysid = on("SELECT system_identifier FROM pg_control_system()").unwrap();
    let listing = curl(&s3, "GET", "/pgcd-backups?prefix=pgcd/vault-n1/").unwrap();
    assert!(
        listing.contains(&format!(
            "pgcd/vault-n1/{sysid}/archive/vault-n1/archive.info"
        )),
        "{listing}"
    );
    let log = task_log(&api, "s-vault.n1.", "backup-config");
    assert!(
        log.contains("repo1-s3-key-secret=***") && log.contains("archive-async=y"),
        "{log}"
    );
    assert!(
        !log.contains("pgcd-test-secret-value") && !log.contains("AKIDPGCDTEST"),
        "{log}"
    );

    on("CREATE TABLE items (n int); INSERT INTO items SELECT generate_series(1, 100)").unwrap();
    let desired = pgcd::spec::load(&[pgcd::spec::SourceFile {
        path: "databases/vault.yaml".into(),
        text: spec.clone(),
    }])
    .unwrap();
    let db = &desired.databases[0];
    let host: pgcd::spec::names::HostId = ids[0].parse().unwrap();
    let etcd = agents[0].etcd();
    let step =
        pgcd::plan::backup::backup_step(db, &db.nodes[0], &host, "s3full", 1, BackupType::Full);
    let id = send_step(&etcd, &step, "pgcd/postgres:17", "backup-s3full", WAIT);
    wait_task(&api, &id, WAIT);
    let listed = wait_for("the full backup listed", WAIT, || {
        let b = get_json(&format!("{api}/v1/databases/vault/backups"))?;
        let backups = b["nodes"][0]["backups"].as_array()?.clone();
        (backups.len() == 1).then_some(backups)
    });
    assert_eq!(listed[0]["type"], "full");
    let stop = listed[0]["stop"].as_str().unwrap().to_string();
    wait_for("the clock a second past the backup's stop", WAIT, || {
        on(&format!(
            "SELECT now() > '{stop}'::timestamptz + interval '1 second'"
        ))
        .filter(|t| t == "t")
    });
    on("INSERT INTO items SELECT generate_series(101, 150)").unwrap();
    let target = on("SELECT clock_timestamp()").unwrap();
    on("INSERT INTO items SELECT generate_series(151, 400)").unwrap();

    let t = RestoreTarget {
        restore_type: RestoreType::Time,
        target: Some(target.clone()),
        set: None,
        exclusive: false,
    };
    let step = pgcd::plan::backup::restore_step(db, &db.nodes[0], &host, "s3pitr", 1, t);
    let id = send_step(&etcd, &step, "pgcd/postgres:17", "restore-s3pitr", WAIT);
    wait_task(&api, &id, WAIT);
    assert_eq!(
        on("SELECT count(*) FROM items").as_deref(),
        Some("150"),
        "exactly the rows before {target}"
    );
    assert_eq!(on("SELECT pg_is_in_recovery()").as_deref(), Some("f"));
    // Archiving goes on into the bucket on the new timeline.
    on("SELECT pg_switch_wal()").unwrap();
    wait_for("timeline 2 history in the bucket", WAIT, || {
        curl(&s3, "GET", "/pgcd-backups?prefix=pgcd/vault-n1/")
            .filter(|l| l.contains("00000002.history"))
    });
}
