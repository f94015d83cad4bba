//! The Git hooks in real repositories: an invalid spec is refused with its
//! FILE:LINE:COL message, a valid one goes through.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("PGCD", env!("CARGO_BIN_EXE_pgcd"))
        .env("PGCD_MANIFESTS", "/nonexistent")
        .env("GIT_AUTHOR_NAME", "pgcd test")
        .env("GIT_AUTHOR_EMAIL", "test@pgcd.invalid")
        .env("GIT_COMMITTER_NAME", "pgcd test")
        .env("GIT_COMMITTER_EMAIL", "test@pgcd.invalid")
        .output()
        .expect("git runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn install(hook: &str, hooks_dir: &Path) {
    std::fs::copy(root().join("hooks").join(hook), hooks_dir.join(hook)).unwrap();
}

#[test]
fn pre_receive_refuses_an_invalid_push_and_accepts_a_valid_one() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("config.git");
    let work = tmp.path().join("work");
    ok(git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    ));
    install("pre-receive", &bare.join("hooks"));
    ok(git(
        tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    ));
    ok(git(&work, &["checkout", "-q", "-b", "main"]));

    copy_dir(&root().join("sample-repo"), &work);
    ok(git(&work, &["add", "-A"]));
    ok(git(&work, &["commit", "-q", "-m", "sample"]));
    ok(git(&work, &["push", "-q", "origin", "main"]));
    let good = String::from_utf8(ok(git(&work, &["rev-parse", "HEAD"])).stdout).unwrap();

    copy_dir(&root().join("tests/fixtures/invalid/bad-host-id"), &work);
    std::fs::remove_file(work.join("errors.snap")).unwrap();
    ok(git(&work, &["add", "-A"]));
    ok(git(&work, &["commit", "-q", "-m", "break orders"]));
    let out = git(&work, &["push", "origin", "main"]);
    assert!(!out.status.success(), "an invalid push was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "remote: databases/orders.yaml:9:9: nodes[1].host_ids[1]: host id \"h 3\" is not valid"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    // The server's branch still points at the last good commit.
    let head = String::from_utf8(ok(git(&bare, &["rev-parse", "main"])).stdout).unwrap();
    assert_eq!(head, good);
}

#[test]
fn pre_commit_validates_the_staged_files() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    ok(git(work, &["init", "-q", "-b", "main"]));
    install("pre-commit", &work.join(".git/hooks"));
    copy_dir(&root().join("sample-repo"), work);
    ok(git(work, &["add", "-A"]));
    ok(git(work, &["commit", "-q", "-m", "sample"]));

    let bad = "database_name: orders\npostgres_version: \"15\"\nnodes:\n  - name: n1\n    host_ids: [h1]\n";
    std::fs::write(work.join("databases/orders.yaml"), bad).unwrap();
    ok(git(work, &["add", "-A"]));
    let out = git(work, &["commit", "-m", "downgrade"]);
    assert!(!out.status.success(), "an invalid commit was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("databases/orders.yaml:2:19: postgres_version:"),
        "{stderr}"
    );
}
