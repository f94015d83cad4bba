//! The agent: the composition root of `pgcd agent`. It prepares the data
//! directory and etcd (embedded: `--init` or `--join`; or external
//! endpoints), registers the host, recovers and runs its tasks, serves the
//! API and campaigns for leadership, running the leader services while
//! leader. Stops cleanly on cancellation.
//!
//! This is the one module that wires `cluster`, `source`, `reconcile`,
//! `runtime`, `exec` and `api` together; nothing imports it but `cli`.

mod bootstrap;
pub mod certs;
pub mod executors;
pub mod facts;
pub mod fence;
mod join;
mod wiring;

pub use wiring::{Options, RuntimeKind};

use crate::api::auth::{ApiAuth, RateLimits};
use crate::api::serve::serve_tls;
use crate::api::{router, ApiState};
use crate::cluster::election::{observe_leader, run_election, LeaderService};
use crate::cluster::etcd::{self, EtcdError};
use crate::cluster::identity::{HostIdentity, IdentityError};
use crate::cluster::metrics::Metrics;
use crate::cluster::registry::{check_host_id_free, HostRecord, Registry};
use crate::cluster::runner::TaskRunner;
use crate::cluster::services::HostService;
use crate::cluster::tasks::Executors;
use crate::cluster::{now_rfc3339, ClusterError};
use crate::pki::server::{api_config, ReloadingCert};
use crate::pki::{CertKind, PkiDir};
use crate::spec::names::HostId;
use bootstrap::{prepare_etcd, retry_transient, settle_cluster_id, wait_ready, with_cluster_id};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How the agent finds its etcd.
#[derive(Debug, Clone)]
pub enum EtcdMode {
    /// Bootstrap a new one-member cluster, with the Git source.
    Init {
        /// The config repository URL.
        repo: String,
        /// Its branch.
        branch: String,
    },
    /// Join the cluster of the agent at this API URL.
    Join {
        /// e.g. `http://127.0.0.11:7800`.
        api_url: String,
    },
    /// Use an existing etcd cluster.
    External {
        /// Client URLs.
        endpoints: Vec<String>,
    },
}

/// The agent's settings (from the command line).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's id.
    pub host_id: HostId,
    /// The address to listen on and advertise.
    pub advertise: IpAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// How to reach etcd.
    pub mode: EtcdMode,
    /// Labels (region, zone...).
    pub labels: BTreeMap<String, String>,
    /// API port (7800).
    pub api_port: u16,
    /// etcd client port (2379).
    pub etcd_client_port: u16,
    /// etcd peer port (2380).
    pub etcd_peer_port: u16,
    /// Host lease TTL.
    pub lease_ttl: Duration,
    /// The etcd binary.
    pub etcd_binary: PathBuf,
    /// `--ca DIR`: an existing cluster CA (`ca.crt`, `ca.key`) to use at
    /// `--init` (or with external etcd) instead of making one.
    pub ca_dir: Option<PathBuf>,
    /// `--join-token`: proves the join.
    pub join_token: Option<String>,
    /// Whether the API asks for client certificates.
    pub api_auth: crate::api::auth::ApiAuth,
    /// External etcd's CA.
    pub etcd_ca: Option<PathBuf>,
    /// External etcd's client certificate.
    pub etcd_cert: Option<PathBuf>,
    /// External etcd's client key.
    pub etcd_key: Option<PathBuf>,
}

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory cannot be used.
    #[error("{0}")]
    DataDir(String),
    /// The identity file.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Starting etcd.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Talking to etcd.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Joining through another agent.
    #[error("{0}")]
    Join(String),
    /// Shutdown came before the agent was up (while it waited for etcd or
    /// a join); nothing is wrong.
    #[error("stopped before the agent was up")]
    Stopped,
    /// The API could not listen.
    #[error("API port {addr} is already in use; stop what holds it or pass --api-port")]
    ApiPort {
        /// The address.
        addr: SocketAddr,
    },
}
/// Runs the agent with pgcd's services until `shutdown` is cancelled: the
/// leader services (heartbeat, facts, source, reconciler), the host's
/// runtime, observer and step executor as `options` say.
pub async fn run(
    cfg: AgentConfig,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (executors, services, host_services) = wiring::assemble(&cfg, &options).await;
    match run_with(cfg, executors, services, host_services, shutdown).await {
        Err(AgentError::Stopped) => Ok(()),
        other => other,
    }
}

/// Runs the agent with the given services until `shutdown` is cancelled.
pub async fn run_with(
    cfg: AgentConfig,
    executors: Executors,
    services: Vec<Arc<dyn LeaderService>>,
    host_services: Vec<Arc<dyn HostService>>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    tokio::fs::create_dir_all(&cfg.data_dir)
        .await
        .map_err(|e| {
            AgentError::DataDir(format!(
                "cannot create data dir {}: {e}",
                cfg.data_dir.display()
            ))
        })?;
    let identity = HostIdentity::load(&cfg.data_dir)?;
    if let Some(id) = &identity {
        if id.host_id != cfg.host_id.as_str() {
            return Err(AgentError::DataDir(format!(
                "data dir {} belongs to host {}, not {}; use that --host-id or another --data-dir",
                cfg.data_dir.display(),
                id.host_id,
                cfg.host_id
            )));
        }
    }
    let api_addr = SocketAddr::new(cfg.advertise, cfg.api_port);
    let listener = std::net::TcpListener::bind(api_addr)
        .map_err(|_| AgentError::ApiPort { addr: api_addr })?;
    listener
        .set_nonblocking(true)
        .map_err(|_| AgentError::ApiPort { addr: api_addr })?;
    let metrics = Arc::new(Metrics::default());

    let access = match prepare_etcd(&cfg, identity, &shutdown).await {
        Err(AgentError::Stopped) => return Ok(()),
        other => other?,
    };
    let (identity, mut etcd_process, endpoints, etcd_tls) = (
        access.identity,
        access.process,
        access.endpoints,
        access.tls,
    );
    let store = match wait_ready(
        &endpoints,
        etcd_tls.as_ref(),
        metrics.clone(),
        &cfg,
        &shutdown,
    )
    .await
    {
        Ok(store) => store,
        Err(e) => {
            if let Some(mut p) = etcd_process.take() {
                let _ = tokio::task::spawn_blocking(move || p.stop(Duration::from_secs(5))).await;
            }
            return match e {
                AgentError::Stopped => Ok(()),
                e => Err(e),
            };
        }
    };
    let cluster_id = retry_transient("recording the cluster id", &shutdown, || {
        settle_cluster_id(&store, &cfg, &identity)
    })
    .await?;
    let identity = with_cluster_id(identity, &cluster_id);
    identity.save(&cfg.data_dir)?;
    if etcd_process.is_some() {
        retry_transient("turning etcd authentication on", &shutdown, || {
            certs::ensure_etcd_auth(&store, &cfg.host_id)
        })
        .await?;
    }
    let pki = PkiDir::of_data_dir(&cfg.data_dir);
    crate::secrets::install_identity_file(&pki.age_key())
        .map_err(|e| AgentError::DataDir(e.to_string()))?;
    let api_cert =
        ReloadingCert::load(&pki, CertKind::Api).map_err(|e| AgentError::DataDir(e.to_string()))?;
    let tls_config =
        api_config(&pki, api_cert.clone()).map_err(|e| AgentError::DataDir(e.to_string()))?;
    if cfg.api_auth == ApiAuth::None {
        tracing::warn!(
            api = %api_addr,
            "--api-auth none: the API asks for NO client certificate; anyone who reaches this port reads the cluster's state"
        );
    }

    let record = HostRecord {
        id: cfg.host_id.clone(),
        address: cfg.advertise.to_string(),
        api_url: etcd::https_url(cfg.advertise, cfg.api_port),
        labels: cfg.labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: now_rfc3339(),
        instance: identity.instance.clone(),
    };
    retry_transient("checking the host id", &shutdown, || async {
        check_host_id_free(&store, &record)
            .await
            .map_err(AgentError::from)
    })
    .await?;
    let (registry, lease_rx) = retry_transient("registering the host", &shutdown, || async {
        Registry::register(store.clone(), record.clone(), cfg.lease_ttl)
            .await
            .map_err(AgentError::from)
    })
    .await?;
    let registry = Arc::new(registry);
    tracing::info!(host = %cfg.host_id, cluster = %cluster_id, lease = registry.lease(), "host registered");

    let runner = Arc::new(TaskRunner::new(
        store.clone(),
        cfg.host_id.clone(),
        identity.instance.clone(),
        cfg.data_dir.clone(),
        executors,
    ));
    let recovered = retry_transient("recovering interrupted tasks", &shutdown, || async {
        runner.recover().await.map_err(AgentError::from)
    })
    .await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "marked tasks interrupted by the previous run as failed"
        );
    }

    let work = shutdown.child_token();
    let state = ApiState {
        store: store.clone(),
        host: cfg.host_id.clone(),
        cluster_id: cluster_id.clone(),
        metrics: metrics.clone(),
        shutdown: work.clone(),
        pki: pki.clone(),
        auth: cfg.api_auth,
        limits: Arc::new(RateLimits::default()),
        etcd_tls: etcd_tls.clone(),
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|_| AgentError::ApiPort { addr: api_addr })?;
    let api_cancel = work.clone();
    let api = tokio::spawn(serve_tls(listener, router(state), tls_config, api_cancel));
    tracing::info!(api = %api_addr, "API listening");

    let fence = fence::FenceKeeper::new(&cfg.data_dir, cfg.host_id.clone(), registry.ttl());
    let fencing = tokio::spawn(fence.run(store.clone(), registry.renewals(), work.clone()));
    let keepalive = {
        let registry = registry.clone();
        let cancel = work.clone();
        tokio::spawn(async move { registry.keep_alive(cancel).await })
    };
    let tasks = tokio::spawn(runner.run(work.clone()));
    let watcher: Arc<dyn HostService> = Arc::new(certs::CertWatcher::new(
        pki.clone(),
        cfg.host_id.clone(),
        api_cert,
    ));
    let host_jobs: Vec<_> = host_services
        .iter()
        .chain(std::iter::once(&watcher))
        .map(|s| {
            tracing::info!(service = s.name(), "host service started");
            tokio::spawn(s.run(store.clone(), work.clone()))
        })
        .collect();
    let (leader_tx, _leader_rx) = tokio::sync::watch::channel(None);
    let observer = tokio::spawn(observe_leader(store.clone(), leader_tx, work.clone()));
    let election = tokio::spawn(run_election(
        store.clone(),
        cfg.host_id.clone(),
        lease_rx,
        cfg.lease_ttl,
        services,
        work.clone(),
    ));

    shutdown.cancelled().await;
    tracing::info!("shutting down: stepping down, revoking the host lease, stopping etcd");
    work.cancel();
    let all = futures::future::join_all(
        [election, observer, tasks, keepalive, fencing, api]
            .into_iter()
            .chain(host_jobs),
    );
    let _ = tokio::time::timeout(Duration::from_secs(3), all).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), registry.revoke()).await;
    if let Some(mut p) = etcd_process.take() {
        let _ = tokio::task::spawn_blocking(move || p.stop(Duration::from_secs(5))).await;
    }
    tracing::info!("agent stopped");
    Ok(())
}
