//! The executor's typed error: what went wrong in a step, with the context
//! a person needs (which container, which statement), and whether trying
//! again can help.

use crate::postgres::sql::SqlError;
use crate::runtime::docker::RuntimeError;
use crate::secrets::SecretError;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step was addressed to another host (a bug in the dispatcher).
    #[error("step for host {step} sent to {here}")]
    WrongHost {
        /// The step's host.
        step: String,
        /// This host.
        here: String,
    },
    /// The step's arguments do not decode.
    #[error("invalid step arguments: {0}")]
    Arguments(String),
    /// The instance's container does not exist.
    #[error("container {0} does not exist")]
    NoContainer(String),
    /// Docker or the instance directory.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The server cannot be reached.
    #[error("{0}")]
    Connect(String),
    /// A statement failed on the server.
    #[error("{statement}: {message}")]
    Sql {
        /// The statement as the task log shows it (secrets masked).
        statement: String,
        /// The server's message.
        message: String,
    },
    /// A query pgcd runs to look around failed.
    #[error("{0}")]
    Query(String),
    /// A statement could not be built from the spec's values.
    #[error(transparent)]
    Build(#[from] SqlError),
    /// A secret reference could not be read on this host.
    #[error("{what}: {source}")]
    Secret {
        /// Whose secret.
        what: String,
        /// Why.
        source: SecretError,
    },
    /// The cluster's replication secret is not readable (yet).
    #[error("{0}")]
    ReplicationSecret(String),
    /// The step will not do what it was asked, to keep data safe.
    #[error("{0}")]
    Refused(String),
    /// A multi-phase step (a node join) failed in one of its phases.
    #[error("{0}")]
    Phase(String),
    /// pgBackRest, its configuration or its containers.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
}

impl StepError {
    /// Whether an immediate retry may succeed: a refusal or a bug will not
    /// change by itself, a connection or statement may (a server starting,
    /// a peer catching up).
    pub fn retryable(&self) -> bool {
        !matches!(
            self,
            StepError::WrongHost { .. }
                | StepError::Arguments(_)
                | StepError::Build(_)
                | StepError::Refused(_)
        )
    }
}

impl From<StepError> for String {
    fn from(e: StepError) -> String {
        e.to_string()
    }
}

/// The server's message when there is one (tokio-postgres's Display hides it).
pub fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    }
}

/// A failed look-around query, with the server's message.
pub fn query_error(e: tokio_postgres::Error) -> StepError {
    StepError::Query(db_error(&e))
}
