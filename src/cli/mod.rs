//! Command-line verbs. Each verb lives in its own file and returns the
//! process exit code; this file only declares the command line (a contract:
//! scripts and tests rely on it, see ARCHITECTURE.md "Command line").

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

mod agent;
mod cert;
mod completion;
mod connstr;
mod demo;
mod demo_pki;
mod host;
mod images;
mod import;
mod man;
mod plan;
mod schema;
mod secret;
mod source;
mod status;
mod validate;

/// GitOps control plane for PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "pgcd", version, about)]
pub struct Cli {
    /// TLS material of the client verbs (every API and etcd call).
    #[command(flatten)]
    pub tls: crate::pki::client::TlsArgs,
    #[allow(missing_docs)] // clap would print a field's doc comment as help
    #[command(subcommand)]
    pub command: Command,
}

static TLS: std::sync::OnceLock<crate::pki::client::TlsArgs> = std::sync::OnceLock::new();

/// The TLS options given on the command line (`--tls-dir`, `--cert`, ...).
pub fn tls() -> &'static crate::pki::client::TlsArgs {
    TLS.get_or_init(Default::default)
}

/// Output format of the read-only verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config repository; exit 0 when valid, 1 with one
    /// `FILE:LINE:COL: FIELD: message` line per error.
    Validate(validate::Args),
    /// Write the JSON Schema of every kind (to stdout, or into --out DIR).
    Schema(schema::Args),
    /// Show what a config repository would change against the state in force;
    /// exit 0 when nothing, 2 when something, 1 on error.
    Plan(plan::Args),
    /// Run the agent of this host.
    Agent(Box<agent::Args>),
    /// Show the cluster: leader, hosts, tasks.
    Status(status::Args),
    /// Manage hosts of the cluster.
    Host(host::Args),
    /// Show or change where the leader fetches the config repository from.
    Source(source::Args),
    /// Run a three-host demo cluster on this machine (127.0.0.11-13).
    Demo(demo::Args),
    /// Turn another tool's database specs into pgcd's layout
    /// (`pgcd import pgedge FILE... --out DIR`).
    Import(import::Args),
    /// Print the shell completion script (bash, zsh, fish).
    Completion(completion::Args),
    /// Write the manual pages (`pgcd man --out DIR`).
    Man(man::Args),
    /// The cluster CA and certificates: make a CA, issue client
    /// certificates, make join tokens, renew a host's certificates.
    Cert(cert::Args),
    /// Encrypt a secret to the cluster's hosts (for `{age: ...}` in a spec).
    Secret(secret::Args),
    /// Print a libpq multi-host connection string for a database: its
    /// instances, primaries first, `target_session_attrs=read-write`.
    Connstr(connstr::Args),
    /// List the PostgreSQL images built on this machine: tags, exact
    /// version, source, extensions and their versions.
    Images(images::Args),
}

/// Parses the command line, runs the verb and returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    crate::pki::install_default_provider();
    let _ = TLS.set(cli.tls.clone());
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Agent(args) => agent::run(*args),
        Command::Status(args) => status::run(args),
        Command::Host(args) => host::run(args),
        Command::Source(args) => source::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Import(args) => import::run(args),
        Command::Completion(args) => completion::run(args),
        Command::Man(args) => man::run(args),
        Command::Cert(args) => cert::run(args),
        Command::Secret(args) => secret::run(args),
        Command::Connstr(args) => connstr::run(args),
        Command::Images(args) => images::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pgcd: {err:#}");
            1
        }
    }
}

/// Resolves a directory argument, defaulting to the current directory.
pub fn dir_or_cwd(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("."))
}

/// The image manifests of `dir`, or of this machine's cache.
fn image_catalog(dir: Option<&std::path::Path>) -> crate::spec::images::ImageCatalog {
    use crate::spec::images::ImageCatalog;
    ImageCatalog::read_dir(
        &dir.map_or_else(ImageCatalog::default_dir, std::path::Path::to_path_buf),
    )
}
