//! What runs on each host for its instances: the Docker runtime, observing
//! the instances' real state, and the `pg.step` executor that carries out
//! plan steps. SQL is built in `sql` only.

pub mod docker;
pub mod exec;
pub mod observe;
pub mod sql;
