//! `pgcd agent` (being built).

/// Arguments of `pgcd agent`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd agent is not built yet")
}
