//! `pgcd validate` (being built).

/// Arguments of `pgcd validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the verb.
pub fn run(_args: Args) -> anyhow::Result<i32> {
    anyhow::bail!("pgcd validate is not built yet")
}
