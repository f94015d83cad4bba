//! `pgcd import pgedge`: a pgEdge Control Plane create or update request
//! body (`{"id": ..., "spec": {...}}`, a bare spec, or a GET response) turned
//! into pgcd's `databases/<database_name>.yaml`. Field names are already
//! pgEdge's; what changes is that clear-text secrets become `{env: NAME}`
//! references (their values go to the caller, never into the file) and that
//! what pgcd does not carry out is left out and listed. Pure: the caller
//! reads and writes the files (`src/cli/import.rs`).

use super::emit::{document, Yaml};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// Why a body cannot be imported at all.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    /// The body is not a JSON object.
    #[error("the request body is not a JSON object")]
    NotAnObject,
    /// No `spec` object and no bare spec (`database_name` and `nodes`).
    #[error("no database spec: expected {{\"id\": ..., \"spec\": {{...}}}} or a spec with database_name and nodes")]
    NoSpec,
    /// The spec names no database.
    #[error("the spec has no database_name (pgcd names the file after it)")]
    NoDatabaseName,
}

/// A secret taken out of the body: the variable the spec now names, and its value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The environment variable (`PGCD_EXAMPLE_ADMIN_PASSWORD`).
    pub name: String,
    /// Where it was, e.g. `database_users[0].password`.
    pub field: String,
    /// The clear-text value (written only where the caller asks).
    pub value: String,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} from {}, ***)", self.name, self.field)
    }
}

/// The result of importing one body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The database name: the file is `databases/<database_name>.yaml`.
    pub database_name: String,
    /// The file's text.
    pub yaml: String,
    /// The secrets the file refers to.
    pub secrets: Vec<Secret>,
    /// What could not be carried over, each with why and what to do instead.
    pub dropped: Vec<String>,
    /// What changed meaning on the way (read before applying).
    pub notes: Vec<String>,
}

/// Fields of a pgEdge GET response that are status, not spec.
const RESPONSE_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "state",
    "instances",
    "service_instances",
    "available_upgrades",
    "task",
    "tasks",
];

/// Imports one request body; `source` names it in the file's header.
pub fn pgedge(body: &Value, source: &str) -> Result<Imported, ImportError> {
    let obj = body.as_object().ok_or(ImportError::NotAnObject)?;
    let mut cx = Cx::default();
    let spec = match obj.get("spec") {
        Some(Value::Object(spec)) => {
            let ignored: Vec<&str> = obj
                .keys()
                .map(String::as_str)
                .filter(|k| RESPONSE_FIELDS.contains(k))
                .collect();
            if !ignored.is_empty() {
                cx.notes.push(format!(
                    "ignored {} (status of a pgEdge response, not spec)",
                    ignored.join(", ")
                ));
            }
            for k in obj.keys() {
                if !RESPONSE_FIELDS.contains(&k.as_str())
                    && !["id", "spec", "tenant_id"].contains(&k.as_str())
                {
                    cx.dropped
                        .push(format!("{k}: not part of a pgEdge database body; left out"));
                }
            }
            spec
        }
        Some(_) => return Err(ImportError::NoSpec),
        None if obj.contains_key("database_name") && obj.contains_key("nodes") => obj,
        None => return Err(ImportError::NoSpec),
    };
    let name = spec
        .get("database_name")
        .and_then(Value::as_str)
        .ok_or(ImportError::NoDatabaseName)?
        .to_string();
    if let Some(id) = obj
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| *id != name)
    {
        cx.notes.push(format!(
            "the pgEdge database id \"{id}\" differs from database_name \"{name}\": pgcd names a database by database_name, so this is databases/{name}.yaml"
        ));
    }
    if obj.contains_key("tenant_id") {
        cx.dropped.push("tenant_id: pgcd has no tenants (keep the repository per tenant, or a naming convention)".into());
    }
    cx.db = env_part(&name);
    let root = levels::database(spec, &mut cx);
    let mut yaml =
        format!("# Imported from pgEdge Control Plane ({source}) by `pgcd import pgedge`.\n");
    if !cx.secrets.is_empty() {
        yaml.push_str("# Secrets are read from the agents' environment: ");
        yaml.push_str(
            &cx.secrets
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        yaml.push('\n');
    }
    yaml.push_str(&document(&root));
    Ok(Imported {
        database_name: name,
        yaml,
        secrets: cx.secrets,
        dropped: cx.dropped,
        notes: cx.notes,
    })
}

mod levels;

#[derive(Default)]
struct Cx {
    db: String,
    secrets: Vec<Secret>,
    names: BTreeSet<String>,
    dropped: Vec<String>,
    notes: Vec<String>,
}

impl Cx {
    /// Replaces a clear-text secret by a reference to a new variable.
    fn secret(&mut self, parts: &[&str], field: &str, value: &Value) -> Yaml {
        let Some(text) = value.as_str() else {
            return plain(value); // a reference already, or a mistake validation names
        };
        let base = std::iter::once("PGCD")
            .chain(std::iter::once(self.db.as_str()))
            .chain(parts.iter().copied())
            .collect::<Vec<_>>()
            .join("_");
        let mut name = base.clone();
        let mut n = 2;
        while !self.names.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.secrets.push(Secret {
            name: name.clone(),
            field: field.to_string(),
            value: text.to_string(),
        });
        Yaml::Flow(vec![("env".into(), Yaml::Str(name))])
    }
}

/// A name as part of an environment variable: `my-app` → `MY_APP`.
fn env_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A JSON value as YAML, keys of mappings in `order` first.
fn plain(v: &Value) -> Yaml {
    match v {
        Value::String(s) => Yaml::Str(s.clone()),
        Value::Number(n) => Yaml::Raw(n.to_string()),
        Value::Bool(b) => Yaml::Raw(b.to_string()),
        Value::Null => Yaml::Raw("null".into()),
        Value::Array(items) => Yaml::Seq(items.iter().map(plain).collect()),
        Value::Object(m) => Yaml::Map(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), plain(v)))
                .collect(),
        ),
    }
}

/// The fields of `m` in `order`, then the rest by name (pgcd refuses those
/// it does not know, at their line, so they are kept for validation to name).
fn ordered<'a>(m: &'a Map<String, Value>, order: &[&str]) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&str, &Value)> = order
        .iter()
        .filter_map(|k| m.get_key_value(*k).map(|(k, v)| (k.as_str(), v)))
        .collect();
    out.extend(
        m.iter()
            .filter(|(k, _)| !order.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v)),
    );
    out.retain(|(_, v)| !v.is_null());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_become_references_and_swarm_options_are_listed() {
        let body = json!({
            "id": "example",
            "spec": {
                "database_name": "example",
                "database_users": [{"username": "admin", "password": "secret", "db_owner": true}],
                "orchestrator_opts": {"swarm": {"image": "ghcr.io/pgedge/pgedge-postgres:17.9-spock5.0.6-standard-2"}},
                "nodes": [{"name": "n1", "host_ids": ["host-1"], "patroni_port": 8888}],
                "postgresql_conf": {"wal_level": "logical", "max_connections": 1000}
            }
        });
        let out = pgedge(&body, "test.json").unwrap();
        assert_eq!(out.database_name, "example");
        assert!(!out.yaml.contains("secret"), "{}", out.yaml);
        assert!(
            out.yaml
                .contains("password: {env: PGCD_EXAMPLE_ADMIN_PASSWORD}"),
            "{}",
            out.yaml
        );
        assert_eq!(out.secrets[0].value, "secret");
        assert!(!format!("{:?}", out.secrets).contains("secret\""));
        let dropped = out.dropped.join("\n");
        assert!(
            dropped.contains("images: {\"17\": ghcr.io/pgedge/pgedge-postgres:17.9"),
            "{dropped}"
        );
        assert!(dropped.contains("nodes[0].patroni_port"), "{dropped}");
        assert!(dropped.contains("postgresql_conf.wal_level"), "{dropped}");
        assert!(out.yaml.contains("max_connections: 1000"));
    }

    #[test]
    fn bodies_without_a_spec_are_refused() {
        assert_eq!(pgedge(&json!([1]), "x"), Err(ImportError::NotAnObject));
        assert_eq!(pgedge(&json!({"id": "x"}), "x"), Err(ImportError::NoSpec));
        assert_eq!(
            pgedge(&json!({"spec": {"nodes": []}}), "x"),
            Err(ImportError::NoDatabaseName)
        );
    }
}
