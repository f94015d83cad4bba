//! `pgcd validate` as a person runs it: the sample repository is valid, and
//! every invalid fixture gives exactly the expected located errors and exit 1.
//! The errors are insta snapshots beside each fixture (`errors.snap`): after a
//! deliberate message change, run `cargo insta test --review --test validate`
//! (or `INSTA_UPDATE=always cargo test --test validate` and read the diff).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use std::path::{Path, PathBuf};
use std::process::Command;

/// Image manifests are left out: the fixtures' errors must not depend on
/// the images this machine has built.
fn pgcd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgcd"));
    c.env("PGCD_MANIFESTS", "/nonexistent");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/invalid"))
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// A fixture with a `manifests` directory (the checked-in catalog of the
/// PostgreSQL 17 image, `tests/fixtures/manifests`) is checked against it.
fn error_lines(dir: &Path) -> (i32, Vec<String>) {
    let mut cmd = pgcd();
    cmd.arg("validate").arg(dir);
    if dir.join("manifests").is_dir() {
        cmd.arg("--manifests").arg(dir.join("manifests"));
    }
    let out = cmd.output().expect("run pgcd");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let lines = stderr
        .lines()
        .filter(|l| !l.contains("error(s) in"))
        .map(str::to_string)
        .collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[test]
fn sample_repo_is_valid() {
    let out = pgcd()
        .args(["validate"])
        .arg(root().join("sample-repo"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid (3 databases, 1 operations"));
}

#[test]
fn json_output_is_the_fully_defaulted_spec() {
    let out = pgcd()
        .args(["validate", "-o", "json"])
        .arg(root().join("sample-repo"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let orders = &v["databases"][2];
    assert_eq!(orders["database_name"], "orders");
    // Nodes inherit the database's port and version; users get the default attributes.
    assert_eq!(orders["nodes"][2]["port"], 6432);
    assert_eq!(orders["nodes"][2]["postgres_version"], "17");
    assert_eq!(orders["nodes"][2]["state"], "running");
    assert_eq!(
        orders["database_users"][1]["attributes"],
        serde_json::json!(["LOGIN"])
    );
    assert_eq!(orders["database_users"][1]["db_owner"], false);
    // Product names are stored as SQL names.
    assert_eq!(orders["extensions"][1]["name"], "postgis");
    assert_eq!(v["config"]["source"]["poll_interval"], "15s");
    assert_eq!(v["operations"][0]["type"], "full");
}

#[test]
fn every_invalid_fixture_gives_its_expected_errors() {
    let dirs = fixtures();
    assert!(dirs.len() >= 25, "only {} fixtures", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let (code, lines) = error_lines(dir);
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if code != 1 {
            failures.push(format!("{name}: exit {code}, want 1"));
        }
        for line in &lines {
            let mut parts = line.splitn(4, ':');
            let (file, l, c) = (parts.next(), parts.next(), parts.next());
            let located = file.is_some_and(|f| f.ends_with(".yaml"))
                && l.is_some_and(|l| l.parse::<usize>().is_ok_and(|n| n > 0))
                && c.is_some_and(|c| c.parse::<usize>().is_ok_and(|n| n > 0));
            if !located {
                failures.push(format!("{name}: not FILE:LINE:COL: {line}"));
            }
        }
        // Each fixture's errors are its snapshot, beside it
        // (`<fixture>/errors.snap`; review with `cargo insta review`).
        insta::with_settings!({
            snapshot_path => dir,
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => format!("pgcd validate tests/fixtures/invalid/{name}"),
        }, {
            insta::assert_snapshot!("errors", lines.join("\n"));
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clear_text_passwords_are_never_echoed() {
    let (code, lines) = error_lines(&root().join("tests/fixtures/invalid/clear-text-password"));
    assert_eq!(code, 1);
    assert!(!lines.join("\n").contains("hunter2"), "{lines:?}");
    let out = pgcd()
        .args(["validate", "-o", "json"])
        .arg(root().join("tests/fixtures/invalid/clear-text-password"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

#[test]
fn json_errors_carry_file_line_column_and_field() {
    let out = pgcd()
        .args(["validate", "-o", "json"])
        .arg(root().join("tests/fixtures/invalid/bad-host-id"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &v["errors"][0];
    assert_eq!(e["file"], "databases/orders.yaml");
    assert_eq!(e["line"], 9);
    assert_eq!(e["column"], 9);
    assert_eq!(e["field"], "nodes[1].host_ids[1]");
}

#[test]
fn checked_in_schema_is_current() {
    for (name, text) in pgcd::spec::schema::all() {
        let path = root().join("schema").join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "schema/{name} is stale: run `cargo run -- schema --out schema`"
        );
    }
}

#[test]
fn spec_reference_is_current() {
    let path = root().join("docs/spec.md");
    let text = pgcd::spec::reference::markdown();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "docs/spec.md is stale: run `UPDATE_EXPECT=1 cargo test --test validate`"
    );
}

#[test]
fn sample_files_point_editors_at_the_schema() {
    let sample = root().join("sample-repo");
    let files = pgcd::spec::read_dir(&sample).unwrap();
    assert!(files.len() >= 4);
    for f in files {
        let first = f.text.lines().next().unwrap_or_default();
        let target = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{} lacks the schema line", f.path));
        let file_dir = sample.join(&f.path).parent().unwrap().to_path_buf();
        assert!(
            file_dir.join(target).is_file(),
            "{}: {target} does not exist",
            f.path
        );
    }
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let out = pgcd()
        .args(["validate", "/nonexistent/pgcd-repo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pgcd-repo is not a directory")
    );
}

#[test]
fn offline_plan_of_the_sample_creates_every_instance() {
    let out = pgcd()
        .args(["plan", "--offline"])
        .arg(root().join("sample-repo"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("plan: add catalog, inventory, orders"),
        "{text}"
    );
    assert!(
        text.contains("+ create instance orders/n3 on h3 (PostgreSQL 17, port 6432)"),
        "{text}"
    );
    assert!(
        text.contains("+ create extension vector on inventory/n1"),
        "{text}"
    );
}
