//! Real Git repositories for the source tests: `git` with a fixed identity,
//! and a bare origin with a working clone seeded from `sample-repo/`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git in `dir` with a fixed author; panics with git's message on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada Operator")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Operator")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// The checked-in sample repository.
pub fn sample_repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo")
}

/// A bare origin (`origin.git`) and a working clone (`work`) under `dir`,
/// holding the sample repository below `prefix` ("." for the root), with
/// `pgcd.yaml` replaced when given, committed and pushed to `main`.
pub struct Repo {
    /// The bare origin.
    pub bare: PathBuf,
    /// The working clone.
    pub work: PathBuf,
}

impl Repo {
    /// Creates and seeds the repositories.
    pub fn new(dir: &Path, prefix: &str, pgcd_yaml: Option<&str>) -> Self {
        let bare = dir.join("origin.git");
        let work = dir.join("work");
        git(
            dir,
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
        copy_dir(&sample_repo(), &work.join(prefix));
        if let Some(y) = pgcd_yaml {
            std::fs::write(work.join(prefix).join("pgcd.yaml"), y).expect("write pgcd.yaml");
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", "Add the sample databases"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        git(&work, &["push", "-q", "origin", "main"]);
        Self { bare, work }
    }

    /// The working clone's head.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Applies `change` to the working clone and commits everything (with
    /// `extra` git options, e.g. to sign); returns the new head.
    pub fn commit_with(&self, extra: &[&str], msg: &str, change: impl FnOnce(&Path)) -> String {
        change(&self.work);
        git(&self.work, &["add", "-A"]);
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["commit", "-q", "-m", msg]);
        git(&self.work, &args);
        self.head()
    }

    /// Applies `change` and commits; returns the new head.
    pub fn commit(&self, msg: &str, change: impl FnOnce(&Path)) -> String {
        self.commit_with(&[], msg, change)
    }

    /// Pushes HEAD to `branch` of the origin.
    pub fn push(&self, branch: &str) {
        git(
            &self.work,
            &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
        );
    }
}
