//! JSON Schema of every kind, generated from the Rust types; the files under
//! `schema/` are this output, and a test fails when they are stale.

use super::{ClusterConfig, Database, Operation};
use schemars::generate::SchemaSettings;

/// The schema files: name and pretty JSON text (with a trailing newline).
pub fn all() -> Vec<(&'static str, String)> {
    let generator = || SchemaSettings::draft07().into_generator();
    let render = |mut schema: schemars::Schema, title: &str, id: &str| {
        schema.insert("title".into(), title.into());
        schema.insert("$id".into(), format!("https://pgcd.dev/schema/{id}").into());
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        (
            "database.schema.json",
            render(
                generator().into_root_schema_for::<Database>(),
                "pgcd Database (databases/<name>.yaml)",
                "database.schema.json",
            ),
        ),
        (
            "operation.schema.json",
            render(
                generator().into_root_schema_for::<Operation>(),
                "pgcd Operation (operations/<id>.yaml)",
                "operation.schema.json",
            ),
        ),
        (
            "pgcd.schema.json",
            render(
                generator().into_root_schema_for::<ClusterConfig>(),
                "pgcd cluster settings (pgcd.yaml)",
                "pgcd.schema.json",
            ),
        ),
    ]
}
