//! `pgcd source show|set`: where the leader fetches the config repository
//! from. `show` reads any agent's API; `set` changes the cluster state in
//! etcd (an operator's write, not the leader's) and wakes the leader.

use super::Output;
use crate::cluster::keys;
use crate::source::git::SourceConfig;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `pgcd source`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Show the source settings and the revision in force.
    Show {
        /// Any agent's API URL.
        #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
        api: String,
        /// Output format.
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: Output,
    },
    /// Change the source settings (only the fields given).
    Set(Box<SetArgs>),
}

#[derive(Debug, clap::Args)]
struct SetArgs {
    /// etcd client URLs of the cluster (any agent's `https://ADDR:2379`);
    /// needs an etcd admin certificate (`pgcd cert issue --client root`).
    #[arg(
        long,
        env = "PGCD_ETCD",
        default_value = "https://127.0.0.1:2379",
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    /// Repository URL: file://, a path, https:// or ssh://.
    #[arg(long)]
    url: Option<String>,
    /// Branch to apply.
    #[arg(long)]
    branch: Option<String>,
    /// Directory of the specs inside the repository ("" for the root).
    #[arg(long)]
    path: Option<String>,
    /// Poll interval, e.g. 15s.
    #[arg(long)]
    poll_interval: Option<String>,
    /// Fetch timeout, e.g. 60s.
    #[arg(long)]
    fetch_timeout: Option<String>,
    /// https: environment variable (on the agents) holding a token or user:password.
    #[arg(long)]
    credentials_env: Option<String>,
    /// https: file (on the agents) holding a token or user:password.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// ssh: private key file on the agents.
    #[arg(long)]
    ssh_key: Option<PathBuf>,
    /// ssh: known_hosts file on the agents.
    #[arg(long)]
    known_hosts: Option<PathBuf>,
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    match args.action {
        Action::Show { api, output } => {
            let v = super::status::get_json(&api, "/v1/source")?;
            if output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let c = &v["config"];
                let s = |k: &str| c[k].as_str().unwrap_or("-").to_string();
                println!("repository:   {}", s("url"));
                println!("branch:       {}", s("branch"));
                println!(
                    "path:         {}",
                    if s("path") == "-" {
                        "(root)".into()
                    } else {
                        s("path")
                    }
                );
                println!(
                    "poll:         {}",
                    c["poll_interval"]
                        .as_str()
                        .unwrap_or("from pgcd.yaml (default 15s)")
                );
                println!(
                    "in force:     {}",
                    v["applied"]["sha"].as_str().unwrap_or("nothing yet")
                );
            }
            Ok(0)
        }
        Action::Set(set) => set_source(*set),
    }
}

fn set_source(a: SetArgs) -> Result<i32> {
    for d in [&a.poll_interval, &a.fetch_timeout].into_iter().flatten() {
        if crate::spec::values::duration_ms(d).is_none() {
            bail!("\"{d}\" is not a duration (e.g. 15s, 2m, 500ms)");
        }
    }
    if a.url.as_deref() == Some("") {
        bail!("--url may not be empty");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(3))
            .with_timeout(Duration::from_secs(5));
        if let Some(tls) = super::tls().load()? {
            opts = opts.with_tls(tls.etcd_options());
        }
        let mut client = etcd_client::Client::connect(&a.etcd, Some(opts))
            .await
            .with_context(|| {
                format!(
                    "cannot reach etcd at {} (set --etcd or PGCD_ETCD)",
                    a.etcd.join(",")
                )
            })?;
        let key = crate::cluster::store::full_key(keys::SOURCE_CONFIG);
        let current = client
            .get(key.clone(), None)
            .await
            .context("reading the source settings")?;
        let mut cfg: SourceConfig = match current.kvs().first() {
            Some(kv) => serde_json::from_slice(kv.value())
                .context("the stored source settings are not readable")?,
            None => SourceConfig::new(a.url.clone().unwrap_or_default()),
        };
        if cfg.url.is_empty() {
            bail!("no source is configured yet; give --url");
        }
        if let Some(v) = a.url {
            cfg.url = v;
        }
        if let Some(v) = a.branch {
            cfg.branch = v;
        }
        if let Some(v) = a.path {
            cfg.path = v;
        }
        cfg.poll_interval = a.poll_interval.or(cfg.poll_interval);
        cfg.fetch_timeout = a.fetch_timeout.or(cfg.fetch_timeout);
        cfg.credentials_env = a.credentials_env.or(cfg.credentials_env);
        cfg.credentials_file = a.credentials_file.or(cfg.credentials_file);
        cfg.ssh_key = a.ssh_key.or(cfg.ssh_key);
        cfg.known_hosts = a.known_hosts.or(cfg.known_hosts);
        client
            .put(key, serde_json::to_vec(&cfg)?, None)
            .await
            .context("writing the source settings")?;
        let wake =
            serde_json::json!({ "at": crate::cluster::now_rfc3339(), "by": "pgcd source set" });
        client
            .put(
                crate::cluster::store::full_key(keys::SOURCE_WAKE),
                serde_json::to_vec(&wake)?,
                None,
            )
            .await
            .context("waking the leader")?;
        println!(
            "source: {} branch {}{}",
            cfg.url,
            cfg.branch,
            if cfg.path.is_empty() {
                String::new()
            } else {
                format!(" path {}", cfg.path)
            }
        );
        Ok(0)
    })
}
