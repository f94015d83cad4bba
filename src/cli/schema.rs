//! `pgcd schema [--out DIR]`: the JSON Schema of every kind.

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use crate::spec;
use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `pgcd schema`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per kind into this directory instead of printing them.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the verb.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let schemas = spec::schema::all();
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in schemas {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            for (name, text) in schemas {
                println!("# {name}\n{text}");
            }
        }
    }
    Ok(0)
}
