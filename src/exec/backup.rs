//! pgBackRest steps: configure an instance (write `pgbackrest.conf`, make
//! the stanza, check archiving), take a backup, restore an instance in
//! place. pgBackRest's own output goes to the task log line by line; the
//! configuration is logged with its secrets masked.

use super::instance::unreachable_action;
use super::{StepError, Target};
use crate::backup::conf::{self, Rendered};
use crate::backup::{
    command, host_dir, io, poll, run, BackupError, RestoreMark, RESTORE_FILE, STATE_FILE,
};
use crate::plan::backup::{BackupConf, RestoreTarget};
use crate::plan::Action;
use crate::spec::backup::{BackupType, RepoType};
use crate::state::{BackupConfActual, EarlierCluster};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `stanza-create` and `check` (check waits for a WAL segment to arrive).
const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
/// A backup or a restore of a large database.
const LONG: Duration = Duration::from_secs(12 * 3600);
/// How long recovery may take to reach the target and promote.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    match &t.step.action {
        Action::ConfigureBackup {
            conf,
            conf_digest,
            primary,
        } => configure(t, conf, conf_digest, *primary).await,
        Action::RunBackup {
            stanza,
            repo,
            backup_type,
            measure,
        } => backup(t, stanza, *repo, *backup_type, *measure).await,
        Action::RestoreInstance {
            stanza,
            repo,
            target,
            system_identifier,
        } => restore(t, stanza, *repo, target, system_identifier.as_deref()).await,
        other => unreachable_action(other),
    }
}

fn logger<'a>(t: &'a Target<'_>) -> impl Fn(&str) + Send + Sync + 'a {
    move |line: &str| t.log(format!("pgbackrest: {line}"))
}

async fn system_identifier(t: &Target<'_>) -> Result<String, StepError> {
    let pg = t.admin().await?;
    let row = pg
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(super::query_error)?;
    Ok(row.get(0))
}

async fn configure(
    t: &Target<'_>,
    conf: &BackupConf,
    digest: &str,
    primary: bool,
) -> Result<(), StepError> {
    let sysid = system_identifier(t).await?;
    let before = poll::written(t.rt, &t.id);
    let rendered = conf::render(conf, &sysid, &mut |s| {
        crate::secrets::resolve(s).map_err(|e| e.to_string())
    })
    .map_err(BackupError::from)?;
    t.log(format!(
        "pgbackrest.conf of stanza {} for system identifier {sysid} (secrets masked):",
        conf.stanza
    ));
    for line in rendered.masked.lines().filter(|l| !l.starts_with('#')) {
        t.log(format!("  {line}"));
    }
    let mut earlier = before
        .as_ref()
        .map(|b| b.earlier.clone())
        .unwrap_or_default();
    if let Some(b) = before
        .as_ref()
        .filter(|b| b.system_identifier.as_deref() != Some(&sysid))
    {
        if let Some(old) = b.system_identifier.clone() {
            t.log(format!(
                "the data is a new cluster (system identifier {old} before): its backups stay at {}; new ones go to {}",
                b.repo_paths.values().cloned().collect::<Vec<_>>().join(", "),
                rendered.repo_paths.values().cloned().collect::<Vec<_>>().join(", ")
            ));
            earlier.retain(|e| e.system_identifier != old);
            earlier.push(EarlierCluster {
                system_identifier: old,
                repo_paths: b.repo_paths.clone(),
            });
        }
    }
    // The node's earlier clusters as its last listing in etcd has them: the
    // instance directory (and its record) may be new, the repository is not.
    let key = crate::cluster::keys::backups(&t.id.database, &t.id.node);
    if let Ok(Some(listed)) = t.ctx.store.get_json::<poll::NodeBackups>(&key).await {
        for c in listed.clusters {
            if c.system_identifier != sysid
                && !c.system_identifier.is_empty()
                && !earlier
                    .iter()
                    .any(|e| e.system_identifier == c.system_identifier)
            {
                earlier.push(EarlierCluster {
                    system_identifier: c.system_identifier,
                    repo_paths: c.repo_paths,
                });
            }
        }
    }
    let dir = host_dir(t.rt, &t.id);
    let data = t.rt.instance_dir(&t.id).join("data");
    let local: Vec<PathBuf> = conf
        .repos
        .iter()
        .filter(|r| matches!(r.repo_type, RepoType::Posix | RepoType::Cifs))
        .filter_map(|r| rendered.repo_paths.get(&r.index).map(PathBuf::from))
        .collect();
    let files = rendered.clone();
    tokio::task::spawn_blocking(move || write_files(&dir, &data, &files, &local))
        .await
        .map_err(|e| StepError::Arguments(format!("writing pgbackrest.conf: {e}")))??;
    let log = logger(t);
    if primary {
        run::exec(
            t.rt,
            &t.id,
            &command::stanza_create(&conf.stanza),
            CHECK_TIMEOUT,
            &log,
        )
        .await?;
        run::exec(
            t.rt,
            &t.id,
            &command::check(&conf.stanza),
            CHECK_TIMEOUT,
            &log,
        )
        .await?;
        t.log(format!("stanza {} exists and archiving works", conf.stanza));
    } else {
        t.log("a standby: the configuration is in place for when it is promoted");
    }
    let state = BackupConfActual {
        stanza: conf.stanza.clone(),
        digest: digest.to_string(),
        system_identifier: Some(sysid),
        checked: primary,
        repo_paths: rendered.repo_paths.clone(),
        earlier,
        at: crate::cluster::now_rfc3339(),
    };
    let path = host_dir(t.rt, &t.id).join(STATE_FILE);
    let json = serde_json::to_vec_pretty(&state).unwrap_or_default();
    // Off the runtime's threads: inside spawn_blocking.
    #[allow(clippy::disallowed_methods)]
    let write = move || std::fs::write(&path, json).map_err(io(&path));
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| StepError::Arguments(format!("writing {STATE_FILE}: {e}")))??;
    Ok(())
}

/// Writes the configuration and its files (0600, owned by the container's
/// `postgres`, whose ids are the data directory's), pgBackRest's own
/// directories, and each local repository's path.
// Called inside spawn_blocking only.
#[allow(clippy::disallowed_methods)]
fn write_files(
    dir: &Path,
    data: &Path,
    rendered: &Rendered,
    repos: &[PathBuf],
) -> Result<(), BackupError> {
    let meta = std::fs::metadata(data).map_err(io(data))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let own = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(io(p));
    for d in [
        dir.to_path_buf(),
        dir.join("log"),
        dir.join("lock"),
        dir.join("spool"),
    ] {
        std::fs::create_dir_all(&d).map_err(io(&d))?;
        own(&d)?;
    }
    let mut files = vec![("pgbackrest.conf".to_string(), rendered.text.clone())];
    files.extend(rendered.files.iter().cloned());
    for (name, content) in files {
        use std::io::Write;
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(content.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        own(&tmp)?;
        let dst = dir.join(&name);
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    }
    for path in repos {
        // The base path is the directory every host mounts; the stanza's
        // part of it belongs to postgres.
        let mut p = path.clone();
        std::fs::create_dir_all(&p).map_err(io(&p))?;
        for _ in 0..2 {
            own(&p)?;
            if !p.pop() {
                break;
            }
        }
    }
    Ok(())
}

async fn backup(
    t: &Target<'_>,
    stanza: &str,
    repo: u32,
    backup_type: BackupType,
    measure: bool,
) -> Result<(), StepError> {
    let log = logger(t);
    let started = Instant::now();
    run::exec(
        t.rt,
        &t.id,
        &command::backup(stanza, repo, backup_type),
        LONG,
        &log,
    )
    .await?;
    t.log(format!(
        "{backup_type} backup of stanza {stanza} to repo{repo} done in {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    // The source's figures right away, before writers move on: what a
    // restore rehearsal of this backup compares its copy with. Stored
    // before the listing that names the backup, so a rehearsal that sees
    // the backup finds its figures.
    let figures = if measure {
        measure_source(t).await
    } else {
        None
    };
    let listed = match poll::list(t.rt, &t.id).await {
        Ok(b) => {
            if let (Some(last), Some(f)) = (b.last_good(), figures) {
                record_figures(t, &last.label, f).await;
            }
            let key = crate::cluster::keys::backups(&t.id.database, &t.id.node);
            t.ctx
                .store
                .put_json(&key, &b)
                .await
                .map(|()| b)
                .map_err(|e| e.to_string())
        }
        // Stores the failure beside the last listing.
        Err(_) => poll::refresh(t.rt, &t.ctx.store, &t.id).await,
    };
    match listed {
        Ok(b) => {
            if let Some(last) = b.last_good() {
                t.log(format!(
                    "newest backup {} ({}, {} bytes, {} in the repository), WAL {} to {}",
                    last.label,
                    last.backup_type,
                    last.size,
                    last.repo_size,
                    last.wal_start.as_deref().unwrap_or("?"),
                    last.wal_stop.as_deref().unwrap_or("?")
                ));
            }
        }
        Err(e) => t.log(format!(
            "listing the backups failed (the backup stands): {e}"
        )),
    }
    Ok(())
}

async fn restore(
    t: &Target<'_>,
    stanza: &str,
    repo: u32,
    target: &RestoreTarget,
    system_identifier: Option<&str>,
) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    let state = poll::written(rt, id).ok_or_else(|| {
        StepError::Refused(format!(
            "pgBackRest is not configured on {}: nothing to restore from",
            id.container()
        ))
    })?;
    // Backups of an earlier cluster of this node are reached through that
    // cluster's repository path.
    let path = match system_identifier {
        Some(s) if state.system_identifier.as_deref() != Some(s) => {
            let earlier = state
                .earlier
                .iter()
                .find(|e| e.system_identifier == s)
                .and_then(|e| e.repo_paths.get(&repo))
                .ok_or_else(|| {
                    StepError::Refused(format!(
                        "no backups of system identifier {s} in repo{repo} are known on {}",
                        id.container()
                    ))
                })?;
            Some((repo, earlier.clone()))
        }
        _ => None,
    };
    let container = rt
        .inspect(id)
        .await?
        .ok_or_else(|| StepError::NoContainer(id.container()))?;
    let mark = host_dir(rt, id).join(RESTORE_FILE);
    let json = serde_json::to_vec(&RestoreMark {
        task: t.ctx.task_id.clone(),
        since: crate::cluster::now_rfc3339(),
    })
    .unwrap_or_default();
    let m = mark.clone();
    // Off the runtime's threads: inside spawn_blocking.
    #[allow(clippy::disallowed_methods)]
    let write = move || std::fs::write(&m, json).map_err(io(&m));
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| StepError::Arguments(format!("writing {RESTORE_FILE}: {e}")))??;
    t.log(format!(
        "{} is restoring: nothing else runs on it until the restore ends",
        id.container()
    ));
    let log = logger(t);
    if container.running {
        // Archive the WAL written so far, so a target up to now is reachable.
        match run::exec(rt, id, &command::check(stanza), CHECK_TIMEOUT, &log).await {
            Ok(_) => t.log("the current WAL is archived"),
            Err(e) => t.log(format!(
                "archiving the current WAL failed ({e}); the restore reaches what the archive holds"
            )),
        }
    }
    rt.stop(id).await?;
    t.log(format!("{} stopped", id.container()));
    let argv = command::restore(stanza, repo, target, path.as_ref());
    t.log(format!("running {}", argv.join(" ")));
    // The instance's own image unless the step names one: the restore's
    // binaries match the server that replays it.
    let image = if t.args.image.is_empty() {
        &container.image
    } else {
        &t.args.image
    };
    run::one_off(rt, id, image, &container.mounts, &argv, LONG, &log).await?;
    rt.start(id).await?;
    t.log(format!(
        "{} started; recovery replays WAL to the target and promotes",
        id.container()
    ));
    let pg = promoted(t).await?;
    // Recovery settings pgBackRest wrote must not reach a standby copied later.
    reset_settings(&pg, RECOVERY_TARGETS).await?;
    pg.batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(super::query_error)?;
    drop(pg);
    // The targets are read at server start only: restart now, inside the
    // restore, rather than leave a pending restart for the planner.
    rt.restart(id).await?;
    rt.wait_healthy(id, super::READY_TIMEOUT).await?;
    t.log("recovery_target settings reset and the server restarted (restore_command stays for standbys)");
    let (sysid, timeline) = identity(t).await?;
    tokio::task::spawn_blocking(move || std::fs::remove_file(&mark).map_err(io(&mark)))
        .await
        .map_err(|e| StepError::Arguments(format!("removing {RESTORE_FILE}: {e}")))??;
    t.log(format!(
        "restored and promoted: timeline {timeline}, system identifier {sysid}"
    ));
    Ok(())
}

/// The instance's system identifier and timeline, as a restore logs them.
async fn identity(t: &Target<'_>) -> Result<(String, i32), StepError> {
    let pg = t.admin().await?;
    let row = pg
        .query_one(
            "SELECT system_identifier::text, \
             ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int \
             FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(super::query_error)?;
    Ok((row.get(0), row.get(1)))
}

/// The recovery target settings pgBackRest writes for a restore.
const RECOVERY_TARGETS: &[&str] = &[
    "recovery_target",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_inclusive",
    "recovery_target_action",
];

/// `ALTER SYSTEM RESET` of each of pgcd's own setting names (constants, not
/// spec input), one statement each: ALTER SYSTEM refuses a transaction block.
async fn reset_settings(pg: &tokio_postgres::Client, names: &[&str]) -> Result<(), StepError> {
    for name in names {
        pg.batch_execute(&format!("ALTER SYSTEM RESET {name}"))
            .await
            .map_err(super::query_error)?;
    }
    Ok(())
}

/// Waits until the restored server accepts connections out of recovery.
async fn promoted(t: &Target<'_>) -> Result<tokio_postgres::Client, StepError> {
    let until = Instant::now() + RECOVERY_TIMEOUT;
    let mut said = false;
    loop {
        let running = t.rt.inspect(&t.id).await?.is_some_and(|c| c.running);
        if !running {
            let tail = t.rt.log_tail(&t.id, 20).await.unwrap_or_default();
            return Err(StepError::Backup(BackupError::State(format!(
                "{} stopped during recovery: {}",
                t.id.container(),
                tail.trim()
            ))));
        }
        if let Ok(pg) = t.admin().await {
            match pg.query_one("SELECT pg_is_in_recovery()", &[]).await {
                Ok(r) if !r.get::<_, bool>(0) => return Ok(pg),
                Ok(_) if !said => {
                    said = true;
                    t.log("in recovery, accepting read-only connections");
                }
                _ => {}
            }
        }
        if Instant::now() >= until {
            return Err(StepError::Backup(BackupError::Timeout(
                format!("recovery of {}", t.id.container()),
                RECOVERY_TIMEOUT.as_secs(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Creates an instance from another cluster's backup (`restore_config`):
/// finds the source's repository path, restores into a directory of its
/// own that becomes the data directory only once pgBackRest succeeded,
/// starts the instance and waits until it is promoted at the target, then
/// makes the copy this database's own: subscriptions of the source's
/// replication dropped without touching the source's slots, the database
/// renamed to the spec's name, the superuser's password this instance's,
/// recovery settings reset. A retry after a restore that completed goes
/// straight to the rest, each part idempotent.
pub(super) async fn create_from_backup(
    t: &Target<'_>,
    spec: &crate::runtime::docker::CreateSpec,
    src: &crate::plan::backup::CloneSource,
) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    let created = rt.create(id, spec).await?;
    t.log(format!(
        "container {} {} (image {}, port {}); its data comes from stanza {} in repository {}",
        id.container(),
        if created { "created" } else { "already exists" },
        spec.image,
        spec.port,
        src.stanza,
        src.repo.id
    ));
    if rt.has_data(id) {
        t.log("the data directory is restored already (an earlier attempt)");
    } else {
        restore_new(t, spec, src).await?;
    }
    rt.start(id).await?;
    t.log(format!(
        "{} started; recovery replays WAL to the target and promotes",
        id.container()
    ));
    let pg = promoted(t).await?;
    make_own(t, &pg, src).await?;
    drop(pg);
    rt.restart(id).await?;
    rt.wait_healthy(id, super::READY_TIMEOUT).await?;
    let (sysid, timeline) = identity(t).await?;
    t.log(format!(
        "created from a backup of {}: timeline {timeline}, system identifier {sysid} (the source's; its own stanza keeps its backups apart)",
        src.stanza
    ));
    Ok(())
}

/// The source's system identifier whose backups are restored: from the
/// source node's backup listing in etcd (the cluster holding the named
/// set, else its current one), else, for a posix repository, the one
/// system identifier under the stanza's directory.
async fn source_cluster(
    t: &Target<'_>,
    src: &crate::plan::backup::CloneSource,
) -> Result<String, StepError> {
    let key = crate::cluster::keys::backups(&src.source_database, &src.source_node);
    if let Ok(Some(listed)) = t.ctx.store.get_json::<poll::NodeBackups>(&key).await {
        let by_set = src.target.set.as_ref().and_then(|set| {
            listed
                .backups
                .iter()
                .find(|b| &b.label == set)
                .and_then(|b| b.system_identifier.clone())
        });
        let current = listed.system_identifier.clone().or_else(|| {
            listed
                .clusters
                .iter()
                .find(|c| c.current)
                .map(|c| c.system_identifier.clone())
        });
        if let Some(s) = by_set.or(current).filter(|s| !s.is_empty()) {
            t.log(format!(
                "the backups of {}/{} are listed in this cluster: system identifier {s}",
                src.source_database, src.source_node
            ));
            return Ok(s);
        }
    }
    let refused = |why: String| {
        StepError::Refused(format!(
            "restore_config: cannot find the backups of stanza {} in repository {}: {why}",
            src.stanza, src.repo.id
        ))
    };
    let (RepoType::Posix, Some(base)) = (src.repo.repo_type, src.repo.base_path.as_deref()) else {
        return Err(refused(format!(
            "{}/{} has no backup listing in this cluster, and only a posix repository can be searched",
            src.source_database, src.source_node
        )));
    };
    let dir = Path::new(base).join(&src.stanza);
    let d = dir.clone();
    // Off the runtime's threads: inside spawn_blocking.
    #[allow(clippy::disallowed_methods)]
    let list = move || -> Result<Vec<String>, std::io::Error> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&d)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    };
    let ids = tokio::task::spawn_blocking(list)
        .await
        .map_err(|e| StepError::Arguments(format!("listing {}: {e}", dir.display())))?
        .map_err(|e| refused(format!("{}: {e}", dir.display())))?;
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(refused(format!("{} holds no cluster's backups", dir.display()))),
        many => Err(refused(format!(
            "{} holds the backups of several clusters ({}); name the backup with restore_options.set",
            dir.display(),
            many.join(", ")
        ))),
    }
}

/// Restores the source's backup into [`command::RESTORING_PATH`] and makes
/// The one-off container's command of a restore into
/// [`command::RESTORING_PATH`]: as root, makes the directories postgres
/// restores into (empty), gives them to it, then runs `argv` as postgres.
pub(super) fn restore_as_postgres(argv: Vec<String>) -> Vec<String> {
    let mut script = vec![
        "sh".to_string(),
        "-c".into(),
        format!(
            "set -eu; D={restoring}; rm -rf \"$D\"; mkdir -p \"$D\" {dir}/log {dir}/lock {dir}/spool; \
             chown postgres:postgres /var/lib/pgcd \"$D\"; chown -R postgres:postgres {dir}; chmod 700 \"$D\"; \
             exec setpriv --reuid=postgres --regid=postgres --init-groups \"$@\"",
            restoring = command::RESTORING_PATH,
            dir = crate::plan::backup::CONTAINER_DIR,
        ),
        "sh".into(),
    ];
    script.extend(argv);
    script
}

/// Logs `rendered` (masked, without comments), then writes it as `name`
/// with its further files into `dir` (the instance's pgBackRest
/// directory), each mode 0600 and new, off the runtime's threads: the
/// configuration of a one-off container, which gives the files to
/// postgres itself.
pub(super) async fn write_conf(
    t: &Target<'_>,
    dir: PathBuf,
    rendered: &Rendered,
    name: &str,
) -> Result<(), StepError> {
    for line in rendered.masked.lines().filter(|l| !l.starts_with('#')) {
        t.log(format!("  {line}"));
    }
    let mut all = vec![(name.to_string(), rendered.text.clone())];
    all.extend(rendered.files.iter().cloned());
    #[allow(clippy::disallowed_methods)]
    let write = move || -> Result<(), BackupError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for (name, content) in all {
            let path = dir.join(&name);
            let _ = std::fs::remove_file(&path);
            std::fs::OpenOptions::new()
                .create_new(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, content.as_bytes()))
                .map_err(io(&path))?;
        }
        Ok(())
    };
    let what = name.to_string();
    tokio::task::spawn_blocking(write)
        .await
        .map_err(|e| StepError::Arguments(format!("writing {what}: {e}")))??;
    Ok(())
}

/// it the data directory.
async fn restore_new(
    t: &Target<'_>,
    spec: &crate::runtime::docker::CreateSpec,
    src: &crate::plan::backup::CloneSource,
) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    let sysid = source_cluster(t, src).await?;
    let source = BackupConf {
        stanza: src.stanza.clone(),
        port: spec.port,
        repos: vec![src.repo.clone()],
    };
    let rendered = conf::render(&source, &sysid, &mut |s| {
        crate::secrets::resolve(s).map_err(|e| e.to_string())
    })
    .map_err(BackupError::from)?;
    t.log(format!(
        "pgbackrest configuration of the source, stanza {} (secrets masked):",
        src.stanza
    ));
    write_conf(t, host_dir(rt, id), &rendered, "source.conf").await?;
    let argv = command::restore_new(&src.stanza, &src.target);
    t.log(format!("running {}", argv.join(" ")));
    let script = restore_as_postgres(argv);
    let mut mounts = spec.mounts.clone();
    mounts.extend(src.mounts.iter().cloned());
    mounts.sort();
    mounts.dedup();
    let log = logger(t);
    run::one_off_as(rt, id, &spec.image, &mounts, &script, "root", LONG, &log).await?;
    // No logical replication worker may start before the source's
    // subscriptions are dropped: they would consume the source's slots.
    let instance = rt.instance_dir(id);
    #[allow(clippy::disallowed_methods)] // inside spawn_blocking
    let promote = move || -> Result<(), BackupError> {
        let restoring = instance.join("data.restoring");
        let auto = restoring.join("postgresql.auto.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&auto)
            .map_err(io(&auto))?;
        std::io::Write::write_all(
            &mut f,
            b"# pgcd: until the copy is this database's own (no worker on the source's slots,\n# no commit waiting for the source's synchronous standbys)\nmax_logical_replication_workers = 0\nsynchronous_standby_names = ''\n",
        )
        .map_err(io(&auto))?;
        let data = instance.join("data");
        std::fs::rename(&restoring, &data).map_err(io(&data))
    };
    tokio::task::spawn_blocking(promote)
        .await
        .map_err(|e| StepError::Arguments(format!("moving the restored data in place: {e}")))??;
    t.log("restored; the data directory is in place");
    Ok(())
}

/// Makes a restored copy this database's own (see [`create_from_backup`]).
async fn make_own(
    t: &Target<'_>,
    pg: &tokio_postgres::Client,
    src: &crate::plan::backup::CloneSource,
) -> Result<(), StepError> {
    use crate::postgres::sql;
    let ctx = t.ctx;
    let want = t.step.database.as_str();
    // The source's subscriptions, in every database they live in.
    let subs = pg
        .query(
            "SELECT s.subname::text, d.datname::text FROM pg_subscription s \
             JOIN pg_database d ON d.oid = s.subdbid ORDER BY 2, 1",
            &[],
        )
        .await
        .map_err(super::query_error)?;
    for row in subs {
        let (name, dbname): (String, String) = (row.get(0), row.get(1));
        let c = t.connect(&dbname).await?;
        let mut stmts = sql::detach_subscription(&name)?;
        stmts.push(sql::drop_subscription(&name)?);
        super::support::run_sql(&c, ctx, &stmts).await?;
    }
    let has = |n: &str| {
        let n = n.to_string();
        async move {
            super::support::exists(pg, "SELECT 1 FROM pg_database WHERE datname = $1", &n).await
        }
    };
    if src.database != want && !has(want).await? {
        if !has(&src.database).await? {
            return Err(StepError::Refused(format!(
                "the backup of stanza {} holds no database {:?}: set restore_config.source_database_name",
                src.stanza, src.database
            )));
        }
        super::support::run_sql(pg, ctx, &[sql::rename_database(&src.database, want)?]).await?;
    }
    let password = t.rt.superuser_password(&t.id).await?;
    super::support::run_sql(pg, ctx, &[sql::set_password("postgres", &password)?]).await?;
    reset_settings(pg, RECOVERY_TARGETS).await?;
    reset_settings(
        pg,
        &[
            "restore_command",
            "max_logical_replication_workers",
            "synchronous_standby_names",
        ],
    )
    .await?;
    t.log("the copy is this database's own: the source's subscriptions dropped (their slots untouched), superuser password set, recovery settings reset; restarting");
    Ok(())
}

/// What each database of the instance holds now: for a backup that just
/// ended, what a restore of it must bring back (a database written in the
/// second between the backup's end and this measure shows a difference).
async fn measure_source(t: &Target<'_>) -> Option<crate::state::rehearsal::BackupFigures> {
    use crate::backup::rehearse::{DATABASES_SQL, FIGURES_SQL};
    let at = crate::cluster::now_rfc3339();
    let measured = async {
        let pg = t.admin().await?;
        let lsn: String = pg
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(super::query_error)?
            .get(0);
        let names: Vec<String> = pg
            .query(DATABASES_SQL, &[])
            .await
            .map_err(super::query_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut databases = Vec::new();
        for name in names {
            let c = t.connect(&name).await?;
            let row = c
                .query_one(FIGURES_SQL, &[])
                .await
                .map_err(super::query_error)?;
            databases.push(crate::state::rehearsal::DbFigures {
                database: name,
                tables: row.get(0),
                rows: row.get(1),
                size: row.get(2),
            });
        }
        Ok::<_, StepError>(crate::state::rehearsal::BackupFigures {
            label: String::new(),
            at,
            lsn,
            databases,
        })
    };
    match measured.await {
        Ok(f) => Some(f),
        Err(e) => {
            t.log(format!(
                "measuring the databases for restore rehearsals failed (the backup stands): {e}"
            ));
            None
        }
    }
}

/// Stores a backup's source figures under its label.
async fn record_figures(
    t: &Target<'_>,
    label: &str,
    mut f: crate::state::rehearsal::BackupFigures,
) {
    let key = crate::cluster::keys::backup_figures(&t.id.database, &t.id.node);
    f.label = label.to_string();
    let summary: Vec<String> = f
        .databases
        .iter()
        .map(|d| format!("{} {} row(s) {} bytes", d.database, d.rows, d.size))
        .collect();
    let mut all: crate::state::rehearsal::NodeFigures = t
        .ctx
        .store
        .get_json(&key)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    all.add(f);
    match t.ctx.store.put_json(&key, &all).await {
        Ok(()) => t.log(format!(
            "source figures of backup {label} recorded for restore rehearsals: {}",
            summary.join(", ")
        )),
        Err(e) => t.log(format!("recording the source figures failed: {e}")),
    }
}
