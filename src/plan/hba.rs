//! `pg_hba.conf` and `pg_ident.conf` as the planner sees them: the files
//! every instance of a node should have, rendered whole from the spec and
//! the registered hosts' addresses, and the step that writes them (then
//! reloads: both files are read at a reload, no restart) on an instance
//! whose files differ. Pure; this file must not do I/O.
//!
//! PostgreSQL uses the first `pg_hba.conf` line that matches a connection,
//! so the order is the policy:
//! 1. pgcd's own access, which no line of the spec can take away: the
//!    agent as the superuser (its socket, or TCP from the node's hosts when
//!    the socket path is too long), physical replication from this node's
//!    hosts only, and pgcd's replication role in a database (subscriptions
//!    of the other nodes, `pg_rewind`, the agents' slots and copies) from
//!    the database's hosts only, both over TLS only (`hostssl`) when the
//!    server has TLS;
//! 2. pgcd's replication role from anywhere else: refused, whatever the
//!    spec's lines say;
//! 3. the spec's lines: the database's `pg_hba_conf`, then the node's
//!    (which the spec's doc says come after the database's);
//! 4. pgcd's catch-all: local connections trust (`docker exec`), every
//!    other TCP connection needs a password, checked with SCRAM.
//!
//! Hosts on one machine (loopback advertise addresses, the simulated
//! hosts) reach each other from 127.0.0.1, which their lines then allow.

use super::instance::{Steps, SETTINGS};
use super::steps::Action;
use super::Index;
use crate::spec::database::NodeSpec;
use crate::spec::names::HostId;
use crate::spec::Database;
use crate::state::actual::InstanceActual;
use crate::state::names::REPLICATION_ROLE;
use crate::state::Actual;
use std::net::IpAddr;

/// The first line of both files.
const MANAGED: &str =
    "# Managed by pgcd from the spec (pg_hba_conf, pg_ident_conf): edits here are undone.";

/// `ADDRESS/32` (or `/128`) of each registered host among `hosts`, sorted;
/// 127.0.0.1 too when one is a loopback address. A host not registered
/// yet has no address and no line: its registration changes the file.
fn cidrs<'a>(hosts: impl IntoIterator<Item = &'a HostId>, actual: &Actual) -> Vec<String> {
    let mut out = Vec::new();
    for h in hosts {
        let Some(ip) = actual
            .host(h)
            .and_then(|a| a.address.parse::<IpAddr>().ok())
        else {
            continue;
        };
        match ip {
            IpAddr::V4(v4) => {
                out.push(format!("{v4}/32"));
                if v4.is_loopback() {
                    out.push("127.0.0.1/32".into());
                }
            }
            IpAddr::V6(v6) => out.push(format!("{v6}/128")),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The `pg_hba.conf` every instance of `node` should have, in the order
/// the module's doc gives; `tls`: the server has TLS on, so pgcd's own
/// replication lines accept only TLS connections (`hostssl`).
pub fn hba_lines(db: &Database, node: &NodeSpec, actual: &Actual, tls: bool) -> Vec<String> {
    let ssl = if tls { "hostssl" } else { "host" };
    let members = cidrs(&node.host_ids, actual);
    let everywhere = cidrs(db.nodes.iter().flat_map(|n| &n.host_ids), actual);
    let su = super::SUPERUSER;
    let repl = REPLICATION_ROLE;
    let mut out = vec![
        MANAGED.to_string(),
        "# 1. pgcd's own access, before the spec's lines so that none of them locks pgcd out"
            .into(),
        format!("local all {su} trust"),
    ];
    out.extend(
        members
            .iter()
            .map(|a| format!("host all {su} {a} scram-sha-256")),
    );
    out.push(format!(
        "# physical replication from the hosts of node {} only",
        node.name
    ));
    out.extend(
        members
            .iter()
            .map(|a| format!("{ssl} replication {repl} {a} scram-sha-256")),
    );
    // Every connection as the role uses TLS when the server has it:
    // subscriptions and pg_rewind (libpq, verify-full) and the agents' own
    // (the publisher's slot, a node's join and its pg_dump).
    out.push(format!(
        "# subscriptions, pg_rewind and the agents from the hosts of database {} only",
        db.database_name
    ));
    out.extend(
        everywhere
            .iter()
            .map(|a| format!("{ssl} all {repl} {a} scram-sha-256")),
    );
    out.push(format!(
        "# 2. {repl} from anywhere else is refused, whatever the spec's lines say"
    ));
    for a in ["0.0.0.0/0", "::/0"] {
        out.push(format!("host replication {repl} {a} reject"));
        out.push(format!("host all {repl} {a} reject"));
    }
    out.push("# 3. the spec's pg_hba_conf: the database's, then the node's".into());
    out.extend(db.pg_hba_conf.iter().map(|l| l.trim().to_string()));
    out.extend(node.pg_hba_conf.iter().map(|l| l.trim().to_string()));
    out.extend([
        "# 4. pgcd's catch-all: local connections trust (docker exec), TCP needs a password (scram only)".into(),
        "local all all trust".into(),
        "host all all 0.0.0.0/0 scram-sha-256".into(),
        "host all all ::/0 scram-sha-256".into(),
    ]);
    out
}

/// [`hba_lines`] rendered with TLS, as they are without: pgcd's own lines
/// for its replication role `host` instead of `hostssl` (the spec's lines
/// never name the role, the validator refuses them). For a new instance,
/// whose server's TLS is known only once it runs.
pub fn without_tls(hba: &[String]) -> Vec<String> {
    let own = [
        format!("hostssl replication {REPLICATION_ROLE} "),
        format!("hostssl all {REPLICATION_ROLE} "),
    ];
    hba.iter()
        .map(|l| match l.strip_prefix("hostssl ") {
            Some(rest) if own.iter().any(|o| l.starts_with(o.as_str())) => format!("host {rest}"),
            _ => l.clone(),
        })
        .collect()
}

/// The `pg_ident.conf` every instance of `node` should have: the
/// database's `pg_ident_conf`, then the node's.
pub fn ident_lines(db: &Database, node: &NodeSpec) -> Vec<String> {
    std::iter::once(MANAGED.to_string())
        .chain(
            db.pg_ident_conf
                .iter()
                .chain(&node.pg_ident_conf)
                .map(|l| l.trim().to_string()),
        )
        .collect()
}

/// Plans writing both files on the running instance `i` of `node` when
/// they differ from what they should be. Nothing is planned while the
/// instance has not reported its files (not answering, or an agent from
/// before this step existed).
pub(super) fn step(
    db: &Database,
    node: &NodeSpec,
    i: &InstanceActual,
    index: &Index,
    s: &mut Steps,
) {
    let Some(have) = i.auth.as_ref().filter(|_| i.running) else {
        return;
    };
    let hba = hba_lines(db, node, index.actual, have.tls);
    let ident = ident_lines(db, node);
    let mut why = Vec::new();
    for (file, want, has) in [
        ("pg_hba.conf", &hba, &have.hba),
        ("pg_ident.conf", &ident, &have.ident),
    ] {
        if want != has {
            why.push(difference(file, want, has));
        }
    }
    if why.is_empty() {
        return;
    }
    let reason = format!(
        "{}/{} on {}: {} (a reload, no restart)",
        db.database_name,
        node.name,
        i.host,
        why.join("; ")
    );
    s.add(
        SETTINGS,
        "auth",
        Action::WriteAuthFiles { hba, ident },
        reason,
    );
}

/// What differs between two versions of a file, in words: the lines added
/// and removed (the first few), or "reordered".
fn difference(file: &str, want: &[String], has: &[String]) -> String {
    const SHOWN: usize = 3;
    let quote = |ls: Vec<&String>| {
        let mut t: Vec<String> = ls.iter().take(SHOWN).map(|l| format!("`{l}`")).collect();
        if ls.len() > SHOWN {
            t.push(format!("{} more", ls.len() - SHOWN));
        }
        t.join(", ")
    };
    let added: Vec<&String> = want.iter().filter(|l| !has.contains(l)).collect();
    let removed: Vec<&String> = has.iter().filter(|l| !want.contains(l)).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("adds {}", quote(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removes {}", quote(removed)));
    }
    if parts.is_empty() {
        parts.push("puts its lines back in order".into());
    }
    format!("{file} {}", parts.join(" and "))
}

#[cfg(test)]
#[path = "hba_tests.rs"]
mod tests;
