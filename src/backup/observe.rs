//! What the observer reads of an instance's backups: the files pgcd keeps
//! beside its `pgbackrest.conf` (what was written, a restore under way),
//! the container's mounts, and from the server its system identifier and
//! `pg_stat_archiver`.

use super::{host_dir, RESTORE_FILE, STATE_FILE};
use crate::runtime::docker::{ContainerInfo, Runtime};
use crate::state::{ArchiverActual, BackupConfActual, InstanceBackup};
use tokio_postgres::Client;

/// The part read from the host: mounts, the last configuration written, a
/// restore under way. Small local files, read in place like the observer's
/// other checks of the instance directory.
// A few hundred bytes from the local instance directory, like the observer's other checks of it.
#[allow(clippy::disallowed_methods)]
pub fn local(rt: &Runtime, c: &ContainerInfo) -> InstanceBackup {
    let dir = host_dir(rt, &c.id);
    let conf = std::fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<BackupConfActual>(&b).ok());
    InstanceBackup {
        system_identifier: None,
        mounts: c.mounts.clone(),
        conf,
        restoring: dir.join(RESTORE_FILE).exists(),
        archiver: None,
    }
}

/// The part read from the running server.
pub async fn server(pg: &Client, out: &mut InstanceBackup) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    let row = pg
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(err)?;
    out.system_identifier = row.get(0);
    let a = pg
        .query_one(
            "SELECT archived_count, last_archived_wal, \
             to_char(last_archived_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             failed_count, last_failed_wal, \
             to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM pg_stat_archiver",
            &[],
        )
        .await
        .map_err(err)?;
    out.archiver = Some(ArchiverActual {
        archived_count: a.get(0),
        last_archived_wal: a.get(1),
        last_archived_time: a.get(2),
        failed_count: a.get(3),
        last_failed_wal: a.get(4),
        last_failed_time: a.get(5),
    });
    Ok(())
}
