//! One file per route.

pub mod actual;
pub mod audit;
pub mod backups;
pub mod ca;
pub mod certificates;
pub mod cluster;
pub mod database_plan;
pub mod databases;
pub mod desired;
pub mod health;
pub mod hosts;
pub mod join;
pub mod join_tokens;
pub mod metrics;
pub mod operations;
pub mod page;
pub mod revisions;
pub mod source;
pub mod task_log;
pub mod tasks;
pub mod webhooks;
