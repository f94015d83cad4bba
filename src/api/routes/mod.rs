//! One file per route.

pub mod cluster;
pub mod desired;
pub mod health;
pub mod hosts;
pub mod join;
pub mod metrics;
pub mod revisions;
pub mod source;
pub mod tasks;
pub mod webhooks;
