//! `pgcd import pgedge`: a pgEdge Control Plane create or update request
//! body (`{"id": ..., "spec": {...}}`, a bare spec, or a GET response) turned
//! into pgcd's `databases/<database_name>.yaml`. Field names are already
//! pgEdge's; what changes is that clear-text secrets become `{env: NAME}`
//! references (their values go to the caller, never into the file) and that
//! what pgcd does not carry out is left out and listed. Pure: the caller
//! reads and writes the files (`src/cli/import.rs`).

use super::emit::{document, Yaml};
use super::rules::MANAGED_SETTINGS;
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
    let root = database(spec, &mut cx);
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

const DATABASE: &[&str] = &[
    "database_name",
    "postgres_version",
    "spock_version",
    "port",
    "cpus",
    "memory",
    "nodes",
    "database_users",
    "postgresql_conf",
    "pg_hba_conf",
    "pg_ident_conf",
    "scripts",
    "backup_config",
    "restore_config",
];
const NODE: &[&str] = &[
    "name",
    "host_ids",
    "postgres_version",
    "port",
    "cpus",
    "memory",
    "source_node",
    "postgresql_conf",
    "pg_hba_conf",
    "pg_ident_conf",
    "backup_config",
    "restore_config",
];
const USER: &[&str] = &["username", "password", "db_owner", "attributes", "roles"];
const REPOSITORY: &[&str] = &[
    "id",
    "type",
    "base_path",
    "s3_bucket",
    "s3_region",
    "s3_endpoint",
    "s3_key",
    "s3_key_secret",
    "gcs_bucket",
    "gcs_endpoint",
    "gcs_key",
    "azure_account",
    "azure_container",
    "azure_endpoint",
    "azure_key",
    "retention_full",
    "retention_full_type",
    "custom_options",
];
const RESTORE: &[&str] = &[
    "source_database_id",
    "source_node_name",
    "source_database_name",
    "repository",
    "restore_options",
];
const SECRET_FIELDS: &[&str] = &["s3_key", "s3_key_secret", "gcs_key", "azure_key"];

/// What the fields of a spec level pgcd refuses become: dropped, with why.
fn unsupported(at: &str, key: &str, v: &Value, cx: &mut Cx) -> bool {
    let why = match key {
        "orchestrator_opts" => {
            let image = v.pointer("/swarm/image").and_then(Value::as_str);
            match image {
                Some(img) => {
                    let tag = img.rsplit_once(':').map_or("", |(_, t)| t);
                    let major: String = tag.chars().take_while(char::is_ascii_digit).collect();
                    format!(
                        "pgcd runs its own containers, not Docker Swarm; for the image pin add to pgcd.yaml `images: {{\"{}\": {img}}}`",
                        if major.is_empty() { "17" } else { &major }
                    )
                }
                None => "pgcd runs its own containers, not Docker Swarm (extra volumes, networks and labels have no pgcd equivalent)".into(),
            }
        }
        "patroni_port" => "pgcd runs no Patroni; its leader decides failover".into(),
        "services" => "pgcd runs PostgreSQL only; run MCP/PostgREST/RAG services beside it".into(),
        _ => return false,
    };
    cx.dropped.push(format!("{at}{key}: {why}"));
    true
}

fn database(spec: &Map<String, Value>, cx: &mut Cx) -> Yaml {
    let mut out = Vec::new();
    for (k, v) in ordered(spec, DATABASE) {
        if unsupported("", k, v, cx) {
            continue;
        }
        let y = match k {
            "port" if v.as_u64() == Some(0) => {
                cx.dropped.push("port: 0 (a random port per instance): pgcd listens on one fixed port; left out, so 5432".into());
                continue;
            }
            "nodes" => match v.as_array() {
                Some(nodes) => Yaml::Seq(
                    nodes
                        .iter()
                        .enumerate()
                        .map(|(i, n)| node(n, i, cx))
                        .collect(),
                ),
                None => plain(v),
            },
            "database_users" => match v.as_array() {
                Some(users) => Yaml::Seq(
                    users
                        .iter()
                        .enumerate()
                        .map(|(i, u)| user(u, i, cx))
                        .collect(),
                ),
                None => plain(v),
            },
            "postgresql_conf" => conf(v, "postgresql_conf", cx),
            "backup_config" => backup_config(v, "backup_config", &[], cx),
            "restore_config" => restore_config(v, "restore_config", &[], cx),
            _ => plain(v),
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
}

fn node(v: &Value, i: usize, cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let at = format!("nodes[{i}].");
    let node_part = m
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("N{i}"), env_part);
    let mut out = Vec::new();
    for (k, v) in ordered(m, NODE) {
        if unsupported(&at, k, v, cx) {
            continue;
        }
        let y = match k {
            "port" if v.as_u64() == Some(0) => {
                cx.dropped.push(format!("{at}port: 0 (a random port): pgcd listens on a fixed port; left out, so the database's"));
                continue;
            }
            "postgresql_conf" => conf(v, &format!("{at}postgresql_conf"), cx),
            "backup_config" => backup_config(v, &format!("{at}backup_config"), &[&node_part], cx),
            "restore_config" => {
                restore_config(v, &format!("{at}restore_config"), &[&node_part], cx)
            }
            _ => plain(v),
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
}

fn user(v: &Value, i: usize, cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let uname = m.get("username").and_then(Value::as_str).unwrap_or("user");
    if !m.contains_key("password") {
        cx.notes.push(format!(
            "database_users[{i}] ({uname}) has no password (pgEdge keeps the current one on update); pgcd creates the role without one until you add `password: {{env: ...}}`"
        ));
    }
    let mut out = Vec::new();
    for (k, v) in ordered(m, USER) {
        let y = match k {
            "password" => {
                let part = env_part(uname);
                cx.secret(
                    &[&part, "PASSWORD"],
                    &format!("database_users[{i}].password"),
                    v,
                )
            }
            _ => plain(v),
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
}

fn conf(v: &Value, at: &str, cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let mut out = Vec::new();
    for (k, v) in m {
        if let Some((_, why)) = MANAGED_SETTINGS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(k))
        {
            cx.dropped
                .push(format!("{at}.{k}: pgcd manages it ({why})"));
            continue;
        }
        if !v.is_null() {
            out.push((k.clone(), plain(v)));
        }
    }
    Yaml::Map(out)
}

fn backup_config(v: &Value, at: &str, scope: &[&str], cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let mut out = Vec::new();
    for (k, v) in ordered(m, &["repositories", "schedules"]) {
        let y = match (k, v.as_array()) {
            ("schedules", Some(list)) => Yaml::Seq(
                list.iter()
                    .map(|s| match s.as_object() {
                        Some(o) => Yaml::Map(
                            ordered(o, &["id", "type", "cron_expression", "repository"])
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), plain(v)))
                                .collect(),
                        ),
                        None => plain(s),
                    })
                    .collect(),
            ),
            ("repositories", Some(repos)) => Yaml::Seq(
                repos
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        // The id pgcd derives when it is absent (`s3-1`), so
                        // the variable names the same repository.
                        let id = r.get("id").and_then(Value::as_str).map_or_else(
                            || {
                                let t = r.get("type").and_then(Value::as_str).unwrap_or("repo");
                                format!("{t}-{}", i + 1)
                            },
                            str::to_string,
                        );
                        let part = env_part(&id);
                        let scope: Vec<&str> =
                            scope.iter().copied().chain([part.as_str()]).collect();
                        repository(r, &format!("{at}.repositories[{i}]"), &scope, cx)
                    })
                    .collect(),
            ),
            _ => plain(v),
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
}

fn repository(v: &Value, at: &str, scope: &[&str], cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let mut out = Vec::new();
    for (k, v) in ordered(m, REPOSITORY) {
        let y = if SECRET_FIELDS.contains(&k) {
            let field = env_part(k);
            let parts: Vec<&str> = scope.iter().copied().chain([field.as_str()]).collect();
            cx.secret(&parts, &format!("{at}.{k}"), v)
        } else {
            plain(v)
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
}

fn restore_config(v: &Value, at: &str, scope: &[&str], cx: &mut Cx) -> Yaml {
    let Some(m) = v.as_object() else {
        return plain(v);
    };
    let mut out = Vec::new();
    for (k, v) in ordered(m, RESTORE) {
        let y = match k {
            "repository" => {
                let scope: Vec<&str> = scope.iter().copied().chain(["RESTORE"]).collect();
                repository(v, &format!("{at}.repository"), &scope, cx)
            }
            "restore_options" => match v.as_object() {
                Some(o) => Yaml::Map(
                    ordered(o, &["set", "type", "target"])
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), plain(v)))
                        .collect(),
                ),
                None => plain(v),
            },
            _ => plain(v),
        };
        out.push((k.to_string(), y));
    }
    Yaml::Map(out)
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
