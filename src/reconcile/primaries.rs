//! Writing the primaries' records (`primaries/<db>/<node>`, see
//! `state::primary`): the one step a leader carries out itself, guarded by
//! the leader key and by the record's own revision and term, so that two
//! leaders can never record two different primaries for one term.

use crate::cluster::election::LeaderGuard;
use crate::cluster::keys;
use crate::cluster::store::{full_key, to_json};
use crate::cluster::{now_rfc3339, ClusterError};
use crate::plan::Step;
use crate::spec::names::HostId;
use crate::state::primary::PrimaryRecord;
use etcd_client::{Compare, CompareOp, TxnOp};

/// Records `host` as the step's node's primary at `term`, if the record is
/// still at `term - 1` (or absent, for term 1). `Ok(Err(..))` says why not.
pub async fn record(
    guard: &LeaderGuard,
    step: &Step,
    host: &HostId,
    term: u64,
    why: &str,
) -> Result<Result<(), String>, ClusterError> {
    let key = keys::primary(&step.database, &step.node);
    let entry = guard.store().get(&key).await?;
    let current: Option<PrimaryRecord> = entry.as_ref().map(|e| e.json()).transpose()?;
    match &current {
        Some(r) if r.term >= term && r.host == *host => return Ok(Ok(())),
        Some(r) if r.term + 1 != term => {
            return Ok(Err(format!(
                "the primary's record of {}/{} is at term {} on {}, not {}: planned again",
                step.database,
                step.node,
                r.term,
                r.host,
                term - 1
            )))
        }
        None if term != 1 => {
            return Ok(Err(format!(
                "{}/{} has no primary's record, yet term {term} was asked for",
                step.database, step.node
            )))
        }
        _ => {}
    }
    let compare = match &entry {
        Some(e) => Compare::mod_revision(full_key(&key), CompareOp::Equal, e.mod_revision),
        None => Compare::version(full_key(&key), CompareOp::Equal, 0),
    };
    let record = PrimaryRecord {
        database: step.database.clone(),
        node: step.node.clone(),
        host: host.clone(),
        term,
        since: now_rfc3339(),
        reason: why.to_string(),
    };
    let resp = guard
        .txn(
            vec![compare],
            vec![TxnOp::put(full_key(&key), to_json(&record)?, None)],
            vec![],
        )
        .await?;
    if !resp.succeeded() {
        return Ok(Err(format!(
            "the primary's record of {}/{} changed meanwhile",
            step.database, step.node
        )));
    }
    tracing::info!(database = %step.database, node = %step.node, %host, term, why, "primary recorded");
    Ok(Ok(()))
}
