//! `pgcd connstr DATABASE [--node N] [--read-only] [--user U]`: a libpq
//! multi-host connection string for a database, from any agent's status.
//!
//! Every instance of the node (of every node without `--node`) is listed,
//! the current primaries first, with `target_session_attrs=read-write`
//! (`prefer-standby` with `--read-only`): libpq then finds the primary
//! after a switchover or a failover by itself. With the cluster CA known
//! (`--tls-dir` or `--ca`), `sslmode=verify-full` and `sslrootcert` are
//! added: each instance serves a certificate of the cluster CA for its
//! host's address.

use anyhow::{bail, Result};
use serde_json::Value;

/// Arguments of `pgcd connstr`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The database.
    database: String,
    /// Only this node's instances (the node's primary and its standbys).
    #[arg(long)]
    node: Option<String>,
    /// Prefer a standby (`target_session_attrs=prefer-standby`).
    #[arg(long)]
    read_only: bool,
    /// The user to connect as.
    #[arg(long, default_value = "postgres")]
    user: String,
    /// Any agent's API URL.
    #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
    api: String,
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    let status = super::status::get_json(&args.api, &format!("/v1/databases/{}", args.database))?;
    let ca = ca_file(super::tls());
    println!(
        "{}",
        connstr(
            &status,
            &args,
            ca.as_deref().and_then(std::path::Path::to_str)
        )?
    );
    Ok(0)
}

/// The CA certificate file the CLI was given, if any.
fn ca_file(tls: &crate::pki::client::TlsArgs) -> Option<std::path::PathBuf> {
    let dir_or_file = tls.ca.clone().or_else(|| tls.tls_dir.clone())?;
    Some(if dir_or_file.is_dir() {
        dir_or_file.join(crate::pki::client::CA_CERT)
    } else {
        dir_or_file
    })
}

/// The connection string for a database's status document.
fn connstr(status: &Value, args: &Args, ca: Option<&str>) -> Result<String> {
    let mut instances: Vec<(bool, &str)> = status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| args.node.as_deref().is_none_or(|n| i["node"] == n))
        .filter_map(|i| Some((i["role"] == "primary", i["endpoint"].as_str()?)))
        .collect();
    if instances.is_empty() {
        match &args.node {
            Some(n) => bail!("{} has no instances of node {n}", args.database),
            None => bail!("{} has no instances yet", args.database),
        }
    }
    // Primaries first (a stable sort keeps the status's order otherwise).
    instances.sort_by_key(|(primary, _)| !*primary);
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for (_, endpoint) in &instances {
        let Some((host, port)) = endpoint.rsplit_once(':') else {
            bail!("the status has an endpoint without a port: {endpoint}");
        };
        hosts.push(host.trim_start_matches('[').trim_end_matches(']'));
        ports.push(port);
    }
    let attrs = if args.read_only {
        "prefer-standby"
    } else {
        "read-write"
    };
    let mut out = format!(
        "host={} port={} dbname={} user={} target_session_attrs={attrs} connect_timeout=5",
        hosts.join(","),
        ports.join(","),
        quoted(&args.database),
        quoted(&args.user),
    );
    if let Some(ca) = ca {
        out.push_str(&format!(" sslmode=verify-full sslrootcert={}", quoted(ca)));
    }
    Ok(out)
}

/// A libpq keyword value: single-quoted, with `\` and `'` escaped, when it
/// holds anything but plain characters.
fn quoted(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
    {
        return v.to_owned();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(node: Option<&str>, read_only: bool) -> Args {
        Args {
            database: "orders".into(),
            node: node.map(String::from),
            read_only,
            user: "app user".into(),
            api: String::new(),
        }
    }

    fn status() -> Value {
        serde_json::json!({"instances": [
            {"node": "n1", "host": "h1", "endpoint": "10.0.0.1:5432", "role": "standby"},
            {"node": "n1", "host": "h2", "endpoint": "10.0.0.2:5432", "role": "primary"},
            {"node": "n2", "host": "h3", "endpoint": "[fd00::3]:5433", "role": "primary"},
        ]})
    }

    #[test]
    fn primaries_come_first_and_every_instance_is_listed() {
        let s = connstr(&status(), &args(None, false), Some("/home/me/pgcd/ca.crt")).unwrap();
        assert_eq!(
            s,
            "host=10.0.0.2,fd00::3,10.0.0.1 port=5432,5433,5432 dbname=orders user='app user' \
             target_session_attrs=read-write connect_timeout=5 sslmode=verify-full sslrootcert=/home/me/pgcd/ca.crt"
        );
    }

    #[test]
    fn a_node_and_read_only() {
        let s = connstr(&status(), &args(Some("n1"), true), None).unwrap();
        assert_eq!(
            s,
            "host=10.0.0.2,10.0.0.1 port=5432,5432 dbname=orders user='app user' \
             target_session_attrs=prefer-standby connect_timeout=5"
        );
        let err = connstr(&status(), &args(Some("n9"), false), None).unwrap_err();
        assert_eq!(err.to_string(), "orders has no instances of node n9");
    }

    #[test]
    fn values_are_quoted_for_libpq() {
        assert_eq!(quoted("o'k\\"), r"'o\'k\\'");
        assert_eq!(quoted(""), "''");
        assert_eq!(quoted("a.b-c_d/e"), "a.b-c_d/e");
    }
}
