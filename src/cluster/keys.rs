//! The etcd key layout, relative to the `/pgcd/v1/` namespace that the store
//! adds. Every key pgcd reads or writes is named here and nowhere else, so
//! this file is the map of what lives in etcd.
//!
//! ```text
//! cluster/id                       the cluster id, written once at --init
//! leader/...                       etcd's election (candidates' keys)
//! status/leader                    the leader and since when (once a term)
//! status/leader-history            every leader's term (host, since, election revision)
//! hosts/<host>                     a live host's record (under its lease)
//! hosts/<host>/tasks/<task>        a task addressed to the host
//! known/<host>                     every host that ever joined
//! facts/<host>                     what a host reported of itself
//! tasks/<task>                     a task's state, result and log
//! source/{config,wake,applied,settings,status}   the Git source (see source::records)
//! revisions/<sha>                  one revision and what became of it
//! desired/revision                 the revision in force and a digest of the set it names
//! desired/config                   pgcd.yaml of the revision in force
//! desired/databases/<db>           one database's spec in force
//! desired/operations/<id>          one operation's spec in force
//! observed/<host>                  what a host's agent sees of the host (Docker)
//! observed/<host>/<db>/<node>      what it observed of one instance
//! status/databases/<db>            a database's status (conditions, instances)
//! status/reconciler                the reconciler's counters
//! reconcile/applied/<db>           digest of a database's spec last carried out in full
//! reconcile/operations/<id>        an operation's record (once per id)
//! reconcile/schedules/<db>/<node>/<id>  a backup schedule's progress
//! secrets/replication/<db>         a database's replication password
//! primaries/<db>/<node>            the host whose instance may run as the node's primary
//! backups/<db>/<node>              a node's backups (`pgbackrest info`), by its primary's agent
//! restore-checks/<db>/<node>       a node's last restore rehearsal, by the host that ran it
//! backup-figures/<db>/<node>       per backup label, its source's row counts and sizes
//! ```

use crate::spec::names::HostId;

/// The namespace every pgcd key lives under.
pub const NAMESPACE: &str = "/pgcd/v1/";

/// The cluster id, written once at `--init`.
pub const CLUSTER_ID: &str = "cluster/id";
/// The election name; etcd's election API keeps candidates under it.
pub const LEADER: &str = "leader";
/// A record the leader refreshes through guarded writes.
pub const LEADER_STATUS: &str = "status/leader";
/// Every leader's term, oldest first (the newest 200).
pub const LEADER_HISTORY: &str = "status/leader-history";
/// Prefix of host records (leased) and of their task queues.
pub const HOSTS: &str = "hosts/";
/// Prefix of known hosts (persistent, so a dead host is still listed).
pub const KNOWN: &str = "known/";
/// Prefix of host facts.
pub const FACTS: &str = "facts/";
/// Prefix of task states.
pub const TASKS: &str = "tasks/";

/// Where the Git source is configured (`{"url","branch",...}`): written at
/// `--init`, changed by `pgcd source set`.
pub const SOURCE_CONFIG: &str = "source/config";
/// Any agent touches it to make the leader fetch now (webhooks).
pub const SOURCE_WAKE: &str = "source/wake";
/// The revision whose desired state is in force (the source loop's resume point).
pub const SOURCE_APPLIED: &str = "source/applied";
/// What every agent's webhook endpoint needs from the state in force (the
/// secret's reference, never the secret).
pub const SOURCE_SETTINGS: &str = "source/settings";
/// How the leader's last look at the remote went (ok, or the fetch error).
pub const SOURCE_STATUS: &str = "source/status";
/// Prefix of revision records.
pub const REVISIONS: &str = "revisions/";
/// The old single-value desired state (before it was stored per database);
/// read once to migrate, then deleted.
pub const DESIRED_LEGACY: &str = "desired";
/// Prefix of the desired state in force, one key per item.
pub const DESIRED: &str = "desired/";
/// The revision in force and the digest of the set of items it names;
/// written last, so a reader that finds the set's digest matching has read
/// one whole revision.
pub const DESIRED_REVISION: &str = "desired/revision";
/// `pgcd.yaml` of the revision in force.
pub const DESIRED_CONFIG: &str = "desired/config";
/// Prefix of the databases in force.
pub const DESIRED_DATABASES: &str = "desired/databases/";
/// Prefix of the operations in force.
pub const DESIRED_OPERATIONS: &str = "desired/operations/";
/// Prefix of host observations.
pub const OBSERVED: &str = "observed/";
/// Prefix of database statuses.
pub const DATABASE_STATUS: &str = "status/databases/";
/// The reconciler's counters.
pub const RECONCILER_STATS: &str = "status/reconciler";
/// The revision every database's status was last derived at: a status
/// whose content did not change is not written again for a new revision,
/// and readers take its `observed_revision` from here.
pub const STATUS_REVISION: &str = "status/revision";
/// Prefix of the spec digests last carried out in full.
pub const APPLIED_SPECS: &str = "reconcile/applied/";
/// Prefix of operation records.
pub const OPERATIONS: &str = "reconcile/operations/";
/// Prefix of the primaries' records (see `state::primary`).
pub const PRIMARIES: &str = "primaries/";
/// Prefix of backup schedules' records (see `state::schedule`).
pub const SCHEDULES: &str = "reconcile/schedules/";
/// How long the steps clients feel took on this cluster, by kind (one key,
/// the leader's): the impact plan's estimates.
pub const DURATIONS: &str = "reconcile/durations";
/// Prefix of replication passwords.
pub const REPLICATION_SECRETS: &str = "secrets/replication/";

/// Prefix of each node's backup listing.
pub const BACKUPS: &str = "backups/";

/// Prefix of the nodes' last restore rehearsals (see `state::rehearsal`).
pub const RESTORE_CHECKS: &str = "restore-checks/";

/// The last restore rehearsal of one node.
pub fn restore_check(database: &str, node: &str) -> String {
    format!("{RESTORE_CHECKS}{database}/{node}")
}

/// Prefix of the source figures of each node's backups.
pub const BACKUP_FIGURES: &str = "backup-figures/";

/// The source figures of one node's latest backups, by label.
pub fn backup_figures(database: &str, node: &str) -> String {
    format!("{BACKUP_FIGURES}{database}/{node}")
}

/// The backups of one node, as its primary's agent last listed them.
pub fn backups(database: &str, node: &str) -> String {
    format!("{BACKUPS}{database}/{node}")
}

/// The prefix of one database's backup listings.
pub fn database_backups(database: &str) -> String {
    format!("{BACKUPS}{database}/")
}

/// The leased record of a live host.
pub fn host(id: &HostId) -> String {
    format!("{HOSTS}{id}")
}

/// The persistent record of a host that ever joined.
pub fn known(id: &HostId) -> String {
    format!("{KNOWN}{id}")
}

/// The last facts reported by a host.
pub fn facts(id: &HostId) -> String {
    format!("{FACTS}{id}")
}

/// The prefix of a host's task queue.
pub fn host_tasks(id: &HostId) -> String {
    format!("{HOSTS}{id}/tasks/")
}

/// A task addressed to a host.
pub fn host_task(id: &HostId, task: &str) -> String {
    format!("{HOSTS}{id}/tasks/{task}")
}

/// The state of a task.
pub fn task(task: &str) -> String {
    format!("{TASKS}{task}")
}

/// Whether a key under `hosts/` is a host record (not a task of one).
pub fn host_id_of_record(rel: &str) -> Option<&str> {
    let rest = rel.strip_prefix(HOSTS)?;
    (!rest.contains('/')).then_some(rest)
}

/// The record of one revision.
pub fn revision(sha: &str) -> String {
    format!("{REVISIONS}{sha}")
}

/// One database's spec in force.
pub fn desired_database(name: &str) -> String {
    format!("{DESIRED_DATABASES}{name}")
}

/// One operation's spec in force.
pub fn desired_operation(id: &str) -> String {
    format!("{DESIRED_OPERATIONS}{id}")
}

/// What one host observed of its instances.
pub fn observed(host: &str) -> String {
    format!("{OBSERVED}{host}")
}

/// What a host observed of one instance.
pub fn observed_instance(host: &str, database: &str, node: &str) -> String {
    format!("{OBSERVED}{host}/{database}/{node}")
}

/// One database's status.
pub fn database_status(database: &str) -> String {
    format!("{DATABASE_STATUS}{database}")
}

/// The digest of a database's spec last carried out in full.
pub fn applied_spec(database: &str) -> String {
    format!("{APPLIED_SPECS}{database}")
}

/// The record of one operation.
pub fn operation(id: &str) -> String {
    format!("{OPERATIONS}{id}")
}

/// The record of a backup schedule (`<db>/<node>/<id>`).
pub fn schedule(key: &str) -> String {
    format!("{SCHEDULES}{key}")
}

/// The primary's record of a node.
pub fn primary(database: &str, node: &str) -> String {
    format!("{PRIMARIES}{database}/{node}")
}

/// A database's replication password (made once by the leader).
pub fn replication_secret(database: &str) -> String {
    format!("{REPLICATION_SECRETS}{database}")
}

/// Join tokens: only SHA-256 of each secret, under a lease that ends with it.
pub const JOIN_TOKENS: &str = "pki/join-tokens/";
/// Each host's certificates and their expiry, as the host last read them.
pub const CERTIFICATES: &str = "pki/certificates/";
/// Each host's age recipient (public): secrets are encrypted to these.
pub const AGE_RECIPIENTS: &str = "pki/age-recipients/";
/// One audit record per applied revision.
pub const AUDIT: &str = "audit/";

/// The record of one join token.
pub fn join_token(id: &str) -> String {
    format!("{JOIN_TOKENS}{id}")
}

/// A host's certificate record.
pub fn certificates(host: &HostId) -> String {
    format!("{CERTIFICATES}{host}")
}

/// A host's age recipient.
pub fn age_recipient(host: &HostId) -> String {
    format!("{AGE_RECIPIENTS}{host}")
}

/// The audit record of one revision.
pub fn audit(revision: &str) -> String {
    format!("{AUDIT}{revision}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_are_not_host_records() {
        assert_eq!(host_id_of_record("hosts/h1"), Some("h1"));
        assert_eq!(host_id_of_record("hosts/h1/tasks/t1"), None);
    }
}
