//! `pgcd man --out DIR`: manual pages (section 1) for `pgcd` and each verb
//! (`pgcd-validate.1`, `pgcd-import-pgedge.1`, ...), generated from the
//! command line itself (clap_mangen).

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;

/// Arguments of `pgcd man`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the pages (created when missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Writes one page per command and subcommand.
pub fn run(args: Args) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(super::Cli::command(), &args.out)
        .with_context(|| format!("writing manual pages into {}", args.out.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.out)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgcd") && n.ends_with(".1"))
        .collect();
    pages.sort();
    println!(
        "wrote {} manual pages into {}",
        pages.len(),
        args.out.display()
    );
    Ok(0)
}
