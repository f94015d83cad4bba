//! The spec reference (`docs/spec.md`), rendered from the JSON Schema so it
//! lists every field the code accepts; a test fails when it is stale.

use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Renders the reference of every kind as Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# pgcd spec reference\n\n\
         Generated from the Rust types by `cargo run -- schema --out schema` and the test\n\
         `tests/validate.rs` (which fails when this file is stale: regenerate with\n\
         `UPDATE_EXPECT=1 cargo test --test validate`). Field names follow pgEdge Control\n\
         Plane's database spec. Defaults are applied in one place (`src/spec/defaults.rs`);\n\
         `pgcd validate -o json` shows them filled in.\n\n\
         Rules beyond the types (each reported with file, line, column and field):\n\n\
         - names: database, node and user names use a-z, 0-9 and `_` (users also `-`),\n  \
           start with a letter or `_`, and have at most 63 bytes; host ids use a-z, 0-9, `-`;\n  \
           `postgres`, `template0`, `template1`, `pgcd` are reserved databases; `pg_*`,\n  \
           `postgres`, `pgcd`, `pgcd_replication`, `public`, `none` are reserved roles;\n\
         - `database_name` equals the file name; operation `id` equals the file name;\n\
         - node names are unique; a host carries at most one instance of a node;\n\
         - ports are 1024-65535, and every instance on a host needs its own port (nodes of\n  \
           one database may share a host on different ports, as in pgEdge's quickstart);\n\
         - `postgres_version` defaults to `pgcd.yaml`'s `postgres_version`, else 18;\n\
         - pgEdge fields pgcd does not carry out (`orchestrator_opts`, `patroni_port`,\n  \
           `services`) are errors that say what pgcd offers instead;\n\
         - passwords and keys are secret references (`{env: NAME}`, `{file: /path}`,\n  \
           `{age: <armored ciphertext>}`); clear text is refused and never echoed;\n\
         - extensions are SQL names (`vector`, `postgis`, `pg_cron`, `pgaudit`, ...) or product\n  \
           names (`pgvector`, `PostGIS`, `pgAudit`, ...), from the supported list or contrib;\n\
         - `postgresql_conf` may not set what pgcd manages (`port`, `listen_addresses`,\n  \
           `wal_level`, `hba_file`, `archive_command`, ...);\n\
         - `cron_expression` has five fields (minute hour day month weekday, UTC) or six\n  \
           with seconds; schedules name existing repositories;\n\
         - repositories have what their type needs (`base_path` for posix/cifs, `s3_bucket`\n  \
           and `s3_region` for s3, ...);\n\
         - `state: absent` needs `confirm_delete` equal to `database_name`, and\n  \
           `confirm_delete` is refused otherwise; deleting a file deletes nothing;\n\
         - operations name a database, node and host that exist; a switchover or failover\n  \
           needs a node with a standby; PITR `type` time/xid/lsn/name needs a `target`.\n",
    );
    for (file, text) in super::schema::all() {
        let Ok(schema) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let title = schema["title"].as_str().unwrap_or(file);
        let _ = write!(out, "\n## {title}\n\nJSON Schema: `schema/{file}`.\n\n");
        if let Some(desc) = schema["description"].as_str() {
            let _ = writeln!(out, "{desc}\n");
        }
        object(&mut out, &schema, &schema);
        if let Some(variants) = schema["oneOf"].as_array() {
            for v in variants {
                let kind = v["properties"]["kind"]["const"].as_str().unwrap_or("?");
                let _ = write!(out, "\n### kind: {kind}\n\n");
                if let Some(desc) = v["description"].as_str() {
                    let _ = writeln!(out, "{desc}\n");
                }
                object(&mut out, v, &schema);
            }
        }
        let mut seen = BTreeSet::new();
        if let Some(defs) = schema["definitions"].as_object() {
            for (name, def) in defs {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let _ = write!(out, "\n### {name}\n\n");
                if let Some(desc) = def["description"].as_str() {
                    let _ = writeln!(out, "{desc}\n");
                }
                if def["properties"].is_object() {
                    object(&mut out, def, &schema);
                } else {
                    let _ = writeln!(out, "Type: {}.", type_of(def));
                }
            }
        }
    }
    out
}

fn object(out: &mut String, schema: &Value, _root: &Value) {
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
    for (name, p) in props {
        let desc = p["description"]
            .as_str()
            .unwrap_or("")
            .replace('|', "\\|")
            .replace('\n', " ");
        let _ = writeln!(
            out,
            "| `{name}` | {} | {} | {desc} |",
            type_of(p).replace('|', "\\|"),
            if required.contains(name.as_str()) {
                "yes"
            } else {
                ""
            }
        );
    }
}

fn type_of(s: &Value) -> String {
    if let Some(r) = s["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_ascii_lowercase());
    }
    if let Some(c) = s.get("const") {
        return format!("`{c}`");
    }
    if let Some(e) = s["enum"].as_array() {
        return e
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(" / ");
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = s[key].as_array() {
            let parts: Vec<String> = list
                .iter()
                .filter(|v| v["type"] != "null")
                .map(type_of)
                .collect();
            if !parts.is_empty() {
                return parts.join(" or ");
            }
        }
    }
    match s["type"].as_str() {
        Some("object")
            if s["required"].as_array().is_some_and(|r| r.len() == 1)
                && s["properties"].is_object() =>
        {
            let key = s["required"][0].as_str().unwrap_or("?");
            format!("`{{{key}: {}}}`", type_of(&s["properties"][key]))
        }
        Some("array") => format!("list of {}", type_of(&s["items"])),
        Some("object") if s["additionalProperties"].is_object() => {
            format!("map of {}", type_of(&s["additionalProperties"]))
        }
        Some(t) => t.to_string(),
        None => match s["type"].as_array() {
            Some(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" or "),
            None => "any".to_string(),
        },
    }
}
