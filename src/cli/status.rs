//! `pgcd status` (being built).

/// Arguments of `pgcd status`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd status is not built yet")
}
