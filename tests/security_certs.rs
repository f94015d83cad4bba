//! Certificates over time, with real TLS and real etcd: renewing a host's
//! certificates while it serves, their expiry in status and metrics, and
//! agents on an external etcd that asks for client certificates.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// The certificate a TLS server presents, PEM (openssl s_client).
fn served_cert(hostport: &str) -> String {
    let dir = &pki().client_dir;
    let out = Command::new("openssl")
        .args(["s_client", "-connect", hostport, "-showcerts"])
        .arg("-cert")
        .arg(dir.join("client.crt"))
        .arg("-key")
        .arg(dir.join("client.key"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = text
        .find("-----END CERTIFICATE-----")
        .map_or(0, |e| e + "-----END CERTIFICATE-----".len());
    text[start..end].to_owned()
}

#[test]
fn rotating_a_hosts_certificates_keeps_its_agent_and_etcd_serving() {
    let c = Cluster::start(153, 2);
    let h1 = &c.agents[0];
    let api = h1.api();
    let pid = h1.pid();
    let pki_dir = h1.data_dir.join("pki");
    let old_api = std::fs::read_to_string(pki_dir.join("api.crt")).expect("api.crt");
    let old_etcd = std::fs::read_to_string(pki_dir.join("etcd-client.crt")).expect("crt");
    assert_eq!(
        served_cert(&format!("{}:7800", h1.addr)).trim(),
        old_api.trim()
    );

    // Readers on h1's API and etcd throughout the rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, api, etcd) = (stop.clone(), api.clone(), h1.etcd());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let api_ok = get_json(&format!("{api}/v1/cluster")).is_some();
                let etcd_ok = etcdctl(&etcd)
                    .args(["get", "/pgcd/v1/cluster/id"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if api_ok && etcd_ok {
                    ok += 1;
                } else {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed)
        })
    };
    let out = pgcd_client()
        .args(["cert", "rotate", "--data-dir"])
        .arg(&h1.data_dir)
        .output()
        .expect("pgcd cert rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_api = std::fs::read_to_string(pki_dir.join("api.crt")).expect("api.crt");
    let new_etcd = std::fs::read_to_string(pki_dir.join("etcd-client.crt")).expect("crt");
    assert_ne!(new_api, old_api, "rotate wrote a new API certificate");
    // The API and etcd serve the new certificates, with no restart.
    wait_for(
        "the API serves the new certificate",
        Duration::from_secs(15),
        || (served_cert(&format!("{}:7800", h1.addr)).trim() == new_api.trim()).then_some(()),
    );
    wait_for(
        "etcd serves the new certificate",
        Duration::from_secs(15),
        || (served_cert(&format!("{}:2379", h1.addr)).trim() == new_etcd.trim()).then_some(()),
    );
    assert_ne!(new_etcd, old_etcd);
    std::thread::sleep(Duration::from_secs(2)); // readers keep going past the swap
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed) = reader.join().expect("reader");
    assert!(ok > 10, "{ok} reads");
    assert_eq!(
        failed,
        0,
        "{failed} of {} reads failed during the rotation",
        ok + failed
    );
    assert_eq!(c.agents[0].pid(), pid, "the agent kept running");
    // Both members stay healthy (peers reconnect with the new certificate).
    wait_for("both members healthy", Duration::from_secs(20), || {
        let m = members(&api);
        (m.len() == 2 && m.iter().all(|m| m["healthy"] == Value::Bool(true))).then_some(())
    });
    // Status shows the certificates and /metrics their expiry.
    let certs = get_json(&format!("{api}/v1/certificates")).expect("certificates");
    let kinds: Vec<&str> = certs
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["host"] == "h1")
        .filter_map(|c| c["kind"].as_str())
        .collect();
    for k in ["ca", "etcd-peer", "etcd-client", "api", "postgres"] {
        assert!(kinds.contains(&k), "{k} missing: {certs}");
    }
    let metrics = get_text(&format!("{api}/metrics")).expect("metrics");
    assert!(
        metrics.contains("pgcd_certificate_expiry_seconds{host=\"h2\",kind=\"api\"}"),
        "{metrics}"
    );
    // And `pgcd status` names the certificate that expires first.
    let out = pgcd_client()
        .args(["status", "--api", &api])
        .output()
        .expect("pgcd status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("certs   soonest expiry in 36"), "{text}");
}

#[test]
fn agents_reach_an_external_etcd_over_mutual_tls() {
    // An external etcd of the operator's, serving TLS with a certificate
    // of the test CA and asking clients for one.
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = ip(156, 21);
    let ca = pgcd::pki::Ca::load(&pgcd::pki::PkiDir::new(&pki().ca_dir)).expect("test CA");
    let server = ca
        .issue_host(
            "ext",
            pgcd::pki::CertKind::EtcdClient,
            &[addr.parse().expect("ip")],
        )
        .expect("server certificate");
    std::fs::write(dir.path().join("server.crt"), &server.cert_pem).expect("write");
    std::fs::write(dir.path().join("server.key"), &server.key_pem).expect("write");
    let ca_file = pki().client_dir.join("ca.crt");
    let url = format!("https://{addr}:2379");
    let peer = format!("http://{addr}:2380");
    let mut etcd = Command::new("etcd")
        .args([
            "--name=ext",
            &format!("--data-dir={}", dir.path().join("etcd").display()),
            &format!("--listen-client-urls={url}"),
            &format!("--advertise-client-urls={url}"),
            &format!("--listen-peer-urls={peer}"),
            &format!("--initial-advertise-peer-urls={peer}"),
            &format!("--initial-cluster=ext={peer}"),
            &format!("--cert-file={}", dir.path().join("server.crt").display()),
            &format!("--key-file={}", dir.path().join("server.key").display()),
            &format!("--trusted-ca-file={}", ca_file.display()),
            "--client-cert-auth=true",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start etcd");
    wait_for("the external etcd answers", Duration::from_secs(20), || {
        etcdctl(&url)
            .args(["endpoint", "health"])
            .output()
            .ok()?
            .status
            .success()
            .then_some(())
    });
    let client = &pki().client_dir;
    let mut agents: Vec<Agent> = (0..2)
        .map(|i| Agent {
            id: format!("e{}", i + 1),
            addr: ip(156, 22 + i as u8),
            data_dir: dir.path().join(format!("e{}", i + 1)),
            mode: vec![
                "--etcd-endpoints".into(),
                url.clone(),
                "--etcd-ca".into(),
                ca_file.display().to_string(),
                "--etcd-cert".into(),
                client.join("client.crt").display().to_string(),
                "--etcd-key".into(),
                client.join("client.key").display().to_string(),
            ],
            child: None,
        })
        .collect();
    for a in &mut agents {
        a.spawn();
    }
    let api = agents[1].api();
    let ok = std::panic::catch_unwind(|| {
        wait_for(
            "both hosts healthy on the TLS etcd",
            Duration::from_secs(30),
            || (healthy_hosts(&api).len() == 2).then_some(()),
        );
        wait_for("a leader", Duration::from_secs(10), || {
            get_json(&format!("{api}/v1/cluster"))?["leader"]
                .as_str()
                .map(drop)
        });
    });
    for a in &mut agents {
        a.kill9();
    }
    let _ = etcd.kill();
    let _ = etcd.wait();
    if let Err(e) = ok {
        for a in &agents {
            eprintln!("---- {} ----\n{}", a.id, a.log());
        }
        std::panic::resume_unwind(e);
    }
}
