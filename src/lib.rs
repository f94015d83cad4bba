//! pgcd: a GitOps control plane for PostgreSQL.
//!
//! The crate is laid out as the boxes of `ARCHITECTURE.md`; `spec` holds the
//! desired state, its validation and its JSON Schema, and `cli` the
//! command-line verbs.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod spec;
