//! Observing: each agent reads its instances' real state (container, server,
//! settings, roles, the database, extensions) and reports it to etcd under
//! `observed/<host>`, on an interval and after every step it runs. The
//! leader assembles `Actual` from these records.

mod replication;

pub use replication::last_worker_error;

use super::docker::{ContainerInfo, Runtime, RuntimeError};
use crate::cluster::store::{full_key, Store};
use crate::state::actual::{
    AuthActual, ExtActual, InstanceActual, InstanceRole, ReplicaActual, RoleActual, WalActual,
    ROLE_FLAGS,
};
use crate::state::observed::{host_key, instance_key, HostObservation};
use crate::state::InstanceId;
use etcd_client::{Txn, TxnOp};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Counts the tables of the connected database that hold its own data:
/// not the catalogs', not pgcd's, and not those an extension made (PostGIS's
/// `spatial_ref_sys`, pg_cron's `cron.job`), which every node has alike.
pub(crate) const OWN_TABLES: &str = "SELECT count(*) FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgcd') \
     AND n.nspname !~ '^pg_(toast|temp)' \
     AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
                     AND d.objid = c.oid AND d.deptype = 'e')";

/// What one observation of the host found.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Docker answered.
    pub docker: bool,
    /// Its instances.
    pub instances: Vec<InstanceActual>,
}

/// Connects to an instance as its superuser.
pub async fn connect(
    rt: &Runtime,
    id: &InstanceId,
    port: u16,
    dbname: &str,
) -> Result<Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    let socket = super::docker::socket_dir(&rt.instance_dir(id));
    let socket_file = socket.join(format!(".s.PGSQL.{port}"));
    // Unix socket paths are limited to 107 bytes; a longer one goes over TCP.
    if socket_file.exists() && socket_file.as_os_str().len() < 100 {
        cfg.host_path(&socket);
    } else {
        let password = rt.superuser_password(id).await.map_err(|e| e.to_string())?;
        cfg.host(rt.advertise().to_string()).password(password);
    }
    cfg.port(port)
        .user(crate::plan::SUPERUSER)
        .dbname(dbname)
        .application_name("pgcd")
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to {}: {e}", id.container()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// Reads one instance; a server that does not answer is reported as not
/// running (with no catalog).
pub async fn instance(rt: &Runtime, c: &ContainerInfo) -> InstanceActual {
    let mut out = InstanceActual {
        database: c.id.database.clone(),
        node: c.id.node.clone(),
        host: c.id.host.clone(),
        container_exists: true,
        running: false,
        version: None,
        port: c.port,
        role: InstanceRole::Unknown,
        settings: Default::default(),
        pending_restart: Vec::new(),
        database_exists: false,
        owner: None,
        roles: Vec::new(),
        extensions: Vec::new(),
        available_extensions: Vec::new(),
        available_versions: Default::default(),
        data_dir_exists: rt.has_data(&c.id),
        data_major: rt.data_major(&c.id).await,
        image_major: c.image_major,
        slots: Vec::new(),
        replicas: Vec::new(),
        publications: Vec::new(),
        subscriptions: Vec::new(),
        unaligned_sequences: Vec::new(),
        autoddl: false,
        ddl_rows: None,
        ddl_failures: Vec::new(),
        wal: None,
        standby_signal: tokio::fs::try_exists(rt.instance_dir(&c.id).join("data/standby.signal"))
            .await
            .unwrap_or(false),
        tables: 0,
        post_init_ran: false,
        backup: crate::backup::observe::local(rt, c),
        auth: None,
    };
    if !c.running {
        return out;
    }
    match catalog(rt, c, &mut out).await {
        Ok(()) => out.running = true,
        Err(e) => {
            tracing::debug!(instance = %c.id.container(), error = %e, "instance not answering")
        }
    }
    out
}

async fn catalog(rt: &Runtime, c: &ContainerInfo, out: &mut InstanceActual) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    let pg = connect(rt, &c.id, c.port, "postgres").await?;
    let row = pg
        .query_one(
            "SELECT current_setting('server_version'), pg_is_in_recovery()",
            &[],
        )
        .await
        .map_err(err)?;
    out.version = Some(
        row.get::<_, String>(0)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    );
    out.role = if row.get::<_, bool>(1) {
        InstanceRole::Standby
    } else {
        InstanceRole::Primary
    };
    // Settings set anywhere but PostgreSQL's defaults and pgcd's own command line.
    for r in pg
        .query(
            "SELECT name, current_setting(name), pending_restart FROM pg_settings \
             WHERE source NOT IN ('default', 'override', 'command line', 'environment variable', 'client') \
             OR pending_restart",
            &[],
        )
        .await
        .map_err(err)?
    {
        let name: String = r.get(0);
        if r.get::<_, bool>(2) {
            out.pending_restart.push(name.clone());
        }
        out.settings.insert(name, r.get(1));
    }
    let roles = pg
        .query(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolcanlogin, \
             rolreplication, rolbypassrls, \
             ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                   WHERE m.member = r.oid ORDER BY 1) \
             FROM pg_roles r WHERE rolname !~ '^pg_' ORDER BY rolname",
            &[],
        )
        .await
        .map_err(err)?;
    for r in roles {
        let attributes = ROLE_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| r.get::<_, bool>(i + 1))
            .map(|(_, f)| f.to_string())
            .collect();
        out.roles.push(RoleActual {
            name: r.get(0),
            attributes,
            member_of: r.get(8),
        });
    }
    let auth = pg
        .query_one(
            "SELECT current_setting('ssl') = 'on', pg_read_file(current_setting('hba_file')), \
             pg_read_file(current_setting('ident_file'))",
            &[],
        )
        .await
        .map_err(err)?;
    let lines =
        |i: usize| -> Vec<String> { auth.get::<_, String>(i).lines().map(String::from).collect() };
    out.auth = Some(AuthActual {
        tls: auth.get(0),
        hba: lines(1),
        ident: lines(2),
    });
    crate::backup::observe::server(&pg, &mut out.backup).await?;
    out.slots = texts(
        &pg,
        "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
    )
    .await?;
    if out.role == InstanceRole::Primary {
        out.replicas = pg
            .query(
                "SELECT application_name, state, \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, \
                 extract(epoch FROM replay_lag)::float8, sync_state, \
                 pg_wal_lsn_diff(flush_lsn, '0/0')::bigint \
                 FROM pg_stat_replication ORDER BY 1",
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| ReplicaActual {
                name: r.get(0),
                state: r.get(1),
                lag_bytes: r.get(2),
                lag_seconds: r.get(3),
                sync_state: r.get(4),
                flush_lsn: r.get(5),
            })
            .collect();
    }
    out.wal = Some(wal(&pg, out.role).await.map_err(err)?);
    out.post_init_ran = scripts_ran(&pg, crate::postgres::scripts::POST_INIT)
        .await
        .map_err(err)?;
    out.available_extensions = texts(
        &pg,
        "SELECT name FROM pg_available_extensions ORDER BY name",
    )
    .await?;
    out.available_versions = pg
        .query(
            "SELECT name::text, default_version FROM pg_available_extensions WHERE default_version IS NOT NULL",
            &[],
        )
        .await
        .map_err(err)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let owner = pg
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&c.id.database.as_str()],
        )
        .await
        .map_err(err)?;
    if let Some(owner) = owner {
        out.database_exists = true;
        out.owner = Some(owner.get(0));
        let db = connect(rt, &c.id, c.port, &c.id.database).await?;
        replication::read(rt, c, &db, out).await?;
        out.tables = db.query_one(OWN_TABLES, &[]).await.map_err(err)?.get(0);
        out.unaligned_sequences = db
            .query(
                "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences \
                 WHERE increment_by <> $1 AND schemaname <> 'pgcd' ORDER BY 1",
                &[&crate::state::names::SEQUENCE_STRIDE],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        out.extensions = db
            .query(
                "SELECT extname::text, extversion FROM pg_extension ORDER BY 1",
                &[],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| ExtActual {
                name: r.get(0),
                version: r.get(1),
            })
            .collect();
    }
    Ok(())
}

/// Whether the scripts list `script` ran in the database of `c` (its record
/// in `pgcd.scripts`).
async fn scripts_ran(c: &Client, script: &str) -> Result<bool, tokio_postgres::Error> {
    use crate::postgres::scripts::{RAN, TABLE_EXISTS};
    if !c.query_one(TABLE_EXISTS, &[]).await?.get::<_, bool>(0) {
        return Ok(false);
    }
    Ok(c.query_opt(RAN, &[&script]).await?.is_some())
}

/// Where the server is in the WAL (what failover compares).
async fn wal(pg: &Client, role: InstanceRole) -> Result<WalActual, tokio_postgres::Error> {
    if role == InstanceRole::Primary {
        let r = pg
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')::bigint, \
                 (SELECT timeline_id FROM pg_control_checkpoint())::bigint",
                &[],
            )
            .await?;
        return Ok(WalActual {
            lsn: r.get(0),
            timeline: r.get(1),
            ..Default::default()
        });
    }
    let r = pg
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, \
             pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, \
             coalesce((SELECT received_tli FROM pg_stat_wal_receiver)::bigint, \
                      (SELECT timeline_id FROM pg_control_checkpoint())::bigint), \
             coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false), \
             (SELECT sender_host FROM pg_stat_wal_receiver), \
             current_setting('primary_conninfo')",
            &[],
        )
        .await?;
    Ok(WalActual {
        lsn: r.get(0),
        replay: r.get(1),
        timeline: r.get(2),
        receiving: r.get(3),
        upstream: r
            .get::<_, Option<String>>(4)
            .or_else(|| conninfo_host(&r.get::<_, String>(5))),
    })
}

/// The `host` of a libpq `key=value` connection string.
fn conninfo_host(conninfo: &str) -> Option<String> {
    conninfo
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .map(|h| h.trim_matches('\'').to_string())
}

/// A record as JSON bytes; plain records always serialise.
fn bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The first column of every row of `sql` (text).
pub(super) async fn texts(c: &Client, sql: &str) -> Result<Vec<String>, String> {
    Ok(c.query(sql, &[])
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Observes a host and writes its records; one at a time, so a later
/// write always carries a later observation. Only records that changed are
/// written (and those of instances gone are deleted): an idle host writes
/// nothing.
#[derive(Clone)]
pub struct Observer {
    rt: Runtime,
    written: Arc<Mutex<Written>>,
}

/// The records this observer has in etcd, as last written.
#[derive(Default)]
struct Written {
    /// Read from etcd once (a previous run's records) before the first write.
    loaded: bool,
    values: BTreeMap<String, Vec<u8>>,
}

/// Writes per transaction (etcd allows 128).
const TXN_OPS: usize = 64;

impl Observer {
    /// Makes the observer of this host.
    pub fn new(rt: Runtime) -> Self {
        Self {
            rt,
            written: Arc::new(Mutex::new(Written::default())),
        }
    }

    /// The runtime it observes.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Observes every instance of the host and stores what changed;
    /// returns how many records were written or deleted.
    pub async fn report(&self, store: &Store) -> Result<usize, String> {
        let mut written = self.written.lock().await;
        let obs = self.observe().await;
        let host = self.rt.host();
        if !written.loaded {
            let (entries, _) = store
                .get_prefix_paged(&format!("{}/", host_key(host)), 0)
                .await
                .map_err(|e| format!("reading this host's observations: {e}"))?;
            written.values = entries.into_iter().map(|e| (e.key, e.value)).collect();
            if let Some(e) = store
                .get(&host_key(host))
                .await
                .map_err(|e| format!("reading this host's observation: {e}"))?
            {
                written.values.insert(e.key, e.value);
            }
            written.loaded = true;
        }
        let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let record = HostObservation {
            host: host.to_string(),
            docker: obs.docker,
        };
        want.insert(host_key(host), bytes(&record));
        for i in &obs.instances {
            want.insert(instance_key(i), bytes(i));
        }
        let mut ops = Vec::new();
        for (k, v) in &want {
            if written.values.get(k) != Some(v) {
                ops.push(TxnOp::put(full_key(k), v.clone(), None));
            }
        }
        for k in written.values.keys().filter(|k| !want.contains_key(*k)) {
            ops.push(TxnOp::delete(full_key(k), None));
        }
        let n = ops.len();
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(TXN_OPS));
            let batch = std::mem::replace(&mut ops, rest);
            store
                .txn(Txn::new().and_then(batch))
                .await
                .map_err(|e| format!("storing the observation: {e}"))?;
        }
        written.values = want;
        Ok(n)
    }

    async fn observe(&self) -> Observation {
        let containers: Result<Vec<ContainerInfo>, RuntimeError> = self.rt.list().await;
        let (docker, containers) = match containers {
            Ok(c) => (true, c),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list containers");
                (false, Vec::new())
            }
        };
        let instances =
            futures::future::join_all(containers.iter().map(|c| instance(&self.rt, c))).await;
        Observation { docker, instances }
    }

    /// Reports every `interval` until `cancel`, and at once when a host
    /// is lost or a node's primary changes: a failover compares the
    /// standbys' positions, which must be fresh.
    pub async fn run(self, store: Store, interval: Duration, cancel: CancellationToken) {
        use crate::cluster::keys;
        use crate::cluster::reflector::{self, Change, Update};
        let mut events = reflector::spawn_many(
            store.clone(),
            &[keys::HOSTS, keys::PRIMARIES],
            &[],
            cancel.clone(),
        );
        let mut watching = true;
        loop {
            if let Err(e) = self.report(&store).await {
                tracing::warn!(error = %e, "observation not stored");
            }
            let sleep = tokio::time::sleep(interval);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = &mut sleep => break,
                    u = events.recv(), if watching => match u {
                        Some(Update::Changes { changes, .. }) => {
                            let urgent = changes.iter().any(|c| match c {
                                Change::Delete(k) => k.starts_with(keys::HOSTS),
                                Change::Put(e) => e.key.starts_with(keys::PRIMARIES),
                            });
                            if urgent {
                                break;
                            }
                        }
                        Some(Update::Reset { .. }) => {}
                        None => watching = false,
                    },
                }
            }
        }
    }
}

/// The observation loop as a service of every agent.
pub struct ObserveLoop {
    observer: Observer,
    interval: Duration,
}

impl ObserveLoop {
    /// Observes with `observer` every `interval`.
    pub fn new(observer: Observer, interval: Duration) -> Self {
        Self { observer, interval }
    }
}

impl crate::cluster::services::HostService for ObserveLoop {
    fn name(&self) -> &'static str {
        "observer"
    }

    fn run(
        &self,
        store: Store,
        cancel: CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()> {
        use futures::FutureExt;
        self.observer
            .clone()
            .run(store, self.interval, cancel)
            .boxed()
    }
}
