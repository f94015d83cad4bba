//! `pgcd import pgedge FILE... [--out DIR] [--env-file FILE] [--force]`:
//! pgEdge Control Plane request bodies (JSON) into `DIR/databases/<name>.yaml`,
//! then the whole of DIR validated as `pgcd validate` would. Secrets become
//! `{env: NAME}` references: their names are printed, their values written
//! only to `--env-file` (mode 0600), never to the terminal.

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use crate::spec::{self, import};
use anyhow::{bail, Context};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `pgcd import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    from: From,
}

/// Where the specs come from.
#[derive(Debug, clap::Subcommand)]
enum From {
    /// pgEdge Control Plane create/update request bodies (`{"id": ..., "spec": {...}}`),
    /// bare specs or GET /v1/databases/{id} responses, as JSON files.
    Pgedge(PgedgeArgs),
}

/// Arguments of `pgcd import pgedge`.
#[derive(Debug, clap::Args)]
struct PgedgeArgs {
    /// The JSON files (`-` reads standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The config repository to write into (`databases/<name>.yaml` under it).
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Also write the secrets as NAME='value' lines to this file (mode 0600),
    /// e.g. for /etc/pgcd/agent.env on each host.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
    /// Image manifests to validate against (as `pgcd validate --manifests`).
    #[arg(long, env = "PGCD_MANIFESTS")]
    manifests: Option<PathBuf>,
}

/// Runs the verb: exit 0 when every file imported and the result validates, 1 otherwise.
pub fn run(args: Args) -> anyhow::Result<i32> {
    let From::Pgedge(args) = args.from;
    let mut secrets = Vec::new();
    let mut written = Vec::new();
    for file in &args.files {
        let (text, label) = read(file)?;
        let body = parse_body(&text).with_context(|| format!("reading {label}"))?;
        let out = import::pgedge(&body, &label).with_context(|| format!("importing {label}"))?;
        let path = args
            .out
            .join("databases")
            .join(format!("{}.yaml", out.database_name));
        if written.contains(&path) {
            bail!(
                "{label}: databases/{}.yaml was already written by an earlier file of this run",
                out.database_name
            );
        }
        if path.exists() && !args.force {
            bail!("{} exists; pass --force to replace it", path.display());
        }
        std::fs::create_dir_all(path.parent().unwrap_or(&args.out))?;
        std::fs::write(&path, &out.yaml).with_context(|| format!("writing {}", path.display()))?;
        println!("{label} -> {}", path.display());
        for d in &out.dropped {
            println!("  not carried over: {d}");
        }
        for n in &out.notes {
            println!("  note: {n}");
        }
        written.push(path);
        secrets.extend(out.secrets);
    }
    if !secrets.is_empty() {
        println!("\nSet these variables in every agent's environment (e.g. /etc/pgcd/agent.env):");
        for s in &secrets {
            println!("  {:<40} from {}", s.name, s.field);
        }
    }
    if let Some(env) = &args.env_file {
        write_env(env, &secrets, args.force)?;
        println!("their values are in {} (mode 0600)", env.display());
    } else if !secrets.is_empty() {
        println!("(their values are not shown; pass --env-file FILE to write them there)");
    }
    let files =
        spec::read_dir(&args.out).with_context(|| format!("reading {}", args.out.display()))?;
    match spec::load_checked(&files, &super::image_catalog(args.manifests.as_deref())) {
        Ok(_) => {
            println!("\n{}: valid", args.out.display());
            Ok(0)
        }
        Err(diags) => {
            eprintln!("\nthe result does not validate yet; fix these and run `pgcd validate`:");
            for d in &diags {
                eprintln!("{d}");
            }
            Ok(1)
        }
    }
}

fn read(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)?;
        return Ok((text, "stdin".into()));
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let label = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok((text, label))
}

/// JSON, or failing that YAML (which also reads the trailing commas some of
/// pgEdge's documented examples have).
fn parse_body(text: &str) -> anyhow::Result<serde_json::Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(json_err) => match spec::yaml::parse(text) {
            Ok(Some(node)) => Ok(spec::yaml::to_json(&node)),
            _ => Err(json_err.into()),
        },
    }
}

fn write_env(path: &Path, secrets: &[import::Secret], force: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!force)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (pass --force to replace it)", path.display()))?;
    writeln!(
        f,
        "# Secrets of the specs imported by `pgcd import pgedge`."
    )?;
    if let Some(s) = secrets.iter().find(|s| s.value.contains('\n')) {
        bail!(
            "{} ({}) holds a line break, which an environment file cannot carry",
            s.name,
            s.field
        );
    }
    for s in secrets {
        writeln!(f, "{}={}", s.name, env_quote(&s.value))?;
    }
    Ok(())
}

/// A value systemd's EnvironmentFile and a POSIX shell both read back as is.
fn env_quote(v: &str) -> String {
    if !v.contains('\'') {
        format!("'{v}'")
    } else {
        let escaped: String = v
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' | '$' | '`' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}
