//! Which services an agent runs: the leader services (heartbeat, facts,
//! keeping etcd's raft leader away, the source loop and the reconciler),
//! the host's services (observing its instances) and the task executors
//! (the built-ins and, with a container runtime, `pg.step`).

use super::facts::FactsDispatcher;
use super::{executors, AgentConfig, EtcdMode};
use crate::cluster::election::LeaderService;
use crate::cluster::services::{Heartbeat, HostService, RaftLeaderAway};
use crate::cluster::tasks::Executors;
use crate::exec::{self, StepExecutor};
use crate::reconcile::Reconciler;
use crate::runtime::docker::Runtime;
use crate::runtime::observe::{ObserveLoop, Observer};
use crate::source::follow::Follower;
use std::sync::Arc;
use std::time::Duration;

/// Where PostgreSQL instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Docker on this host.
    Docker,
    /// None: this host runs no instances.
    None,
}

/// What the agent runs besides the cluster core.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the agent observes its PostgreSQL instances.
    pub observe_interval: Duration,
    /// How often the leader plans even when nothing changed (finds drift).
    pub resync_interval: Duration,
    /// Where PostgreSQL instances run.
    pub runtime: RuntimeKind,
    /// How many plan steps run at once on one host.
    pub steps_per_host: usize,
}

/// The services and executors of an agent.
pub(super) async fn assemble(
    cfg: &AgentConfig,
    options: &Options,
) -> (
    Executors,
    Vec<Arc<dyn LeaderService>>,
    Vec<Arc<dyn HostService>>,
) {
    let api_url = crate::cluster::etcd::https_url(cfg.advertise, cfg.api_port);
    let mut services: Vec<Arc<dyn LeaderService>> =
        vec![Arc::new(Heartbeat), Arc::new(FactsDispatcher)];
    if !matches!(cfg.mode, EtcdMode::External { .. }) {
        services.push(Arc::new(RaftLeaderAway));
    }
    services.push(Arc::new(Follower::new(
        cfg.data_dir.clone(),
        api_url.clone(),
    )));
    services.push(Arc::new(Reconciler::new(
        options.resync_interval,
        cfg.data_dir.join("source"),
        api_url,
        options.steps_per_host,
    )));
    let mut executors = executors::builtin();
    let mut host_services: Vec<Arc<dyn HostService>> = Vec::new();
    let rt = match options.runtime {
        RuntimeKind::None => None,
        RuntimeKind::Docker => {
            match Runtime::connect(&cfg.host_id, cfg.advertise, &cfg.data_dir).await {
                Ok(rt) => Some(rt),
                Err(e) => {
                    tracing::warn!(error = %e, "Docker is not reachable: this host runs no PostgreSQL instances");
                    None
                }
            }
        }
    };
    match rt {
        Some(rt) => {
            host_services.push(Arc::new(crate::backup::poll::InfoLoop::new(rt.clone())));
            host_services.push(Arc::new(super::certs::PostgresCertReload::new(
                crate::pki::PkiDir::of_data_dir(&cfg.data_dir),
                rt.clone(),
            )));
            let observer = Observer::new(rt);
            executors.insert(exec::KIND, Box::new(StepExecutor::new(observer.clone())));
            host_services.push(Arc::new(ObserveLoop::new(
                observer,
                options.observe_interval,
            )));
        }
        None => tracing::info!("no container runtime: this host runs no PostgreSQL instances"),
    }
    (executors, services, host_services)
}
