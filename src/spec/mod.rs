//! The desired state: the spec types of the config repository, reading them
//! from YAML with positions, defaults, validation and JSON Schema.
//!
//! This module does no I/O beyond [`read_dir`] and knows nothing of Git,
//! etcd or PostgreSQL: [`load`] is a pure function from file texts to either
//! a fully defaulted [`Desired`] or every [`Diagnostic`] of the revision.

pub mod backup;
mod backup_rules;
pub use backup_rules::parse_cron;
mod conf;
pub mod config;
pub mod database;
pub mod decode;
pub mod defaults;
pub mod diag;
pub mod diff;
pub mod emit;
pub mod extensions;
pub mod images;
pub mod import;
mod load;
pub mod names;
pub mod operation;
pub mod pgbackrest;
pub mod pgedge;
mod ports;
pub mod reference;
pub mod reporters;
pub mod rules;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod values;
pub mod yaml;

pub use config::ClusterConfig;
pub use database::Database;
pub use diag::Diagnostic;
pub use load::{load, load_checked, stored};
pub use operation::Operation;

use serde::Serialize;
use std::path::Path;

/// One file of the config repository: its path inside the repository (with
/// `/` separators) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path inside the repository, e.g. `databases/orders.yaml`.
    pub path: String,
    /// The file's content.
    pub text: String,
}

/// A valid, fully defaulted desired state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    /// `pgcd.yaml` (defaults when absent).
    pub config: ClusterConfig,
    /// The databases, by name.
    pub databases: Vec<Database>,
    /// The operations, by id.
    pub operations: Vec<Operation>,
}

/// Whether a repository path is one pgcd reads.
pub fn is_spec_path(path: &str) -> bool {
    let yaml = |p: &str| p.ends_with(".yaml") || p.ends_with(".yml");
    path == "pgcd.yaml"
        || path == "pgcd.yml"
        || ["databases/", "operations/"].iter().any(|dir| {
            path.strip_prefix(dir)
                .is_some_and(|rest| !rest.contains('/') && yaml(rest))
        })
}

/// Reads the spec files of a config repository checked out at `root`.
// The spec module's one edge to the file system: CLI verbs and tests call it.
#[allow(clippy::disallowed_methods)]
pub fn read_dir(root: &Path) -> std::io::Result<Vec<SourceFile>> {
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut files = Vec::new();
    for name in ["pgcd.yaml", "pgcd.yml"] {
        let p = root.join(name);
        if p.is_file() {
            files.push(SourceFile {
                path: name.to_string(),
                text: std::fs::read_to_string(&p)?,
            });
        }
    }
    for dir in ["databases", "operations"] {
        let d = root.join(dir);
        if !d.is_dir() {
            continue;
        }
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = format!("{dir}/{name}");
            if e.file_type()?.is_file() && is_spec_path(&path) {
                let bytes = std::fs::read(e.path())?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{path} is not UTF-8"),
                    )
                })?;
                files.push(SourceFile { path, text });
            }
        }
    }
    Ok(files)
}

impl Desired {
    /// Reads back a desired state stored as JSON (as `Serialize` wrote it)
    /// by decoding it again: JSON is YAML, so every rule and default runs
    /// exactly as for the repository's files.
    pub fn from_json(value: &serde_json::Value) -> Result<Desired, String> {
        let mut files = Vec::new();
        let text = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        if let Some(config) = value.get("config") {
            files.push(SourceFile {
                path: "pgcd.yaml".into(),
                text: text(config),
            });
        }
        let list = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        for db in list("databases") {
            let name = db
                .get("database_name")
                .and_then(|n| n.as_str())
                .ok_or("a stored database has no database_name")?;
            files.push(SourceFile {
                path: format!("databases/{name}.yaml"),
                text: text(&db),
            });
        }
        for op in list("operations") {
            let id = op
                .get("id")
                .and_then(|n| n.as_str())
                .ok_or("a stored operation has no id")?;
            files.push(SourceFile {
                path: format!("operations/{id}.yaml"),
                text: text(&op),
            });
        }
        load(&files).map_err(|diags| {
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;

    #[test]
    fn a_stored_desired_state_reads_back_equal() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo");
        let desired = load(&read_dir(&root).unwrap()).unwrap();
        let json = serde_json::to_value(&desired).unwrap();
        assert_eq!(Desired::from_json(&json).unwrap(), desired);
    }
}
