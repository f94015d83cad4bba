//! Native logical replication between a database's nodes: every node's
//! primary publishes all tables (`pgcd_all`) and subscribes to every other
//! node with `origin = none`, so a change made on one node reaches each
//! other node once and never comes back. Planned once both ends run (or are
//! being set up in this plan, after whose steps the mesh steps come).
//! A node added to nodes that already replicate joins them with one step
//! that copies a member and starts every link where the copy ends (see
//! `runtime::join`). Pure; this file must not do I/O.

use super::instance::step;
use super::steps::{Action, Note, NoteKind, Peer, Plan};
use super::Index;
use crate::spec::names::{HostId, NodeName};
use crate::spec::Database;
use crate::state::actual::{InstanceActual, InstanceRole};
use crate::state::names::{publication_name, subscription_name, SEQUENCE_STRIDE};

/// One node's primary as the mesh sees it.
struct Member<'a> {
    node: &'a NodeName,
    host: &'a HostId,
    inst: Option<&'a InstanceActual>,
    address: String,
    port: u16,
    /// Ids of this plan's steps on it (the mesh steps wait for them).
    prior: Vec<String>,
}

impl Member<'_> {
    /// Its server has TLS, as it last reported (one not reported yet is
    /// taken to: every image but PostgreSQL 16's has it). The same fact
    /// makes its `pg_hba.conf` admit the replication role by `hostssl`.
    fn tls(&self) -> bool {
        self.inst
            .and_then(|i| i.auth.as_ref())
            .is_none_or(|a| a.tls)
    }
}

/// Plans the publications and subscriptions a natively replicated
/// database lacks, and notes links that are down.
pub(super) fn steps(db: &Database, index: &Index, out: &mut Plan) {
    let name = &db.database_name;
    let mut members: Vec<Member> = Vec::new();
    for node in &db.nodes {
        let node_name = &node.name;
        let Some(primary) = super::instance::primary_host(name, node, index) else {
            continue;
        };
        let Some(host) = index.actual.host(primary).filter(|h| h.healthy && h.docker) else {
            continue; // host_ready has noted it
        };
        let inst = index.instance(name, node_name, primary);
        let prefix = format!("{name}/{node_name}/{primary}/");
        let prior: Vec<String> = out
            .steps
            .iter()
            .filter(|s| s.id.starts_with(&prefix))
            .map(|s| s.id.clone())
            .collect();
        let runs = inst.is_some_and(|i| {
            i.running
                && i.role == InstanceRole::Primary
                && i.database_exists
                && i.settings.get("wal_level").map(String::as_str) == Some("logical")
        });
        if !runs && prior.is_empty() {
            out.notes.push(Note {
                kind: NoteKind::Replication,
                database: name.clone(),
                message: format!(
                    "{name}/{node_name}: replication with the other nodes waits for its primary on {primary} to run with wal_level = logical"
                ),
            });
            continue;
        }
        let has_database = inst.is_some_and(|i| i.database_exists)
            || prior.iter().any(|p| *p == format!("{prefix}database"));
        if !has_database {
            // No database to replicate yet (a node waiting for the first
            // node's scripts is noted by `catalog`).
            continue;
        }
        members.push(Member {
            node: node_name,
            host: primary,
            inst,
            address: host.address.clone(),
            port: node
                .port
                .or(db.port)
                .unwrap_or(crate::spec::defaults::DEFAULT_PORT),
            prior,
        });
    }
    // Nodes that replicate (or were set up to) form the mesh; a node with
    // no data joins it by copying one of them (zero-downtime node
    // addition). When none replicates yet and all are empty they are wired
    // at once; when exactly one holds tables it seeds the others.
    let joined = |m: &Member| m.inst.is_some_and(|i| in_mesh(i, m.node));
    // The first node holds what `scripts.post_database_create` made (tables
    // or not): the others copy it rather than start empty beside it.
    let scripted = db
        .scripts
        .as_ref()
        .is_some_and(|s| !s.post_database_create.is_empty());
    let first = db.nodes.first().map(|n| &n.name);
    let holds =
        |m: &Member| m.inst.is_some_and(|i| i.tables > 0) || (scripted && Some(m.node) == first);
    let joining: Vec<usize> = if !members.iter().any(holds) {
        // No node has data to copy: all are wired at once.
        Vec::new()
    } else if members.iter().any(joined) {
        (0..members.len())
            .filter(|&k| !joined(&members[k]))
            .collect()
    } else {
        let holding: Vec<usize> = (0..members.len()).filter(|&k| holds(&members[k])).collect();
        match holding.as_slice() {
            [] => Vec::new(),
            [seed] => (0..members.len()).filter(|k| k != seed).collect(),
            _ => {
                let nodes: Vec<&str> = holding.iter().map(|&k| members[k].node.as_str()).collect();
                out.notes.push(Note {
                    kind: NoteKind::Replication,
                    database: name.clone(),
                    message: format!(
                        "{name}: nodes {} all hold tables and none replicates yet; pgcd will not merge them (empty all but one)",
                        nodes.join(", ")
                    ),
                });
                return;
            }
        }
    };
    let newcomers: Vec<Member> = joining
        .iter()
        .rev()
        .map(|&k| members.remove(k))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let step = |m: &Member, what: String, action: Action, reason: String, deps: Vec<String>| {
        step((name, m.node, m.host), &what, action, reason, deps)
    };
    removed_nodes(db, index, &members, out);
    // Keys: each node's sequences step by the stride from their own residue.
    for m in &members {
        let Some(i) = m.inst.filter(|i| !i.unaligned_sequences.is_empty()) else {
            continue;
        };
        let Some(k) = db.nodes.iter().position(|n| n.name.as_str() == m.node) else {
            continue;
        };
        out.steps.push(step(
            m,
            "sequences".into(),
            Action::AlignSequences {
                offset: k as i64 + 1,
                stride: SEQUENCE_STRIDE,
                sequences: i.unaligned_sequences.clone(),
            },
            format!(
                "{name}/{}: {} sequence(s) would hand out the same keys as other nodes",
                m.node,
                i.unaligned_sequences.len()
            ),
            m.prior.clone(),
        ));
    }
    // Publications first, so every subscription finds its publisher's.
    let mut ready: Vec<Vec<String>> = Vec::new();
    for m in &members {
        let mut deps = m.prior.clone();
        if !m.inst.is_some_and(|i| i.autoddl) {
            let s = step(
                m,
                "autoddl".into(),
                Action::InstallAutoDdl {
                    node: m.node.to_string(),
                },
                format!("DDL run on {name}/{} reaches the other nodes", m.node),
                m.prior.clone(),
            );
            deps.push(s.id.clone());
            out.steps.push(s);
        }
        let has = m
            .inst
            .is_some_and(|i| i.publications.iter().any(|p| p == publication_name()));
        if !has {
            let s = step(
                m,
                "publication".into(),
                Action::CreatePublication {
                    name: publication_name().into(),
                },
                format!("{name}/{} publishes its tables to the other nodes", m.node),
                m.prior.clone(),
            );
            deps.push(s.id.clone());
            out.steps.push(s);
        }
        ready.push(deps);
    }
    let spock = db.replication == Some(crate::spec::database::Replication::Spock);
    if spock {
        for m in &newcomers {
            out.notes.push(Note {
                kind: NoteKind::Replication,
                database: name.clone(),
                message: format!(
                    "{name}/{}: joining Spock nodes that replicate takes Spock's zero-downtime add-node procedure, which pgcd generates (runtime::driver::spock_add_node) but does not run yet; it runs on its own",
                    m.node
                ),
            });
        }
    } else if let Some(first) = newcomers.first() {
        join(db, &members, &ready, first, out);
        for m in &newcomers[1..] {
            out.notes.push(Note {
                kind: NoteKind::Replication,
                database: name.clone(),
                message: format!(
                    "{name}/{}: joins the replicating nodes after {} (one node at a time)",
                    m.node, first.node
                ),
            });
        }
    }
    for m in &members {
        for f in m.inst.map_or(&[][..], |i| i.ddl_failures.as_slice()) {
            out.notes.push(Note {
                kind: NoteKind::Replication,
                database: name.clone(),
                message: format!(
                    "{name}/{}: the DDL statement {}#{} from {} failed here and was skipped ({}): {}; run a fixed version by hand on {}, then DELETE FROM pgcd.ddl_failures WHERE origin = '{}' AND id = {}",
                    m.node, f.origin, f.id, f.origin, f.error, f.statement.trim(), m.node, f.origin, f.id
                ),
            });
        }
    }
    for (a, sub) in members.iter().enumerate() {
        for (b, publ) in members.iter().enumerate() {
            if a == b {
                continue;
            }
            let sname = subscription_name(publ.node, sub.node);
            let found = sub
                .inst
                .and_then(|i| i.subscriptions.iter().find(|s| s.name == sname));
            match found {
                None => {
                    let mut deps = ready[a].clone();
                    deps.extend(ready[b].iter().cloned());
                    out.steps.push(step(
                        sub,
                        format!("subscription:{}", publ.node),
                        Action::CreateSubscription {
                            name: sname.clone(),
                            publisher: publ.node.to_string(),
                            address: publ.address.clone(),
                            port: publ.port,
                            tls: publ.tls(),
                        },
                        format!(
                            "{name}/{} receives the changes made on {} (origin = none: never sent back)",
                            sub.node, publ.node
                        ),
                        deps,
                    ));
                }
                Some(s) if s.stale => out.steps.push(step(
                    sub,
                    format!("refresh:{}", publ.node),
                    Action::RefreshSubscription {
                        name: sname.clone(),
                    },
                    format!(
                        "a table of {name}/{} is not yet replicated from {} (created after the subscription)",
                        sub.node, publ.node
                    ),
                    ready[a].clone(),
                )),
                Some(s) if !s.enabled => out.steps.push(step(
                    sub,
                    format!("enable:{}", publ.node),
                    Action::EnableSubscription {
                        name: sname.clone(),
                    },
                    format!(
                        "{name}/{} stopped receiving the changes made on {} (its subscription is disabled)",
                        sub.node, publ.node
                    ),
                    ready[a].clone(),
                )),
                Some(s) if !s.running => out.notes.push(Note {
                    kind: NoteKind::Replication,
                    database: name.clone(),
                    message: format!(
                        "{name}: the link {} → {} ({sname}) is down (no apply worker{}); see the subscriber's log",
                        publ.node,
                        sub.node,
                        s.last_error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    ),
                }),
                Some(_) => {}
            }
        }
    }
}

/// Whether a node's primary takes part in the mesh: something subscribes it
/// to another node, or pgcd set up its DDL replication.
fn in_mesh(i: &InstanceActual, node: &str) -> bool {
    i.autoddl
        || i.subscriptions
            .iter()
            .any(|s| s.name.starts_with("pgcd_sub_") && s.name.ends_with(&format!("_to_{node}")))
}

/// Plans a node's addition to the mesh: one step on its host that copies a
/// member whose links all stream (the first in spec order) and subscribes
/// to every member. A node holding tables of its own is only noted: pgcd
/// never replaces data.
fn join(db: &Database, members: &[Member], ready: &[Vec<String>], new: &Member, out: &mut Plan) {
    let name = &db.database_name;
    let note = |message: String, out: &mut Plan| {
        out.notes.push(Note {
            kind: NoteKind::Replication,
            database: name.clone(),
            message,
        })
    };
    if new.inst.is_some_and(|i| i.tables > 0) {
        note(
            format!(
                "{name}/{}: holds tables of its own but does not replicate; pgcd will not overwrite them (empty its database to let it join the other nodes)",
                new.node
            ),
            out,
        );
        return;
    }
    let healthy = |m: &Member| {
        m.inst.is_some_and(|i| {
            i.publications.iter().any(|p| p == publication_name())
                && i.subscriptions
                    .iter()
                    .filter(|s| s.name.starts_with("pgcd_sub_"))
                    .all(|s| s.enabled && s.running && !s.stale)
        }) || members.len() == 1
    };
    let Some(src) = members.iter().position(healthy) else {
        note(
            format!(
                "{name}/{}: waits to join until a node's replication links all stream (it copies that node)",
                new.node
            ),
            out,
        );
        return;
    };
    let peer = |m: &Member| Peer {
        node: m.node.to_string(),
        address: m.address.clone(),
        port: m.port,
        tls: m.tls(),
    };
    let Some(k) = db.nodes.iter().position(|n| n.name.as_str() == new.node) else {
        return;
    };
    let mut deps = new.prior.clone();
    deps.extend(ready.iter().flatten().cloned());
    out.steps.push(step(
        (name, new.node, new.host),
        "join",
        Action::JoinMesh {
            source: peer(&members[src]),
            others: members
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != src)
                .map(|(_, m)| peer(m))
                .collect(),
            offset: k as i64 + 1,
            stride: SEQUENCE_STRIDE,
        },
        format!(
            "{name}/{} is new to nodes that replicate: it copies {} and then receives every node's changes from where the copy ends, while their writers go on",
            new.node, members[src].node
        ),
        deps,
    ));
}

/// A node taken out of the spec: every subscription to it or of it is
/// dropped (with its slot), and pgcd's logical slots no subscriber of the
/// spec uses are dropped, so no slot retains WAL for it. Its instance is
/// kept as it is (noted), its data untouched.
fn removed_nodes(db: &Database, index: &Index, members: &[Member], out: &mut Plan) {
    let name = &db.database_name;
    let in_spec = |n: &str| db.nodes.iter().any(|x| x.name.as_str() == n);
    let drop = |inst: &InstanceActual, sub: &str, why: String, out: &mut Plan| {
        out.steps.push(step(
            (name, &inst.node, &inst.host),
            &format!("drop-subscription:{sub}"),
            Action::DropSubscription {
                name: sub.to_string(),
            },
            why,
            Vec::new(),
        ));
    };
    // On a node that left, still running: its own subscriptions.
    for inst in index.of_database(name) {
        if in_spec(&inst.node) || !inst.running || inst.role != InstanceRole::Primary {
            continue;
        }
        if !index
            .actual
            .host(&inst.host)
            .is_some_and(|h| h.healthy && h.docker)
        {
            continue;
        }
        for s in inst
            .subscriptions
            .iter()
            .filter(|s| s.name.starts_with("pgcd_sub_"))
        {
            drop(
                inst,
                &s.name,
                format!("node {} is no longer in the spec; it stops receiving changes (its data is kept)", inst.node),
                out,
            );
        }
    }
    let left_steps: Vec<String> = out
        .steps
        .iter()
        .filter(|s| s.database == name && !in_spec(&s.node))
        .map(|s| s.id.clone())
        .collect();
    // On the nodes that stay: subscriptions to nodes that left.
    for m in members {
        let Some(inst) = m.inst else { continue };
        let wanted: Vec<String> = db
            .nodes
            .iter()
            .filter(|n| n.name.as_str() != m.node)
            .map(|n| subscription_name(n.name.as_str(), m.node))
            .collect();
        for s in inst
            .subscriptions
            .iter()
            .filter(|s| s.name.starts_with("pgcd_sub_") && !wanted.contains(&s.name))
        {
            drop(
                inst,
                &s.name,
                format!("{} subscribes to a node no longer in the spec", m.node),
                out,
            );
        }
        let slots: Vec<&String> = inst
            .slots
            .iter()
            .filter(|s| {
                s.starts_with(&format!("pgcd_sub_{}_to_", m.node))
                    && !db
                        .nodes
                        .iter()
                        .any(|n| **s == subscription_name(m.node, n.name.as_str()))
            })
            .collect();
        for slot in slots {
            out.steps.push(step(
                (name, m.node, m.host),
                &format!("drop-slot:{slot}"),
                Action::DropSlot { slot: slot.clone() },
                format!("slot {slot} serves a node no longer in the spec"),
                left_steps.clone(),
            ));
        }
    }
}
