//! The Grafana dashboard (`deploy/grafana/pgcd.json`) uses only metrics that
//! pgcd's `/metrics` code emits: the names are read from what the renderers
//! themselves write (`# TYPE` lines, with the `_bucket`/`_sum`/`_count`
//! series of histograms and summaries), not from a list kept by hand.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use pgcd::api::routes::metrics::render_reconciler;
use pgcd::cluster::metrics::Metrics;
use pgcd::reconcile::status::ReconcilerStats;
use serde_json::Value;
use std::collections::BTreeSet;

fn emitted() -> BTreeSet<String> {
    let text = format!(
        "{}{}",
        Metrics::default().render(Some(1), &[("running".into(), 0)]),
        render_reconciler(&ReconcilerStats::default(), &[])
    );
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["_sum", "_count"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(e)) = m.get("expr") {
                out.push(e.clone());
            }
            m.values().for_each(|v| exprs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("pgcd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn every_metric_the_dashboard_uses_is_one_pgcd_emits() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/pgcd.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 20, "only {} queries", all.len());
    let emitted = emitted();
    let used: BTreeSet<String> = all.iter().flat_map(|e| metric_names(e)).collect();
    let unknown: Vec<&String> = used.difference(&emitted).collect();
    assert!(
        unknown.is_empty(),
        "not emitted by /metrics: {unknown:?} (emitted: {emitted:?})"
    );
    // The dashboard covers the families it says it does.
    for family in [
        "pgcd_reconcile_",
        "pgcd_replication_lag_",
        "pgcd_database_condition",
        "pgcd_leader_changes_total",
    ] {
        assert!(
            used.iter().any(|u| u.starts_with(family)),
            "no panel uses {family}"
        );
    }
    // Every panel has an id, a title and a place.
    let panels = dash["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len());
    assert!(panels
        .iter()
        .all(|p| p["title"].is_string() && p["gridPos"]["w"].is_u64()));
}

#[test]
fn metric_names_are_read_out_of_queries() {
    assert_eq!(
        metric_names("max(rate(pgcd_reconcile_duration_seconds_sum[5m])) / max(pgcd_plan_steps)"),
        ["pgcd_reconcile_duration_seconds_sum", "pgcd_plan_steps"]
    );
}
