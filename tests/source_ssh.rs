//! ssh remotes for real: OpenSSH's sshd on a loopback address and a free
//! port, run as the test's user with a generated host key, letting in a
//! deploy key forced into `git-shell`. pgcd fetches with the key (from a
//! file or a secret reference) and checks `known_hosts`: an unknown or
//! changed host key is refused with its SHA256 fingerprint.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::Repo;
use common::servers::{ssh_fingerprint, ssh_keygen, SshGit};
use common::*;
use pgcd::source::git::{Mirror, SourceConfig};
use pgcd::spec::secret::SecretRef;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(30);

fn fetch(dir: &Path, name: &str, cfg: SourceConfig) -> Result<String, String> {
    let mirror = Mirror::open(&dir.join(name), cfg).map_err(|e| e.to_string())?;
    mirror
        .fetch(&[], T)
        .map(|oid| oid.to_string())
        .map_err(|e| e.to_string())
}

#[test]
fn ssh_fetch_checks_the_host_key_and_uses_the_deploy_key() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let deploy = tmp.path().join("deploy_key");
    let deploy_pub = ssh_keygen(&deploy);
    let stranger = tmp.path().join("stranger_key");
    ssh_keygen(&stranger);
    let server = SshGit::start(&tmp.path().join("ssh"), &ip(62, 9), &[&deploy_pub]);
    let fp = ssh_fingerprint(&server.host_key_file);
    let known = tmp.path().join("known_hosts");
    let mut cfg = SourceConfig::new(server.url(&repo.bare));
    cfg.ssh_key = Some(SecretRef::File(deploy.display().to_string()));
    cfg.known_hosts = Some(known.clone());

    // An empty known_hosts: refused, with the offered key's fingerprint.
    std::fs::write(&known, "").unwrap();
    let err = fetch(tmp.path(), "m1", cfg.clone()).unwrap_err();
    assert!(
        err.contains(&format!("is not in {}", known.display())) && err.contains(&fp),
        "{err}"
    );

    // Another key on record for [ip]:port: a change, refused.
    let imposter = tmp.path().join("imposter");
    let imposter_pub = ssh_keygen(&imposter);
    std::fs::write(&known, server.known_hosts_line(&imposter_pub)).unwrap();
    let err = fetch(tmp.path(), "m2", cfg.clone()).unwrap_err();
    assert!(err.contains("CHANGED") && err.contains(&fp), "{err}");
    assert!(
        err.contains(&ssh_fingerprint(&imposter.with_extension("pub"))),
        "{err}"
    );

    // The right key, hashed as `ssh-keygen -H` writes it: fetched with the key file.
    std::fs::write(&known, server.known_hosts_line(&server.host_key)).unwrap();
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(std::fs::read_to_string(&known).unwrap().starts_with("|1|"));
    assert_eq!(fetch(tmp.path(), "m3", cfg.clone()).unwrap(), repo.head());

    // The key from an environment variable (a secret reference).
    std::env::set_var(
        "PGCD_TEST_DEPLOY_KEY",
        std::fs::read_to_string(&deploy).unwrap(),
    );
    let mut from_env = cfg.clone();
    from_env.ssh_key = Some(SecretRef::Env("PGCD_TEST_DEPLOY_KEY".into()));
    assert_eq!(fetch(tmp.path(), "m4", from_env).unwrap(), repo.head());

    // A key the server does not know is refused, named by its reference.
    let mut wrong = cfg.clone();
    wrong.ssh_key = Some(SecretRef::File(stranger.display().to_string()));
    let err = fetch(tmp.path(), "m5", wrong).unwrap_err();
    assert!(
        err.contains(&stranger.display().to_string()) && !err.contains("PRIVATE KEY"),
        "{err}"
    );

    // No key at all: the server's demand is named.
    let mut none = cfg;
    none.ssh_key = None;
    let err = fetch(tmp.path(), "m6", none).unwrap_err();
    assert!(err.contains("the server wants an SSH key"), "{err}");
}

#[test]
fn the_leader_follows_an_ssh_remote_and_refuses_a_changed_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let deploy = tmp.path().join("deploy_key");
    let deploy_pub = ssh_keygen(&deploy);
    let server = SshGit::start(&tmp.path().join("ssh"), &ip(63, 9), &[&deploy_pub]);
    let known = tmp.path().join("known_hosts");
    std::fs::write(&known, server.known_hosts_line(&server.host_key)).unwrap();
    std::env::set_var(
        "PGCD_TEST_AGENT_DEPLOY_KEY",
        std::fs::read_to_string(&deploy).unwrap(),
    );
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(63, 0),
        data_dir: tmp.path().join("h1"),
        mode: vec!["--init".into(), "--repo".into(), server.url(&repo.bare)],
        child: None,
    };
    a.spawn();
    let agent = a.guarded();
    let api = agent.api();
    wait_for("agent healthy", WAIT, || {
        (healthy_hosts(&api).len() == 1).then_some(())
    });
    let out = common::tls::pgcd_client()
        .args(["source", "set", "--etcd", &agent.etcd()])
        .args(["--ssh-key", "env:PGCD_TEST_AGENT_DEPLOY_KEY"])
        .arg("--known-hosts")
        .arg(&known)
        .args(["--poll-interval", "1s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let head = repo.head();
    let source = || get_json(&format!("{api}/v1/source"));
    wait_for("revision applied over ssh", WAIT, || {
        let s = source()?;
        (s["applied"]["sha"] == head.as_str() && s["status"]["state"] == "ok").then_some(())
    });

    // The server's key changes (or someone is in between): refused, the
    // fingerprint shown, the desired state in force unchanged.
    let other = tmp.path().join("other_host_key");
    let other_pub = ssh_keygen(&other);
    std::fs::write(&known, server.known_hosts_line(&other_pub)).unwrap();
    let fp = ssh_fingerprint(&server.host_key_file);
    let s = wait_for("changed host key refused", WAIT, || {
        let s = source()?;
        let e = s["status"]["error"].as_str()?.to_string();
        (s["status"]["state"] == "failed" && e.contains("CHANGED")).then_some(s)
    });
    assert!(s["status"]["error"].as_str().unwrap().contains(&fp), "{s}");
    assert_eq!(s["applied"]["sha"], head.as_str());
    drop(agent);
}
