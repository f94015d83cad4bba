//! `Backup` and `Restore`: pgBackRest through the operation path.
//!
//! A backup is one phase on the node's primary. An in-place restore of a
//! node is, in order: its standbys stopped (each a phase; nothing can
//! promote them meanwhile), the primary restored to the target and
//! promoted (`pgbackrest restore --delta`, the one disruptive phase), then
//! per standby its slot made again on the restored primary (slots are not
//! in a backup) and the standby rebuilt from it, its former data directory
//! kept aside. Its WAL runs past the restored point, so it cannot follow
//! as it is. While a restore runs no failover is planned for its database
//! (see `ha::moving`).
//!
//! A node of an active-active database is refused: restored alone it
//! would have to rejoin its peers like a new node, which copies a peer's
//! data over what was restored. Nothing here does I/O.

use super::{one_step_phase, Outcome};
use crate::plan::backup::{backup_step, config, repo_index, restore_step, RestoreTarget};
use crate::plan::ha;
use crate::plan::instance::{primary_host, step};
use crate::plan::steps::Action;
use crate::plan::Index;
use crate::spec::backup::{BackupConfig, BackupType, RestoreOptions};
use crate::spec::database::NodeSpec;
use crate::spec::names::{HostId, NodeName};
use crate::spec::Database;
use crate::state::actual::InstanceRole;
use crate::state::names::standby_name;

/// The node, its backup configuration and the repository index asked for.
fn node_repo<'a>(
    db: &'a Database,
    node: &str,
    repository: Option<&str>,
) -> Result<(&'a NodeSpec, &'a BackupConfig, u32), String> {
    let name = &db.database_name;
    let spec = db
        .nodes
        .iter()
        .find(|n| n.name.as_str() == node)
        .ok_or_else(|| format!("{name} has no node {node}"))?;
    let cfg = config(db, spec)
        .ok_or_else(|| format!("{name}/{node} has no backup_config: there is no repository"))?;
    let repo = repo_index(cfg, repository).ok_or_else(|| {
        let ids: Vec<&str> = cfg.repositories.iter().map(|r| r.id.as_str()).collect();
        format!(
            "{name}/{node} has no repository {} (its repositories: {})",
            repository.unwrap_or("(first)"),
            ids.join(", ")
        )
    })?;
    Ok((spec, cfg, repo))
}

/// The host of the node's primary when it runs there as one on a live host.
fn running_primary<'a>(db: &Database, node: &'a NodeSpec, index: &Index) -> Option<&'a HostId> {
    let host = primary_host(&db.database_name, node, index)?;
    let inst = index.instance(&db.database_name, &node.name, host);
    (ha::live(index, host) && ha::answers_as(inst, InstanceRole::Primary)).then_some(host)
}

/// The phases of a `Backup` of `node`'s primary.
pub(super) fn backup(
    id: &str,
    db: &Database,
    index: &Index,
    node: &str,
    backup_type: Option<BackupType>,
    repository: Option<&str>,
) -> Outcome {
    let (spec, _, repo) = match node_repo(db, node, repository) {
        Ok(x) => x,
        Err(why) => return Outcome::Refuse(why),
    };
    let Some(host) = running_primary(db, spec, index) else {
        return Outcome::Wait(format!(
            "waits until the primary of {}/{node} runs",
            db.database_name
        ));
    };
    let backup_type = backup_type.unwrap_or(BackupType::Full);
    let step = backup_step(db, spec, host, id, repo, backup_type);
    let description = format!("{backup_type} backup of the primary on {host} to repo{repo}");
    Outcome::Phases(vec![one_step_phase(
        id,
        format!("backup-{node}-{host}"),
        description,
        step,
    )])
}

/// The phases of a `Restore` of `targets`, node after node.
pub(super) fn restore(
    id: &str,
    db: &Database,
    index: &Index,
    targets: &[NodeName],
    repository: Option<&str>,
    options: Option<&RestoreOptions>,
) -> Outcome {
    let name = &db.database_name;
    if targets.is_empty() {
        return Outcome::Refuse("target_nodes names no node".into());
    }
    if db.nodes.len() > 1 {
        return Outcome::Refuse(format!(
            "{name} is active-active ({} nodes): an in-place restore of one of its nodes is not carried out by this version of pgcd (restored alone it would rejoin its peers like a new node, whose copy replaces what was restored); nothing was done",
            db.nodes.len()
        ));
    }
    let target = match RestoreTarget::from_options(options) {
        Ok(t) => t,
        Err(why) => return Outcome::Refuse(why),
    };
    let mut phases = Vec::new();
    for node in targets {
        let (spec, _, repo) = match node_repo(db, node, repository) {
            Ok(x) => x,
            Err(why) => return Outcome::Refuse(why),
        };
        let Some(primary) = primary_host(name, spec, index) else {
            return Outcome::Refuse(format!("{name}/{node} has no host"));
        };
        let exists = |h: &HostId| {
            index
                .instance(name, node, h)
                .is_some_and(|i| i.container_exists)
        };
        if !exists(primary) || !ha::live(index, primary) {
            return Outcome::Wait(format!(
                "waits until the primary of {name}/{node} on {primary} exists on a live host"
            ));
        }
        let standbys: Vec<&HostId> = spec.host_ids.iter().filter(|h| *h != primary).collect();
        if let Some(h) = standbys.iter().find(|h| exists(h) && !ha::live(index, h)) {
            return Outcome::Wait(format!(
                "waits until the host {h} of {name}/{node}'s standby is live (the standby is rebuilt after the restore)"
            ));
        }
        let standbys: Vec<&HostId> = standbys.into_iter().filter(|h| exists(h)).collect();
        for h in &standbys {
            let s = step(
                (name, &spec.name, *h),
                &format!("restore-stop:{id}"),
                Action::StopInstance,
                format!("operation {id}: the standby on {h} stops while its primary is restored"),
                Vec::new(),
            );
            let description = format!("stop the standby on {h}");
            phases.push(one_step_phase(
                id,
                format!("stop-{node}-{h}"),
                description,
                s,
            ));
        }
        let s = restore_step(db, spec, primary, id, repo, target.clone());
        let what = match &target.target {
            Some(t) => format!("{} {t}", target.restore_type),
            None => target.restore_type.to_string(),
        };
        let description =
            format!("restore the primary on {primary} from repo{repo} ({what}) and promote it");
        phases.push(one_step_phase(
            id,
            format!("restore-{node}-{primary}"),
            description,
            s,
        ));
        let Some(address) = index.actual.host(primary).map(|h| h.address.clone()) else {
            return Outcome::Wait(format!("waits until host {primary} reports its address"));
        };
        let port = index.instance(name, node, primary).map_or(5432, |i| i.port);
        for h in &standbys {
            let slot = standby_name(&spec.name, h);
            let s = step(
                (name, &spec.name, primary),
                &format!("restore-slot:{id}:{h}"),
                Action::EnsureReplication { slot: slot.clone() },
                format!(
                    "operation {id}: the restored primary gets the standby's slot {slot} again"
                ),
                Vec::new(),
            );
            let description = format!("make slot {slot} on the restored primary");
            phases.push(one_step_phase(
                id,
                format!("slot-{node}-{h}"),
                description,
                s,
            ));
            let s = step(
                (name, &spec.name, *h),
                &format!("restore-rebuild:{id}"),
                Action::RejoinAsStandby {
                    primary: primary.clone(),
                    primary_address: address.clone(),
                    primary_port: port,
                    slot,
                    fresh: true,
                },
                format!(
                    "operation {id}: the standby on {h} is copied afresh from the restored primary (its WAL runs past the restored point); its data directory is kept aside"
                ),
                Vec::new(),
            );
            let description = format!("rebuild the standby on {h} from the restored primary");
            phases.push(one_step_phase(
                id,
                format!("rebuild-{node}-{h}"),
                description,
                s,
            ));
        }
    }
    Outcome::Phases(phases)
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
