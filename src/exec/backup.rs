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
    // (One statement each: ALTER SYSTEM refuses a transaction block.)
    for name in [
        "recovery_target",
        "recovery_target_time",
        "recovery_target_xid",
        "recovery_target_lsn",
        "recovery_target_name",
        "recovery_target_inclusive",
        "recovery_target_action",
    ] {
        pg.batch_execute(&format!("ALTER SYSTEM RESET {name}"))
            .await
            .map_err(super::query_error)?;
    }
    pg.batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(super::query_error)?;
    drop(pg);
    // The targets are read at server start only: restart now, inside the
    // restore, rather than leave a pending restart for the planner.
    rt.restart(id).await?;
    rt.wait_healthy(id, super::READY_TIMEOUT).await?;
    t.log("recovery_target settings reset and the server restarted (restore_command stays for standbys)");
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
    let (sysid, timeline): (String, i32) = (row.get(0), row.get(1));
    tokio::task::spawn_blocking(move || std::fs::remove_file(&mark).map_err(io(&mark)))
        .await
        .map_err(|e| StepError::Arguments(format!("removing {RESTORE_FILE}: {e}")))??;
    t.log(format!(
        "restored and promoted: timeline {timeline}, system identifier {sysid}"
    ));
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
