//! `pgcd source show|set`: where the leader fetches the config repository
//! from. `show` reads any agent's API; `set` changes the cluster state in
//! etcd (an operator's write, not the leader's) and wakes the leader.

use super::Output;
use crate::cluster::keys;
use crate::source::git::SourceConfig;
use crate::spec::secret::SecretRef;
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
    /// https: where the agents read a token or user:password: env:NAME or file:/path.
    #[arg(long, value_name = "REF", value_parser = parse_ref)]
    credentials: Option<SecretRef>,
    /// https: the same as --credentials env:VAR.
    #[arg(long, value_name = "VAR", conflicts_with = "credentials")]
    credentials_env: Option<String>,
    /// https: the same as --credentials file:F.
    #[arg(long, value_name = "F", conflicts_with_all = ["credentials", "credentials_env"])]
    credentials_file: Option<PathBuf>,
    /// https: PEM bundle (on the agents) of the CAs the server's certificate
    /// must chain to, instead of the system roots.
    #[arg(long, value_name = "F")]
    ca_file: Option<PathBuf>,
    /// ssh: the private (deploy) key: a path on the agents, file:/path or env:NAME.
    #[arg(long, value_name = "REF", value_parser = parse_ref)]
    ssh_key: Option<SecretRef>,
    /// ssh: known_hosts file on the agents (default ~/.ssh/known_hosts of the agent's user).
    #[arg(long, value_name = "F")]
    known_hosts: Option<PathBuf>,
    /// Remove settings: any of credentials, ca_file, ssh_key, known_hosts,
    /// poll_interval, fetch_timeout, path.
    #[arg(long, value_delimiter = ',', value_name = "FIELD")]
    clear: Vec<String>,
}

/// `env:NAME`, `file:/path` or a plain absolute path (a file).
fn parse_ref(s: &str) -> Result<SecretRef, String> {
    let r = if let Some(name) = s.strip_prefix("env:") {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(format!(
                "\"{name}\" is not an environment variable name (A-Z, 0-9, '_')"
            ));
        }
        SecretRef::Env(name.to_string())
    } else {
        SecretRef::File(s.strip_prefix("file:").unwrap_or(s).to_string())
    };
    match &r {
        SecretRef::File(p) if !p.starts_with('/') => Err(format!(
            "\"{s}\" is neither env:NAME nor an absolute path (file:/path) on the agents"
        )),
        _ => Ok(r),
    }
}

const CLEARABLE: &[&str] = &[
    "credentials",
    "ca_file",
    "ssh_key",
    "known_hosts",
    "poll_interval",
    "fetch_timeout",
    "path",
];

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
                if let Ok(cfg) = serde_json::from_value::<SourceConfig>(c.clone()) {
                    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
                    for (label, text) in [
                        ("credentials:", cfg.credentials_ref().map(|r| r.to_string())),
                        ("ca file:", path(&cfg.ca_file)),
                        ("ssh key:", cfg.ssh_key.as_ref().map(|r| r.to_string())),
                        ("known hosts:", path(&cfg.known_hosts)),
                    ] {
                        if let Some(text) = text {
                            println!("{label:<13} {text}");
                        }
                    }
                }
                let st = &v["status"];
                match st["state"].as_str() {
                    Some("failed") => println!(
                        "fetch:        FAILED since {}: {}",
                        st["since"].as_str().unwrap_or("?"),
                        st["error"].as_str().unwrap_or("?")
                    ),
                    Some(state) => println!(
                        "fetch:        {state} since {}",
                        st["since"].as_str().unwrap_or("?")
                    ),
                    None => println!("fetch:        not tried yet"),
                }
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
    if let Some(bad) = a.clear.iter().find(|f| !CLEARABLE.contains(&f.as_str())) {
        bail!(
            "--clear {bad}: not a setting that can be cleared ({})",
            CLEARABLE.join(", ")
        );
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
        for field in &a.clear {
            match field.as_str() {
                "credentials" => {
                    cfg.credentials = None;
                    cfg.credentials_env = None;
                    cfg.credentials_file = None;
                }
                "ca_file" => cfg.ca_file = None,
                "ssh_key" => cfg.ssh_key = None,
                "known_hosts" => cfg.known_hosts = None,
                "poll_interval" => cfg.poll_interval = None,
                "fetch_timeout" => cfg.fetch_timeout = None,
                _ => cfg.path = String::new(),
            }
        }
        cfg.poll_interval = a.poll_interval.or(cfg.poll_interval);
        cfg.fetch_timeout = a.fetch_timeout.or(cfg.fetch_timeout);
        // One place for the https credentials: the older fields are folded in.
        let credentials = a.credentials.or(a.credentials_env.map(SecretRef::Env)).or(a
            .credentials_file
            .map(|p| SecretRef::File(p.display().to_string())));
        if let Some(c) = credentials {
            cfg.credentials = Some(c);
            cfg.credentials_env = None;
            cfg.credentials_file = None;
        }
        cfg.ca_file = a.ca_file.or(cfg.ca_file);
        cfg.ssh_key = a.ssh_key.or(cfg.ssh_key);
        cfg.known_hosts = a.known_hosts.or(cfg.known_hosts);
        let problems = cfg.problems();
        if !problems.is_empty() {
            bail!(
                "the source settings are not usable:\n  {}",
                problems.join("\n  ")
            );
        }
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
