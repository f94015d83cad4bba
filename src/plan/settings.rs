//! `postgresql.conf` as the planner sees it: the settings a node should
//! have, which of them need a restart, and comparing values the way
//! PostgreSQL normalises them. Pure functions; this file must not do I/O.

use crate::spec::database::NodeSpec;
use crate::spec::extensions;
use crate::spec::Database;
use std::collections::BTreeMap;

/// Settings PostgreSQL reads only at server start (`context = postmaster`)
/// in any image pgcd builds, its modules' settings included: the images'
/// settings catalogs' answer (`postgres --describe-config` via pg_settings at
/// image build time), one name a line; `tests/images.rs` fails when it
/// differs from the catalogs. Any other name the instance reports in
/// `pending_restart` needs a restart too.
pub const RESTART_SETTINGS: &str = include_str!("restart_settings.txt");

/// Whether changing `name` takes a restart.
pub fn needs_restart(name: &str) -> bool {
    RESTART_SETTINGS
        .lines()
        .any(|l| !l.starts_with('#') && l == name)
}

/// The settings a node's instances should have: the database's
/// `postgresql_conf`, the node's merged over it, and the preload libraries
/// of the declared extensions appended to `shared_preload_libraries` —
/// only those `offered` by the image, because a server does not start with
/// a library it cannot load.
pub fn desired(
    db: &Database,
    node: &NodeSpec,
    offered: &dyn Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = db
        .postgresql_conf
        .iter()
        .chain(&node.postgresql_conf)
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    out.extend(super::backup::archive_settings(db, node));
    let spock = crate::state::actual::spock_wired(db) && offered("spock");
    if crate::state::actual::native_mesh(db) || spock {
        out.insert("wal_level".into(), "logical".into());
    }
    if node.host_ids.len() > 1 && !out.contains_key("wal_receiver_timeout") {
        // A standby notices a lost primary within seconds, even cut off by
        // a partition, so a failover can compare final positions.
        out.insert("wal_receiver_timeout".into(), "5s".into());
    }
    if spock {
        // Spock resolves conflicts by commit time.
        out.insert("track_commit_timestamp".into(), "on".into());
    }
    let mut preload: Vec<&str> = db
        .extensions
        .iter()
        .filter(|e| {
            e.present() && extensions::known(&e.name).is_some_and(|k| k.preload) && offered(&e.name)
        })
        .map(|e| e.name.as_str())
        .collect();
    if spock && !preload.contains(&"spock") {
        preload.insert(0, "spock");
    }
    if !preload.is_empty() {
        let mut libs = list(
            out.get("shared_preload_libraries")
                .map_or("", String::as_str),
        );
        for p in preload {
            if !libs.iter().any(|l| l == p) {
                libs.push(p.to_string());
            }
        }
        out.insert("shared_preload_libraries".into(), libs.join(","));
    }
    out
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().trim_matches('"').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Memory units PostgreSQL accepts (powers of 1024, `kB` is 1024 bytes).
const MEMORY: &[(&str, f64)] = &[
    ("B", 1.0),
    ("kB", 1024.0),
    ("MB", 1048576.0),
    ("GB", 1073741824.0),
    ("TB", 1099511627776.0),
];
/// Time units PostgreSQL accepts, in milliseconds.
const TIME: &[(&str, f64)] = &[
    ("us", 0.001),
    ("ms", 1.0),
    ("s", 1000.0),
    ("min", 60000.0),
    ("h", 3600000.0),
    ("d", 86400000.0),
];

/// A value in a form two spellings of the same setting share.
#[derive(Debug, PartialEq)]
enum Norm {
    Bool(bool),
    Number(f64),
    Bytes(f64),
    Millis(f64),
    Text(String),
}

fn normalise(raw: &str) -> Norm {
    let s = raw.trim().trim_matches('\'');
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => return Norm::Bool(true),
        "off" | "false" | "no" => return Norm::Bool(false),
        _ => {}
    }
    if let Ok(n) = s.parse::<f64>() {
        return Norm::Number(n);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if let Ok(n) = num.parse::<f64>() {
        let unit = unit.trim();
        if let Some((_, m)) = MEMORY.iter().find(|(u, _)| *u == unit) {
            return Norm::Bytes(n * m);
        }
        if let Some((_, m)) = TIME.iter().find(|(u, _)| *u == unit) {
            return Norm::Millis(n * m);
        }
    }
    if s.contains(',') {
        return Norm::Text(list(s).join(","));
    }
    Norm::Text(s.to_string())
}

/// Whether two spellings of a setting mean the same: `on`/`true`,
/// `1GB`/`1024MB`, `1min`/`60s`, `a, b`/`a,b`. A bare number against a value
/// with a unit (`131072` vs `1GB` for `shared_buffers`) compares unequal:
/// the planner does not know each setting's base unit.
pub fn same(a: &str, b: &str) -> bool {
    a == b || normalise(a) == normalise(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_postgresql_treats_alike_compare_equal() {
        assert!(same("on", "true"));
        assert!(same("off", "FALSE"));
        assert!(same("1GB", "1024MB"));
        assert!(same("16384kB", "16MB"));
        assert!(same("1min", "60s"));
        assert!(same("200", "200.0"));
        assert!(same("pg_cron, pgaudit", "pg_cron,pgaudit"));
        assert!(!same("4MB", "16MB"));
        assert!(!same("pgaudit,pg_cron", "pg_cron,pgaudit"));
        assert!(!same("131072", "1GB"));
    }
}
