//! The container runtime (bollard): one container per instance, named
//! `pgcd-<database>-<node>-<host>` and labelled so pgcd finds its own and
//! ignores every other container. Host networking; PostgreSQL listens on the
//! host's advertise address and the database's port; the data directory is
//! a host directory under the agent's data dir that outlives the container.
//! Health is `pg_isready`, run by Docker's health check.

use crate::spec::names::{DatabaseName, HostId, NodeName};
use crate::state::InstanceId;
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, RestartPolicy};
use bollard::models::{HealthStatusEnum, RestartPolicyNameEnum};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The label every pgcd container carries (`true`).
pub const LABEL_MANAGED: &str = "io.pgcd.managed";
/// The database label.
pub const LABEL_DATABASE: &str = "io.pgcd.database";
/// The node label.
pub const LABEL_NODE: &str = "io.pgcd.node";
/// The host label.
pub const LABEL_HOST: &str = "io.pgcd.host";
/// The port label.
pub const LABEL_PORT: &str = "io.pgcd.port";

/// Where the instance directory is mounted in the container.
const MOUNT: &str = "/var/lib/pgcd";

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Docker refused or is unreachable.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// The image is not on this host.
    #[error("image {image} is not on host {host}; build it with scripts/build-images.sh")]
    NoImage {
        /// The image tag.
        image: String,
        /// The host.
        host: String,
    },
    /// A file of the instance directory.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// The server did not become ready in time.
    #[error("{0}")]
    NotReady(String),
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |error| RuntimeError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// A container pgcd owns, as Docker reports it.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// Its instance.
    pub id: InstanceId,
    /// The port from its label.
    pub port: u16,
    /// The container runs.
    pub running: bool,
    /// Docker's health check (`pg_isready`) passed last.
    pub healthy: bool,
    /// Its bind mounts besides the instance directory (`PATH:PATH[:ro]`).
    pub mounts: Vec<String>,
    /// The image it was made from.
    pub image: String,
    /// The PostgreSQL major of its image (the image's `pgcd.major` label,
    /// which the container's labels carry).
    pub image_major: Option<u16>,
}

/// What a new container needs.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// The image tag.
    pub image: String,
    /// The port.
    pub port: u16,
    /// `postgresql.auto.conf` lines written after initdb (already quoted).
    pub conf_lines: Vec<String>,
    /// CPU limit (`2`, `1.5`, `500m`).
    pub cpus: Option<String>,
    /// Memory limit (`4GiB`).
    pub memory: Option<String>,
    /// For a standby: where its first start copies the data from.
    pub standby: Option<StandbySource>,
    /// Host paths bind-mounted at the same path (`PATH:PATH[:ro]`): backup
    /// repositories every host sees, CA files of object stores.
    pub mounts: Vec<String>,
    /// The authentication files initdb's are replaced with, before the
    /// server first starts; none: the built-in lines.
    pub auth: Option<InitialAuth>,
}

/// The spec's `pg_hba.conf` and `pg_ident.conf` for a new data directory,
/// written into the instance directory (`auth/`) for the first start.
#[derive(Debug, Clone)]
pub struct InitialAuth {
    /// `pg_hba.conf` for a server with TLS.
    pub hba: Vec<String>,
    /// `pg_hba.conf` for a server without (the PostgreSQL 16 image).
    pub hba_without_tls: Vec<String>,
    /// `pg_ident.conf`.
    pub ident: Vec<String>,
}

/// The primary a standby is made from.
#[derive(Debug, Clone)]
pub struct StandbySource {
    /// The primary's address.
    pub address: String,
    /// The primary's port.
    pub port: u16,
    /// The slot on the primary; also the standby's `application_name`.
    pub slot: String,
    /// The replication role's password.
    pub password: String,
}

/// The container runtime of one host.
#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
    host: HostId,
    advertise: IpAddr,
    pub(super) pki: crate::pki::PkiDir,
    root: PathBuf,
}

/// The directory of an instance's Unix socket, on the host: the agent
/// connects through it as the superuser (`local ... trust`), which works on
/// a standby too, whose superuser password is its primary's.
pub fn socket_dir(instance_dir: &Path) -> PathBuf {
    instance_dir.join("run")
}

/// Runs as root in the container: makes the data directory on first start
/// (initdb with the superuser password, the spec's pg_hba.conf and
/// pg_ident.conf that the step left in `auth/` — or, for a container made
/// by an older pgcd, built-in lines that the planner's first
/// `WriteAuthFiles` step replaces — and the initial settings), then
/// becomes `postgres` and execs the server, which thus gets Docker's stop
/// signal itself.
/// The file in an instance directory that tells [`START_SCRIPT`] the data
/// was restored from a backup for a standby: its first start writes what
/// `pg_basebackup -R -S` would have (`primary_conninfo`, `primary_slot_name`).
pub const RESTORED_STANDBY_MARK: &str = "standby-restored";

const START_SCRIPT: &str = r##"set -eu
# libpq (pg_basebackup, the walreceiver, subscriptions) looks for a client
# certificate under $HOME/.postgresql: a home postgres can read, with none.
export HOME=/var/lib/pgcd
# A build without OpenSSL (the PostgreSQL 16 image, from the pgserver
# wheel) can neither serve TLS nor ask for it: it runs without, and says so.
PGCD_REPL_HBA=hostssl
PGCD_TLS_ARGS="-c ssl=on -c ssl_cert_file=/var/lib/pgcd/tls-live/server.crt -c ssl_key_file=/var/lib/pgcd/tls-live/server.key -c ssl_ca_file=/var/lib/pgcd/tls-live/ca.crt"
if ! ldd "$(command -v postgres)" 2>/dev/null | grep -q libssl; then
  echo "pgcd: this PostgreSQL build has no TLS support; serving and replicating without TLS" >&2
  PGCD_TLS_ARGS=""
  PGCD_TLS_OPTIONS=""
  PGCD_REPL_HBA=host
fi
D=/var/lib/pgcd/data
mkdir -p "$D" /var/lib/pgcd/run
chown postgres:postgres /var/lib/pgcd "$D" /var/lib/pgcd/run
chmod 700 "$D"
if [ ! -s "$D/PG_VERSION" ] && [ -n "${PGCD_PRIMARY:-}" ]; then
  # A standby: copy the primary through its slot, then follow it (-R).
  install -o postgres -m 600 /var/lib/pgcd/replication.pw /tmp/pw
  PGPASSFILE=/tmp/pgpass
  printf '*:*:*:pgcd_replication:%s\n' "$(cat /tmp/pw)" > /tmp/pgpass
  chown postgres /tmp/pgpass && chmod 600 /tmp/pgpass
  PGPASSFILE=/tmp/pgpass setpriv --reuid=postgres --regid=postgres --init-groups pg_basebackup -D "$D" -X stream -c fast -R -S "$PGCD_SLOT" \
    -d "host=$PGCD_PRIMARY port=$PGCD_PRIMARY_PORT user=pgcd_replication application_name=$PGCD_SLOT $PGCD_TLS_OPTIONS" >/var/lib/pgcd/basebackup.log 2>&1
  rm -f /tmp/pw
  # The password stays in primary_conninfo's passfile, readable by postgres only.
  install -o postgres -m 600 /tmp/pgpass /var/lib/pgcd/pgpass
  rm -f /tmp/pgpass
  echo "primary_conninfo = 'host=$PGCD_PRIMARY port=$PGCD_PRIMARY_PORT user=pgcd_replication application_name=$PGCD_SLOT passfile=/var/lib/pgcd/pgpass $PGCD_TLS_OPTIONS'" >> "$D/postgresql.auto.conf"
fi
if [ -e /var/lib/pgcd/standby-restored ] && [ -s "$D/PG_VERSION" ] && [ -n "${PGCD_PRIMARY:-}" ]; then
  # A standby pgcd restored from a backup (pgbackrest restore --type=standby,
  # standbys_from_backup): it follows the primary through its slot as
  # pg_basebackup -R -S would have it, with the same primary_conninfo.
  install -o postgres -m 600 /var/lib/pgcd/replication.pw /tmp/pw
  printf '*:*:*:pgcd_replication:%s\n' "$(cat /tmp/pw)" > /tmp/pgpass
  rm -f /tmp/pw
  install -o postgres -m 600 /tmp/pgpass /var/lib/pgcd/pgpass
  rm -f /tmp/pgpass
  printf '%s\n' "# pgcd: restored from a backup; streams from the primary through its slot" \
    "primary_conninfo = 'host=$PGCD_PRIMARY port=$PGCD_PRIMARY_PORT user=pgcd_replication application_name=$PGCD_SLOT passfile=/var/lib/pgcd/pgpass $PGCD_TLS_OPTIONS'" \
    "primary_slot_name = '$PGCD_SLOT'" >> "$D/postgresql.auto.conf"
  touch "$D/standby.signal"
  chown postgres:postgres "$D/postgresql.auto.conf" "$D/standby.signal"
  rm -f /var/lib/pgcd/standby-restored
fi
if [ ! -s "$D/PG_VERSION" ]; then
  install -o postgres -m 600 /var/lib/pgcd/superuser.pw /tmp/pw
  setpriv --reuid=postgres --regid=postgres --init-groups initdb -D "$D" -U postgres --pwfile=/tmp/pw -E UTF8 --no-locale --data-checksums --auth-local=trust --auth-host=scram-sha-256 >/var/lib/pgcd/initdb.log 2>&1
  rm -f /tmp/pw
  A=/var/lib/pgcd/auth
  if [ -s "$A/pg_hba.conf" ] && [ -s "$A/pg_ident.conf" ]; then
    # The spec's files, as the planner rendered them: in force from the
    # first start. Used once: later the WriteAuthFiles step keeps them.
    if [ "$PGCD_REPL_HBA" = hostssl ]; then
      cp "$A/pg_hba.conf" "$D/pg_hba.conf"
    else
      cp "$A/pg_hba.without-tls.conf" "$D/pg_hba.conf"
    fi
    cp "$A/pg_ident.conf" "$D/pg_ident.conf"
    rm -rf "$A"
  else
    printf '%s\n' "# pgcd: local connections trust (docker exec); TCP needs a password (scram only)" \
      "local all all trust" \
      "$PGCD_REPL_HBA replication pgcd_replication 0.0.0.0/0 scram-sha-256" \
      "$PGCD_REPL_HBA replication pgcd_replication ::/0 scram-sha-256" \
      "host all all 0.0.0.0/0 scram-sha-256" \
      "host all all ::/0 scram-sha-256" > "$D/pg_hba.conf"
  fi
  printf '%s\n' "$PGCD_CONF" >> "$D/postgresql.auto.conf"
  chown postgres:postgres "$D/pg_hba.conf" "$D/pg_ident.conf" "$D/postgresql.auto.conf"
  chmod 600 "$D/pg_hba.conf" "$D/pg_ident.conf"
fi
# Fencing (see agent::fence): while /var/lib/pgcd/fence exists, this
# instance may run as a primary only until the time it holds (microseconds
# since the epoch); its agent moves it forward at each renewal of the host's
# lease, and writes 0 when another host is the node's primary. A standby
# (standby.signal) is never stopped by it. Builtins only: no process is
# started per check.
FENCE=/var/lib/pgcd/fence
fenced() {
  [ -e "$FENCE" ] && [ ! -e "$D/standby.signal" ] || return 1
  local until=0 now=${EPOCHREALTIME/./}
  read -r until < "$FENCE" 2>/dev/null || until=0
  [ "$now" -ge "${until:-0}" ]
}
rm -f /tmp/pgcd-tick && mkfifo /tmp/pgcd-tick && exec 9<>/tmp/pgcd-tick
tick() { read -r -t "$1" -u 9 _ 2>/dev/null || true; }
if fenced; then
  echo "pgcd: fenced: this primary does not start until its agent renews its host lease, or it is made a standby" >&2
  while fenced; do tick 0.5; done
fi
# shellcheck disable=SC2086 # PGCD_TLS_ARGS is several words
setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$D" -c listen_addresses="$PGCD_LISTEN" -c port="$PGCD_PORT" -c unix_socket_directories=/var/lib/pgcd/run $PGCD_TLS_ARGS &
pg=$!
# Docker's stop signal (SIGINT: fast shutdown) and a reload (SIGHUP) go to
# the server.
trap 'kill -INT "$pg" 2>/dev/null' INT TERM
trap 'kill -HUP "$pg" 2>/dev/null' HUP
while kill -0 "$pg" 2>/dev/null; do
  if fenced; then
    echo "pgcd: fence passed: stopping this primary now (immediate shutdown); its host lease is about to expire or another host is the primary" >&2
    kill -QUIT "$pg" 2>/dev/null
    wait "$pg"
    exit 3
  fi
  if [ -e "$FENCE" ]; then tick 0.1; else tick 1; fi
done
wait "$pg"
"##;

/// Leaves the spec's authentication files in the instance directory
/// (`auth/`, read by [`START_SCRIPT`] after initdb), one line each, as
/// the `WriteAuthFiles` step writes them.
async fn write_initial_auth(dir: &Path, auth: &InitialAuth) -> Result<(), RuntimeError> {
    let at = dir.join("auth");
    tokio::fs::create_dir_all(&at).await.map_err(io(&at))?;
    for (name, lines) in [
        ("pg_hba.conf", &auth.hba),
        ("pg_hba.without-tls.conf", &auth.hba_without_tls),
        ("pg_ident.conf", &auth.ident),
    ] {
        let path = at.join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        tokio::fs::write(&path, text).await.map_err(io(&path))?;
    }
    Ok(())
}

/// Docker answers 304 when a container is already started (or stopped):
/// for pgcd's idempotent steps that is success.
fn already_so(r: Result<(), bollard::errors::Error>) -> Result<(), RuntimeError> {
    match r {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn nano_cpus(cpus: &str) -> Option<i64> {
    let cores = match cpus.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok()? / 1000.0,
        None => cpus.parse::<f64>().ok()?,
    };
    Some((cores * 1e9) as i64)
}

impl Runtime {
    /// Connects to the local Docker daemon (negotiating the API version).
    pub async fn connect(
        host: &HostId,
        advertise: IpAddr,
        data_dir: &Path,
    ) -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()?
            .negotiate_version()
            .await?;
        Ok(Self {
            docker,
            host: host.clone(),
            advertise,
            pki: crate::pki::PkiDir::of_data_dir(data_dir),
            root: data_dir.join("instances"),
        })
    }

    /// The Docker client (for pgBackRest's one-off restore containers and
    /// its streamed commands, which live in `backup`).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The host this runtime serves.
    pub fn host(&self) -> &HostId {
        &self.host
    }

    /// The host's PKI directory (the cluster CA, its certificates).
    pub fn pki(&self) -> &crate::pki::PkiDir {
        &self.pki
    }

    /// The address PostgreSQL listens on.
    pub fn advertise(&self) -> IpAddr {
        self.advertise
    }

    /// The host directory of an instance (its data is `data/` below it).
    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.root.join(format!("{}-{}", id.database, id.node))
    }

    /// Whether the instance's data directory holds a cluster.
    pub fn has_data(&self, id: &InstanceId) -> bool {
        self.instance_dir(id).join("data/PG_VERSION").exists()
    }

    /// The major of the cluster in the instance's data directory
    /// (`PG_VERSION`), when there is one.
    pub async fn data_major(&self, id: &InstanceId) -> Option<u16> {
        let path = self.instance_dir(id).join("data/PG_VERSION");
        tokio::fs::read_to_string(&path)
            .await
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The instance's superuser password (made at creation).
    pub async fn superuser_password(&self, id: &InstanceId) -> Result<String, RuntimeError> {
        let path = self.instance_dir(id).join("superuser.pw");
        tokio::fs::read_to_string(&path)
            .await
            .map(|s| s.trim().to_string())
            .map_err(io(&path))
    }

    /// Docker answers.
    pub async fn ping(&self) -> bool {
        self.docker.ping().await.is_ok()
    }

    /// The containers of this host that pgcd owns.
    pub async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED}=true"),
                format!("{LABEL_HOST}={}", self.host),
            ],
        )]);
        let summaries = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await?;
        let mut out = Vec::new();
        for s in summaries {
            let labels = s.labels.unwrap_or_default();
            let (Some(db), Some(node)) = (labels.get(LABEL_DATABASE), labels.get(LABEL_NODE))
            else {
                continue;
            };
            // A label that is not a valid name was not written by pgcd.
            let (Ok(db), Ok(node)) = (DatabaseName::parse(db), NodeName::parse(node)) else {
                continue;
            };
            let id = InstanceId::new(&db, &node, &self.host);
            if let Some(info) = self.inspect(&id).await? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The container of an instance, when it exists.
    pub async fn inspect(&self, id: &InstanceId) -> Result<Option<ContainerInfo>, RuntimeError> {
        let c = match self
            .docker
            .inspect_container(&id.container(), None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
            return Ok(None); // not ours, whatever its name
        }
        let dir = self.instance_dir(id);
        let mounts = c
            .host_config
            .as_ref()
            .and_then(|h| h.binds.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|b| !b.starts_with(&format!("{}:", dir.display())))
            .collect();
        let image = c
            .config
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let state = c.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let healthy = state.health.and_then(|h| h.status) == Some(HealthStatusEnum::HEALTHY);
        Ok(Some(ContainerInfo {
            id: id.clone(),
            port: labels
                .get(LABEL_PORT)
                .and_then(|p| p.parse().ok())
                .unwrap_or(5432),
            running,
            healthy: running && healthy,
            mounts,
            image,
            image_major: labels.get("pgcd.major").and_then(|m| m.parse().ok()),
        }))
    }

    /// Creates the container (not started). The instance directory and the
    /// superuser password are made when missing; an existing data directory
    /// is used as it is. Creating an existing container is a no-op.
    pub async fn create(&self, id: &InstanceId, spec: &CreateSpec) -> Result<bool, RuntimeError> {
        if self.inspect(id).await?.is_some() {
            return Ok(false);
        }
        if self.docker.inspect_image(&spec.image).await.is_err() {
            return Err(RuntimeError::NoImage {
                image: spec.image.clone(),
                host: self.host.to_string(),
            });
        }
        let dir = self.instance_dir(id);
        tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
        let pw = dir.join("superuser.pw");
        if !pw.exists() {
            use tokio::io::AsyncWriteExt;
            let secret = crate::cluster::identity::random_hex(16);
            let mut f = tokio::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&pw)
                .await
                .map_err(io(&pw))?;
            f.write_all(secret.as_bytes()).await.map_err(io(&pw))?;
        }
        if let Some(src) = &spec.standby {
            use tokio::io::AsyncWriteExt;
            let path = dir.join("replication.pw");
            let mut f = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .await
                .map_err(io(&path))?;
            f.write_all(src.password.as_bytes())
                .await
                .map_err(io(&path))?;
        }
        self.install_tls(&dir)?;
        if let Some(auth) = &spec.auth {
            write_initial_auth(&dir, auth).await?;
        }
        let mut env = vec![
            format!(
                "PGCD_TLS_OPTIONS={}",
                crate::pki::verify_full_options(crate::pki::INSTANCE_CA_FILE)
            ),
            format!("PGCD_LISTEN={}", self.advertise),
            format!("PGCD_PORT={}", spec.port),
            format!("PGCD_CONF={}", spec.conf_lines.join("\n")),
        ];
        if let Some(src) = &spec.standby {
            env.push(format!("PGCD_PRIMARY={}", src.address));
            env.push(format!("PGCD_PRIMARY_PORT={}", src.port));
            env.push(format!("PGCD_SLOT={}", src.slot));
        }
        let labels = HashMap::from([
            (LABEL_MANAGED.to_string(), "true".to_string()),
            (LABEL_DATABASE.to_string(), id.database.to_string()),
            (LABEL_NODE.to_string(), id.node.to_string()),
            (LABEL_HOST.to_string(), id.host.to_string()),
            (LABEL_PORT.to_string(), spec.port.to_string()),
        ]);
        let second = 1_000_000_000;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec![
                "bash".into(),
                "-c".into(),
                format!("{}\n{START_SCRIPT}", super::tls::TLS_SCRIPT),
            ]),
            env: Some(env),
            labels: Some(labels),
            stop_signal: Some("SIGINT".into()), // fast shutdown
            stop_timeout: Some(60),
            healthcheck: Some(HealthConfig {
                test: Some(vec![
                    "CMD".into(),
                    "pg_isready".into(),
                    "-q".into(),
                    "-h".into(),
                    self.advertise.to_string(),
                    "-p".into(),
                    spec.port.to_string(),
                ]),
                interval: Some(second),
                timeout: Some(5 * second),
                retries: Some(3),
                start_period: Some(0),
                start_interval: None,
            }),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                binds: Some(
                    std::iter::once(format!("{}:{MOUNT}", dir.display()))
                        .chain(spec.mounts.iter().cloned())
                        .collect(),
                ),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                shm_size: Some(256 << 20),
                nano_cpus: spec.cpus.as_deref().and_then(nano_cpus),
                memory: spec
                    .memory
                    .as_deref()
                    .and_then(crate::spec::values::memory_bytes)
                    .and_then(|b| i64::try_from(b).ok()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(id.container()),
                    ..Default::default()
                }),
                body,
            )
            .await?;
        Ok(true)
    }

    /// Starts the container (a no-op when it runs).
    pub async fn start(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let r = self
            .docker
            .start_container(&id.container(), None::<StartContainerOptions>)
            .await;
        already_so(r)
    }

    /// Stops the container with a fast shutdown (a no-op when stopped).
    pub async fn stop(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        let r = self
            .docker
            .stop_container(
                &id.container(),
                Some(StopContainerOptions {
                    t: Some(60),
                    ..Default::default()
                }),
            )
            .await;
        already_so(r)
    }

    /// Restarts the container.
    pub async fn restart(&self, id: &InstanceId) -> Result<(), RuntimeError> {
        self.docker
            .restart_container(
                &id.container(),
                Some(RestartContainerOptions {
                    t: Some(60),
                    ..Default::default()
                }),
            )
            .await?;
        Ok(())
    }

    /// Removes the container; the data directory too unless `keep_data`.
    pub async fn remove(&self, id: &InstanceId, keep_data: bool) -> Result<(), RuntimeError> {
        if self.inspect(id).await?.is_some() {
            self.stop(id).await?;
            self.docker
                .remove_container(
                    &id.container(),
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await?;
        }
        if !keep_data {
            // Renamed away first, atomically: the instance's directory is
            // gone at once, and a new instance made meanwhile (the planner
            // seeing the container gone) gets a directory of its own
            // instead of racing the deletion.
            let dir = self.instance_dir(id);
            if dir.exists() {
                let gone = dir.with_extension(format!(
                    "removed-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
                ));
                tokio::fs::rename(&dir, &gone).await.map_err(io(&dir))?;
                tokio::fs::remove_dir_all(&gone).await.map_err(io(&gone))?;
            }
        }
        Ok(())
    }

    /// The last `lines` lines of the server's log (the container's output).
    pub async fn log_tail(&self, id: &InstanceId, lines: usize) -> Result<String, RuntimeError> {
        use futures::StreamExt;
        let mut stream = self.docker.logs(
            &id.container(),
            Some(bollard::query_parameters::LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            out.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
        }
        Ok(out)
    }

    /// Runs `script` with `bash -c` in the instance's container as `postgres`
    /// (environment `env`, `KEY=value`), for at most `timeout`; returns its
    /// exit code and its output (stdout and stderr interleaved).
    pub async fn exec(
        &self,
        id: &InstanceId,
        script: &str,
        env: Vec<String>,
        timeout: Duration,
    ) -> Result<(i64, String), RuntimeError> {
        self.exec_as(id, "postgres", script, env, timeout).await
    }

    /// Runs a bash script in an instance's container as `user`; returns its
    /// exit code and output (stdout and stderr together).
    pub async fn exec_as(
        &self,
        id: &InstanceId,
        user: &str,
        script: &str,
        env: Vec<String>,
        timeout: Duration,
    ) -> Result<(i64, String), RuntimeError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        use futures::StreamExt;
        let exec = self
            .docker
            .create_exec(
                &id.container(),
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(env),
                    cmd: Some(vec!["bash".into(), "-c".into(), script.to_string()]),
                    user: Some(user.into()),
                    ..Default::default()
                },
            )
            .await?;
        let mut out = String::new();
        let collect = async {
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await?
            {
                while let Some(chunk) = output.next().await {
                    out.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
                }
            }
            Ok::<(), bollard::errors::Error>(())
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(RuntimeError::NotReady(format!(
                    "a command in {} did not finish within {}s",
                    id.container(),
                    timeout.as_secs()
                )))
            }
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await?
            .exit_code
            .unwrap_or(-1);
        Ok((code, out))
    }

    /// Waits until Docker's health check passes, or `timeout` passes.
    pub async fn wait_healthy(
        &self,
        id: &InstanceId,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let until = started + timeout;
        loop {
            match self.inspect(id).await? {
                Some(c) if c.healthy => return Ok(()),
                Some(c) if !c.running && started.elapsed() > Duration::from_secs(3) => {
                    let log = tokio::fs::read_to_string(self.instance_dir(id).join("initdb.log"))
                        .await
                        .unwrap_or_default();
                    return Err(RuntimeError::NotReady(format!(
                        "container {} exited{}",
                        id.container(),
                        if log.is_empty() {
                            String::new()
                        } else {
                            format!("; initdb said: {}", log.trim())
                        }
                    )));
                }
                _ => {}
            }
            if Instant::now() >= until {
                return Err(RuntimeError::NotReady(format!(
                    "{} did not answer pg_isready within {}s",
                    id.container(),
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_become_nano_cpus() {
        assert_eq!(nano_cpus("2"), Some(2_000_000_000));
        assert_eq!(nano_cpus("500m"), Some(500_000_000));
        assert_eq!(nano_cpus("x"), None);
    }
}
