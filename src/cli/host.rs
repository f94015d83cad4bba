//! `pgcd host` (being built).

/// Arguments of `pgcd host`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd host is not built yet")
}
