//! What runs on each host for its instances: the Docker runtime (containers,
//! images, data directories) and the observation of the host's instances.
//! Plan steps are carried out by `exec`; SQL is built only in `postgres`.

pub mod docker;
pub mod observe;
mod tls;
