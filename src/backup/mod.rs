//! pgBackRest: each instance's `pgbackrest.conf` (rendered from the plan's
//! [`BackupConf`], secrets resolved on the host), the command lines pgcd
//! runs, the parsing of `pgbackrest info`, running pgBackRest inside an
//! instance's container or, for a restore, in a one-off container on its
//! data directory, and the periodic listing of each node's backups into
//! etcd (`backups/<db>/<node>`).
//!
//! What to do is the planner's (`plan::backup`); this module carries it out
//! and reports. Files it keeps per instance live in the instance directory
//! under `pgbackrest/`: the configuration (0600, owned by the container's
//! `postgres`), pgBackRest's log, lock and spool directories, `pgcd.json`
//! (what was written, for the observer) and `restore.json` while a restore
//! runs.

pub mod command;
pub mod conf;
pub mod info;
pub mod observe;
pub mod poll;
pub mod rehearse;
pub mod run;

pub use crate::plan::backup::{BackupConf, RestoreTarget};

use crate::runtime::docker::{Runtime, RuntimeError};
use crate::state::InstanceId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a pgBackRest action failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The configuration cannot be rendered.
    #[error(transparent)]
    Conf(#[from] conf::ConfError),
    /// Docker or the instance directory.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Docker refused a request.
    #[error("docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A file of the instance directory or a repository.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        error: std::io::Error,
    },
    /// pgBackRest exited with an error.
    #[error("{command} exited with {code}: {output}")]
    Command {
        /// The command (`pgbackrest ... check`).
        command: String,
        /// Its exit code.
        code: i64,
        /// Its last lines.
        output: String,
    },
    /// A command did not finish in time.
    #[error("{0} did not finish within {1}s")]
    Timeout(String, u64),
    /// `pgbackrest info` did not parse.
    #[error(transparent)]
    Info(#[from] info::InfoError),
    /// The instance is not in a state the action needs.
    #[error("{0}")]
    State(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// The host directory of an instance's pgBackRest files.
pub fn host_dir(rt: &Runtime, id: &InstanceId) -> PathBuf {
    rt.instance_dir(id).join("pgbackrest")
}

/// The record of what was written (`pgcd.json`), read by the observer.
pub const STATE_FILE: &str = "pgcd.json";
/// Present while a restore runs on the instance.
pub const RESTORE_FILE: &str = "restore.json";

/// What `restore.json` says: which restore, since when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreMark {
    /// The task running it.
    pub task: String,
    /// When it began (RFC 3339).
    pub since: String,
}

/// Why an instance must not start now, if a restore owns its data
/// directory (a start planned before the restore began must not race it).
pub fn restoring(rt: &Runtime, id: &InstanceId) -> Option<String> {
    let mark = host_dir(rt, id).join(RESTORE_FILE);
    mark.exists().then(|| {
        format!(
            "a restore owns the data directory of {} ({}); it starts when the restore ends",
            id.container(),
            mark.display()
        )
    })
}
