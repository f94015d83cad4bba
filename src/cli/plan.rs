//! `pgcd plan [DIR] [--api URL | --offline] [-o text|json]`: validates a
//! config repository checkout and shows what it would change against the
//! desired state in force — the same summary a branch's `pgcd/plan` status
//! carries. Exit 0 when nothing would change, 2 when something would, 1 on
//! error. (Against the live databases once the planner exists.)

use super::Output;
use crate::spec;
use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `pgcd plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config repository's directory (default: the current one).
    dir: Option<PathBuf>,
    /// Any agent's API URL, for the state in force.
    #[arg(
        long,
        env = "PGCD_API",
        default_value = "https://127.0.0.1:7800",
        conflicts_with = "offline"
    )]
    api: String,
    /// Compare with nothing (as for a new cluster) instead of asking the API.
    #[arg(long)]
    offline: bool,
    /// Image manifests to check extensions against (written by scripts/build-images.sh;
    /// default $PGCD_CACHE/manifests or /var/cache/pgcd/manifests; a missing directory checks nothing).
    #[arg(long, env = "PGCD_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Output,
}

/// Runs the verb.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = super::dir_or_cwd(args.dir);
    let files = spec::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let desired = match spec::load_checked(&files, &super::image_catalog(args.manifests.as_deref()))
    {
        Ok(d) => d,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("{} error(s); nothing to plan", diags.len());
            return Ok(1);
        }
    };
    let (old, revision) = if args.offline {
        (None, None)
    } else {
        match super::status::get_json(&args.api, "/v1/desired") {
            Ok(v) => (
                Some(v["desired"].clone()),
                v["revision"].as_str().map(str::to_string),
            ),
            Err(e) if e.to_string().contains("404") => (None, None),
            Err(e) => return Err(e),
        }
    };
    let diff = spec::diff::diff(&desired, old.as_ref());
    // Offline, the planner's steps against a new cluster of the spec's hosts;
    // otherwise against the live cluster as its agents last observed it.
    let live = if args.offline {
        None
    } else {
        let v = super::status::get_json(&args.api, "/v1/actual")?;
        Some(serde_json::from_value::<crate::state::Actual>(v).context("reading /v1/actual")?)
    };
    let steps = match live {
        Some(actual) => Some(crate::plan::plan(&desired, &actual)),
        None => Some({
            let mut hosts: Vec<crate::spec::names::HostId> = desired
                .databases
                .iter()
                .flat_map(|d| d.nodes.iter().flat_map(|n| n.host_ids.iter().cloned()))
                .collect();
            hosts.sort_unstable();
            hosts.dedup();
            crate::plan::plan(&desired, &crate::state::actual::Actual::empty(&hosts))
        }),
    };
    if args.output == Output::Json {
        let v = serde_json::json!({ "against": revision, "plan": diff, "steps": steps });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let against = revision.map_or_else(
            || "nothing applied yet".to_string(),
            |r| format!("revision {}", &r[..r.len().min(12)]),
        );
        println!(
            "valid: {} databases, {} operations; plan: {diff}",
            desired.databases.len(),
            desired.operations.len()
        );
        println!("(against {against})");
        if let Some(steps) = &steps {
            println!();
            print!("{steps}");
        }
    }
    let unchanged = diff.is_empty() && steps.as_ref().is_none_or(|p| p.is_empty());
    Ok(if unchanged { 0 } else { 2 })
}
