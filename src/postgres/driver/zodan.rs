//! Spock's zero-downtime add node (ZODAN) as ordered phases, each run on
//! one node, and the two statements the executor builds between phases
//! from what a phase returned (a sync event's LSN, a last applied LSN).
//! Statements only, like the rest of the driver.

use super::{
    literal, spock_add_tables, spock_ddl_settings, spock_node_create, spock_slot, spock_sub_create,
    sql, Endpoint, ReplicationDriver, Spock, SqlError, Statement,
};
use crate::state::names::subscription_name;

/// Waits, on a subscriber, until the sync event that `origin` emitted at
/// `lsn` has been applied, for at most `timeout_secs`; returns one row, one
/// boolean column `result` (false: timed out).
pub fn spock_wait_for_sync_event(
    origin: &str,
    lsn: &str,
    timeout_secs: u32,
) -> Result<Statement, SqlError> {
    Ok(Statement::plain(format!(
        "CALL spock.wait_for_sync_event(NULL, {}::name, {}::pg_lsn, {timeout_secs})",
        literal(origin)?,
        literal(lsn)?
    )))
}

/// On `provider`, moves the slot of `subscription` forward to `lsn` (the
/// subscriber already has everything before it); nothing if it is there.
pub fn spock_advance_slot(
    provider: &str,
    subscription: &str,
    lsn: &str,
) -> Result<Statement, SqlError> {
    let lsn = literal(lsn)?;
    Ok(Statement::plain(format!(
        "SELECT pg_replication_slot_advance(s.slot_name, {lsn}::pg_lsn) \
         FROM pg_replication_slots s WHERE s.slot_name = {} \
         AND s.confirmed_flush_lsn < {lsn}::pg_lsn",
        spock_slot(provider, subscription)?
    )))
}

/// One step of adding a Spock node: statements for one node, then what the
/// executor does with their result before the next phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// The node whose primary runs the statements.
    pub node: String,
    /// What the phase does, for the task log.
    pub what: String,
    /// The statements, in order.
    pub statements: Vec<Statement>,
    /// What follows the statements.
    pub then: Then,
}

/// What the executor does after a phase's statements, before the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Go on.
    Next,
    /// The last statement returned the LSN of a `spock.sync_event()` on the
    /// phase's node: run [`spock_wait_for_sync_event`] (origin: the phase's
    /// node) on `on` until it returns true.
    SyncEventArrives {
        /// The node that must have applied the event.
        on: String,
    },
    /// Poll [`spock_sub_status`](super::spock_sub_status) on the phase's
    /// node until `subscription` is `replicating`.
    Replicating {
        /// The subscription to watch.
        subscription: String,
    },
    /// The last statement returned an LSN, or NULL (nothing to skip): run
    /// [`spock_advance_slot`] for `subscription` on `on` with it.
    AdvanceSlot {
        /// The provider holding the slot.
        on: String,
        /// The subscription whose slot it is.
        subscription: String,
    },
}

impl std::fmt::Display for Phase {
    /// The phase as the task log shows it (passwords masked).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "[{}] {}", self.node, self.what)?;
        for s in &self.statements {
            writeln!(f, "  {}", s.shown)?;
        }
        match &self.then {
            Then::Next => Ok(()),
            Then::SyncEventArrives { on } => writeln!(f, "  then: wait on {on} for this event"),
            Then::Replicating { subscription } => {
                writeln!(f, "  then: wait until {subscription} is replicating")
            }
            Then::AdvanceSlot { on, subscription } => writeln!(
                f,
                "  then: advance the slot of {subscription} on {on} to this LSN"
            ),
        }
    }
}

/// Spock's zero-downtime add node (`docs/modify/zodan/zodan_tutorial.md`):
/// `new` joins the cluster of `source` (which it copies) and `others`. Each
/// other node gets a slot and a disabled subscription to it on `new` first,
/// so nothing it writes meanwhile is lost; then `new` copies `source`, skips
/// what came through the copy, enables the others' subscriptions, publishes
/// its copied tables and is subscribed to by every node. With `autoddl`,
/// DDL replication is off on the existing nodes while the node joins, and
/// AutoDDL is on, on every node, at the end. `new` is empty, with the same
/// users and Spock version as the others.
pub fn spock_add_node(
    new: &Endpoint,
    source: &Endpoint,
    others: &[Endpoint],
    autoddl: bool,
) -> Result<Vec<Phase>, SqlError> {
    let phase = |node: &str, what: String, statements, then| Phase {
        node: node.to_string(),
        what,
        statements,
        then,
    };
    let sync_event = || Statement::plain("SELECT spock.sync_event()".to_string());
    let existing = || std::iter::once(source).chain(others);
    let to_new = |from: &str| subscription_name(from, new.node);
    let mut out = Vec::new();
    if autoddl {
        for e in existing() {
            let what = "pause DDL replication while the node joins".to_string();
            let stmts = vec![
                sql::alter_system("spock.enable_ddl_replication", "off")?,
                sql::reload(),
            ];
            out.push(phase(e.node, what, stmts, Then::Next));
        }
    }
    let stmts = vec![
        sql::create_extension("spock", None)?,
        spock_node_create(new)?,
    ];
    out.push(phase(
        new.node,
        "create the Spock node".into(),
        stmts,
        Then::Next,
    ));
    // The slot keeps what `o` writes from now on for `new`; the sync event
    // comes after it, so once `source` has applied the event, the copy from
    // `source` carries everything `o` wrote before the slot.
    for o in others {
        let sub = to_new(o.node);
        let slot = spock_slot(o.node, &sub)?;
        let create = format!(
            "SELECT pg_create_logical_replication_slot({slot}, 'spock_output') \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot})"
        );
        out.push(phase(
            o.node,
            format!(
                "keep the changes for {sub}; make {} have all until now",
                source.node
            ),
            vec![Statement::plain(create), sync_event()],
            Then::SyncEventArrives {
                on: source.node.to_string(),
            },
        ));
        out.push(phase(
            new.node,
            format!("create {sub}, disabled"),
            vec![spock_sub_create(&sub, &o.conn, false, false)?],
            Then::Next,
        ));
    }
    let copy = to_new(source.node);
    out.push(phase(
        new.node,
        format!("copy structure and data from {}", source.node),
        vec![spock_sub_create(&copy, &source.conn, true, true)?],
        Then::Replicating { subscription: copy },
    ));
    out.push(phase(
        source.node,
        format!("make {} catch up", new.node),
        vec![sync_event()],
        Then::SyncEventArrives {
            on: new.node.to_string(),
        },
    ));
    out.push(phase(
        new.node,
        "publish the copied tables".into(),
        vec![spock_add_tables()],
        Then::Next,
    ));
    // What `o` wrote after the slot but before the copy's snapshot reached
    // `new` through `source`: skip it in the slot, or it arrives twice.
    for o in others {
        let sub = to_new(o.node);
        let last = format!(
            "SELECT commit_lsn::text FROM spock.lag_tracker \
             WHERE origin_name = {} AND receiver_name = {}",
            literal(o.node)?,
            literal(new.node)?
        );
        out.push(phase(
            new.node,
            format!("find the last change of {} the copy brought", o.node),
            vec![Statement::plain(last)],
            Then::AdvanceSlot {
                on: o.node.to_string(),
                subscription: sub.clone(),
            },
        ));
        out.push(phase(
            new.node,
            format!("enable {sub}"),
            Spock.enable(&sub)?,
            Then::Replicating { subscription: sub },
        ));
        out.push(phase(
            o.node,
            format!("make {} catch up", new.node),
            vec![sync_event()],
            Then::SyncEventArrives {
                on: new.node.to_string(),
            },
        ));
    }
    for e in existing() {
        let sub = subscription_name(new.node, e.node);
        out.push(phase(
            e.node,
            format!("subscribe to {}", new.node),
            Spock.subscribe(&sub, new)?,
            Then::Replicating { subscription: sub },
        ));
    }
    if autoddl {
        for e in existing().chain(std::iter::once(new)) {
            out.push(phase(
                e.node,
                "AutoDDL on".into(),
                spock_ddl_settings("on")?,
                Then::Next,
            ));
        }
    }
    Ok(out)
}
