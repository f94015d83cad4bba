//! The config repository as the leader sees it: a bare Git mirror fetched
//! with git2, specs read from commit trees, validated into a desired state
//! recorded in etcd (`follow`), how it authenticates to the remote and
//! checks the server (`remote`, `known_hosts`), webhook verification, and
//! commit statuses (`status`, `forges`).
//! This module does not decide what to change on hosts; it turns commits
//! into desired states and reports back on them.

pub mod follow;
pub mod forges;
pub mod git;
pub mod known_hosts;
pub mod records;
pub mod remote;
pub mod report;
pub mod signing;
pub mod status;
pub mod webhook;
