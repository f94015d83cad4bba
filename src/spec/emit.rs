//! Writing spec files: a small YAML emitter for values pgcd generates
//! (`pgcd import pgedge`). Block style, two-space indents, keys in the order
//! given, short lists of scalars and secret references in flow style, and
//! every string that another reader could take for something else quoted.

use std::fmt::Write;

/// A YAML value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// A string (quoted when it needs to be).
    Str(String),
    /// A number or boolean, written as is.
    Raw(String),
    /// A list.
    Seq(Vec<Yaml>),
    /// A mapping, in this order.
    Map(Vec<(String, Yaml)>),
    /// A mapping of scalars written on one line: `{env: NAME}`.
    Flow(Vec<(String, Yaml)>),
}

/// Renders a top-level mapping as a YAML document.
pub fn document(root: &Yaml) -> String {
    let mut out = String::new();
    match root {
        Yaml::Map(entries) => map_block(&mut out, entries, 0),
        other => {
            let _ = writeln!(out, "{}", inline(other).unwrap_or_default());
        }
    }
    out
}

/// The one-line form of a value, when it has one short enough.
fn inline(v: &Yaml) -> Option<String> {
    match v {
        Yaml::Str(s) => Some(string(s)),
        Yaml::Raw(r) => Some(r.clone()),
        Yaml::Seq(items) if items.is_empty() => Some("[]".into()),
        Yaml::Seq(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Yaml::Str(_) | Yaml::Raw(_) => inline(i),
                    _ => None,
                })
                .collect();
            let text = format!("[{}]", parts?.join(", "));
            (text.len() <= 60).then_some(text)
        }
        Yaml::Map(entries) if entries.is_empty() => Some("{}".into()),
        Yaml::Map(_) => None,
        Yaml::Flow(entries) => {
            let parts: Option<Vec<String>> = entries
                .iter()
                .map(|(k, v)| inline(v).map(|v| format!("{}: {v}", key(k))))
                .collect();
            Some(format!("{{{}}}", parts?.join(", ")))
        }
    }
}

fn map_block(out: &mut String, entries: &[(String, Yaml)], indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in entries {
        match inline(v) {
            Some(text) => {
                let _ = writeln!(out, "{pad}{}: {text}", key(k));
            }
            None => {
                let _ = writeln!(out, "{pad}{}:", key(k));
                block(out, v, indent + 2);
            }
        }
    }
}

fn block(out: &mut String, v: &Yaml, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Yaml::Map(entries) => map_block(out, entries, indent),
        Yaml::Seq(items) => {
            for item in items {
                match (item, inline(item)) {
                    (Yaml::Map(entries), None) => {
                        // `- first: value` then the other keys under it.
                        let mut text = String::new();
                        map_block(&mut text, entries, indent + 2);
                        let body = text.get(indent + 2..).unwrap_or_default();
                        let _ = write!(out, "{pad}- {body}");
                    }
                    (_, Some(text)) => {
                        let _ = writeln!(out, "{pad}- {text}");
                    }
                    (_, None) => {
                        let _ = writeln!(out, "{pad}-");
                        block(out, item, indent + 2);
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", inline(other).unwrap_or_default());
        }
    }
}

fn key(k: &str) -> String {
    if plain_ok(k) {
        k.to_string()
    } else {
        string(k)
    }
}

/// A string plain when nothing could read it as another type or syntax,
/// double-quoted (JSON escapes are YAML escapes) otherwise.
fn string(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
    }
}

fn plain_ok(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '/')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !WORDS.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Yaml {
        Yaml::Str(v.into())
    }

    #[test]
    fn documents_read_back_as_written() {
        let doc = Yaml::Map(vec![
            ("database_name".into(), s("example")),
            ("postgres_version".into(), s("17.6")),
            ("port".into(), Yaml::Raw("5432".into())),
            (
                "nodes".into(),
                Yaml::Seq(vec![Yaml::Map(vec![
                    ("name".into(), s("n1")),
                    ("host_ids".into(), Yaml::Seq(vec![s("host-1"), s("host-2")])),
                ])]),
            ),
            (
                "database_users".into(),
                Yaml::Seq(vec![Yaml::Map(vec![
                    ("username".into(), s("admin")),
                    (
                        "password".into(),
                        Yaml::Flow(vec![("env".into(), s("PGCD_EXAMPLE_ADMIN_PASSWORD"))]),
                    ),
                    (
                        "attributes".into(),
                        Yaml::Seq(vec![s("SUPERUSER"), s("LOGIN")]),
                    ),
                ])]),
            ),
            (
                "postgresql_conf".into(),
                Yaml::Map(vec![
                    ("cron.database_name".into(), s("example")),
                    ("synchronous_commit".into(), s("on")),
                ]),
            ),
            (
                "pg_hba_conf".into(),
                Yaml::Seq(vec![s("host all app 10.0.0.0/8 scram-sha-256")]),
            ),
        ]);
        let text = document(&doc);
        assert_eq!(
            text,
            "database_name: example\npostgres_version: \"17.6\"\nport: 5432\nnodes:\n  - name: n1\n    host_ids: [host-1, host-2]\ndatabase_users:\n  - username: admin\n    password: {env: PGCD_EXAMPLE_ADMIN_PASSWORD}\n    attributes: [SUPERUSER, LOGIN]\npostgresql_conf:\n  cron.database_name: example\n  synchronous_commit: \"on\"\npg_hba_conf: [\"host all app 10.0.0.0/8 scram-sha-256\"]\n"
        );
        assert!(crate::spec::yaml::parse(&text).is_ok());
    }
}
