//! The embedded etcd: a supervised child `etcd` process.
//!
//! The child is started from a dedicated thread that lives as long as the
//! agent, with `PR_SET_PDEATHSIG` = SIGKILL: the kernel kills etcd when that
//! thread (so the agent) dies, even after a panic or SIGKILL of the agent.
//! The thread restarts etcd when it exits unexpectedly.

// The supervisor runs on a thread of its own, not on the async runtime.
#![allow(clippy::disallowed_methods)]

use std::fs::OpenOptions;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How etcd's `--initial-cluster-state` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrapping a new cluster.
    New,
    /// Joining an existing cluster.
    Existing,
}

impl ClusterState {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Existing => "existing",
        }
    }
}

/// Everything needed to start the etcd child.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// The etcd binary (default `etcd` on PATH).
    pub binary: PathBuf,
    /// The member name (the host id).
    pub name: String,
    /// `DATA_DIR/etcd`.
    pub data_dir: PathBuf,
    /// The address to listen on and advertise.
    pub advertise: IpAddr,
    /// The client port (2379).
    pub client_port: u16,
    /// The peer port (2380).
    pub peer_port: u16,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-state`.
    pub state: ClusterState,
    /// `--initial-cluster-token` (the pgcd cluster id).
    pub token: String,
    /// Where etcd's own output goes.
    pub log_path: PathBuf,
    /// The host's certificates: with them, clients and peers speak mutual
    /// TLS (`https://`) and need a certificate of the cluster CA.
    pub pki: Option<crate::pki::PkiDir>,
}

/// Errors starting etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A port etcd needs is taken.
    #[error("port {addr} is already in use; stop what holds it or choose another port")]
    PortInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
    },
    /// The binary could not be started.
    #[error("cannot start {binary}: {source} (install etcd-server: scripts/install-deps.sh)")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Formats a URL for an address and port.
pub fn url(addr: IpAddr, port: u16) -> String {
    scheme_url("http", addr, port)
}

/// Formats an `https://` URL for an address and port.
pub fn https_url(addr: IpAddr, port: u16) -> String {
    scheme_url("https", addr, port)
}

fn scheme_url(scheme: &str, addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{scheme}://{a}:{port}"),
        IpAddr::V6(a) => format!("{scheme}://[{a}]:{port}"),
    }
}

impl EtcdConfig {
    fn url(&self, port: u16) -> String {
        if self.pki.is_some() {
            https_url(self.advertise, port)
        } else {
            url(self.advertise, port)
        }
    }

    /// This member's client URL.
    pub fn client_url(&self) -> String {
        self.url(self.client_port)
    }

    /// This member's peer URL.
    pub fn peer_url(&self) -> String {
        self.url(self.peer_port)
    }

    /// etcd 3.4's TLS flags: mutual TLS on both listeners with the cluster
    /// CA. etcd reads the certificate files at each new connection, so a
    /// rotation needs no restart.
    fn tls_args(&self) -> Vec<String> {
        use crate::pki::CertKind;
        let Some(pki) = &self.pki else {
            return Vec::new();
        };
        let ca = pki.ca_cert().display().to_string();
        vec![
            format!("--cert-file={}", pki.cert(CertKind::EtcdClient).display()),
            format!("--key-file={}", pki.key(CertKind::EtcdClient).display()),
            "--client-cert-auth=true".into(),
            format!("--trusted-ca-file={ca}"),
            format!(
                "--peer-cert-file={}",
                pki.cert(CertKind::EtcdPeer).display()
            ),
            format!("--peer-key-file={}", pki.key(CertKind::EtcdPeer).display()),
            "--peer-client-cert-auth=true".into(),
            format!("--peer-trusted-ca-file={ca}"),
        ]
    }

    fn args(&self) -> Vec<String> {
        let client = self.client_url();
        let peer = self.peer_url();
        let mut args = vec![
            format!("--name={}", self.name),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-state={}", self.state.as_str()),
            format!("--initial-cluster-token={}", self.token),
            "--logger=zap".into(),
            "--log-outputs=stderr".into(),
        ];
        args.extend(self.tls_args());
        args
    }

    /// Checks that etcd's ports are free by binding them for a moment.
    pub fn check_ports(&self) -> Result<(), EtcdError> {
        for port in [self.client_port, self.peer_port] {
            check_port(SocketAddr::new(self.advertise, port))?;
        }
        Ok(())
    }
}

/// Fails with `PortInUse` when the address cannot be bound.
pub fn check_port(addr: SocketAddr) -> Result<(), EtcdError> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|_| EtcdError::PortInUse { addr })
}

/// A running, supervised etcd child.
pub struct EtcdProcess {
    stop: Arc<AtomicBool>,
    pid: Arc<Mutex<Option<u32>>>,
    thread: Option<JoinHandle<()>>,
}

impl EtcdProcess {
    /// Starts etcd and its supervisor thread; fails when the first start fails.
    pub fn start(config: EtcdConfig) -> Result<Self, EtcdError> {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(Mutex::new(None));
        let (first_tx, first_rx) = mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let pid = pid.clone();
            std::thread::Builder::new()
                .name("etcd-supervisor".into())
                .spawn(move || supervise(config, stop, pid, first_tx))
                .map_err(|source| EtcdError::Spawn {
                    binary: "etcd-supervisor thread".into(),
                    source,
                })?
        };
        match first_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                stop,
                pid,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(EtcdError::Spawn {
                binary: "etcd".into(),
                source: io::Error::other("supervisor thread ended before starting etcd"),
            }),
        }
    }

    /// The pid of the current etcd child, if one runs.
    pub fn pid(&self) -> Option<u32> {
        *lock(&self.pid)
    }

    /// Stops etcd (SIGTERM, then SIGKILL after `grace`) and its supervisor.
    pub fn stop(&mut self, grace: Duration) {
        let pid = {
            let guard = lock(&self.pid);
            self.stop.store(true, Ordering::SeqCst);
            *guard
        };
        if let Some(pid) = pid {
            signal(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while lock(&self.pid).is_some() && start.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(pid) = *lock(&self.pid) {
                tracing::warn!(pid, "etcd did not stop in time; killing it");
                signal(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop(Duration::from_secs(5));
        }
    }
}

fn lock(m: &Mutex<Option<u32>>) -> std::sync::MutexGuard<'_, Option<u32>> {
    // A poisoned lock only means a panic while holding a pid: the value is still valid.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), sig);
    }
}

fn spawn(config: &EtcdConfig) -> Result<std::process::Child, EtcdError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&config.log_path)
        .map_err(|source| EtcdError::Spawn {
            binary: config.log_path.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| EtcdError::Spawn {
        binary: config.log_path.clone(),
        source,
    })?;
    let mut cmd = Command::new(&config.binary);
    cmd.args(config.args())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The agent may have died between fork and prctl.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::other("agent exited before etcd started"));
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| EtcdError::Spawn {
        binary: config.binary.clone(),
        source,
    })
}

fn supervise(
    config: EtcdConfig,
    stop: Arc<AtomicBool>,
    pid: Arc<Mutex<Option<u32>>>,
    first: mpsc::Sender<Result<(), EtcdError>>,
) {
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut child = {
            let mut guard = lock(&pid);
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match spawn(&config) {
                Ok(child) => {
                    *guard = Some(child.id());
                    child
                }
                Err(e) => {
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    tracing::error!(error = %e, "cannot restart etcd; retrying");
                    drop(guard);
                    std::thread::sleep(backoff);
                    continue;
                }
            }
        };
        tracing::info!(
            pid = child.id(),
            state = config.state.as_str(),
            "etcd started"
        );
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        let started = Instant::now();
        let status = child.wait();
        *lock(&pid) = None;
        if stop.load(Ordering::SeqCst) {
            tracing::info!("etcd stopped");
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(200);
        }
        tracing::warn!(
            status = ?status,
            restart_in_ms = backoff.as_millis() as u64,
            log = %config.log_path.display(),
            "etcd exited unexpectedly; restarting it"
        );
        let until = Instant::now() + backoff;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
