//! `pgcd secret encrypt`: encrypts a value (read from stdin, never from the
//! command line, where `ps` and shell history would keep it) to the
//! cluster's age recipient, and prints the `{age: ...}` reference to paste
//! into a spec. Only the cluster's hosts can decrypt it.

use anyhow::{bail, Context, Result};
use std::io::Read;

/// Arguments of `pgcd secret`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Encrypt stdin to the cluster; prints an `age:` block for a spec.
    Encrypt {
        /// Any agent's API URL (to learn the cluster's recipient).
        #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
        api: String,
        /// The recipient (`age1…`) instead of asking the cluster.
        #[arg(long)]
        recipient: Option<String>,
    },
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    let Action::Encrypt { api, recipient } = args.action;
    let recipient = match recipient {
        Some(r) => r,
        None => {
            let ca = super::status::get_json(&api, "/v1/cluster/ca")?;
            let r = ca
                .get("age_recipient")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            if r.is_empty() {
                bail!("{api} has no age recipient (an agent from before age keys)");
            }
            r
        }
    };
    let mut value = String::new();
    std::io::stdin()
        .read_to_string(&mut value)
        .context("reading the value from stdin")?;
    let value = value.strip_suffix('\n').unwrap_or(&value);
    if value.is_empty() {
        bail!(
            "nothing on stdin: pipe the secret in, e.g. `printf %s \"$PW\" | pgcd secret encrypt`"
        );
    }
    let cipher = crate::secrets::encrypt_to(&recipient, value)?;
    println!("age: |");
    for line in cipher.lines() {
        println!("  {line}");
    }
    Ok(0)
}
