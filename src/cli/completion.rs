//! `pgcd completion bash|zsh|fish`: the shell completion script, generated
//! from the command line itself (clap_complete), so it never drifts from it.
//! The Debian package installs them where each shell looks.

use clap::CommandFactory;

/// Arguments of `pgcd completion`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell: bash, zsh, fish (also elvish, powershell).
    shell: clap_complete::Shell,
}

/// Writes the script to standard output.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "pgcd", &mut std::io::stdout());
    Ok(0)
}
