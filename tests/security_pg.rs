//! PostgreSQL with the cluster's certificates, for real: every instance
//! serves TLS with its host's certificate; a client checking it against
//! the cluster CA (`sslmode=verify-full`) connects; the standby's stream
//! and the other node's subscription both run over TLS; the replication
//! role is admitted over TLS only (`hostssl`), and a node still joins by
//! copying the first one (the agents' own connections and `pg_dump` use
//! TLS); every instance starts with pgcd's pg_hba.conf, none needs it
//! rewritten; a rotated certificate is served after a reload, with no
//! restart.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);

/// n1 holds a table from its first pass: n2 joins by copying it
/// (`JoinMesh`: slots and `pg_dump` as the replication role).
const SEED: &str = "scripts:\n  post_database_create:\n    - CREATE TABLE secrets (id int PRIMARY KEY, what text)\n    - INSERT INTO secrets VALUES (1, 'copied over TLS')\n";

/// The first line of every file pgcd writes (`plan::hba`).
const MANAGED: &str =
    "# Managed by pgcd from the spec (pg_hba_conf, pg_ident_conf): edits here are undone.";

/// The certificate a PostgreSQL server presents (STARTTLS), PEM.
fn served_pg_cert(addr: &str, port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-starttls", "postgres", "-connect"])
        .arg(format!("{addr}:{port}"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let start = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = text
        .find("-----END CERTIFICATE-----")
        .map_or(0, |e| e + "-----END CERTIFICATE-----".len());
    text[start..end].trim().to_owned()
}

#[test]
fn instances_serve_tls_and_replicate_over_verified_tls() {
    require_image(17);
    let block = 154;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 3, dir.path(), WAIT);
    let api = agents[0].api();
    let port = 6561;
    let spec = format!(
        "database_name: vault\npostgres_version: \"17\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{}, {}]\n  - name: n2\n    host_ids: [{}]\n{SEED}",
        ids[0], ids[1], ids[2]
    );
    std::fs::write(work.join("databases/vault.yaml"), spec).unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &["commit", "-q", "-m", "vault: a standby and a second node"],
    );
    let sha = git(&work, &["rev-parse", "HEAD"]);
    wait_ready(&api, "vault", Some(&sha), WAIT);

    let su = std::fs::read_to_string(agents[0].data_dir.join("instances/vault-n1/superuser.pw"))
        .unwrap();
    let primary = format!("pgcd-vault-n1-{}", ids[0]);
    let other = format!("pgcd-vault-n2-{}", ids[2]);
    // From n2's container to n1's primary, checking the server against the
    // cluster CA and its address: the connection is TLS.
    let out = Command::new("docker")
        .args(["exec", "-e", &format!("PGPASSWORD={su}"), &other, "psql", "-X", "-At"])
        .arg(format!(
            "host={} port={port} user=postgres dbname=vault sslmode=verify-full sslrootcert=/var/lib/pgcd/tls/ca.crt",
            agents[0].addr
        ))
        .args(["-c", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(line.starts_with("t|TLSv1."), "{line}");

    // The primary's senders: the standby's physical stream and n2's
    // subscription, both over TLS.
    let on_primary = |sql: &str| {
        psql(
            &primary,
            &agents[0].addr,
            port,
            "postgres",
            &su,
            "vault",
            sql,
        )
    };
    let senders = wait_for("the standby and n2 stream from n1", WAIT, || {
        on_primary(
            "SELECT string_agg(r.application_name || '=' || s.ssl, ',' ORDER BY r.application_name) \
             FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)",
        )
        .filter(|v| v.split(',').count() >= 2)
    });
    assert!(
        !senders.contains("=f"),
        "a replication connection without TLS: {senders}"
    );
    assert!(
        senders.contains("pgcd_sub_"),
        "no subscription among {senders}"
    );
    // The replication role is admitted over TLS only, from the database's
    // hosts; so n2's join, whose copy is there, connected over TLS.
    let hba = on_primary("SELECT pg_read_file(current_setting('hba_file'))").unwrap();
    assert!(
        hba.lines()
            .any(|l| l.starts_with("hostssl all pgcd_replication ")),
        "{hba}"
    );
    let plain: Vec<&str> = hba
        .lines()
        .filter(|l| l.starts_with("host ") && l.contains(" pgcd_replication "))
        .filter(|l| !l.ends_with(" reject"))
        .collect();
    assert!(
        plain.is_empty(),
        "the role is admitted without TLS: {plain:?}"
    );
    let su2 = std::fs::read_to_string(agents[2].data_dir.join("instances/vault-n2/superuser.pw"))
        .unwrap();
    let other_sql = |sql: &str| {
        psql(
            &other,
            &agents[2].addr,
            port,
            "postgres",
            &su2,
            "vault",
            sql,
        )
    };
    assert_eq!(
        other_sql("SELECT what FROM secrets").as_deref(),
        Some("copied over TLS"),
        "n2 did not copy n1"
    );
    let join = task_log(&api, "s-vault.n2.", ".join-");
    assert!(
        join.lines()
            .any(|l| l.contains("copied n1 at the consistent point")
                && l.contains(", over verified TLS")),
        "{join}"
    );
    // Every session of the role on n1 (the standby's stream, n2's
    // subscription) is TLS.
    let sessions = on_primary(
        "SELECT count(*) || '/' || count(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
         WHERE a.usename = 'pgcd_replication'",
    )
    .unwrap();
    let (all, tls) = sessions.split_once('/').unwrap();
    assert!(all.parse::<u32>().unwrap() >= 2 && all == tls, "{sessions}");

    // Every instance started with pgcd's own files: none had to be
    // rewritten after its first start.
    for (container, addr, password) in [
        (&primary, &agents[0].addr, &su),
        (&format!("pgcd-vault-n1-{}", ids[1]), &agents[1].addr, &su),
        (&other, &agents[2].addr, &su2),
    ] {
        let hba = psql(
            container,
            addr,
            port,
            "postgres",
            password,
            "vault",
            "SELECT pg_read_file(current_setting('hba_file'))",
        )
        .unwrap();
        assert_eq!(hba.lines().next(), Some(MANAGED), "{container}: {hba}");
    }
    let tasks = get_json(&format!("{api}/v1/tasks")).expect("tasks");
    let rewrites: Vec<&str> = tasks
        .as_array()
        .expect("a list of tasks")
        .iter()
        .filter_map(|t| t["id"].as_str())
        .filter(|id| id.starts_with("s-vault.") && id.contains(".auth-"))
        .collect();
    assert!(rewrites.is_empty(), "pg_hba.conf rewritten: {rewrites:?}");
    let created = task_log(&api, "s-vault.n1.", "create-instance");
    assert!(
        created.contains("in force from the first start"),
        "{created}"
    );

    // And n2's subscription says so from its side too (its worker's conninfo).
    let conninfo = psql(
        &other,
        &agents[2].addr,
        port,
        "postgres",
        &su,
        "vault",
        "SELECT subconninfo FROM pg_subscription LIMIT 1",
    );
    if let Some(c) = conninfo {
        assert!(c.contains("sslmode=verify-full"), "{c}");
    }

    // Rotation: the primary serves the new certificate after a reload,
    // and keeps answering throughout.
    let pki = agents[0].data_dir.join("pki");
    let old = std::fs::read_to_string(pki.join("postgres.crt")).unwrap();
    assert_eq!(served_pg_cert(&agents[0].addr, port), old.trim());
    let started = inspect(&primary, "{{.State.StartedAt}}");
    let out = pgcd_client()
        .args(["cert", "rotate", "--data-dir"])
        .arg(&agents[0].data_dir)
        .output()
        .expect("rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = std::fs::read_to_string(pki.join("postgres.crt")).unwrap();
    assert_ne!(new, old);
    wait_for(
        "PostgreSQL serves the new certificate",
        Duration::from_secs(30),
        || (served_pg_cert(&agents[0].addr, port) == new.trim()).then_some(()),
    );
    assert_eq!(on_primary("SELECT 1").as_deref(), Some("1"));
    assert_eq!(
        inspect(&primary, "{{.State.StartedAt}}"),
        started,
        "the container restarted"
    );
}
