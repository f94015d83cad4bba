//! Rules of one file that decoding alone cannot check: references inside a
//! database, reserved names, managed settings, cron expressions.

use super::backup_rules::{check_backup, check_restore};
pub use super::backup_rules::{check_restore_options, parse_cron};
use super::database::{Database, DatabaseState, MajorUpgrade, Replication, RoleAttribute};
use super::diag::{Diagnostic, SpanMap};
use super::names::{RESERVED_DATABASES, RESERVED_ROLES};
use super::values::ConfValue;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Settings pgcd sets itself; a spec that sets them would fight it.
pub const MANAGED_SETTINGS: &[(&str, &str)] = &[
    ("port", "use the spec's `port` field"),
    ("listen_addresses", "pgcd listens on the host's address"),
    ("wal_level", "pgcd sets it to `logical` for replication"),
    ("hba_file", "use `pg_hba_conf`"),
    ("ident_file", "use `pg_ident_conf`"),
    ("config_file", "pgcd owns the configuration files"),
    ("data_directory", "pgcd owns the data directory"),
    ("external_pid_file", "pgcd supervises the server"),
    ("unix_socket_directories", "pgcd connects through it"),
    ("cluster_name", "pgcd names each instance"),
    ("hot_standby", "pgcd manages standbys"),
    ("primary_conninfo", "pgcd manages standbys"),
    ("primary_slot_name", "pgcd manages standbys"),
    ("restore_command", "pgcd configures pgBackRest"),
    ("archive_mode", "pgcd configures pgBackRest"),
    ("archive_command", "pgcd configures pgBackRest"),
];

/// The lowest port a spec may use: below it needs root.
pub const MIN_PORT: u16 = 1024;

/// Every rule of one database file.
pub fn check_database(db: &Database, stem: &str, spans: &SpanMap) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut err = |path: &str, msg: String| out.push(spans.error(path, msg));
    let name = db.database_name.as_str();
    if RESERVED_DATABASES.contains(&name) {
        err(
            "database_name",
            format!(
                "\"{name}\" is reserved (reserved: {})",
                RESERVED_DATABASES.join(", ")
            ),
        );
    }
    if name != stem {
        err("database_name", format!("\"{name}\" differs from the file name; rename the file to databases/{name}.yaml or change database_name to \"{stem}\""));
    }
    check_port(db.port, "port", &mut err);
    if let Some(v) = &db.spock_version {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
            err(
                "spock_version",
                format!("\"{v}\" is not a Spock major version (e.g. \"5\")"),
            );
        }
        if db.replication == Some(Replication::Native) {
            err(
                "spock_version",
                "spock_version is set but replication is native; remove one".into(),
            );
        }
    }
    match (db.state, &db.confirm_delete) {
        (Some(DatabaseState::Absent), None) => err(
            "state",
            format!("absent deletes the database; add `confirm_delete: {name}` to confirm"),
        ),
        (Some(DatabaseState::Absent), Some(c)) if c != name => err(
            "confirm_delete",
            format!("must equal the database name \"{name}\" to delete it"),
        ),
        (Some(DatabaseState::Absent), Some(_)) => {}
        (_, Some(_)) => err(
            "confirm_delete",
            "only allowed with state: absent (a leftover confirmation would arm a later deletion)"
                .into(),
        ),
        (_, None) => {}
    }
    if db.delete_data.is_some() && db.state != Some(DatabaseState::Absent) {
        err("delete_data", "only allowed with state: absent".into());
    }
    if db.major_upgrade == Some(MajorUpgrade::InPlace) && db.nodes.len() > 1 {
        err(
            "major_upgrade",
            format!(
                "in_place upgrades a single-node database; {name} has {} nodes: upgrade it by node addition (add a node with the new postgres_version, then remove an old one), the default node_add",
                db.nodes.len()
            ),
        );
    }

    // Nodes: names unique, a host once per node, references resolve. Two
    // nodes may share a host on different ports (checked with every other
    // database's ports in `ports.rs`). Emptiness is checked while decoding.
    let mut node_names: HashMap<&str, usize> = HashMap::new();
    for (i, node) in db.nodes.iter().enumerate() {
        let p = format!("nodes[{i}]");
        if let Some(first) = node_names.insert(node.name.as_str(), i) {
            err(
                &format!("{p}.name"),
                format!(
                    "node name \"{}\" is already used by nodes[{first}]",
                    node.name
                ),
            );
        }
        let mut hosts: HashMap<&str, usize> = HashMap::new();
        for (j, host) in node.host_ids.iter().enumerate() {
            if let Some(prev) = hosts.insert(host.as_str(), j) {
                err(
                    &format!("{p}.host_ids[{j}]"),
                    format!("host \"{host}\" is listed twice (also {p}.host_ids[{prev}]); a node has at most one instance per host"),
                );
            }
        }
        check_port(node.port, &format!("{p}.port"), &mut err);
        check_conf(
            &node.postgresql_conf,
            &format!("{p}.postgresql_conf"),
            &mut err,
        );
        check_hba(&node.pg_hba_conf, &format!("{p}.pg_hba_conf"), &mut err);
        check_ident(&node.pg_ident_conf, &format!("{p}.pg_ident_conf"), &mut err);
        if let Some(b) = &node.backup_config {
            check_backup(b, &format!("{p}.backup_config"), spans, &mut err);
        }
        if node.synchronous == Some(true) && node.host_ids.len() < 2 {
            err(
                &format!("{p}.synchronous"),
                "synchronous standbys need a second host in host_ids".into(),
            );
        }
        if let Some(r) = &node.restore_config {
            check_restore(
                &r.repository,
                r.restore_options.as_ref(),
                &format!("{p}.restore_config"),
                &mut err,
            );
            if node.source_node.is_some() {
                err(
                    &format!("{p}.source_node"),
                    "a node is created either from source_node or from restore_config, not both"
                        .into(),
                );
            }
        }
    }
    for (i, node) in db.nodes.iter().enumerate() {
        if let Some(src) = &node.source_node {
            let p = format!("nodes[{i}].source_node");
            if src == node.name {
                err(&p, "a node cannot copy its data from itself".into());
            } else if !node_names.contains_key(src.as_str()) {
                err(
                    &p,
                    format!(
                        "no node \"{src}\" in this database (nodes: {})",
                        list(db.nodes.iter().map(|n| n.name.as_str()))
                    ),
                );
            }
        }
    }

    // Users.
    let mut users: HashMap<&str, usize> = HashMap::new();
    let mut owner: Option<usize> = None;
    for (i, user) in db.database_users.iter().enumerate() {
        let p = format!("database_users[{i}]");
        let uname = user.username.as_str();
        if let Some(first) = users.insert(uname, i) {
            err(
                &format!("{p}.username"),
                format!("user \"{uname}\" is already defined by database_users[{first}]"),
            );
        }
        if RESERVED_ROLES.contains(&uname) || uname.starts_with("pg_") {
            err(
                &format!("{p}.username"),
                format!(
                    "\"{uname}\" is reserved (pg_* and {})",
                    RESERVED_ROLES.join(", ")
                ),
            );
        }
        if user.db_owner == Some(true) {
            if let Some(first) = owner {
                err(
                    &format!("{p}.db_owner"),
                    format!("database_users[{first}] already owns the database; only one user can"),
                );
            }
            owner = Some(i);
        }
        if let Some(attrs) = &user.attributes {
            let has = |a: RoleAttribute| attrs.contains(&a);
            if has(RoleAttribute::Login) && has(RoleAttribute::NoLogin) {
                err(
                    &format!("{p}.attributes"),
                    "LOGIN and NOLOGIN contradict each other".into(),
                );
            }
            if has(RoleAttribute::Inherit) && has(RoleAttribute::NoInherit) {
                err(
                    &format!("{p}.attributes"),
                    "INHERIT and NOINHERIT contradict each other".into(),
                );
            }
        }
        for (j, role) in user.roles.iter().enumerate() {
            if role.is_empty() || role.len() > 63 {
                err(
                    &format!("{p}.roles[{j}]"),
                    "a role name has 1 to 63 bytes".into(),
                );
            }
        }
        if !user.present() {
            if user.db_owner == Some(true) {
                err(
                    &format!("{p}.db_owner"),
                    format!("user \"{uname}\" has state: absent and cannot own the database; make another user db_owner (or none: then postgres owns it)"),
                );
            }
            if !user.roles.is_empty() {
                err(
                    &format!("{p}.roles"),
                    format!("user \"{uname}\" has state: absent; roles are not granted to a role being dropped (remove them)"),
                );
            }
        }
    }
    for (i, user) in db.database_users.iter().enumerate() {
        for (j, role) in user.roles.iter().enumerate() {
            let absent = db
                .database_users
                .iter()
                .find(|u| u.username.as_str() == role.as_str())
                .filter(|u| !u.present());
            if let Some(a) = absent {
                err(
                    &format!("database_users[{i}].roles[{j}]"),
                    format!(
                        "\"{}\" has state: absent and is dropped; it cannot be granted to \"{}\"",
                        a.username, user.username
                    ),
                );
            }
        }
    }

    // Extensions, settings, scripts, backups.
    let mut seen = HashSet::new();
    for (i, ext) in db.extensions.iter().enumerate() {
        if !seen.insert(ext.name.as_str()) {
            err(
                &format!("extensions[{i}]"),
                format!("extension \"{}\" is listed twice", ext.name),
            );
        }
        if ext.cascade.is_some() && ext.present() {
            err(
                &format!("extensions[{i}].cascade"),
                format!(
                    "cascade applies to dropping an extension: it needs `state: absent` on \"{}\"",
                    ext.name
                ),
            );
        }
        if ext.version.is_some() && !ext.present() {
            err(
                &format!("extensions[{i}].version"),
                format!(
                    "extension \"{}\" has state: absent; a version has no meaning (remove it)",
                    ext.name
                ),
            );
        }
    }
    check_conf(&db.postgresql_conf, "postgresql_conf", &mut err);
    check_hba(&db.pg_hba_conf, "pg_hba_conf", &mut err);
    check_ident(&db.pg_ident_conf, "pg_ident_conf", &mut err);
    if let Some(scripts) = &db.scripts {
        for (field, stmts) in [
            ("post_init", &scripts.post_init),
            ("post_database_create", &scripts.post_database_create),
        ] {
            for (i, s) in stmts.iter().enumerate() {
                if s.trim().is_empty() {
                    err(
                        &format!("scripts.{field}[{i}]"),
                        "an empty statement".into(),
                    );
                } else if let Some(word) = transaction_control(s) {
                    err(
                        &format!("scripts.{field}[{i}]"),
                        format!("{word} ends or opens a transaction; pgcd runs all of scripts.{field} in one transaction of its own (remove it; statements that cannot run in a transaction, like VACUUM or CREATE DATABASE, do not belong here)"),
                    );
                }
            }
        }
    }
    if let Some(b) = &db.backup_config {
        check_backup(b, "backup_config", spans, &mut err);
    }
    if let Some(r) = &db.restore_config {
        check_restore(
            &r.repository,
            r.restore_options.as_ref(),
            "restore_config",
            &mut err,
        );
    }
    out
}

/// The transaction-control keyword a script statement starts with, if any
/// (savepoints are fine: they stay inside pgcd's transaction).
fn transaction_control(stmt: &str) -> Option<&'static str> {
    let mut words = stmt
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase);
    let first = words.next()?;
    if first == "ROLLBACK" && words.next().as_deref() == Some("TO") {
        return None;
    }
    ["BEGIN", "COMMIT", "ROLLBACK", "END", "ABORT", "START"]
        .into_iter()
        .find(|w| *w == first)
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn check_port(port: Option<u16>, path: &str, err: &mut impl FnMut(&str, String)) {
    match port {
        // pgEdge reads 0 as "pick a random port"; pgcd's instances listen on
        // one fixed port that clients and the other nodes are told about.
        Some(0) => err(
            path,
            format!("port 0 (a random port) is not supported: give a fixed port ({MIN_PORT}-65535), or leave `port` out for 5432"),
        ),
        Some(p) if p < MIN_PORT => {
            err(path, format!("port {p} is out of range ({MIN_PORT}-65535)"))
        }
        _ => {}
    }
}

fn check_conf(conf: &BTreeMap<String, ConfValue>, path: &str, err: &mut impl FnMut(&str, String)) {
    for key in conf.keys() {
        let p = format!("{path}.{key}");
        if let Some((_, why)) = MANAGED_SETTINGS
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            err(
                &p,
                format!("`{key}` is managed by pgcd and may not be set here ({why})"),
            );
        } else if !key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
            || !key.starts_with(|c: char| c.is_ascii_lowercase())
        {
            err(
                &p,
                format!("\"{key}\" is not a PostgreSQL setting name (a-z, 0-9, '_', '.')"),
            );
        }
    }
}

/// pgcd's replication role (`state::names::REPLICATION_ROLE`; `spec`
/// imports nothing of pgcd's other modules), one of [`RESERVED_ROLES`].
const PGCD_REPLICATION: &str = "pgcd_replication";

const HBA_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
    "include",
    "include_if_exists",
    "include_dir",
];

fn check_hba(lines: &[String], path: &str, err: &mut impl FnMut(&str, String)) {
    for (i, line) in lines.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if line.contains('\n') {
            err(&p, "one pg_hba.conf line per list item".into());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first() else {
            err(&p, "an empty pg_hba.conf line".into());
            continue;
        };
        let min = match *first {
            "local" => 4,
            t if t.starts_with("include") => 2,
            t if HBA_TYPES.contains(&t) => 5,
            other => {
                err(
                    &p,
                    format!(
                        "\"{other}\" is not a pg_hba.conf connection type ({})",
                        HBA_TYPES.join(", ")
                    ),
                );
                continue;
            }
        };
        if words.len() < min {
            err(
                &p,
                format!(
                    "a \"{first}\" line has at least {min} fields: {}",
                    if min == 4 {
                        "local DATABASE USER METHOD"
                    } else {
                        "TYPE DATABASE USER ADDRESS METHOD"
                    }
                ),
            );
            continue;
        }
        // pgcd's roles have SCRAM verifiers only: md5 is a weak hash that
        // PostgreSQL deprecates, `password` sends the password in clear.
        // An address may be written as ADDRESS MASK, which moves the method.
        let masked = min == 5
            && words.len() > 5
            && words[3].parse::<std::net::IpAddr>().is_ok()
            && words[4].parse::<std::net::IpAddr>().is_ok();
        let method = if masked { 5 } else { min - 1 };
        if min > 2 && words[2].split(',').any(|u| u == PGCD_REPLICATION) {
            err(
                &p,
                format!(
                    "{} is pgcd's own role: pgcd writes its lines (replication between the database's hosts only), before the spec's",
                    PGCD_REPLICATION
                ),
            );
        }
        if min > 2 {
            if let method @ ("md5" | "password") = words[method] {
                err(
                    &p,
                    format!("pgcd never uses \"{method}\" authentication: use scram-sha-256"),
                );
            }
        }
    }
}

/// A `pg_ident.conf` line: `MAP SYSTEM-USERNAME PG-USERNAME`, or an
/// `include*` line with its file.
fn check_ident(lines: &[String], path: &str, err: &mut impl FnMut(&str, String)) {
    for (i, line) in lines.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if line.contains('\n') {
            err(&p, "one pg_ident.conf line per list item".into());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let include = words.first().is_some_and(|w| w.starts_with("include"));
        let (min, form) = if include {
            (2, "include FILE")
        } else {
            (3, "MAPNAME SYSTEM-USERNAME PG-USERNAME")
        };
        if words.len() < min {
            err(
                &p,
                format!("a pg_ident.conf line has at least {min} fields: {form}"),
            );
        }
    }
}
