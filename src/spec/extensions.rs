//! The extensions pgcd can install, by SQL name, with product names accepted
//! as aliases (`pgvector` means `vector`).

use super::decode::{Ctx, Decode, MapReader};
use super::diag::FieldPath;
use super::yaml::{Node, Value};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use std::borrow::Cow;

/// One supported extension.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The name `CREATE EXTENSION` takes.
    pub sql_name: &'static str,
    /// Product names people write instead (compared case-insensitively).
    pub aliases: &'static [&'static str],
    /// Must be in `shared_preload_libraries` (a restart to add).
    pub preload: bool,
}

const fn ext(sql_name: &'static str, aliases: &'static [&'static str], preload: bool) -> Known {
    Known {
        sql_name,
        aliases,
        preload,
    }
}

/// The pgEdge and third-party extensions pgcd knows.
pub const SUPPORTED: &[Known] = &[
    ext("spock", &["Spock"], true),
    ext("lolor", &["LOLOR"], false),
    ext("snowflake", &["Snowflake"], true),
    ext("pgaudit", &["pgAudit", "pg_audit"], true),
    ext("postgis", &["PostGIS"], false),
    ext("postgis_topology", &[], false),
    ext("postgis_raster", &[], false),
    ext("vector", &["pgvector", "pg_vector"], false),
    ext(
        "vectorizer",
        &[
            "pgEdge Vectorizer",
            "pgedge_vectorizer",
            "pgedge-vectorizer",
        ],
        true,
    ),
    ext("pg_tokenizer", &["pg-tokenizer"], true),
    ext("vchord_bm25", &["VectorChord-bm25", "vchord-bm25"], true),
    ext("vectorize", &["pg_vectorize"], false),
    ext("pgmq", &[], false),
    ext("pg_cron", &["pg-cron"], true),
    ext("pg_stat_monitor", &["pg-stat-monitor"], true),
];

/// PostgreSQL's contrib extensions (shipped with the server packages).
pub const CONTRIB: &[&str] = &[
    "amcheck",
    "autoinc",
    "bloom",
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "dblink",
    "dict_int",
    "dict_xsyn",
    "earthdistance",
    "file_fdw",
    "fuzzystrmatch",
    "hstore",
    "insert_username",
    "intagg",
    "intarray",
    "isn",
    "lo",
    "ltree",
    "moddatetime",
    "pageinspect",
    "pg_buffercache",
    "pg_freespacemap",
    "pg_prewarm",
    "pg_stat_statements",
    "pg_surgery",
    "pg_trgm",
    "pg_visibility",
    "pg_walinspect",
    "pgcrypto",
    "pgrowlocks",
    "pgstattuple",
    "postgres_fdw",
    "refint",
    "seg",
    "sslinfo",
    "tablefunc",
    "tcn",
    "tsm_system_rows",
    "tsm_system_time",
    "unaccent",
    "uuid-ossp",
    "xml2",
    "plpgsql",
];

/// Resolves a name or alias to the SQL name, or `None` when unknown.
pub fn resolve(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    SUPPORTED
        .iter()
        .find(|k| k.sql_name == lower || k.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
        .map(|k| k.sql_name)
        .or_else(|| CONTRIB.iter().find(|c| **c == lower).copied())
}

/// The entry of a supported (non-contrib) extension.
pub fn known(sql_name: &str) -> Option<&'static Known> {
    SUPPORTED.iter().find(|k| k.sql_name == sql_name)
}

/// An extension to install (or, with `state: absent`, to drop): SQL name
/// and optional version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extension {
    /// The SQL name (aliases are resolved when the spec is read).
    pub name: String,
    /// A version for `CREATE EXTENSION ... VERSION`; the image's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `present` (default) or `absent` (`DROP EXTENSION`). An extension
    /// removed from the spec is left installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<super::database::Presence>,
    /// With `state: absent`: `DROP EXTENSION ... CASCADE`, which also drops
    /// what depends on it (columns of its types, with their data). Default
    /// false: the drop fails while anything depends on the extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascade: Option<bool>,
}

impl Extension {
    /// Whether the spec wants it installed (`state` is not `absent`).
    pub fn present(&self) -> bool {
        self.state != Some(super::database::Presence::Absent)
    }
}

impl Decode for Extension {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let (raw, version, state, cascade) = if let Value::Map(_) = node.value {
            let mut m = MapReader::new(node, path, cx, "an extension")?;
            let name: Option<String> = m.req(cx, "name");
            let version: Option<String> = m.opt(cx, "version");
            let state = m.opt(cx, "state");
            let cascade: Option<bool> = m.opt(cx, "cascade");
            m.finish(cx);
            (name?, version, state, cascade)
        } else {
            (String::decode(node, path, cx)?, None, None, None)
        };
        match resolve(&raw) {
            Some(name) => Some(Self {
                name: name.to_string(),
                version,
                state,
                cascade,
            }),
            None => {
                let names: Vec<&str> = SUPPORTED.iter().map(|k| k.sql_name).collect();
                let hint = super::decode::did_you_mean(
                    &raw,
                    names.iter().copied().chain(CONTRIB.iter().copied()),
                )
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
                cx.error_at(
                    node.pos,
                    path,
                    format!(
                        "unknown extension \"{raw}\" ({hint}supported: {}, and PostgreSQL's contrib extensions)",
                        names.join(", ")
                    ),
                );
                None
            }
        }
    }
}

impl JsonSchema for Extension {
    fn schema_name() -> Cow<'static, str> {
        "Extension".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An extension by SQL name (`vector`) or product name (`pgvector`), optionally with a version, or `state: absent` to drop it.",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "version": { "type": "string" },
                        "state": {
                            "description": "`present` (default) or `absent`: DROP EXTENSION. An extension removed from the spec is left installed.",
                            "enum": ["present", "absent"]
                        },
                        "cascade": {
                            "description": "With `state: absent`: DROP ... CASCADE, dropping what depends on it (with its data). Default false.",
                            "type": "boolean"
                        }
                    },
                    "required": ["name"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_names_resolve_to_sql_names() {
        assert_eq!(resolve("pgvector"), Some("vector"));
        assert_eq!(resolve("PostGIS"), Some("postgis"));
        assert_eq!(resolve("pgaudit"), Some("pgaudit"));
        assert_eq!(resolve("pg_vectorize"), Some("vectorize"));
        assert_eq!(resolve("uuid-ossp"), Some("uuid-ossp"));
        assert_eq!(resolve("timescaledb"), None);
    }
}
