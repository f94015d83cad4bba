//! The leader follows a real Git repository: a valid push becomes the
//! desired state, an invalid one is recorded with its errors and changes
//! nothing, a fix recovers, a branch is planned and never applied; webhooks
//! are verified (401, 413, 202) and wake the leader through etcd.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::{git, Repo};
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Once;
use std::time::Duration;

const SECRET: &str = "webhook-test-secret";
const WAIT: Duration = Duration::from_secs(30);

fn setup_env() {
    static ONCE: Once = Once::new();
    // Every agent of this test binary reads the same fallback secret.
    ONCE.call_once(|| std::env::set_var("PGCD_WEBHOOK_SECRET", SECRET));
}

fn note_of(repo: &Repo, sha: &str) -> Option<Value> {
    let out = Command::new("git")
        .args(["notes", "--ref", "pgcd", "show", sha])
        .current_dir(&repo.bare)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn one_agent(block: u8, dir: &Path, repo_url: &str) -> AgentGuard {
    setup_env();
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(block, 0),
        data_dir: dir.join("h1"),
        mode: vec!["--init".into(), "--repo".into(), repo_url.into()],
        child: None,
    };
    a.spawn();
    let a = a.guarded();
    let api = a.api();
    wait_for("agent healthy", WAIT, || {
        (healthy_hosts(&api).len() == 1).then_some(())
    });
    a
}

fn applied(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/source"))?["applied"]["sha"]
        .as_str()
        .map(str::to_string)
}

fn revision(api: &str, sha: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/revisions/{sha}")).filter(|v| v.get("sha").is_some())
}

#[test]
fn valid_then_invalid_then_fixed_and_branches_are_only_planned() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let head1 = repo.head();
    let agent = one_agent(40, tmp.path(), &format!("file://{}", repo.bare.display()));
    let api = agent.api();

    // The first revision becomes the desired state, and its commit gets statuses.
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });
    let r1 = revision(&api, &head1).unwrap();
    assert_eq!(r1["state"], "applied");
    assert_eq!(r1["author"], "Ada Operator <ada@example.com>");
    assert_eq!(r1["ref"], "refs/heads/main");
    let note = wait_for("validate note on the first commit", WAIT, || {
        note_of(&repo, &head1).filter(|n| n.get("pgcd/validate").is_some())
    });
    assert_eq!(note["pgcd/validate"]["state"], "success");
    assert!(note["pgcd/validate"]["target_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v1/revisions/{head1}")));

    // An invalid revision: recorded with every located error, nothing changes.
    let bad = repo.commit("Break orders", |w| {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/invalid/bad-host-id/databases/orders.yaml"),
            w.join("databases/orders.yaml"),
        )
        .unwrap();
    });
    repo.push("main");
    let r2 = wait_for("invalid revision recorded", WAIT, || revision(&api, &bad));
    assert_eq!(r2["state"], "failed");
    let errors = r2["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == "databases/orders.yaml" && e["line"] == 9 && e["column"] == 9),
        "{errors:?}"
    );
    assert_eq!(
        applied(&api).unwrap(),
        head1,
        "the last good revision stays in force"
    );
    let note = wait_for("failure note", WAIT, || {
        note_of(&repo, &bad).filter(|n| n.get("pgcd/validate").is_some())
    });
    assert_eq!(note["pgcd/validate"]["state"], "failure");
    assert!(
        note["pgcd/validate"]["description"]
            .as_str()
            .unwrap()
            .chars()
            .count()
            < 140
    );

    // The fix recovers by itself; the first revision is now superseded.
    let fix = repo.commit("Fix orders", |w| {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo/databases/orders.yaml"),
            w.join("databases/orders.yaml"),
        )
        .unwrap();
    });
    repo.push("main");
    wait_for("fix applied", WAIT, || {
        (applied(&api)? == fix).then_some(())
    });
    assert_eq!(revision(&api, &head1).unwrap()["state"], "superseded");

    // `pgcd plan` on a checkout: nothing to change at the applied commit,
    // and the changed database with its fields after an edit.
    let plan = |dir: &Path| {
        pgcd_client()
            .args(["plan", "--api", &api])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = plan(&repo.work);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("plan: no change"));
    let orders = repo.work.join("databases/orders.yaml");
    let text = std::fs::read_to_string(&orders).unwrap();
    std::fs::write(&orders, text.replace("port: 6432", "port: 6433")).unwrap();
    let out = plan(&repo.work);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("plan: change orders (nodes, port)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::write(&orders, text).unwrap();

    // A branch (a plan ref in sample-repo/pgcd.yaml) is validated and planned, never applied.
    git(&repo.work, &["checkout", "-q", "-b", "feature"]);
    let feature = repo.commit("Drop the backup operation", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("feature");
    let r4 = wait_for("branch revision recorded", WAIT, || {
        revision(&api, &feature)
    });
    assert_eq!(r4["state"], "planned_only");
    assert_eq!(r4["ref"], "refs/heads/feature");
    let note = wait_for("plan note", WAIT, || {
        note_of(&repo, &feature).filter(|n| n.get("pgcd/plan").is_some())
    });
    assert_eq!(note["pgcd/validate"]["state"], "success");
    assert!(note.get("pgcd/apply").is_none(), "{note}");
    assert_eq!(applied(&api).unwrap(), fix);

    let list = get_json(&format!("{api}/v1/revisions")).unwrap();
    let states: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 4, "{list}");
    assert!(list[0]["error_count"].is_number());
    drop(agent);
}

fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
    // No client certificate: forges sign with the HMAC instead.
    let client = anon_http();
    let mut req = client.post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().expect("webhook request");
    let code = res.status().as_u16();
    (code, res.json().unwrap_or(Value::Null))
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn webhooks_are_verified_and_wake_the_leader() {
    let tmp = tempfile::tempdir().unwrap();
    // A long poll interval: only a webhook can make the leader fetch in time.
    let repo = Repo::new(
        tmp.path(),
        ".",
        Some("source:\n  poll_interval: 10m\n  plan_refs: [refs/pull/*/head]\n"),
    );
    // Served by git daemon, so no file watcher sees the pushes.
    let listen = addr(41, 9);
    // Started directly (not through the `git` wrapper) so killing it stops it.
    let exec_path = git(tmp.path(), &["--exec-path"]);
    let daemon = Daemon(
        Command::new(Path::new(&exec_path).join("git-daemon"))
            .args([
                "--export-all",
                "--reuseaddr",
                &format!("--listen={listen}"),
                "--port=9418",
            ])
            .arg(format!("--base-path={}", tmp.path().display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon"),
    );
    let agent = one_agent(41, tmp.path(), &format!("git://{listen}/origin.git"));
    let api = agent.api();
    let head1 = repo.head();
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });

    let head2 = repo.commit("Drop the backup operation", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("main");
    let url = format!("{api}/v1/webhooks/github");
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let sig = |b: &[u8]| {
        format!(
            "sha256={}",
            pgcd::source::webhook::sign(SECRET.as_bytes(), b)
        )
    };

    let (code, v) = post(&url, &[], body.clone());
    assert_eq!(code, 401, "{v}");
    assert!(v["error"].as_str().unwrap().contains("x-hub-signature-256"));
    let (code, _) = post(
        &url,
        &[("X-Hub-Signature-256", format!("sha256={}", "00".repeat(32)))],
        body.clone(),
    );
    assert_eq!(code, 401);
    let (code, _) = post(
        &format!("{api}/v1/webhooks/gitea"),
        &[("X-Gitea-Signature", "abc".into())],
        body.clone(),
    );
    assert_eq!(code, 401);
    let big = vec![b' '; 1024 * 1024 + 1];
    let (code, _) = post(&url, &[("X-Hub-Signature-256", sig(&big))], big);
    assert_eq!(code, 413);
    // None of those woke the leader: no wake key was written (read straight
    // from etcd), and the push is still not fetched.
    let wake = etcdctl(&agent.etcd())
        .args(["get", "/pgcd/v1/source/wake"])
        .output()
        .expect("etcdctl");
    assert!(
        wake.status.success(),
        "{}",
        String::from_utf8_lossy(&wake.stderr)
    );
    assert!(
        String::from_utf8_lossy(&wake.stdout).trim().is_empty(),
        "refused webhooks woke the leader"
    );
    assert_eq!(
        applied(&api).unwrap(),
        head1,
        "a refused webhook must not trigger a fetch"
    );

    // A push to a branch pgcd neither follows nor plans: accepted, ignored, with the reason.
    let other = br#"{"ref":"refs/heads/experiment"}"#.to_vec();
    let (code, v) = post(&url, &[("X-Hub-Signature-256", sig(&other))], other);
    assert_eq!(code, 202);
    assert!(
        v["ignored"]
            .as_str()
            .unwrap()
            .contains("refs/heads/experiment"),
        "{v}"
    );

    // The right signature wakes the leader through etcd.
    let (code, v) = post(&url, &[("X-Hub-Signature-256", sig(&body))], body.clone());
    assert_eq!((code, v["woke"].as_str()), (202, Some("leader")), "{v}");
    wait_for(
        "webhook-triggered fetch applied",
        Duration::from_secs(10),
        || (applied(&api)? == head2).then_some(()),
    );

    // The generic flavor works the same way.
    let (code, _) = post(
        &format!("{api}/v1/webhooks/generic"),
        &[("X-Pgcd-Signature", sig(b"{}"))],
        b"{}".to_vec(),
    );
    assert_eq!(code, 202);
    drop(agent);
    drop(daemon);
}

#[test]
fn signed_commits_are_required_once_the_state_in_force_says_so_and_source_set_switches_branch() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("signing_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ada", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let signer = format!(
        "ada@example.com {} {}",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    let yaml = format!(
        "source:\n  require_signed_commits: true\n  allowed_signers:\n    - \"{signer}\"\n"
    );
    let repo = Repo::new(tmp.path(), ".", Some(&yaml));
    let head1 = repo.head();
    let agent = one_agent(43, tmp.path(), &format!("file://{}", repo.bare.display()));
    let api = agent.api();
    // The first revision has no state in force to ask for signatures: it is trusted on first use.
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });

    let unsigned = repo.commit("Unsigned change", |w| {
        std::fs::remove_file(w.join("operations/2026-11-25-inventory-backup.yaml")).unwrap();
    });
    repo.push("main");
    let r = wait_for("unsigned revision recorded", WAIT, || {
        revision(&api, &unsigned)
    });
    assert_eq!(r["state"], "rejected", "{r}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("not signed by an allowed key"),
        "{r}"
    );
    assert_eq!(applied(&api).unwrap(), head1);

    let signing_key = format!("user.signingkey={}", key.display());
    let sign = [
        "-c",
        "gpg.format=ssh",
        "-c",
        signing_key.as_str(),
        "-c",
        "commit.gpgsign=true",
    ];
    let signed = repo.commit_with(&sign, "Signed change", |w| {
        std::fs::write(w.join("databases/notes.txt"), "signed\n").unwrap()
    });
    repo.push("main");
    wait_for("signed revision applied", WAIT, || {
        (applied(&api)? == signed).then_some(())
    });

    // `pgcd source set` moves the leader to another branch.
    git(&repo.work, &["checkout", "-q", "-b", "prod"]);
    let prod = repo.commit_with(&sign, "Prod", |w| {
        std::fs::write(w.join("databases/notes.txt"), "prod\n").unwrap()
    });
    repo.push("prod");
    let out = pgcd_client()
        .args([
            "source",
            "set",
            "--etcd",
            &agent.etcd(),
            "--branch",
            "prod",
            "--poll-interval",
            "1s",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("prod applied", WAIT, || {
        (applied(&api)? == prod).then_some(())
    });
    let out = pgcd_client()
        .args(["source", "show", "--api", &api, "-o", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["config"]["branch"], "prod");
    assert_eq!(v["config"]["poll_interval"], "1s");
    drop(agent);
}
