//! The agent: prepares the data directory and etcd (embedded: `--init` or
//! `--join`; or external endpoints), registers the host, recovers and runs
//! its tasks, serves the API and campaigns for leadership, running the
//! `LeaderService`s while leader. Stops cleanly on cancellation.

use super::election::{observe_leader, run_election, LeaderService};
use super::etcd::{self, ClusterState, EtcdConfig, EtcdError, EtcdProcess};
use super::identity::{random_hex, HostIdentity, IdentityError};
use super::metrics::Metrics;
use super::registry::{check_host_id_free, HostRecord, Registry};
use super::runner::TaskRunner;
use super::services::HostService;
use super::store::{to_json, Store};
use super::tasks::Executors;
use super::{keys, now_rfc3339, ClusterError, HostId};
use crate::api::routes::cluster::ClusterView;
use crate::api::routes::join::{JoinRequest, JoinResponse};
use crate::api::{router, ApiState};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// The API could not listen.
    #[error("API port {addr} is already in use; stop what holds it or pass --api-port")]
    ApiPort {
        /// The address.
        addr: SocketAddr,
    },
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(
    cfg: AgentConfig,
    executors: Executors,
    services: Vec<Arc<dyn LeaderService>>,
    host_services: Vec<Arc<dyn HostService>>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
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

    let (identity, mut etcd_process, endpoints) = prepare_etcd(&cfg, identity).await?;
    let store = wait_ready(&endpoints, metrics.clone(), &cfg).await?;
    let cluster_id = retry_transient("recording the cluster id", || {
        settle_cluster_id(&store, &cfg, &identity)
    })
    .await?;
    let identity = with_cluster_id(identity, &cluster_id);
    identity.save(&cfg.data_dir)?;

    let record = HostRecord {
        id: cfg.host_id.clone(),
        address: cfg.advertise.to_string(),
        api_url: etcd::url(cfg.advertise, cfg.api_port),
        labels: cfg.labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: now_rfc3339(),
        instance: identity.instance.clone(),
    };
    retry_transient("checking the host id", || async {
        check_host_id_free(&store, &record)
            .await
            .map_err(AgentError::from)
    })
    .await?;
    let (registry, lease_rx) = retry_transient("registering the host", || async {
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
    let recovered = retry_transient("recovering interrupted tasks", || async {
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
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|_| AgentError::ApiPort { addr: api_addr })?;
    let api_cancel = work.clone();
    let api = tokio::spawn(async move {
        let serve = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { api_cancel.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "API server failed");
        }
    });
    tracing::info!(api = %api_addr, "API listening");

    let keepalive = {
        let registry = registry.clone();
        let cancel = work.clone();
        tokio::spawn(async move { registry.keep_alive(cancel).await })
    };
    let tasks = tokio::spawn(runner.run(work.clone()));
    let host_jobs: Vec<_> = host_services
        .iter()
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
        [election, observer, tasks, keepalive, api]
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

/// Prepares and starts etcd as the mode says; returns the identity to keep,
/// the process (embedded) and the endpoints to use.
async fn prepare_etcd(
    cfg: &AgentConfig,
    identity: Option<HostIdentity>,
) -> Result<(HostIdentity, Option<EtcdProcess>, Vec<String>), AgentError> {
    let etcd_config = |initial_cluster: String, state: ClusterState, token: String| EtcdConfig {
        binary: cfg.etcd_binary.clone(),
        name: cfg.host_id.to_string(),
        data_dir: cfg.data_dir.join("etcd"),
        advertise: cfg.advertise,
        client_port: cfg.etcd_client_port,
        peer_port: cfg.etcd_peer_port,
        initial_cluster,
        state,
        token,
        log_path: cfg.data_dir.join("etcd.log"),
    };
    let identity = match (&cfg.mode, identity) {
        (EtcdMode::External { endpoints }, identity) => {
            let identity = identity.unwrap_or_else(|| HostIdentity {
                host_id: cfg.host_id.to_string(),
                cluster_id: String::new(),
                etcd_member_name: String::new(),
                initial_cluster: String::new(),
                initial_cluster_state: String::new(),
                instance: random_hex(8),
            });
            return Ok((identity, None, endpoints.clone()));
        }
        (EtcdMode::Join { api_url }, Some(identity)) => {
            match remote_cluster_id(api_url).await {
                Ok(remote) if remote != identity.cluster_id => {
                    return Err(AgentError::DataDir(format!(
                        "data dir {} belongs to cluster {}, but {api_url} is cluster {remote}; use an empty --data-dir to join it",
                        cfg.data_dir.display(),
                        identity.cluster_id
                    )))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the cluster id; restarting with the data dir's etcd"),
            }
            identity
        }
        (EtcdMode::Init { .. }, Some(identity)) => identity,
        (EtcdMode::Init { .. }, None) => {
            refuse_stray_etcd_dir(cfg)?;
            let cluster_id = random_hex(8);
            let probe = etcd_config(String::new(), ClusterState::New, String::new());
            HostIdentity {
                host_id: cfg.host_id.to_string(),
                cluster_id,
                etcd_member_name: cfg.host_id.to_string(),
                initial_cluster: format!("{}={}", cfg.host_id, probe.peer_url()),
                initial_cluster_state: ClusterState::New.as_str().into(),
                instance: random_hex(8),
            }
        }
        (EtcdMode::Join { api_url }, None) => {
            refuse_stray_etcd_dir(cfg)?;
            let probe = etcd_config(String::new(), ClusterState::Existing, String::new());
            remote_cluster_id(api_url).await.map_err(AgentError::Join)?;
            // Check ports before the member is added: a member that cannot start costs quorum.
            probe.check_ports()?;
            let joined = request_join(api_url, &cfg.host_id, &probe.peer_url()).await?;
            HostIdentity {
                host_id: cfg.host_id.to_string(),
                cluster_id: joined.cluster_id,
                etcd_member_name: cfg.host_id.to_string(),
                initial_cluster: joined.initial_cluster,
                initial_cluster_state: ClusterState::Existing.as_str().into(),
                instance: random_hex(8),
            }
        }
    };
    let state = if identity.initial_cluster_state == "new" {
        ClusterState::New
    } else {
        ClusterState::Existing
    };
    let config = etcd_config(
        identity.initial_cluster.clone(),
        state,
        identity.cluster_id.clone(),
    );
    config.check_ports()?;
    // Saved before etcd starts: a restart after a crash here must not join again.
    identity.save(&cfg.data_dir)?;
    let endpoints = vec![config.client_url()];
    let process = EtcdProcess::start(config)?;
    Ok((identity, Some(process), endpoints))
}

fn refuse_stray_etcd_dir(cfg: &AgentConfig) -> Result<(), AgentError> {
    let dir = cfg.data_dir.join("etcd");
    if dir.exists() {
        return Err(AgentError::DataDir(format!(
            "{} holds etcd data but the data dir has no {}; it belongs to another cluster or setup: use an empty --data-dir",
            dir.display(),
            super::identity::FILE_NAME
        )));
    }
    Ok(())
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Asks the agent at `api_url` for its cluster id.
async fn remote_cluster_id(api_url: &str) -> Result<String, String> {
    let url = format!("{}/v1/cluster", api_url.trim_end_matches('/'));
    let resp = http()?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("cannot reach {api_url} to join: {}; check the address and that a pgcd agent runs there", root_cause(&e)))?;
    if !resp.status().is_success() {
        return Err(format!(
            "{api_url} did not answer as a pgcd agent (GET /v1/cluster: {})",
            resp.status()
        ));
    }
    resp.json::<ClusterView>()
        .await
        .map(|v| v.cluster_id)
        .map_err(|_| {
            format!(
                "{api_url} did not answer as a pgcd agent (GET /v1/cluster is not a pgcd cluster)"
            )
        })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// POSTs the join; retries while etcd is not ready to add a member.
async fn request_join(
    api_url: &str,
    host: &HostId,
    peer_url: &str,
) -> Result<JoinResponse, AgentError> {
    let url = format!("{}/v1/cluster/join", api_url.trim_end_matches('/'));
    let body = JoinRequest {
        host_id: host.to_string(),
        peer_url: peer_url.to_owned(),
    };
    let client = http().map_err(AgentError::Join)?;
    let start = Instant::now();
    loop {
        let resp = client.post(&url).json(&body).send().await.map_err(|e| {
            AgentError::Join(format!(
                "cannot reach {api_url} to join: {}",
                root_cause(&e)
            ))
        })?;
        let status = resp.status();
        if status.is_success() {
            let joined: JoinResponse = resp.json().await.map_err(|e| {
                AgentError::Join(format!(
                    "{api_url} answered the join with something else: {e}"
                ))
            })?;
            tracing::info!(initial_cluster = %joined.initial_cluster, "etcd member added; starting etcd");
            return Ok(joined);
        }
        let message = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| status.to_string());
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE
            && start.elapsed() < Duration::from_secs(60)
        {
            tracing::info!(reason = %message, "etcd is not ready to add a member; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        return Err(AgentError::Join(format!(
            "join refused by {api_url}: {message}"
        )));
    }
}

/// Connects to etcd and waits until it answers reads.
async fn wait_ready(
    endpoints: &[String],
    metrics: Arc<Metrics>,
    cfg: &AgentConfig,
) -> Result<Store, AgentError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match Store::connect(endpoints, metrics.clone()).await {
            Ok(store) => match store.get(keys::CLUSTER_ID).await {
                Ok(_) => return Ok(store),
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(AgentError::Cluster(ClusterError::Other(format!(
        "etcd at {} did not become ready within 60 s ({last_error}); see {}",
        endpoints.join(","),
        cfg.data_dir.join("etcd.log").display()
    ))))
}

/// Writes the cluster id (and source config at `--init`) if absent, and
/// checks that the data dir belongs to this cluster.
async fn settle_cluster_id(
    store: &Store,
    cfg: &AgentConfig,
    identity: &HostIdentity,
) -> Result<String, AgentError> {
    if !identity.cluster_id.is_empty() {
        store
            .create(keys::CLUSTER_ID, identity.cluster_id.clone().into_bytes())
            .await?;
    } else {
        store
            .create(keys::CLUSTER_ID, random_hex(8).into_bytes())
            .await?;
    }
    let cluster_id = store
        .get(keys::CLUSTER_ID)
        .await?
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .unwrap_or_default();
    if !identity.cluster_id.is_empty() && identity.cluster_id != cluster_id {
        return Err(AgentError::DataDir(format!(
            "data dir {} belongs to cluster {}, but etcd holds cluster {cluster_id}; use an empty --data-dir",
            cfg.data_dir.display(),
            identity.cluster_id
        )));
    }
    if let EtcdMode::Init { repo, branch } = &cfg.mode {
        let source = serde_json::json!({ "url": repo, "branch": branch });
        store.create(keys::SOURCE_CONFIG, to_json(&source)?).await?;
    }
    Ok(cluster_id)
}

/// Keeps the cluster id learnt from etcd in the identity of an external setup.
fn with_cluster_id(mut identity: HostIdentity, cluster_id: &str) -> HostIdentity {
    if identity.cluster_id.is_empty() {
        cluster_id.clone_into(&mut identity.cluster_id);
    }
    identity
}

/// Retries a startup step while etcd answers with a passing failure (an
/// election, a member catching up): an agent that has just joined must not
/// exit for it, or the cluster it joined loses quorum.
async fn retry_transient<T, F, Fut>(what: &str, mut step: F) -> Result<T, AgentError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match step().await {
            Err(AgentError::Cluster(e @ (ClusterError::Etcd(_) | ClusterError::Timeout(_))))
                if Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "{what}: etcd is not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}
