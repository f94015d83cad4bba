//! pgcd: a GitOps control plane for PostgreSQL.
//!
//! The crate is laid out as the boxes of `ARCHITECTURE.md`: `spec` (desired
//! state, validation, schema), `source` (Git mirror, webhooks, commit
//! statuses), `cluster` (etcd, election, host registry, task queue), `plan`
//! (the pure planner) and `api` (the read-only HTTP surface). `cli` holds the
//! command-line verbs.

pub mod agent;
pub mod api;
pub mod backoff;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod exec;
pub mod pki;
pub mod plan;
pub mod postgres;
pub mod reconcile;
pub mod runtime;
pub mod secrets;
pub mod source;
pub mod spec;
pub mod state;
