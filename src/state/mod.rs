//! The state pgcd observes, as plain values: `Actual` (hosts, instances and
//! what the reconciler last carried out), its assembly from the agents'
//! observations in etcd, and the naming rules of what pgcd makes.
//!
//! `plan`, `reconcile`, `source` and `api` import this module; it imports
//! only `spec` and the etcd layer (`cluster`) for `assemble`. Nothing here
//! decides what to do: that is the planner's.

pub mod actual;
pub mod assemble;
pub mod audit;
pub mod desired;
pub mod durations;
pub mod names;
pub mod observed;
pub mod operation;
pub mod primary;
pub mod rehearsal;
pub mod schedule;

pub use actual::{native_mesh, spock_mesh, spock_wired};
pub use actual::{
    Actual, ArchiverActual, BackupConfActual, DatabaseActual, DdlFailure, EarlierCluster,
    ExtActual, HostActual, InstanceActual, InstanceBackup, InstanceRole, ReplicaActual, RoleActual,
    SubscriptionActual,
};
pub use names::InstanceId;

/// A digest of a database's spec (SHA-256 of its JSON), recorded by the
/// reconciler once the spec is carried out in full; the planner compares it
/// with the spec now to tell drift from a change of the spec.
pub fn spec_digest(db: &crate::spec::Database) -> String {
    use sha2::{Digest, Sha256};
    // Serialising plain spec values cannot fail; an empty digest would only
    // make drift look like a spec change.
    let json = serde_json::to_vec(db).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}
