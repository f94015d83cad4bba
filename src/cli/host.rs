//! `pgcd host remove ID`: forgets a dead host — its records and its etcd
//! member. Refuses a live host unless `--force`.

use super::status::get_json;
use crate::cluster::keys;
use crate::cluster::metrics::Metrics;
use crate::cluster::store::Store;
use crate::spec::names::HostId;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::sync::Arc;

/// Arguments of `pgcd host`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Remove a dead host and its etcd member.
    Remove {
        /// The host id.
        id: HostId,
        /// Any agent's API URL.
        #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
        api: String,
        /// Remove it even if it is alive.
        #[arg(long)]
        force: bool,
    },
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    let Action::Remove { id, api, force } = args.action;
    let hosts = get_json(&api, "/v1/hosts")?;
    let cluster = get_json(&api, "/v1/cluster")?;
    let host = hosts.as_array().and_then(|a| {
        a.iter()
            .find(|h| h.get("id").and_then(Value::as_str) == Some(id.as_str()))
    });
    let alive = host.and_then(|h| h.get("healthy")).and_then(Value::as_bool) == Some(true);
    if alive && !force {
        bail!("host {id} is alive; stop its agent first, or pass --force");
    }
    let members = cluster
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let endpoints: Vec<String> = members
        .iter()
        .filter(|m| m.get("name").and_then(Value::as_str) != Some(id.as_str()))
        .filter(|m| m.get("healthy").and_then(Value::as_bool) == Some(true))
        .filter_map(|m| {
            m.get("client_urls")?
                .as_array()?
                .first()?
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    if endpoints.is_empty() {
        bail!("no healthy etcd member other than {id} to talk to");
    }
    let member = members
        .iter()
        .find(|m| m.get("name").and_then(Value::as_str) == Some(id.as_str()))
        .and_then(|m| m.get("id")?.as_str())
        .map(|hex| u64::from_str_radix(hex, 16))
        .transpose()
        .context("bad member id from the API")?;
    if host.is_none() && member.is_none() {
        bail!("no host {id} in this cluster");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let store = Store::connect_tls(
            &endpoints,
            super::tls().load()?.as_ref(),
            Arc::new(Metrics::default()),
        )
        .await?;
        if let Some(member) = member {
            let mut client = store.client();
            store.timed(client.member_remove(member)).await?;
            println!("removed etcd member {member:x} ({id})");
        }
        for key in [keys::host(&id), keys::known(&id), keys::facts(&id)] {
            store.delete(&key).await?;
        }
        // Its queue goes too; task states stay as history.
        let mut client = store.client();
        let queue = crate::cluster::store::full_key(&keys::host_tasks(&id));
        let prefix = etcd_client::DeleteOptions::new().with_prefix();
        store.timed(client.delete(queue, Some(prefix))).await?;
        println!("removed host {id}");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}
