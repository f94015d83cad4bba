//! The reconciler: the leader service that turns the desired state in force
//! into running PostgreSQL. Each pass assembles `Actual` from what the
//! agents observed, plans, carries the plan out as tasks on the right hosts
//! and records each database's status.

pub mod status;
