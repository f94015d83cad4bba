//! `pgcd source` (being built).

/// Arguments of `pgcd source`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd source is not built yet")
}
