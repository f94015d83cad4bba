//! Assembling `Actual` from etcd: the registered hosts and their health,
//! each host's last observation, and the specs last carried out in full.

use crate::cluster::keys;
use crate::cluster::registry::list_hosts;
use crate::cluster::store::Store;
use crate::cluster::ClusterError;
use crate::runtime::observe::HostObservation;
use crate::state::actual::HostActual;
use crate::state::{Actual, DatabaseActual};

/// The key of one database's applied digest.
pub fn applied_key(database: &str) -> String {
    keys::applied_spec(database)
}

/// Reads hosts, observations and applied digests into an `Actual`.
pub async fn actual(store: &Store) -> Result<Actual, ClusterError> {
    let hosts = list_hosts(store).await?;
    let (entries, _) = store.get_prefix(keys::OBSERVED).await?;
    let observations: Vec<HostObservation> = entries.iter().filter_map(|e| e.json().ok()).collect();
    let mut out = Actual::default();
    for h in &hosts {
        let obs = observations.iter().find(|o| o.host == h.id.as_str());
        out.hosts.push(HostActual {
            id: h.id.clone(),
            healthy: h.healthy,
            docker: obs.is_some_and(|o| o.docker),
            address: h.address.clone(),
        });
        if let Some(o) = obs {
            out.instances.extend(o.instances.iter().cloned());
        }
    }
    let (applied, _) = store.get_prefix(keys::APPLIED_SPECS).await?;
    for e in applied {
        if let (Some(name), Ok(digest)) = (
            e.key.strip_prefix(keys::APPLIED_SPECS),
            String::from_utf8(e.value.clone()),
        ) {
            out.databases.push(DatabaseActual {
                name: name.to_string(),
                applied_spec: digest,
            });
        }
    }
    Ok(out)
}
