//! `pgcd plan` (being built).

/// Arguments of `pgcd plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd plan is not built yet")
}
