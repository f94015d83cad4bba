//! A pgEdge Control Plane user's specs: the `spec` objects of pgEdge's
//! create-database, backup-restore, upgrade and quickstart guides, retyped as
//! `databases/*.yaml` (passwords as `{env: ...}`), validate as they are; the
//! request bodies they came from (`request.json`, clear-text passwords,
//! trailing commas and all) import to the same desired state; and what pgcd
//! does not support is refused or listed, saying what pgcd offers instead.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pgcd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgcd"));
    c.env("PGCD_MANIFESTS", "/nonexistent");
    c
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pgedge");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The defaulted desired state of a directory, as `pgcd validate -o json` prints it.
fn desired(dir: &Path) -> Value {
    let out = pgcd()
        .args(["validate", "-o", "json"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}",
        dir.display(),
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn import(files: &[&Path], out: &Path, extra: &[&str]) -> Output {
    pgcd()
        .args(["import", "pgedge"])
        .args(files)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn pgedge_documented_specs_validate_as_they_are() {
    let dirs = fixtures();
    assert!(dirs.len() >= 10, "only {} pgEdge fixtures", dirs.len());
    for dir in &dirs {
        let v = desired(dir);
        let db = &v["databases"][0];
        // The spec's own values survive; pgcd only fills defaults.
        assert!(
            db["nodes"].as_array().is_some_and(|n| !n.is_empty()),
            "{}",
            dir.display()
        );
        let yaml = std::fs::read_dir(dir.join("databases"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let spec = std::fs::read_to_string(yaml).unwrap();
        assert!(!spec.contains("password: password"), "{}", dir.display());
    }
}

#[test]
fn specs_without_a_version_take_the_cluster_default() {
    let quickstart = fixtures()
        .into_iter()
        .find(|d| d.ends_with("quickstart"))
        .unwrap();
    let v = desired(&quickstart);
    assert_eq!(v["databases"][0]["postgres_version"], "18");
    assert_eq!(v["databases"][0]["nodes"][2]["port"], 6434);
    // With pgcd.yaml naming one, that one.
    let tmp = tempfile::tempdir().unwrap();
    copy(&quickstart, tmp.path());
    std::fs::write(tmp.path().join("pgcd.yaml"), "postgres_version: \"17\"\n").unwrap();
    let v = desired(tmp.path());
    assert_eq!(v["databases"][0]["postgres_version"], "17");
    assert_eq!(v["databases"][0]["nodes"][0]["postgres_version"], "17");
    // A database that names its own keeps it.
    let major = fixtures()
        .into_iter()
        .find(|d| d.ends_with("major-upgrade"))
        .unwrap();
    copy(&major, tmp.path());
    let v = desired(tmp.path());
    let by_name = |n: &str| {
        v["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["database_name"] == n)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("example")["nodes"][1]["postgres_version"], "18.1");
    assert_eq!(by_name("example")["nodes"][0]["postgres_version"], "17.6");
}

#[test]
fn a_repository_without_an_id_gets_one_from_its_type_and_position() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("backup-schedules"))
        .unwrap();
    let v = desired(&dir);
    let repo = &v["databases"][0]["backup_config"]["repositories"][0];
    assert_eq!(repo["id"], "s3-1");
    assert_eq!(repo["retention_full"], 7);
    let restore = fixtures()
        .into_iter()
        .find(|d| d.ends_with("restore-node"))
        .unwrap();
    let v = desired(&restore);
    let r = &v["databases"][0]["nodes"][3]["restore_config"];
    assert_eq!(r["source_database_id"], "example");
    assert_eq!(r["repository"]["id"], "s3-1");
}

#[test]
fn every_request_body_imports_to_the_same_desired_state() {
    for dir in fixtures() {
        let tmp = tempfile::tempdir().unwrap();
        let body = dir.join("request.json");
        let env = tmp.path().join("agent.env");
        let out = import(&[&body], tmp.path(), &["--env-file", env.to_str().unwrap()]);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {said}", dir.display());
        assert!(
            !said.contains("not carried over"),
            "{}: {said}",
            dir.display()
        );
        assert_eq!(desired(tmp.path()), desired(&dir), "{}", dir.display());
        // The secrets' values went to the env file only.
        let body_text = std::fs::read_to_string(&body).unwrap();
        if body_text.contains("\"password\": \"password\"") {
            assert!(!said.contains("'password'"), "{said}");
            let env_text = std::fs::read_to_string(&env).unwrap();
            assert!(env_text.contains("_PASSWORD='password'"), "{env_text}");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&env).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let yaml = std::fs::read_dir(tmp.path().join("databases"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            assert!(!std::fs::read_to_string(yaml)
                .unwrap()
                .contains("'password'"));
        }
    }
}

#[test]
fn import_names_the_variables_and_writes_no_value_to_the_terminal() {
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("backup-s3-keys"))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = import(&[&dir.join("request.json")], tmp.path(), &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("PGCD_EXAMPLE_S3_1_S3_KEY_SECRET"), "{said}");
    assert!(!said.contains("wJalrXUtnFEMI"), "{said}");
    assert!(said.contains("pass --env-file FILE"), "{said}");
    // A second run does not overwrite what the first wrote.
    let again = import(&[&dir.join("request.json")], tmp.path(), &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again).contains("pass --force to replace it"),
        "{}",
        text(&again)
    );
}

#[test]
fn what_pgcd_does_not_carry_out_is_listed_and_the_result_still_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tmp.path().join("image-pin.json");
    std::fs::write(
        &body,
        r#"{"id": "example", "tenant_id": "engineering", "spec": {
            "database_name": "example", "postgres_version": "17.9", "spock_version": "5", "port": 0,
            "orchestrator_opts": {"swarm": {"image": "ghcr.io/pgedge/pgedge-postgres:17.9-spock5.0.6-standard-2"}},
            "services": [{"service_id": "mcp-server", "service_type": "mcp", "version": "latest",
                          "host_ids": ["host-1"], "connect_as": "admin"}],
            "database_users": [{"username": "admin", "password": "pw", "db_owner": true}],
            "nodes": [{"name": "n1", "host_ids": ["host-1"], "patroni_port": 8888}]}}"#,
    )
    .unwrap();
    let out = import(&[&body], &tmp.path().join("repo"), &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    for expected in [
        "not carried over: orchestrator_opts: pgcd runs its own containers, not Docker Swarm; for the image pin add to pgcd.yaml `images: {\"17\": ghcr.io/pgedge/pgedge-postgres:17.9-spock5.0.6-standard-2}`",
        "not carried over: services:",
        "not carried over: nodes[0].patroni_port:",
        "not carried over: tenant_id:",
        "not carried over: port: 0",
    ] {
        assert!(said.contains(expected), "missing {expected:?} in:\n{said}");
    }
}

#[test]
fn bodies_that_are_not_database_specs_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let body = tmp.path().join("restore.json");
    std::fs::write(&body, r#"{"target_nodes": ["n1"], "restore_config": {}}"#).unwrap();
    let out = import(&[&body], &tmp.path().join("repo"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no database spec"), "{}", text(&out));
    assert!(!tmp.path().join("repo/databases").exists());
}

fn copy(from: &Path, to: &Path) {
    let dst = to.join("databases");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(from.join("databases")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}
