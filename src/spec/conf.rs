//! `postgresql_conf` against the settings catalog of each image a database
//! runs on: a name the server does not know (with a did-you-mean), a value
//! it would refuse, a module's setting whose module is not loaded, or a
//! preload library the image lacks is an error at its file, line and field —
//! before any step runs, instead of a server that does not start and a
//! database `Stalled` on every node.
//!
//! Settings of modules (`cron.*`, `pgaudit.*`, `pg_stat_statements.*`) are in
//! the catalog, read at image build time with each module loaded; they count
//! as known when the database declares the module's extension or preloads
//! the module. A `prefix.name` whose prefix no module of the image defines is
//! a custom setting PostgreSQL itself accepts (`myapp.tenant`), unless the
//! prefix is a near miss of a module's (`pg_stat_statement.max`).

use super::config::ClusterConfig;
use super::database::Database;
use super::decode::did_you_mean;
use super::diag::{Diagnostic, SpanMap};
use super::extensions;
use super::images::{ImageCatalog, Manifest};
use super::rules::MANAGED_SETTINGS;
use super::settings::check_value;
use super::values::ConfValue;
use std::collections::{BTreeMap, BTreeSet};

/// The settings that load modules.
const PRELOAD: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
];

/// Checks every setting of a database against the catalog of each major its
/// nodes run, when that image's manifest has a catalog and `pgcd.yaml` names
/// no other image for the major.
pub fn check(
    db: &Database,
    spans: &SpanMap,
    config: &ClusterConfig,
    images: &ImageCatalog,
    diags: &mut Vec<Diagnostic>,
) {
    let mut declared: BTreeSet<&str> = db
        .extensions
        .iter()
        .filter(|e| e.present())
        .map(|e| e.name.as_str())
        .collect();
    declared.insert("plpgsql"); // in every database from initdb on
    for (i, node) in db.nodes.iter().enumerate() {
        let version = node.postgres_version.unwrap_or(db.postgres_version);
        if config.pins_image(version) {
            continue; // another image: its catalog is not known here
        }
        let Some(m) = images.resolve(version).filter(|m| !m.settings.is_empty()) else {
            continue;
        };
        let merged: BTreeMap<&String, &ConfValue> = db
            .postgresql_conf
            .iter()
            .chain(&node.postgresql_conf)
            .collect();
        let loaded: BTreeSet<String> = PRELOAD
            .iter()
            .filter_map(|k| merged.iter().find(|(n, _)| n.as_str() == *k))
            .flat_map(|(_, v)| libraries(&v.to_string()))
            .collect();
        let scopes = [
            ("postgresql_conf".to_string(), &db.postgresql_conf),
            (format!("nodes[{i}].postgresql_conf"), &node.postgresql_conf),
        ];
        for (scope, conf) in scopes {
            for (name, value) in conf {
                if let Err(msg) = check_one(m, name, value, &loaded, &declared) {
                    diags.push(spans.error(&format!("{scope}.{name}"), msg));
                }
            }
        }
    }
}

/// The modules a preload setting names: `'$libdir/pg_cron', pgaudit` → pg_cron, pgaudit.
fn libraries(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|l| {
            let l = l.trim().trim_matches(|c| c == '"' || c == '\'');
            let l = l.strip_prefix("$libdir/").unwrap_or(l);
            l.strip_suffix(".so").unwrap_or(l).to_string()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

fn check_one(
    m: &Manifest,
    name: &str,
    value: &ConfValue,
    loaded: &BTreeSet<String>,
    declared: &BTreeSet<&str>,
) -> Result<(), String> {
    let well_formed = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
    if !well_formed
        || MANAGED_SETTINGS
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    {
        return Ok(()); // refused by the file's rules already
    }
    let major = m.major;
    let Some(s) = m.setting(name) else {
        return unknown(m, name);
    };
    if s.context == "internal" {
        return Err(format!(
            "`{name}` cannot be set: PostgreSQL {major} fixes it when it is built"
        ));
    }
    if let Some(lib) = &s.library {
        module_loaded(m, name, lib, loaded, declared)?;
    }
    check_value(s, value)?;
    if PRELOAD.contains(&name) && !m.libraries.is_empty() {
        for lib in libraries(&value.to_string()) {
            if !m.libraries.contains_key(&lib) {
                return Err(format!(
                    "`{name}` names `{lib}`, which is not in the PostgreSQL {major} image (pgcd/postgres:{major}), so the server would not start; remove it, or name an image that has it under `images:` in pgcd.yaml"
                ));
            }
        }
    }
    Ok(())
}

/// A module's setting counts only when the module is loaded: preloaded, or
/// (for one that also works loaded later) its extension declared. pgcd
/// preloads the extensions it knows need it (pg_cron, pgaudit, ...).
fn module_loaded(
    m: &Manifest,
    name: &str,
    lib: &str,
    loaded: &BTreeSet<String>,
    declared: &BTreeSet<&str>,
) -> Result<(), String> {
    if loaded.contains(lib) {
        return Ok(());
    }
    let preload_only = m.preload_only.contains(lib);
    let pgcd_preloads = |e: &str| extensions::known(e).is_some_and(|k| k.preload);
    let exts = m.libraries.get(lib).map(Vec::as_slice).unwrap_or_default();
    let ext = exts.iter().find(|e| m.extensions.contains(*e));
    match ext {
        Some(e) if declared.contains(e.as_str()) && (!preload_only || pgcd_preloads(e)) => Ok(()),
        Some(e) if declared.contains(e.as_str()) => Err(format!(
            "`{name}` is a setting of {lib}, which works only preloaded: add `{lib}` to shared_preload_libraries"
        )),
        Some(e) if !preload_only || pgcd_preloads(e) => Err(format!(
            "`{name}` is a setting of the {e} extension, which this database does not declare: add `{e}` to `extensions`"
        )),
        Some(e) => Err(format!(
            "`{name}` is a setting of {lib}, which this database does not load: add `{lib}` to shared_preload_libraries (and {} to `extensions` for its SQL objects)",
            if e == lib { "it".to_string() } else { format!("`{e}`") }
        )),
        None => Err(format!(
            "`{name}` is a setting of the {lib} module, which this database does not load: add `{lib}` to shared_preload_libraries{}",
            if preload_only { "" } else { " or session_preload_libraries" }
        )),
    }
}

fn unknown(m: &Manifest, name: &str) -> Result<(), String> {
    let major = m.major;
    let names = || m.settings.keys().map(String::as_str);
    let Some((prefix, _)) = name.split_once('.') else {
        let core = names().filter(|n| !n.contains('.'));
        let hint = did_you_mean(name, core)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "unknown setting `{name}` in PostgreSQL {major}{hint}"
        ));
    };
    let prefixes: BTreeSet<&str> = names()
        .filter_map(|n| n.split_once('.'))
        .map(|(p, _)| p)
        .collect();
    if prefixes.contains(prefix) {
        let same: Vec<&str> = names()
            .filter(|n| n.starts_with(&format!("{prefix}.")))
            .collect();
        let lib = same
            .first()
            .and_then(|n| m.settings[*n].library.clone())
            .unwrap_or_default();
        let hint = did_you_mean(name, same.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        const SHOWN: usize = 6;
        let more = if same.len() > SHOWN {
            format!(", ... ({} in all)", same.len())
        } else {
            String::new()
        };
        return Err(format!(
            "unknown setting `{name}`{hint}; {lib} in PostgreSQL {major} has {}{more}",
            same[..same.len().min(SHOWN)].join(", ")
        ));
    }
    // A near miss of a module's prefix is a typo; anything else is a
    // custom setting, which PostgreSQL accepts (`myapp.tenant`).
    let near = prefixes.iter().copied().find(|p| {
        let d = strsim::levenshtein(p, prefix);
        d == 1 || (d == 2 && prefix.len() >= 8)
    });
    match near {
        Some(p) => Err(format!(
            "unknown setting `{name}`: no module of PostgreSQL {major} defines `{prefix}.*` (did you mean `{p}.*`?)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_values_name_their_modules() {
        assert_eq!(
            libraries("'$libdir/pg_cron', pgaudit.so , \"spock\""),
            ["pg_cron", "pgaudit", "spock"]
        );
        assert!(libraries("").is_empty());
    }
}
