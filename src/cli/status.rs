//! `pgcd status`: the cluster, its leader, hosts, databases with their
//! conditions, and tasks, from any agent's API.

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
    /// One database: its instances (role, state, version) and the upgrades
    /// the images built on the answering host offer each node.
    database: Option<String>,
    /// Any agent's API URL.
    #[arg(long, env = "PGCD_API", default_value = "https://127.0.0.1:7800")]
    api: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    output: Output,
}

/// `pgcd status DATABASE`: its conditions, instances and available upgrades.
fn database(args: &Args, name: &str) -> Result<i32> {
    let db = get_json(
        &args.api,
        &format!("/v1/databases/{name}?include=available_upgrades"),
    )?;
    let mut out = String::new();
    if args.output == Output::Json {
        outln!(out, "{}", serde_json::to_string_pretty(&db)?);
        return Ok(emit(&out));
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
    let (name, conditions, reason, message) = database_line(&db);
    outln!(out, "database {name}  {conditions}  {reason}  {message}");
    outln!(out, "instances:");
    for i in db["instances"].as_array().into_iter().flatten() {
        outln!(
            out,
            "  {:<8} {:<16} {:<8} {:<8} PostgreSQL {}",
            s(i, "node"),
            s(i, "host"),
            s(i, "role"),
            s(i, "state"),
            s(i, "version")
        );
    }
    outln!(
        out,
        "available upgrades (images built on the answering host):"
    );
    for n in db["available_upgrades"].as_array().into_iter().flatten() {
        let list = |k: &str| {
            let v: Vec<&str> = n[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        outln!(
            out,
            "  {:<8} runs {}; minor (in place): {}; major (node addition): {}",
            s(n, "node"),
            list("running"),
            list("minors"),
            list("majors")
        );
    }
    Ok(emit(&out))
}

/// GETs a JSON document from the API.
pub fn get_json(api: &str, path: &str) -> Result<Value> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let client = super::tls()
        .blocking_http(Duration::from_secs(5))
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
    if let Some(db) = &args.database {
        return database(&args, db);
    }
    let cluster = get_json(&args.api, "/v1/cluster")?;
    let hosts = get_json(&args.api, "/v1/hosts")?;
    let tasks = get_json(&args.api, "/v1/tasks")?;
    let source = get_json(&args.api, "/v1/source")?;
    let databases = get_json(&args.api, "/v1/databases")?;
    // An agent from before certificates has no such route: status goes on without.
    let certificates = get_json(&args.api, "/v1/certificates").unwrap_or(Value::Null);
    let mut out = String::new();
    if args.output == Output::Json {
        let all = serde_json::json!({
            "cluster": cluster,
            "hosts": hosts,
            "databases": databases,
            "tasks": tasks,
            "source": source,
            "certificates": certificates,
        });
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
    let soonest = certificates.as_array().and_then(|all| {
        all.iter()
            .filter_map(|c| Some((c.get("expires_in_seconds")?.as_i64()?, c)))
            .min_by_key(|(left, _)| *left)
    });
    if let Some((left, c)) = soonest {
        outln!(
            out,
            "certs   soonest expiry in {} days ({} {}; renew with pgcd cert rotate)",
            left / 86_400,
            s(c, "host"),
            s(c, "kind")
        );
    }
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
    let databases = databases.as_array().cloned().unwrap_or_default();
    if !databases.is_empty() {
        outln!(out);
        outln!(
            out,
            "{:<20} {:<24} {:<20} MESSAGE",
            "DATABASE",
            "CONDITIONS",
            "REASON"
        );
        for db in &databases {
            let (name, conditions, reason, message) = database_line(db);
            outln!(out, "{name:<20} {conditions:<24} {reason:<20} {message}");
        }
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

/// Which true condition speaks for a database on its line: the one a person
/// must act on first.
const PRIORITY: [&str; 5] = ["Stalled", "Degraded", "Orphaned", "Reconciling", "Ready"];

/// One database as `pgcd status` lists it: name, the conditions that hold
/// (`Ready`, `Stalled,Degraded`, or `NotReady` when none does), and the
/// reason and message of the most pressing one (of `Ready` when none holds).
fn database_line(db: &Value) -> (String, String, String, String) {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let conditions = db
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let holds = |c: &&Value| c.get("status").and_then(Value::as_bool) == Some(true);
    let mut true_now: Vec<&Value> = conditions.iter().filter(holds).collect();
    let rank = |c: &Value| {
        let kind = text(c, "type");
        PRIORITY
            .iter()
            .position(|p| *p == kind)
            .unwrap_or(PRIORITY.len())
    };
    true_now.sort_by_key(|c| rank(c));
    let names = if true_now.is_empty() {
        "NotReady".to_owned()
    } else {
        true_now
            .iter()
            .map(|c| text(c, "type"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let speaker = true_now.first().copied().or_else(|| {
        conditions
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
    });
    let (reason, message) = speaker.map_or_else(
        || ("-".to_owned(), String::new()),
        |c| (text(c, "reason"), text(c, "message")),
    );
    let message = message.replace(['\n', '\r'], " ");
    (text(db, "name"), names, reason, message)
}

/// Prints the text; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> i32 {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(kind: &str, status: bool, reason: &str, message: &str) -> Value {
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "last_transition_time": "t0" })
    }

    #[test]
    fn a_stalled_database_shows_the_failed_step_first() {
        let db = json!({ "name": "orders", "conditions": [
            cond("Ready", false, "StepFailed", "not ready"),
            cond("Reconciling", true, "Applying", "2 steps"),
            cond("Stalled", true, "StepFailed", "create role app failed:\nboom"),
        ]});
        let (name, conditions, reason, message) = database_line(&db);
        assert_eq!(name, "orders");
        assert_eq!(conditions, "Stalled,Reconciling");
        assert_eq!(reason, "StepFailed");
        assert_eq!(message, "create role app failed: boom");
    }

    #[test]
    fn a_database_with_no_true_condition_is_not_ready() {
        let db =
            json!({ "name": "new", "conditions": [cond("Ready", false, "Pending", "first pass")] });
        let (_, conditions, reason, message) = database_line(&db);
        assert_eq!(
            (conditions.as_str(), reason.as_str(), message.as_str()),
            ("NotReady", "Pending", "first pass")
        );
    }
}
