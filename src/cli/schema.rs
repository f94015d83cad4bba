//! `pgcd schema` (being built).

/// Arguments of `pgcd schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd schema is not built yet")
}
