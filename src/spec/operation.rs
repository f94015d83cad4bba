//! `operations/<id>.yaml`: one-shot acts. Each runs once, by id; editing or
//! deleting the file afterwards changes nothing.

use super::backup::{BackupType, RestoreOptions};
use super::decode::{choice, Ctx, Decode, MapReader};
use super::diag::FieldPath;
use super::names::{DatabaseName, HostId, NodeName, ObjectId};
use super::values::Timestamp;
use super::yaml::Node;
use serde::Serialize;

choice!(
    /// The kinds of operation.
    OperationKind {
        Switchover = "Switchover", Failover = "Failover", Backup = "Backup",
        Restore = "Restore", Restart = "Restart", Stop = "Stop", Start = "Start",
        Cancel = "Cancel"
    }
);

/// An operation: its id and what it does.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Operation {
    /// Unique id; equals the file name without `.yaml`.
    pub id: ObjectId,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum Action {
    /// Planned switchover of a node's primary to one of its standbys.
    Switchover {
        /// The database.
        database: DatabaseName,
        /// The node.
        node: NodeName,
        /// The standby's host to promote; the most caught-up standby when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        candidate: Option<HostId>,
        /// Not before this time (UTC).
        #[serde(skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<Timestamp>,
    },
    /// Manual failover: promote a standby without waiting for the primary.
    /// Refused while the primary is healthy, unless `force` (pgEdge's
    /// `skip_validation`).
    Failover {
        /// The database.
        database: DatabaseName,
        /// The node.
        node: NodeName,
        /// The standby's host to promote; the most caught-up standby when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        candidate: Option<HostId>,
        /// Fail over even though the primary is healthy (it is fenced first).
        #[serde(skip_serializing_if = "Option::is_none")]
        force: Option<bool>,
    },
    /// On-demand pgBackRest backup.
    Backup {
        /// The database.
        database: DatabaseName,
        /// The node whose primary is backed up.
        node: NodeName,
        /// full, diff or incr. Default full.
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        backup_type: Option<BackupType>,
        /// Repository id; the first one when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        repository: Option<ObjectId>,
    },
    /// In-place restore of nodes from their backups.
    Restore {
        /// The database.
        database: DatabaseName,
        /// The nodes to restore.
        target_nodes: Vec<NodeName>,
        /// Repository id; the first one when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        repository: Option<ObjectId>,
        /// Point-in-time options.
        #[serde(skip_serializing_if = "Option::is_none")]
        restore_options: Option<RestoreOptions>,
    },
    /// Restart instances: one host's, one node's, or the whole database's.
    Restart {
        /// The database.
        database: DatabaseName,
        /// Only this node.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<NodeName>,
        /// Only the instance on this host.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<HostId>,
        /// Not before this time (UTC).
        #[serde(skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<Timestamp>,
    },
    /// Stop instances (one host's, one node's, or the whole database's),
    /// standbys before their primary. They stay stopped, whatever the
    /// spec's `state`, until a `Start` covering them. A node's primary is
    /// stopped only with the rest of its node.
    Stop {
        /// The database.
        database: DatabaseName,
        /// Only this node.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<NodeName>,
        /// Only the instance on this host.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<HostId>,
        /// Not before this time (UTC).
        #[serde(skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<Timestamp>,
    },
    /// Start stopped instances (one host's, one node's, or the whole
    /// database's), a node's primary before its standbys; ends what a
    /// `Stop` began. A node the spec says `state: stopped` stays stopped.
    Start {
        /// The database.
        database: DatabaseName,
        /// Only this node.
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<NodeName>,
        /// Only the instance on this host.
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<HostId>,
        /// Not before this time (UTC).
        #[serde(skip_serializing_if = "Option::is_none")]
        scheduled_at: Option<Timestamp>,
    },
    /// Cancel an operation that has not started a disruptive phase (by its
    /// id, or by the id of one of its phases' tasks as `GET /v1/tasks`
    /// shows it).
    Cancel {
        /// The operation to cancel.
        #[serde(skip_serializing_if = "Option::is_none")]
        operation: Option<ObjectId>,
        /// A task of the operation to cancel (`op-<id>-<phase>`).
        #[serde(skip_serializing_if = "Option::is_none")]
        task: Option<String>,
    },
}

impl Action {
    /// The database the operation acts on, if any.
    pub fn database(&self) -> Option<&DatabaseName> {
        match self {
            Action::Switchover { database, .. }
            | Action::Failover { database, .. }
            | Action::Backup { database, .. }
            | Action::Restore { database, .. }
            | Action::Restart { database, .. }
            | Action::Stop { database, .. }
            | Action::Start { database, .. } => Some(database),
            Action::Cancel { .. } => None,
        }
    }
}

impl Decode for Operation {
    fn decode(node: &Node, path: &FieldPath, cx: &mut Ctx) -> Option<Self> {
        let mut m = MapReader::new(node, path, cx, "an operation")?;
        let id: Option<ObjectId> = m.req(cx, "id");
        let kind: Option<OperationKind> = m.req(cx, "kind");
        let Some(kind) = kind else {
            // Without a kind the other fields cannot be judged; do not report them as unknown.
            return None;
        };
        let action = match kind {
            OperationKind::Switchover => {
                let r = (
                    m.req(cx, "database"),
                    m.req(cx, "node"),
                    m.opt(cx, "candidate"),
                    m.opt(cx, "scheduled_at"),
                );
                m.finish(cx);
                Action::Switchover {
                    database: r.0?,
                    node: r.1?,
                    candidate: r.2,
                    scheduled_at: r.3,
                }
            }
            OperationKind::Failover => {
                let r = (
                    m.req(cx, "database"),
                    m.req(cx, "node"),
                    m.opt(cx, "candidate"),
                    m.opt(cx, "force"),
                );
                m.finish(cx);
                Action::Failover {
                    database: r.0?,
                    node: r.1?,
                    candidate: r.2,
                    force: r.3,
                }
            }
            OperationKind::Backup => {
                let r = (
                    m.req(cx, "database"),
                    m.req(cx, "node"),
                    m.opt(cx, "type"),
                    m.opt(cx, "repository"),
                );
                m.finish(cx);
                Action::Backup {
                    database: r.0?,
                    node: r.1?,
                    backup_type: r.2,
                    repository: r.3,
                }
            }
            OperationKind::Restore => {
                let r = (
                    m.req(cx, "database"),
                    m.req(cx, "target_nodes"),
                    m.opt(cx, "repository"),
                    m.opt(cx, "restore_options"),
                );
                m.finish(cx);
                Action::Restore {
                    database: r.0?,
                    target_nodes: r.1?,
                    repository: r.2,
                    restore_options: r.3,
                }
            }
            OperationKind::Restart | OperationKind::Stop | OperationKind::Start => {
                let r = (
                    m.req(cx, "database"),
                    m.opt(cx, "node"),
                    m.opt(cx, "host"),
                    m.opt(cx, "scheduled_at"),
                );
                m.finish(cx);
                let (database, node, host, scheduled_at) = (r.0?, r.1, r.2, r.3);
                match kind {
                    OperationKind::Stop => Action::Stop {
                        database,
                        node,
                        host,
                        scheduled_at,
                    },
                    OperationKind::Start => Action::Start {
                        database,
                        node,
                        host,
                        scheduled_at,
                    },
                    _ => Action::Restart {
                        database,
                        node,
                        host,
                        scheduled_at,
                    },
                }
            }
            OperationKind::Cancel => {
                let operation: Option<ObjectId> = m.opt(cx, "operation");
                let task: Option<String> = m.opt(cx, "task");
                if operation.is_some() == task.is_some() {
                    cx.error_at(
                        node.pos,
                        path,
                        "a Cancel names exactly one of `operation` (an operation id) or `task` (one of its tasks)",
                    );
                }
                m.finish(cx);
                Action::Cancel { operation, task }
            }
        };
        Some(Self { id: id?, action })
    }
}
