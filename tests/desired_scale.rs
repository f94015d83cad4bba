//! The desired state scales: a revision of 2,000 databases is recorded and
//! put in force (one etcd value per database, each far under etcd's limits,
//! the revision record written last); when one file changes, only that
//! database's key is written again. An agent without a container runtime;
//! the databases' host does not exist, so nothing runs.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const DATABASES: usize = 2000;

fn database(i: usize, work_mem: &str) -> String {
    format!(
        "database_name: db_{i:04}\npostgres_version: \"17\"\nport: {}\nnodes:\n  - name: n1\n    host_ids: [elsewhere]\npostgresql_conf:\n  work_mem: {work_mem}\n",
        10000 + i
    )
}

/// Every key under `desired/` with its mod revision, read from etcd.
fn desired_keys(etcd: &str) -> BTreeMap<String, i64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd], Some(common::etcd_options()))
            .await
            .expect("connect to etcd");
        let mut out = BTreeMap::new();
        let mut from = b"/pgcd/v1/desired/".to_vec();
        loop {
            let resp = c
                .get(
                    from.clone(),
                    Some(
                        etcd_client::GetOptions::new()
                            .with_range("/pgcd/v1/desired0")
                            .with_limit(500),
                    ),
                )
                .await
                .expect("range");
            for kv in resp.kvs() {
                assert!(kv.value().len() < 64 * 1024, "one item stays small");
                out.insert(
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                );
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return out,
            }
        }
    })
}

fn in_force(api: &str) -> Option<(String, usize)> {
    let v = get_json(&format!("{api}/v1/desired"))?;
    Some((
        v["revision"].as_str()?.to_owned(),
        v["desired"]["databases"].as_array()?.len(),
    ))
}

#[test]
fn a_revision_of_2000_databases_is_stored_per_database_and_one_change_writes_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("repo");
    std::fs::create_dir_all(work.join("databases")).unwrap();
    git(
        dir.path(),
        &["init", "-q", "-b", "main", work.to_str().unwrap()],
    );
    for i in 0..DATABASES {
        std::fs::write(
            work.join(format!("databases/db_{i:04}.yaml")),
            database(i, "4MB"),
        )
        .unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "2000 databases"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    let mut c = Cluster::start_with_repo(91, 1, work.to_str().unwrap());
    let api = c.agents[0].api();
    let etcd = c.agents[0].etcd();
    wait_for("2000 databases in force", Duration::from_secs(120), || {
        in_force(&api).filter(|(r, n)| *r == first && *n == DATABASES)
    });
    let before = desired_keys(&etcd);
    let dbs = before
        .keys()
        .filter(|k| k.starts_with("/pgcd/v1/desired/databases/"))
        .count();
    assert_eq!(dbs, DATABASES, "one key per database");
    assert!(before.contains_key("/pgcd/v1/desired/revision"));

    std::fs::write(work.join("databases/db_0042.yaml"), database(42, "8MB")).unwrap();
    git(&work, &["commit", "-q", "-am", "db_0042: work_mem 8MB"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    wait_for(
        "the second revision in force",
        Duration::from_secs(120),
        || in_force(&api).filter(|(r, _)| *r == second),
    );
    let after = desired_keys(&etcd);
    let rewritten: Vec<&String> = after
        .iter()
        .filter(|(k, rev)| before.get(*k) != Some(rev))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        rewritten,
        [
            "/pgcd/v1/desired/databases/db_0042",
            "/pgcd/v1/desired/revision"
        ],
        "only the changed database (and the revision record) were written"
    );
    let log = c.agents[0].log();
    assert!(!log.contains("larger than max"), "{log}");
    c.agents[0].kill9();
}
