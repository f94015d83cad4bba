//! JSON Schema of every kind, generated from the Rust types; the files under
//! `schema/` are this output, and a test fails when they are stale.

use super::{ClusterConfig, Database, Operation};
use schemars::generate::SchemaSettings;

/// The schema files: name and pretty JSON text (with a trailing newline).
pub fn all() -> Vec<(&'static str, String)> {
    let generator = || SchemaSettings::draft07().into_generator();
    let render = |mut schema: schemars::Schema, title: &str, _file: &str| {
        schema.insert("title".into(), title.into());
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
                operation_schema(),
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

/// The operation schema with `id` repeated inside each kind: the kinds are
/// closed objects (unknown fields are errors), so each must allow `id` itself.
fn operation_schema() -> schemars::Schema {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<Operation>();
    let id = schema
        .get("properties")
        .and_then(|p| p.get("id"))
        .cloned()
        .unwrap_or_default();
    if let Some(variants) = schema.get_mut("oneOf").and_then(|v| v.as_array_mut()) {
        for v in variants {
            if let Some(props) = v.get_mut("properties").and_then(|p| p.as_object_mut()) {
                props.insert("id".into(), id.clone());
            }
            if let Some(req) = v.get_mut("required").and_then(|r| r.as_array_mut()) {
                req.insert(0, "id".into());
            }
        }
    }
    schema
}
