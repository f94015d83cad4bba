//! Mistakes a person can make: each exits non-zero within seconds with one
//! clear line, and changes nothing (no member added, no identity written).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs an agent that should fail; returns its stderr's last line.
fn fails(args: &[&str], data_dir: &std::path::Path) -> String {
    let start = Instant::now();
    let out = Command::new(pgcd_bin())
        .arg("agent")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run pgcd agent");
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "should fail: {args:?}\n{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}: {args:?}");
    let line = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(line.starts_with("pgcd: "), "one clear line: {stderr}");
    line
}

#[test]
fn bad_joins_fail_fast_with_a_clear_line_and_change_nothing() {
    let (a11, a17, a18, a19) = (ip(5, 11), ip(5, 17), ip(5, 18), ip(5, 19));
    let unreachable = format!("https://{}:7800", ip(5, 99));
    let wrong = format!("https://{a11}:2379");
    let c = Cluster::start(5, 1);
    let api = c.agents[0].api();
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("fresh");

    let line = fails(
        &[
            "--host-id",
            "h9",
            "--advertise",
            &a19,
            "--join",
            &unreachable,
            "--join-token",
            &join_token(&api),
        ],
        &fresh,
    );
    assert!(
        line.contains(&format!("cannot reach {unreachable}")),
        "{line}"
    );

    let line = fails(
        &[
            "--host-id",
            "h9",
            "--advertise",
            &a19,
            "--join",
            &wrong,
            "--join-token",
            &join_token(&api),
        ],
        &fresh,
    );
    assert!(line.contains("did not answer as a pgcd agent"), "{line}");

    let line = fails(
        &[
            "--host-id",
            "h1",
            "--advertise",
            &a19,
            "--join",
            &api,
            "--join-token",
            &join_token(&api),
        ],
        &fresh,
    );
    assert!(
        line.contains(&format!(
            "host id h1 is already taken by a live host at {a11}"
        )),
        "{line}"
    );

    let held = std::net::TcpListener::bind(format!("{a18}:2380")).expect("hold the peer port");
    let line = fails(
        &[
            "--host-id",
            "h8",
            "--advertise",
            &a18,
            "--join",
            &api,
            "--join-token",
            &join_token(&api),
        ],
        &fresh,
    );
    assert!(
        line.contains(&format!("{a18}:2380 is already in use")),
        "{line}"
    );
    drop(held);

    let line = fails(
        &[
            "--host-id",
            "h7",
            "--advertise",
            &a11,
            "--join",
            &api,
            "--join-token",
            &join_token(&api),
        ],
        &fresh,
    );
    assert!(
        line.contains(&format!("{a11}:7800 is already in use")),
        "{line}"
    );

    // A data dir of another cluster.
    let mut other = Cluster::start(6, 1);
    let other_dir = other.agents[0].data_dir.clone();
    other.agents[0].signal(nix::sys::signal::Signal::SIGTERM);
    let mut child = other.agents[0].child.take().expect("running");
    wait_for(
        "other cluster's agent stopped",
        Duration::from_secs(15),
        || child.try_wait().ok().flatten(),
    );
    let line = fails(
        &[
            "--host-id",
            "h1",
            "--advertise",
            &a17,
            "--join",
            &api,
            "--join-token",
            &join_token(&api),
        ],
        &other_dir,
    );
    assert!(line.contains("belongs to cluster"), "{line}");
    let line = fails(
        &[
            "--host-id",
            "h5",
            "--advertise",
            &a17,
            "--join",
            &api,
            "--join-token",
            &join_token(&api),
        ],
        &other_dir,
    );
    assert!(line.contains("belongs to host h1"), "{line}");

    // Nothing changed: still one member, one host, and no identity written.
    assert_eq!(members(&api).len(), 1, "{:?}", members(&api));
    assert_eq!(hosts(&api).len(), 1);
    assert!(!fresh.join("pgcd-host.json").exists());
}
