//! A new standby restored from a backup (`standbys_from_backup`): the
//! node's newest backup of its primary's cluster is restored with
//! `pgbackrest restore --type=standby` in a one-off container, through the
//! node's own configuration (the primary's system identifier names the
//! repository path), before the standby's first start; that start then
//! follows the primary through its slot (see
//! [`crate::runtime::docker::RESTORED_STANDBY_MARK`]).

use super::{StepError, Target};
use crate::backup::conf;
use crate::backup::{command, host_dir, io, run, BackupError};
use crate::plan::standby_backup::StandbyBackup;
use crate::runtime::docker::{CreateSpec, RESTORED_STANDBY_MARK};
use std::time::Duration;

/// A restore of a large database.
const LONG: Duration = Duration::from_secs(12 * 3600);

/// Restores `b` into the standby's (created, not started) instance
/// directory, unless an earlier attempt did.
pub(super) async fn restore(
    t: &Target<'_>,
    spec: &CreateSpec,
    b: &StandbyBackup,
) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    if rt.has_data(id) {
        t.log("the data directory is there already (an earlier attempt restored it)");
        return Ok(());
    }
    let rendered = conf::render(&b.conf, &b.system_identifier, &mut |s| {
        crate::secrets::resolve(s).map_err(|e| e.to_string())
    })
    .map_err(BackupError::from)?;
    t.log(format!(
        "pgbackrest.conf of stanza {} for the primary's system identifier {} (secrets masked):",
        b.conf.stanza, b.system_identifier
    ));
    super::backup::write_conf(t, host_dir(rt, id), &rendered, "pgbackrest.conf").await?;
    let argv = command::restore_standby(&b.conf.stanza, b.repo, &b.label);
    t.log(format!(
        "restoring backup {} of repository {} (repo{}): {}",
        b.label,
        b.repo_id,
        b.repo,
        argv.join(" ")
    ));
    let script = super::backup::restore_as_postgres(argv);
    let log = |line: &str| t.log(format!("pgbackrest: {line}"));
    run::one_off_as(
        rt,
        id,
        &spec.image,
        &spec.mounts,
        &script,
        "root",
        LONG,
        &log,
    )
    .await?;
    let instance = rt.instance_dir(id);
    // Inside spawn_blocking. The mark first: data in place always follows.
    #[allow(clippy::disallowed_methods)]
    let place = move || -> Result<(), BackupError> {
        let mark = instance.join(RESTORED_STANDBY_MARK);
        std::fs::write(&mark, b"").map_err(io(&mark))?;
        let restoring = instance.join("data.restoring");
        let data = instance.join("data");
        std::fs::rename(&restoring, &data).map_err(io(&data))
    };
    tokio::task::spawn_blocking(place)
        .await
        .map_err(|e| StepError::Arguments(format!("moving the restored data in place: {e}")))??;
    t.log(format!(
        "restored from backup {} (pgbackrest restore --type=standby); its first start fetches archived WAL, then streams from the primary",
        b.label
    ));
    Ok(())
}
