//! The spec's `pg_hba_conf` and `pg_ident_conf` in force, for real: a
//! database's lines and its node's reach both instances of the node (a
//! primary and its standby) and are put in force by a reload; a commit
//! that adds a `reject` line locks the role out; the ident map is what the
//! server parsed; a file edited by hand is put back; a line the server
//! cannot parse is refused without touching the files in force; pgcd's
//! replication role is refused from an address that is not one of the
//! node's hosts (a client bound to another loopback address), while the
//! standby goes on streaming.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(180);
const PORT: u16 = 6571;
const PASSWORD: &str = "gate-secret";

fn spec(h1: &str, h2: &str, extra_hba: &str) -> String {
    format!(
        r#"database_name: gate
postgres_version: "17"
port: {PORT}
nodes:
  - name: n1
    host_ids: [{h1}, {h2}]
    pg_hba_conf:
      - host gate app 0.0.0.0/0 reject
database_users:
  - username: app
    password: {{env: PGCD_TEST_GATE_PASSWORD}}
    attributes: [LOGIN]
  - username: batch
    password: {{env: PGCD_TEST_GATE_PASSWORD}}
    attributes: [LOGIN]
pg_hba_conf:
  - host gate app 127.0.0.1/32 scram-sha-256
{extra_hba}pg_ident_conf:
  - ops alice app
"#
    )
}

/// psql in `container` to the instance at `addr` as `user`: its output, or
/// the error it printed.
fn connect_as(container: &str, addr: &str, user: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("docker")
        .args(["exec", "-e", &format!("PGPASSWORD={PASSWORD}"), container])
        .args(["psql", "-X", "-At", "-h", addr, "-p", &PORT.to_string()])
        .args(["-U", user, "-d", "gate", "-c", sql])
        .output()
        .expect("psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The server's first answer to a TLS connection from the local address
/// `source` with these startup parameters: `Ok` when it asks for a
/// password (the connection got past pg_hba.conf), else its error message.
fn first_answer(source: &str, addr: &str, params: &[(&str, &str)]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut tcp = socket
            .connect(format!("{addr}:{PORT}").parse().unwrap())
            .await
            .unwrap();
        // SSLRequest; the server answers 'S' and the TLS handshake follows.
        tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .unwrap();
        let mut yes = [0u8; 1];
        tcp.read_exact(&mut yes).await.unwrap();
        assert_eq!(yes[0], b'S', "the server does not offer TLS");
        pgcd::pki::install_default_provider();
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(tls::pki().ca_dir.join("ca.crt")).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
        roots
            .add(rustls::pki_types::CertificateDer::from(ca.contents))
            .unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(
            addr.parse::<std::net::IpAddr>().unwrap().into(),
        );
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .expect("TLS with the cluster CA");
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend(body);
        s.write_all(&msg).await.unwrap();
        s.flush().await.unwrap();
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.unwrap();
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut rest = vec![0u8; len - 4];
        s.read_exact(&mut rest).await.unwrap();
        match head[0] {
            b'R' => Ok(()),
            b'E' => {
                // Fields: a type byte, a C string; 'M' is the message.
                let text = String::from_utf8_lossy(&rest).to_string();
                let message = text
                    .split('\0')
                    .find_map(|f| f.strip_prefix('M'))
                    .unwrap_or(&text)
                    .to_string();
                Err(message)
            }
            other => panic!("unexpected message {:?}", other as char),
        }
    })
}

#[test]
fn spec_hba_and_ident_lines_are_in_force_and_replication_is_limited_to_the_node_s_hosts() {
    require_image(17);
    std::env::set_var("PGCD_TEST_GATE_PASSWORD", PASSWORD);
    let block = 157;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let commit = |text: String, msg: &str| {
        std::fs::write(work.join("databases/gate.yaml"), text).unwrap();
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", msg]);
        git(&work, &["rev-parse", "HEAD"])
    };
    let first = commit(
        spec(&ids[0], &ids[1], ""),
        "gate: a primary, a standby, hba lines",
    );
    wait_ready(&api, "gate", Some(&first), WAIT);
    let primary = format!("pgcd-gate-n1-{}", ids[0]);
    let standby = format!("pgcd-gate-n1-{}", ids[1]);
    let (a1, a2) = (agents[0].addr.clone(), agents[1].addr.clone());

    // The database's allow line comes before the node's reject line: app
    // connects from 127.0.0.1 (the containers' source address here)...
    assert_eq!(
        connect_as(&primary, &a1, "app", "SELECT current_user").as_deref(),
        Ok("app")
    );
    assert_eq!(
        connect_as(&standby, &a2, "app", "SELECT pg_is_in_recovery()").as_deref(),
        Ok("t"),
        "the standby has the lines too"
    );
    // ...and from any other address the node's line refuses it.
    let elsewhere = ip(block, 50);
    let refused = first_answer(&elsewhere, &a1, &[("user", "app"), ("database", "gate")])
        .expect_err("app from another address");
    assert!(
        refused.contains("pg_hba.conf rejects connection") && refused.contains(&elsewhere),
        "{refused}"
    );
    // batch has no line of its own: the catch-all lets it in with its password.
    assert_eq!(
        connect_as(&primary, &a1, "batch", "SELECT 1").as_deref(),
        Ok("1")
    );
    // The ident map is what the server parsed, on both instances (the
    // standby's superuser password is its primary's).
    let su =
        std::fs::read_to_string(agents[0].data_dir.join("instances/gate-n1/superuser.pw")).unwrap();
    let as_su = |c: &str, a: &str, sql: &str| psql(c, a, PORT, "postgres", &su, "gate", sql);
    for (c, a) in [(&primary, &a1), (&standby, &a2)] {
        assert_eq!(
            as_su(
                c,
                a,
                "SELECT map_name || ' ' || sys_name || ' ' || pg_username FROM pg_ident_file_mappings WHERE error IS NULL"
            )
            .as_deref(),
            Some("ops alice app"),
            "{c}"
        );
    }

    // pgcd's replication role: physical replication from 127.0.0.1 (where
    // the standby's host connects from) gets past pg_hba.conf; from an
    // address that is not one of the node's hosts it is refused.
    let replication = [
        ("user", "pgcd_replication"),
        ("database", "replication"),
        ("replication", "true"),
    ];
    first_answer("127.0.0.1", &a1, &replication).expect("replication from the node's hosts");
    let refused = first_answer(&elsewhere, &a1, &replication).expect_err("from elsewhere");
    assert!(
        refused.contains("pg_hba.conf rejects replication connection")
            && refused.contains(&elsewhere),
        "{refused}"
    );
    let refused = first_answer(
        &elsewhere,
        &a1,
        &[("user", "pgcd_replication"), ("database", "gate")],
    )
    .expect_err("the replication role into the database from elsewhere");
    assert!(
        refused.contains("pg_hba.conf rejects connection"),
        "{refused}"
    );

    // A commit adds a reject line for batch: after a reload, no restart,
    // batch is refused on both instances.
    let started = inspect(&primary, "{{.State.StartedAt}}");
    let second = commit(
        spec(
            &ids[0],
            &ids[1],
            "  - host gate batch 127.0.0.1/32 reject\n",
        ),
        "gate: batch is locked out",
    );
    wait_ready(&api, "gate", Some(&second), WAIT);
    for (c, a) in [(&primary, &a1), (&standby, &a2)] {
        let e = connect_as(c, a, "batch", "SELECT 1").expect_err("batch is rejected");
        assert!(e.contains("pg_hba.conf rejects connection"), "{c}: {e}");
    }
    assert_eq!(
        connect_as(&primary, &a1, "app", "SELECT 1").as_deref(),
        Ok("1")
    );
    assert_eq!(
        inspect(&primary, "{{.State.StartedAt}}"),
        started,
        "the primary restarted"
    );
    let log = task_log(&api, "s-gate.n1.", ".auth");
    assert!(log.contains("reloaded"), "{log}");

    // The revision's audit record: who made it, which leader put it in
    // force, and the steps it took with their outcomes.
    let audit = get_json(&format!("{api}/v1/audit/{second}")).expect("an audit record");
    assert_eq!(audit["sha"], second.as_str());
    assert_eq!(audit["subject"], "gate: batch is locked out");
    assert!(ids.iter().any(|h| audit["leader"] == h.as_str()), "{audit}");
    assert_eq!(audit["signature_required"], false);
    assert!(audit["in_force_at"].as_str().is_some_and(|t| !t.is_empty()));
    let steps = audit["steps"].as_array().expect("steps");
    for h in &ids {
        let auth = steps
            .iter()
            .find(|s| s["step"] == format!("gate/n1/{h}/auth"))
            .unwrap_or_else(|| panic!("no auth step of {h} in {audit}"));
        assert_eq!(auth["outcome"], "succeeded", "{auth}");
        assert!(auth["reason"]
            .as_str()
            .unwrap()
            .contains("host gate batch 127.0.0.1/32 reject"));
        assert!(!auth["tasks"].as_array().unwrap().is_empty());
    }
    let list = get_json(&format!("{api}/v1/audit")).expect("the audit list");
    let shas: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["sha"].as_str())
        .collect();
    assert_eq!(shas[..2], [second.as_str(), first.as_str()], "{list}");

    // A line added by hand (and reloaded) is taken out again.
    docker(&[
        "exec",
        "-u",
        "postgres",
        &primary,
        "bash",
        "-c",
        "echo 'host all all 0.0.0.0/0 trust' >> /var/lib/pgcd/data/pg_hba.conf && \
         psql -X -h /var/lib/pgcd/run -p 6571 -U postgres -c 'SELECT pg_reload_conf()'",
    ]);
    wait_for("the hand-made trust line is gone", WAIT, || {
        let rules = as_su(
            &primary,
            &a1,
            "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'trust' AND type = 'host'",
        )?;
        (rules == "0").then_some(())
    });

    // A line PostgreSQL cannot parse (validation does not check addresses)
    // is refused by the server's own check: the step fails, the database is
    // Stalled, and the files in force stay as they were.
    let third = commit(
        spec(
            &ids[0],
            &ids[1],
            "  - host gate batch 127.0.0.1/32 reject\n  - host gate app 10.0.0.0/33 scram-sha-256\n",
        ),
        "gate: a bad address",
    );
    let stalled = wait_for("gate Stalled at the bad revision", WAIT, || {
        let s = status(&api, "gate")?;
        (s["observed_revision"] == third.as_str() && condition(&s, "Stalled")).then_some(s)
    });
    assert!(
        stalled
            .to_string()
            .contains("rejects the new authentication files"),
        "{stalled}"
    );
    assert_eq!(
        as_su(
            &primary,
            &a1,
            "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL"
        )
        .as_deref(),
        Some("0")
    );
    assert!(connect_as(&primary, &a1, "batch", "SELECT 1").is_err());
    assert_eq!(
        connect_as(&primary, &a1, "app", "SELECT 1").as_deref(),
        Ok("1")
    );

    // The standby still streams from the primary.
    wait_for("the standby streams", WAIT, || {
        as_su(
            &primary,
            &a1,
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        )
        .filter(|n| n == "1")
    });
}
