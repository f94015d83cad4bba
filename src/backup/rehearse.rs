//! Restore rehearsals on a host: a scratch directory
//! (`<data dir>/rehearsals/<db>-<node>`) and a one-off container of the
//! node's image on it, which restores a backup (`pgbackrest restore
//! --type=immediate --set=<label>`: recovery stops where the backup became
//! consistent, then promotes) and then runs PostgreSQL on it with no TCP
//! listener at all (a Unix socket inside the scratch directory, on the
//! node's port number), `archive_mode=off` (the copy must never push WAL
//! into the node's repository) and a `pg_hba.conf` of its own (local trust
//! only). Its `shared_buffers` is 128MB whatever the node's: the copy
//! shares its host with a running instance and needs no cache to be
//! counted (the settings recovery needs at least the source's, such as
//! `max_connections`, stay the source's). The checks run through
//! `docker exec psql`. The container and the
//! directory are removed afterwards, also after a failure.
//!
//! The container carries the host's label but is not labelled as an
//! instance of pgcd's, so the observer ignores it.

use super::{command, conf, io, BackupError};
use crate::plan::backup::{BackupConf, CONF_PATH};
use crate::runtime::docker::Runtime;
use crate::state::rehearsal::DbFigures;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The query measuring one database (see the file's comment).
pub const FIGURES_SQL: &str = include_str!("figures.sql");
/// The databases a rehearsal measures.
pub const DATABASES_SQL: &str =
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1";

/// Runs as root in the scratch container: makes the directories, restores
/// as `postgres` (the restore's argv is the script's arguments), then execs
/// the server on the restored copy.
const SCRIPT: &str = r##"set -eu
S=/var/lib/pgcd
mkdir -p "$S/data" "$S/run" "$S/pgbackrest/log" "$S/pgbackrest/lock" "$S/pgbackrest/spool"
chown -R postgres:postgres "$S"
chmod 700 "$S/data"
echo "pgcd: restoring into the scratch directory"
setpriv --reuid=postgres --regid=postgres --init-groups "$@"
echo "pgcd: restored; starting the copy (no TCP listener, archive_mode off)"
printf '%s\n' "local all all trust" > "$S/hba.conf"
chown postgres:postgres "$S/hba.conf"
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$S/data" \
  -c "listen_addresses=" -c port="$PGCD_PORT" -c unix_socket_directories="$S/run" \
  -c hba_file="$S/hba.conf" -c archive_mode=off -c ssl=off -c hot_standby=on \
  -c shared_buffers=128MB
"##;

/// One rehearsal's scratch instance.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// The container's name.
    pub name: String,
    /// The scratch directory on the host.
    pub dir: PathBuf,
    /// The port number of its Unix socket.
    pub port: u16,
}

impl Scratch {
    /// The scratch instance of `database`/`node` under the agent's data directory.
    pub fn new(data_dir: &Path, database: &str, node: &str, port: u16) -> Self {
        Self {
            name: format!("pgcd-rehearsal-{database}-{node}"),
            dir: data_dir
                .join("rehearsals")
                .join(format!("{database}-{node}")),
            port,
        }
    }
}

/// The restore of a rehearsal: the backup `label` of `repo`, stopping where
/// it became consistent and promoting there, nothing else replayed.
pub fn restore_argv(stanza: &str, repo: u32, label: &str) -> Vec<String> {
    vec![
        "pgbackrest".into(),
        format!("--config={CONF_PATH}"),
        format!("--stanza={stanza}"),
        format!("--repo={repo}"),
        format!("--set={label}"),
        "--type=immediate".into(),
        "--target-action=promote".into(),
        format!(
            "--recovery-option=restore_command={}",
            command::restore_command(stanza, None)
        ),
        "--log-level-console=info".into(),
        "restore".into(),
    ]
}

async fn remove_container(rt: &Runtime, name: &str) -> Result<(), BackupError> {
    let r = rt
        .docker()
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    match r {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(BackupError::Docker(e)),
    }
}

/// Removes the scratch container and directory (what an earlier attempt
/// left, or this one's).
pub async fn remove(rt: &Runtime, s: &Scratch) -> Result<(), BackupError> {
    remove_container(rt, &s.name).await?;
    if tokio::fs::try_exists(&s.dir).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(&s.dir)
            .await
            .map_err(io(&s.dir))?;
    }
    Ok(())
}

/// Writes the configuration into the scratch directory for the cluster
/// `system_identifier` and starts the scratch container, which restores
/// `argv` and then runs the copy. Returns the configuration as it may be
/// logged (secrets masked).
pub async fn start(
    rt: &Runtime,
    s: &Scratch,
    backup: &BackupConf,
    system_identifier: &str,
    image: &str,
    mounts: &[String],
    argv: &[String],
) -> Result<String, BackupError> {
    remove(rt, s).await?;
    let rendered = conf::render(backup, system_identifier, &mut |r| {
        crate::secrets::resolve(r).map_err(|e| e.to_string())
    })?;
    let dir = s.dir.join("pgbackrest");
    tokio::fs::create_dir_all(&dir).await.map_err(io(&dir))?;
    let mut files = vec![("pgbackrest.conf".to_string(), rendered.text.clone())];
    files.extend(rendered.files.iter().cloned());
    for (name, content) in files {
        let p = dir.join(name);
        tokio::fs::write(&p, content).await.map_err(io(&p))?;
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
            .await
            .map_err(io(&p))?;
    }
    let binds: Vec<String> = std::iter::once(format!("{}:/var/lib/pgcd", s.dir.display()))
        .chain(mounts.iter().cloned())
        .collect();
    let cmd: Vec<String> = ["bash", "-c", SCRIPT, "rehearsal"]
        .into_iter()
        .map(String::from)
        .chain(argv.iter().cloned())
        .collect();
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(cmd),
        user: Some("root".into()),
        env: Some(vec![format!("PGCD_PORT={}", s.port)]),
        // The host's label (what a test's or an operator's cleanup filters
        // on), without `io.pgcd.managed`: the observer does not see it.
        labels: Some(std::collections::HashMap::from([
            ("io.pgcd.rehearsal".to_string(), backup.stanza.clone()),
            (
                crate::runtime::docker::LABEL_HOST.to_string(),
                rt.host().to_string(),
            ),
        ])),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            binds: Some(binds),
            ..Default::default()
        }),
        ..Default::default()
    };
    let docker = rt.docker();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(s.name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await?;
    docker
        .start_container(&s.name, None::<StartContainerOptions>)
        .await?;
    Ok(rendered.masked)
}

/// Whether the scratch container still runs; its exit code when not.
pub async fn exited(rt: &Runtime, s: &Scratch) -> Result<Option<i64>, BackupError> {
    let st = rt
        .docker()
        .inspect_container(&s.name, None::<InspectContainerOptions>)
        .await?
        .state
        .unwrap_or_default();
    Ok(match st.running {
        Some(true) => None,
        _ => Some(st.exit_code.unwrap_or(-1)),
    })
}

/// The scratch container's output (the restore's and the server's).
pub async fn output(rt: &Runtime, s: &Scratch, tail: usize) -> String {
    let mut stream = rt.docker().logs(
        &s.name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        }),
    );
    let mut out = String::new();
    while let Some(Ok(chunk)) = stream.next().await {
        out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    out
}

/// A libpq connection string naming `dbname` (quoted as libpq wants).
fn conninfo(dbname: &str, port: u16) -> String {
    let q = dbname.replace('\\', "\\\\").replace('\'', "\\'");
    format!("host=/var/lib/pgcd/run port={port} user=postgres dbname='{q}'")
}

/// Runs `sql` with `psql -At` in the scratch copy's `dbname`; its output.
pub async fn psql(
    rt: &Runtime,
    s: &Scratch,
    dbname: &str,
    sql: &str,
) -> Result<String, BackupError> {
    let argv: Vec<String> = vec![
        "psql".into(),
        "-X".into(),
        "-A".into(),
        "-t".into(),
        "-v".into(),
        "ON_ERROR_STOP=1".into(),
        "-d".into(),
        conninfo(dbname, s.port),
        "-c".into(),
        sql.into(),
    ];
    let docker = rt.docker();
    let exec = docker
        .create_exec(
            &s.name,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(argv),
                user: Some("postgres".into()),
                ..Default::default()
            },
        )
        .await?;
    let mut out = String::new();
    let collect = async {
        if let StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                out.push_str(&String::from_utf8_lossy(&chunk?.into_bytes()));
            }
        }
        Ok::<(), bollard::errors::Error>(())
    };
    let limit = Duration::from_secs(3600);
    match tokio::time::timeout(limit, collect).await {
        Ok(r) => r?,
        Err(_) => return Err(BackupError::Timeout("psql".into(), limit.as_secs())),
    }
    let code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(-1);
    if code != 0 {
        return Err(BackupError::Command {
            command: format!("psql {dbname}"),
            code,
            output: out.trim().to_string(),
        });
    }
    Ok(out.trim().to_string())
}

/// Parses [`FIGURES_SQL`]'s one row as `psql -At` prints it.
pub fn parse_figures(database: &str, out: &str) -> Result<DbFigures, BackupError> {
    let bad = || BackupError::State(format!("database {database}: unexpected figures \"{out}\""));
    let mut f = out.trim().split('|').map(|v| v.parse::<i64>());
    match (f.next(), f.next(), f.next(), f.next()) {
        (Some(Ok(tables)), Some(Ok(rows)), Some(Ok(size)), None) => Ok(DbFigures {
            database: database.to_string(),
            tables,
            rows,
            size,
        }),
        _ => Err(bad()),
    }
}

/// Measures every database of the scratch copy.
pub async fn measure(rt: &Runtime, s: &Scratch) -> Result<Vec<DbFigures>, BackupError> {
    let list = psql(rt, s, "postgres", DATABASES_SQL).await?;
    let mut out = Vec::new();
    for db in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let row = psql(rt, s, db, FIGURES_SQL).await?;
        out.push(parse_figures(db, &row)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_stops_at_the_backups_end_and_names_the_set() {
        let argv = restore_argv("orders-n1", 1, "20260102-030000F");
        for want in [
            "--set=20260102-030000F",
            "--type=immediate",
            "--target-action=promote",
            "--repo=1",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} missing in {argv:?}");
        }
        assert!(!argv.iter().any(|a| a == "--delta"));
        assert_eq!(argv.last().map(String::as_str), Some("restore"));
    }

    #[test]
    fn figures_parse_from_psql_and_names_are_quoted_for_libpq() {
        let f = parse_figures("app", "3|1200|8110591\n").unwrap();
        assert_eq!((f.tables, f.rows, f.size), (3, 1200, 8_110_591));
        assert!(parse_figures("app", "ERROR").is_err());
        assert_eq!(
            conninfo("it's", 5432),
            "host=/var/lib/pgcd/run port=5432 user=postgres dbname='it\\'s'"
        );
    }
}
