//! What runs on each host for its instances: the Docker runtime, observing
//! the instances' real state, and the `pg.step` executor that carries out
//! plan steps. SQL is built only in `sql`, and replication's in `driver`.

pub mod docker;
pub mod driver;
pub mod exec;
pub mod join;
pub mod observe;
pub mod sql;
