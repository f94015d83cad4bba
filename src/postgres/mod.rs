//! The SQL side of pgcd: the one quoting module (`sql`) through which every
//! identifier and literal from a spec reaches PostgreSQL, the statements
//! pgcd runs, and the replication drivers (`native`, `spock`) with pgcd's
//! DDL replication. Long SQL lives in `.sql` files beside this module.
//!
//! This module builds statements; it does not connect or run them (that is
//! `exec`, on the instance's host).

pub mod driver;
pub mod scripts;
pub mod sql;
