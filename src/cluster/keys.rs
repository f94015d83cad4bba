//! The etcd key layout, relative to the `/pgcd/v1/` namespace that the store
//! adds. Every key the cluster core reads or writes is named here.

use super::HostId;

/// The namespace every pgcd key lives under.
pub const NAMESPACE: &str = "/pgcd/v1/";

/// The cluster id, written once at `--init`.
pub const CLUSTER_ID: &str = "cluster/id";
/// Where the Git source is configured (`{"url","branch"}`).
pub const SOURCE_CONFIG: &str = "source/config";
/// The election name; etcd's election API keeps candidates under it.
pub const LEADER: &str = "leader";
/// A record the leader refreshes through guarded writes.
pub const LEADER_STATUS: &str = "status/leader";
/// Prefix of host records (leased) and of their task queues.
pub const HOSTS: &str = "hosts/";
/// Prefix of known hosts (persistent, so a dead host is still listed).
pub const KNOWN: &str = "known/";
/// Prefix of host facts.
pub const FACTS: &str = "facts/";
/// Prefix of task states.
pub const TASKS: &str = "tasks/";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_are_not_host_records() {
        assert_eq!(host_id_of_record("hosts/h1"), Some("h1"));
        assert_eq!(host_id_of_record("hosts/h1/tasks/t1"), None);
    }
}
