//! `pgcd validate [DIR] [-o text|json]`: checks a config repository checkout
//! and prints every error as `FILE:LINE:COL: FIELD: message`, or the fully
//! defaulted desired state with `-o json`.

use super::Output;
use crate::spec;
use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `pgcd validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config repository's directory (default: the current one).
    dir: Option<PathBuf>,
    /// Image manifests to check extensions against (written by scripts/build-images.sh;
    /// default $PGCD_CACHE/manifests or /var/cache/pgcd/manifests; a missing directory checks nothing).
    #[arg(long, env = "PGCD_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Output format: text (errors, one per line) or json (the defaulted spec, or the errors).
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// Runs the verb: exit 0 when valid, 1 when not.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = super::dir_or_cwd(args.dir);
    let files = spec::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    match (
        spec::load_checked(&files, &super::image_catalog(args.manifests.as_deref())),
        args.output,
    ) {
        (Ok(desired), Output::Json) => {
            println!("{}", serde_json::to_string_pretty(&desired)?);
            Ok(0)
        }
        (Ok(desired), Output::Text) => {
            println!(
                "{}: valid ({} databases, {} operations, {} files)",
                dir.display(),
                desired.databases.len(),
                desired.operations.len(),
                files.len()
            );
            Ok(0)
        }
        (Err(diags), Output::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "errors": diags }))?
            );
            Ok(1)
        }
        (Err(diags), Output::Text) => {
            for d in &diags {
                eprintln!("{d}");
            }
            let files: std::collections::BTreeSet<&str> =
                diags.iter().map(|d| d.file.as_str()).collect();
            eprintln!(
                "{} error(s) in {} file(s); nothing was changed",
                diags.len(),
                files.len()
            );
            Ok(1)
        }
    }
}
