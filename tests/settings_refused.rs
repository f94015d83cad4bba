//! The leader checks `postgresql_conf` against the images' settings catalogs
//! before anything runs: a pushed revision with an unknown setting, or with a
//! value out of its range, is recorded as failed with the file, line and
//! field of the setting, and the desired state in force does not change.
//! Needs this machine's manifests with their catalogs (scripts/build-images.sh).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::Repo;
use common::*;
use pgcd::spec::images::ImageCatalog;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const BLOCK: u8 = 70;

fn applied(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/source"))?["applied"]["sha"]
        .as_str()
        .map(str::to_string)
}

fn revision(api: &str, sha: &str) -> Option<Value> {
    get_json(&format!("{api}/v1/revisions/{sha}")).filter(|v| v.get("sha").is_some())
}

fn orders_conf(api: &str) -> Value {
    let desired = get_json(&format!("{api}/v1/desired")).expect("desired state");
    desired["desired"]["databases"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["database_name"] == "orders"))
        .map(|d| d["postgresql_conf"].clone())
        .expect("orders in force")
}

/// Pushes orders.yaml with one line changed and waits for the revision's verdict.
fn push_orders(repo: &Repo, api: &str, msg: &str, from: &str, to: &str) -> (String, Value) {
    let sha = repo.commit(msg, |w| {
        let path = w.join("databases/orders.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from));
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    });
    repo.push("main");
    let r = wait_for(msg, WAIT, || revision(api, &sha));
    (sha, r)
}

fn assert_refused_at(r: &Value, line: u64, field: &str, says: &str) {
    assert_eq!(r["state"], "failed", "{r}");
    let errors = r["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["file"] == "databases/orders.yaml"
            && e["line"] == line
            && e["column"] == 3
            && e["field"] == field
            && e["message"].as_str().is_some_and(|m| m.contains(says))),
        "{errors:#?}"
    );
}

#[test]
fn an_unknown_setting_or_a_value_out_of_range_is_refused_and_changes_nothing() {
    let catalog = ImageCatalog::read_dir(&ImageCatalog::default_dir());
    assert!(
        catalog
            .images
            .get(&17)
            .is_some_and(|m| !m.settings.is_empty()),
        "no settings catalog for PostgreSQL 17 in {}: run scripts/build-images.sh",
        ImageCatalog::default_dir().display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::new(tmp.path(), ".", None);
    let head1 = repo.head();
    let mut a = Agent {
        id: "h1".into(),
        addr: addr(BLOCK, 0),
        data_dir: tmp.path().join("h1"),
        mode: vec![
            "--init".into(),
            "--repo".into(),
            format!("file://{}", repo.bare.display()),
        ],
        child: None,
    };
    a.spawn();
    let agent = a.guarded();
    let api = agent.api();
    wait_for("first revision applied", WAIT, || {
        (applied(&api)? == head1).then_some(())
    });
    let before = orders_conf(&api);
    assert_eq!(before["max_connections"], 300);

    let (_, r) = push_orders(
        &repo,
        &api,
        "A setting misspelt",
        "  max_connections: 300\n",
        "  max_connections: 300\n  shared_bufers: 1GB\n",
    );
    assert_refused_at(
        &r,
        26,
        "postgresql_conf.shared_bufers",
        "unknown setting `shared_bufers` in PostgreSQL 17 (did you mean `shared_buffers`?)",
    );
    assert_eq!(
        applied(&api).unwrap(),
        head1,
        "the last good revision stays in force"
    );
    assert_eq!(orders_conf(&api), before);

    let (_, r) = push_orders(
        &repo,
        &api,
        "Too many connections",
        "  max_connections: 300\n  shared_bufers: 1GB\n",
        "  max_connections: 300000\n",
    );
    assert_refused_at(
        &r,
        25,
        "postgresql_conf.max_connections",
        "`max_connections` = 300000 is out of range: it takes 1 to 262143",
    );
    assert_eq!(applied(&api).unwrap(), head1);
    assert_eq!(orders_conf(&api), before);

    // A good value is taken.
    let (good, r) = push_orders(
        &repo,
        &api,
        "Fewer connections",
        "  max_connections: 300000\n",
        "  max_connections: 250\n  shared_buffers: 256MB\n",
    );
    assert_eq!(r["state"], "applied", "{r}");
    wait_for("the fix in force", WAIT, || {
        (applied(&api)? == good).then_some(())
    });
    assert_eq!(orders_conf(&api)["shared_buffers"], "256MB");
}
