//! Signed commits with GPG keys: a commit signed by an allowed fingerprint is
//! applied; one signed by another key of the same keyring, or unsigned, is
//! rejected and changes nothing. Real gpg, real git, a real agent.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::Repo;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn gpg(home: &Path, args: &[&str]) -> String {
    let out = Command::new("gpg")
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .env("GNUPGHOME", home)
        .output()
        .expect("gpg runs");
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn new_key(home: &Path, uid: &str) -> String {
    gpg(home, &["--quick-gen-key", uid, "ed25519", "sign", "never"]);
    let listing = gpg(home, &["--with-colons", "--list-secret-keys", uid]);
    listing
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .expect("fingerprint")
}

fn applied(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/source"))?["applied"]["sha"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn only_allowed_gpg_keys_may_change_the_desired_state() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let allowed = new_key(&home, "Ada <ada@example.com>");
    let other = new_key(&home, "Mallory <mallory@example.com>");
    // Git (signing) and the agent (verifying) use this keyring.
    std::env::set_var("GNUPGHOME", &home);

    let yaml = format!(
        "source:\n  require_signed_commits: true\n  allowed_signers:\n    - \"{allowed}\"\n"
    );
    let repo = Repo::new(tmp.path(), ".", Some(&yaml));
    let head1 = repo.head();
    let mut agent = Agent {
        id: "h1".into(),
        addr: addr(44, 0),
        data_dir: tmp.path().join("h1"),
        mode: vec![
            "--init".into(),
            "--repo".into(),
            format!("file://{}", repo.bare.display()),
        ],
        child: None,
    };
    agent.spawn();
    let agent = agent.guarded();
    let api = agent.api();
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });

    let sign_with = |fpr: &str| {
        vec![
            "-c".to_string(),
            format!("user.signingkey={fpr}"),
            "-c".into(),
            "commit.gpgsign=true".into(),
        ]
    };
    let args = sign_with(&other);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mallory = repo.commit_with(&args, "Signed by a key that is not allowed", |w| {
        std::fs::write(w.join("databases/notes.txt"), "mallory\n").unwrap()
    });
    repo.push("main");
    let rec = wait_for("mallory's revision recorded", WAIT, || {
        get_json(&format!("{api}/v1/revisions/{mallory}")).filter(|v| v.get("sha").is_some())
    });
    assert_eq!(rec["state"], "rejected", "{rec}");
    assert!(
        rec["summary"]
            .as_str()
            .unwrap()
            .contains("not in allowed_signers"),
        "{rec}"
    );
    assert_eq!(applied(&api).unwrap(), head1);

    let args = sign_with(&allowed);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ada = repo.commit_with(&args, "Signed by an allowed key", |w| {
        std::fs::write(w.join("databases/notes.txt"), "ada\n").unwrap()
    });
    repo.push("main");
    wait_for("ada's revision applied", WAIT, || {
        (applied(&api)? == ada).then_some(())
    });
    // The audit record of the revision in force names its signer; the
    // rejected one was never in force and has none.
    let audit = get_json(&format!("{api}/v1/audit/{ada}")).expect("ada's audit record");
    assert_eq!(audit["signature_required"], true, "{audit}");
    assert_eq!(
        audit["signer"],
        format!("GPG key {}", allowed.to_ascii_uppercase()),
        "{audit}"
    );
    assert!(get_json(&format!("{api}/v1/audit/{mallory}")).is_none());
    drop(agent);
    let _ = Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .env("GNUPGHOME", &home)
        .status();
}
