//! Getting to a working etcd: the identity in the data directory, starting
//! the embedded etcd (a new cluster, a join, or a restart), waiting until it
//! answers, and settling the cluster id.

use super::certs;
use super::join::{check_ca, remote_cluster_ca, request_join};
use super::{AgentConfig, AgentError, EtcdMode};
use crate::backoff::Backoff;
use crate::cluster::etcd::{ClusterState, EtcdConfig, EtcdProcess};
use crate::cluster::identity::{random_hex, HostIdentity};
use crate::cluster::keys;
use crate::cluster::metrics::Metrics;
use crate::cluster::store::{to_json, Store};
use crate::cluster::ClusterError;
use crate::pki::client::ClientTls;
use crate::pki::token::JoinToken;
use crate::pki::PkiDir;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What [`prepare_etcd`] leaves running and how to reach it.
pub(super) struct EtcdAccess {
    /// The identity to keep.
    pub identity: HostIdentity,
    /// The embedded etcd, if any.
    pub process: Option<EtcdProcess>,
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// The client certificate and CA to reach them with.
    pub tls: Option<ClientTls>,
}

/// Prepares the host's certificates and starts etcd as the mode says.
pub(super) async fn prepare_etcd(
    cfg: &AgentConfig,
    identity: Option<HostIdentity>,
    cancel: &CancellationToken,
) -> Result<EtcdAccess, AgentError> {
    let pki = PkiDir::of_data_dir(&cfg.data_dir);
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
        pki: Some(pki.clone()),
    };
    let identity = match (&cfg.mode, identity) {
        (EtcdMode::External { endpoints }, identity) => {
            certs::ensure_local(cfg, &pki).await?;
            let identity = identity.unwrap_or_else(|| HostIdentity {
                host_id: cfg.host_id.to_string(),
                cluster_id: String::new(),
                etcd_member_name: String::new(),
                initial_cluster: String::new(),
                initial_cluster_state: String::new(),
                instance: random_hex(8),
            });
            return Ok(EtcdAccess {
                identity,
                process: None,
                endpoints: endpoints.clone(),
                tls: certs::external_etcd_tls(cfg)?,
            });
        }
        (EtcdMode::Join { api_url }, Some(identity)) => {
            certs::ensure_local(cfg, &pki).await?;
            // A restart: the agent joined through may be down too (hosts
            // coming back in any order), so one short look only.
            let look =
                tokio::time::timeout(Duration::from_secs(3), remote_cluster_ca(api_url, cancel));
            match look.await.unwrap_or_else(|_| Err(AgentError::Join(format!("{api_url} did not answer within 3 s")))) {
                Ok(remote) if remote.cluster_id != identity.cluster_id => {
                    return Err(AgentError::DataDir(format!(
                        "data dir {} belongs to cluster {}, but {api_url} is cluster {}; use an empty --data-dir to join it",
                        cfg.data_dir.display(),
                        identity.cluster_id,
                        remote.cluster_id
                    )))
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the cluster id; restarting with the data dir's etcd"),
            }
            identity
        }
        (EtcdMode::Init { .. }, Some(identity)) => {
            certs::ensure_local(cfg, &pki).await?;
            identity
        }
        (EtcdMode::Init { .. }, None) => {
            refuse_stray_etcd_dir(cfg)?;
            let cluster_id = random_hex(8);
            certs::init_ca(cfg, &pki, &cluster_id).await?;
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
            let token = cfg.join_token.as_deref().ok_or_else(|| {
                AgentError::Join(
                    "--join needs --join-token: run `pgcd cert join-token` on a cluster member"
                        .into(),
                )
            })?;
            let token = JoinToken::parse(token).map_err(|e| AgentError::Join(e.to_string()))?;
            let probe = etcd_config(String::new(), ClusterState::Existing, String::new());
            let found = remote_cluster_ca(api_url, cancel).await?;
            check_ca(api_url, &found, &token.pin)?;
            // Check ports before the member is added: a member that cannot start costs quorum.
            probe.check_ports()?;
            let joined = request_join(
                api_url,
                &cfg.host_id,
                &probe.peer_url(),
                &token,
                &found.ca_pem,
                cancel,
            )
            .await?;
            certs::adopt_ca(
                cfg,
                &pki,
                &joined.ca_cert_pem,
                &joined.ca_key_pem,
                &joined.age_identity,
                &token.pin,
            )
            .await?;
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
    let tls = ClientTls::host_etcd(&pki).map_err(|e| AgentError::DataDir(e.to_string()))?;
    let process = EtcdProcess::start(config)?;
    Ok(EtcdAccess {
        identity,
        process: Some(process),
        endpoints,
        tls: Some(tls),
    })
}

fn refuse_stray_etcd_dir(cfg: &AgentConfig) -> Result<(), AgentError> {
    let dir = cfg.data_dir.join("etcd");
    if dir.exists() {
        return Err(AgentError::DataDir(format!(
            "{} holds etcd data but the data dir has no {}; it belongs to another cluster or setup: use an empty --data-dir",
            dir.display(),
            crate::cluster::identity::FILE_NAME
        )));
    }
    Ok(())
}

/// Connects to etcd and waits until it answers a linearizable read, which
/// needs a quorum: after a power loss the other members may come back
/// minutes later, so this waits as long as it takes (until `cancel`),
/// saying so every few seconds.
pub(super) async fn wait_ready(
    endpoints: &[String],
    tls: Option<&ClientTls>,
    metrics: Arc<Metrics>,
    cfg: &AgentConfig,
    cancel: &CancellationToken,
) -> Result<Store, AgentError> {
    let mut backoff = Backoff::transient();
    loop {
        let error = match Store::connect_tls(endpoints, tls, metrics.clone()).await {
            Ok(store) => match store.get(keys::CLUSTER_ID).await {
                Ok(_) => {
                    if backoff.failures() > 0 {
                        tracing::info!(
                            waited_s = backoff.elapsed().as_secs(),
                            "etcd has a quorum; going on"
                        );
                    }
                    return Ok(store);
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if backoff.should_log() {
            tracing::warn!(
                endpoints = %endpoints.join(","),
                waited_s = backoff.elapsed().as_secs(),
                error = %error,
                etcd_log = %cfg.data_dir.join("etcd.log").display(),
                "etcd has no quorum yet (the other members may not be running); waiting"
            );
        }
        if !backoff.wait(cancel).await {
            return Err(AgentError::Stopped);
        }
    }
}

/// Writes the cluster id (and source config at `--init`) if absent, and
/// checks that the data dir belongs to this cluster.
pub(super) async fn settle_cluster_id(
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
pub(super) fn with_cluster_id(mut identity: HostIdentity, cluster_id: &str) -> HostIdentity {
    if identity.cluster_id.is_empty() {
        cluster_id.clone_into(&mut identity.cluster_id);
    }
    identity
}

/// Retries a startup step while etcd answers with a passing failure (an
/// election, a member catching up, a quorum lost while members restart):
/// an agent that has just joined must not exit for it, or the cluster it
/// joined loses quorum. Retries until it works or `cancel`.
pub(super) async fn retry_transient<T, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    mut step: F,
) -> Result<T, AgentError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AgentError>>,
{
    let mut backoff = Backoff::transient();
    loop {
        match step().await {
            Err(AgentError::Cluster(e @ (ClusterError::Etcd(_) | ClusterError::Timeout(_)))) => {
                if backoff.should_log() {
                    tracing::warn!(error = %e, waited_s = backoff.elapsed().as_secs(), "{what}: etcd is not ready; retrying");
                }
                if !backoff.wait(cancel).await {
                    return Err(AgentError::Stopped);
                }
            }
            other => return other,
        }
    }
}
