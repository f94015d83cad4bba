//! `pgcd status`: the cluster, its leader, hosts and tasks, from any agent's API.

use super::Output;
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

macro_rules! outln {
    ($out:expr) => { let _ = writeln!($out); };
    ($out:expr, $($arg:tt)*) => { let _ = writeln!($out, $($arg)*); };
}

/// Arguments of `pgcd status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Any agent's API URL.
    #[arg(long, env = "PGCD_API", default_value = "http://127.0.0.1:7800")]
    api: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Output,
}

/// GETs a JSON document from the API.
pub fn get_json(api: &str, path: &str) -> Result<Value> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .context("building the HTTP client")?;
    let resp = client
        .get(&url)
        .send()
        .with_context(|| format!("cannot reach the pgcd API at {api} (set --api or PGCD_API)"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .with_context(|| format!("{url} did not answer JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{url}: {status}: {}",
            body.get("error").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(body)
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    let cluster = get_json(&args.api, "/v1/cluster")?;
    let hosts = get_json(&args.api, "/v1/hosts")?;
    let tasks = get_json(&args.api, "/v1/tasks")?;
    let source = get_json(&args.api, "/v1/source")?;
    let mut out = String::new();
    if args.output == Output::Json {
        let all = serde_json::json!({ "cluster": cluster, "hosts": hosts, "tasks": tasks, "source": source });
        outln!(out, "{}", serde_json::to_string_pretty(&all)?);
        return Ok(emit(&out));
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    outln!(
        out,
        "cluster {}  leader {}",
        s(&cluster, "cluster_id"),
        s(&cluster, "leader")
    );
    outln!(
        out,
        "source  {} ({})  in force {}",
        s(&source["config"], "url"),
        s(&source["config"], "branch"),
        source["applied"]["sha"]
            .as_str()
            .map_or("nothing yet", |sha| &sha[..sha.len().min(12)])
    );
    outln!(out);
    outln!(
        out,
        "{:<12} {:<16} {:<8} {:<10} LABELS",
        "HOST",
        "ADDRESS",
        "HEALTHY",
        "ETCD"
    );
    let members = cluster
        .get("members")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for h in hosts.as_array().cloned().unwrap_or_default() {
        let id = s(&h, "id");
        let etcd = members
            .iter()
            .find(|m| s(m, "name") == id)
            .map_or("-", |m| {
                if m.get("healthy").and_then(Value::as_bool) == Some(true) {
                    "healthy"
                } else {
                    "down"
                }
            });
        let labels = h
            .get("labels")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let healthy = if h.get("healthy").and_then(Value::as_bool) == Some(true) {
            "yes"
        } else {
            "NO"
        };
        outln!(
            out,
            "{:<12} {:<16} {:<8} {:<10} {labels}",
            id,
            s(&h, "address"),
            healthy,
            etcd
        );
    }
    let tasks = tasks.as_array().cloned().unwrap_or_default();
    if !tasks.is_empty() {
        outln!(out);
        outln!(out, "{:<40} {:<12} {:<8} STATE", "TASK", "KIND", "HOST");
        for t in tasks {
            outln!(
                out,
                "{:<40} {:<12} {:<8} {}",
                s(&t, "id"),
                s(&t, "kind"),
                s(&t, "host"),
                s(&t, "state")
            );
        }
    }
    Ok(emit(&out))
}

/// Prints the text; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> i32 {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    0
}
