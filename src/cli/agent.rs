//! `pgcd agent`: runs the agent of one host until SIGTERM or SIGINT.

use crate::agent::{self, AgentConfig, EtcdMode, Options, RuntimeKind};
use crate::spec::names::HostId;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `pgcd agent`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["init", "join", "etcd_endpoints"])))]
pub struct Args {
    /// This host's id (letters, digits, '-', '_', '.').
    #[arg(long)]
    host_id: HostId,
    /// The address to listen on and advertise (API, etcd).
    #[arg(long)]
    advertise: IpAddr,
    /// Where the agent keeps its state (and the embedded etcd's data).
    #[arg(long)]
    data_dir: PathBuf,
    /// Bootstrap a new cluster with this host as its first member.
    #[arg(long, requires = "repo")]
    init: bool,
    /// The config repository URL (with --init).
    #[arg(long)]
    repo: Option<String>,
    /// The branch to follow (with --init).
    #[arg(long, default_value = "main")]
    branch: String,
    /// Join the cluster of the agent at this API URL, e.g. https://10.0.0.1:7800.
    #[arg(long)]
    join: Option<String>,
    /// The join token (`pgcd cert join-token` on a cluster member prints
    /// one): it also pins the cluster CA.
    #[arg(long, env = "PGCD_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// `mtls`: the API needs a client certificate of the cluster CA (all
    /// but /healthz, webhooks and the join); `none` turns that off.
    #[arg(long, value_enum, default_value = "mtls")]
    api_auth: crate::api::auth::ApiAuth,
    /// External etcd: the CA certificate to verify it with.
    #[arg(long, requires = "etcd_endpoints")]
    etcd_ca: Option<PathBuf>,
    /// External etcd: the client certificate.
    #[arg(long, requires = "etcd_ca")]
    etcd_cert: Option<PathBuf>,
    /// External etcd: the client key.
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// Use an existing etcd cluster (comma-separated client URLs) instead of an embedded one.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Option<Vec<String>>,
    /// A label, key=value (repeatable), e.g. --label zone=a.
    #[arg(long = "label")]
    labels: Vec<String>,
    /// The API port.
    #[arg(long, default_value_t = 7800)]
    api_port: u16,
    /// The embedded etcd's client port.
    #[arg(long, default_value_t = 2379)]
    etcd_client_port: u16,
    /// The embedded etcd's peer port.
    #[arg(long, default_value_t = 2380)]
    etcd_peer_port: u16,
    /// The host lease TTL (whole seconds; etcd's minimum is about 2 s). A
    /// lost host's primaries fail over once it expires; an agent that cannot
    /// renew it stops its primaries TTL/4 before. 5s keeps a loaded host's
    /// hiccup from fencing its primaries; 2s is the fastest failover.
    #[arg(long, default_value = "5s", value_parser = parse_ttl)]
    lease_ttl: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// How often the agent observes its PostgreSQL instances, e.g. 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    observe_interval: Duration,
    /// How often the leader plans even when nothing changed (finds drift), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    resync_interval: Duration,
    /// Where PostgreSQL instances run: `docker`, or `none` for a host that
    /// runs none (a cluster member only).
    #[arg(long, env = "PGCD_RUNTIME", value_enum, default_value = "docker")]
    runtime: RuntimeKind,
    /// How many plan steps the leader runs at once on one host.
    #[arg(long, env = "PGCD_STEPS_PER_HOST", default_value_t = crate::reconcile::DEFAULT_STEPS_PER_HOST)]
    steps_per_host: usize,
    /// The etcd server binary.
    #[arg(long, env = "PGCD_ETCD_BINARY", default_value = "etcd")]
    etcd_binary: PathBuf,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let digits = s.strip_suffix('s').unwrap_or(s);
    match digits.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Duration::from_secs(n)),
        _ => Err(format!("invalid TTL {s:?}: use whole seconds such as 2s")),
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid interval {s:?}: use e.g. 500ms or 5s");
    let d = if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().map_err(|_| bad())?)
    } else {
        Duration::from_secs(
            s.strip_suffix('s')
                .unwrap_or(s)
                .parse()
                .map_err(|_| bad())?,
        )
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("invalid label {l:?}: use key=value"),
        })
        .collect()
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    init_logs(args.log_format);
    // A panic anywhere ends the process, so the kernel also ends the etcd child.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    let mode = if args.init {
        EtcdMode::Init {
            repo: args.repo.clone().context("--init needs --repo URL")?,
            branch: args.branch.clone(),
        }
    } else if let Some(api_url) = &args.join {
        EtcdMode::Join {
            api_url: api_url.clone(),
        }
    } else if let Some(endpoints) = &args.etcd_endpoints {
        EtcdMode::External {
            endpoints: endpoints.clone(),
        }
    } else {
        bail!("one of --init, --join or --etcd-endpoints is needed");
    };
    let config = AgentConfig {
        host_id: args.host_id.clone(),
        advertise: args.advertise,
        data_dir: args.data_dir.clone(),
        mode,
        labels: parse_labels(&args.labels)?,
        api_port: args.api_port,
        etcd_client_port: args.etcd_client_port,
        etcd_peer_port: args.etcd_peer_port,
        lease_ttl: args.lease_ttl,
        etcd_binary: args.etcd_binary.clone(),
        // `--ca DIR` (global): an existing CA (ca.crt, ca.key from
        // `pgcd cert ca`) for --init or external etcd; without it --init makes one.
        ca_dir: super::tls().ca.clone(),
        join_token: args.join_token.clone(),
        api_auth: args.api_auth,
        etcd_ca: args.etcd_ca.clone(),
        etcd_cert: args.etcd_cert.clone(),
        etcd_key: args.etcd_key.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            }
            signals.cancel();
        });
        let options = Options {
            observe_interval: args.observe_interval,
            resync_interval: args.resync_interval,
            runtime: args.runtime,
            steps_per_host: args.steps_per_host,
        };
        agent::run(config, options, shutdown).await
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_labels_parse() {
        assert_eq!(parse_ttl("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_interval("0s").is_err());
        assert!(parse_ttl("0s").is_err());
        assert_eq!(parse_labels(&["zone=a".into()]).unwrap()["zone"], "a");
        assert!(parse_labels(&["zone".into()]).is_err());
    }
}
