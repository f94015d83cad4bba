//! `pgcd cert ...`: the cluster CA and its certificates.
//! - `ca --out DIR`: a new CA, for `pgcd agent --init --ca DIR`.
//! - `issue --client NAME --ca-dir DIR [--out DIR] [--p12]`: a client
//!   certificate for a person or a CI job. Runs where the CA key is: on a
//!   cluster host (`--ca-dir DATA_DIR/pki`) or where `cert ca` wrote it.
//! - `join-token [--ttl 1h]`: asks a member for a join token.
//! - `rotate --data-dir DIR`: renews the host's certificates in place;
//!   the running agent, etcd and PostgreSQL take them without a restart.

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use crate::cluster::identity::HostIdentity;
use crate::pki::client::{CA_CERT, CLIENT_CERT, CLIENT_KEY};
use crate::pki::issue::{pkcs12, LEAF_VALIDITY};
use crate::pki::{files, Ca, PkiDir};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `pgcd cert`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Make a new cluster CA (ECDSA P-256) into --out, for `--init --ca DIR`.
    Ca {
        /// Where to write ca.crt and ca.key (0600).
        #[arg(long)]
        out: PathBuf,
        /// A name for the CA's subject.
        #[arg(long, default_value = "pgcd")]
        name: String,
    },
    /// Issue a client certificate for a person or a CI job (needs the CA key).
    Issue {
        /// The client's name (its certificate's CN). `root` is also etcd's
        /// administrator (etcdctl, `pgcd source set`, `pgcd host remove`).
        #[arg(long)]
        client: String,
        /// The CA directory: a host's `DATA_DIR/pki`, or `pgcd cert ca --out`'s.
        #[arg(long, env = "PGCD_CA_DIR")]
        ca_dir: PathBuf,
        /// Where to write ca.crt, client.crt, client.key (default `./NAME`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write client.p12 (certificate, key and CA) for a browser.
        #[arg(long)]
        p12: bool,
        /// The PKCS#12 file's password (default: the client's name).
        #[arg(long, env = "PGCD_P12_PASSWORD", hide_env_values = true)]
        p12_password: Option<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Print a new join token (valid for --ttl) from a cluster member.
    JoinToken {
        /// Any agent's API URL.
        #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
        api: String,
        /// How long the token works, e.g. 1h, 30m, 600s.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Renew this host's certificates (etcd peer and client, API,
    /// PostgreSQL) from the CA in its data dir, without a restart.
    Rotate {
        /// The agent's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 1h, 30m or 600s");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    match args.action {
        Action::Ca { out, name } => {
            let ca = Ca::generate(&name)?;
            let dir = PkiDir::new(&out);
            ca.save(&dir)?;
            files::write_private(
                &dir.age_key(),
                crate::secrets::generate_identity().as_bytes(),
            )?;
            println!(
                "cluster CA written to {} (ca.key is 0600: keep it safe)",
                out.display()
            );
            println!("CA pin (sha256): {}", ca.pin());
            Ok(0)
        }
        Action::Issue {
            client,
            ca_dir,
            out,
            p12,
            p12_password,
            days,
        } => {
            if client.is_empty() || client.contains(['/', '\n']) {
                bail!("--client: a plain name, e.g. alice or ci-deploy");
            }
            let ca = Ca::load(&PkiDir::new(&ca_dir))
                .with_context(|| format!("reading the CA in {}", ca_dir.display()))?;
            let validity = Duration::from_secs(days.max(1) * 86400).min(LEAF_VALIDITY * 5);
            let issued = ca.issue_client(&client, validity)?;
            let out = out.unwrap_or_else(|| PathBuf::from(&client));
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            files::write_private(&out.join(CLIENT_KEY), issued.key_pem.as_bytes())?;
            files::write_public(&out.join(CLIENT_CERT), &issued.cert_pem)?;
            files::write_public(&out.join(CA_CERT), ca.cert_pem())?;
            println!(
                "client certificate for {client} written to {}",
                out.display()
            );
            if p12 {
                let password = p12_password.unwrap_or_else(|| client.clone());
                let bytes = pkcs12(&issued, ca.cert_pem(), &password)?;
                files::write_private(&out.join("client.p12"), &bytes)?;
                println!(
                    "browser bundle: {} (import it; its password is {})",
                    out.join("client.p12").display(),
                    if password == client {
                        "the client's name"
                    } else {
                        "the one given"
                    }
                );
            }
            println!("use it with: --tls-dir {} (or PGCD_TLS_DIR)", out.display());
            Ok(0)
        }
        Action::JoinToken { api, ttl } => {
            let client = super::tls().blocking_http(Duration::from_secs(10))?;
            let url = format!("{}/v1/cluster/join-tokens", api.trim_end_matches('/'));
            let resp = client
                .post(&url)
                .json(&serde_json::json!({ "ttl_seconds": ttl.as_secs() }))
                .send()
                .with_context(|| {
                    format!("cannot reach the pgcd API at {api} (set --api or PGCD_API)")
                })?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .with_context(|| format!("{url} did not answer JSON"))?;
            if !status.is_success() {
                bail!(
                    "{url}: {status}: {}",
                    body.get("error").and_then(|v| v.as_str()).unwrap_or("")
                );
            }
            let token = body
                .get("token")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let expires = body
                .get("expires_at")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            eprintln!("join token (works once, until {expires}):");
            println!("{token}");
            Ok(0)
        }
        Action::Rotate { data_dir } => {
            let pki = PkiDir::of_data_dir(&data_dir);
            let identity = HostIdentity::load(&data_dir)?
                .with_context(|| format!("{} is not an agent's data dir", data_dir.display()))?;
            if !pki.has_ca() {
                bail!("this host holds no CA key in {}", pki.path().display());
            }
            crate::agent::certs::renew(&pki, &identity.host_id)?;
            println!(
                "renewed the certificates of {} in {}; the agent puts them in force within seconds",
                identity.host_id,
                pki.path().display()
            );
            Ok(0)
        }
    }
}
