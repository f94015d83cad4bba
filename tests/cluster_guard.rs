//! Guarded writes against a real etcd: a leader whose lease was revoked
//! (as when it was paused past its TTL) gets `NotLeader`, its token is
//! cancelled, and its write did not happen; the new leader's writes pass.
//! Agents on an external etcd (`--etcd-endpoints`) form a cluster too.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use pgcd::cluster::election::{campaign, LeaderGuard};
use pgcd::cluster::metrics::Metrics;
use pgcd::cluster::store::Store;
use pgcd::cluster::ClusterError;
use pgcd::spec::names::HostId;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[test]
fn a_stale_leaders_guarded_write_fails_with_not_leader() {
    let etcd = BareEtcd::start(&ip(8, 11));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(stale_leader(&etcd));
}

async fn stale_leader(etcd: &BareEtcd) {
    let store = Store::connect(
        std::slice::from_ref(&etcd.url),
        Arc::new(Metrics::default()),
    )
    .await
    .expect("connect");
    let mut client = store.client();
    let a = HostId::parse("a").expect("id");
    let b = HostId::parse("b").expect("id");
    let lease_a = client.lease_grant(10, None).await.expect("lease").id();
    let lease_b = client.lease_grant(10, None).await.expect("lease").id();

    let (key, rev) = campaign(&store, &a, lease_a).await.expect("a leads");
    let token = CancellationToken::new();
    let guard_a = LeaderGuard::new(store.clone(), key, rev, a.clone(), token.clone());
    guard_a
        .put("test/owner", b"a".to_vec())
        .await
        .expect("leader write");

    // b waits for leadership; a's lease is revoked behind its back.
    let waiting = {
        let store = store.clone();
        let b = b.clone();
        tokio::spawn(async move { campaign(&store, &b, lease_b).await })
    };
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &etcd.url,
            "lease",
            "revoke",
            &format!("{lease_a:x}"),
        ])
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (key_b, rev_b) = waiting.await.expect("join").expect("b leads");

    let err = guard_a
        .put("test/owner", b"stale a".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::NotLeader), "{err}");
    assert!(token.is_cancelled(), "the stale leader steps down");
    assert_eq!(
        store
            .metrics()
            .not_leader_rejections
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let owner = store.get("test/owner").await.expect("get").expect("value");
    assert_eq!(owner.value, b"a", "the stale write did not happen");

    let guard_b = LeaderGuard::new(store.clone(), key_b, rev_b, b, CancellationToken::new());
    guard_b
        .put("test/owner", b"b".to_vec())
        .await
        .expect("new leader writes");
    guard_b
        .delete("test/owner")
        .await
        .expect("new leader deletes");
    assert!(store.get("test/owner").await.expect("get").is_none());
}

#[test]
fn agents_on_an_external_etcd_register_and_elect_one_leader() {
    let etcd = BareEtcd::start(&ip(9, 21));
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agents: Vec<Agent> = (0..2)
        .map(|i| Agent {
            id: format!("x{}", i + 1),
            addr: ip(9, 22 + i as u8),
            data_dir: dir.path().join(format!("x{}", i + 1)),
            mode: vec!["--etcd-endpoints".into(), etcd.url.clone()],
            child: None,
        })
        .collect();
    for a in &mut agents {
        a.spawn();
    }
    let api = agents[1].api();
    wait_for(
        "both hosts healthy",
        std::time::Duration::from_secs(20),
        || (healthy_hosts(&api).len() == 2).then_some(()),
    );
    let leaders: f64 = wait_for("one leader", std::time::Duration::from_secs(10), || {
        let sum: f64 = agents
            .iter()
            .filter_map(|a| {
                metric(
                    &get_text(&format!("{}/metrics", a.api()))?,
                    "pgcd_is_leader",
                )
            })
            .sum();
        (sum == 1.0).then_some(sum)
    });
    assert_eq!(leaders, 1.0);
    for a in &mut agents {
        a.kill9();
    }
}
