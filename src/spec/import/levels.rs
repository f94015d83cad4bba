//! Each level of a pgEdge spec as pgcd writes it: the fields in pgcd's
//! order, secrets replaced by references, what pgcd does not carry out left
//! out with why.

use super::{env_part, ordered, plain, Cx};
use crate::spec::emit::Yaml;
use crate::spec::rules::MANAGED_SETTINGS;
use serde_json::{Map, Value};

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

pub(super) fn database(spec: &Map<String, Value>, cx: &mut Cx) -> Yaml {
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
