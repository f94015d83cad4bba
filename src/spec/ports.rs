//! Ports across the whole revision: on one host, every instance of every
//! database and node listens on a port of its own. Nodes of one database may
//! share a host (pgEdge's quickstart runs three nodes on one laptop) because
//! containers and data directories are named per node; the port is what they
//! cannot share.

use super::database::Database;
use super::defaults;
use super::diag::{Diagnostic, SpanMap};
use std::collections::HashMap;

/// Who listens on a host's port first (in file order, then node order).
struct Holder<'a> {
    database: &'a str,
    file: &'a str,
    node: &'a str,
    node_index: usize,
}

/// One error per instance whose port is already taken on its host.
pub fn check(dbs: &[(Database, SpanMap)], diags: &mut Vec<Diagnostic>) {
    let mut used: HashMap<(&str, u16), Holder> = HashMap::new();
    let mut order: Vec<&(Database, SpanMap)> = dbs.iter().collect();
    order.sort_by(|a, b| a.1.file().cmp(b.1.file()));
    for (db, spans) in order {
        for (i, node) in db.nodes.iter().enumerate() {
            let port = node.port.or(db.port).unwrap_or(defaults::DEFAULT_PORT);
            for (j, host) in node.host_ids.iter().enumerate() {
                let key = (host.as_str(), port);
                let Some(first) = used.get(&key) else {
                    used.insert(
                        key,
                        Holder {
                            database: db.database_name.as_str(),
                            file: spans.file(),
                            node: node.name.as_str(),
                            node_index: i,
                        },
                    );
                    continue;
                };
                let same_db = first.database == db.database_name.as_str();
                if same_db && first.node_index == i {
                    continue; // the same host twice in one node: reported by the node's rules
                }
                // Point at whatever decided the port: the node's, the database's, or the default.
                let path = if node.port.is_some() {
                    format!("nodes[{i}].port")
                } else if db.port.is_some() && !same_db {
                    "port".to_string()
                } else {
                    format!("nodes[{i}].host_ids[{j}]")
                };
                let msg = if same_db {
                    format!(
                        "port {port} on host {host} is already used by node {} (nodes[{}]) of this database; nodes sharing a host need different ports (set `port` on the node)",
                        first.node, first.node_index
                    )
                } else {
                    format!(
                        "port {port} on host {host} is already used by database {} ({}, node {}); give one of them another port",
                        first.database, first.file, first.node
                    )
                };
                diags.push(spans.error(&path, msg));
            }
        }
    }
}
