//! `GET /metrics`: Prometheus text. The agent's own metrics, plus what every
//! agent reads from etcd at scrape time: hosts up, tasks by state, the
//! reconciler's counters (`status/reconciler`) and each database's conditions.

use super::databases;
use crate::api::{escape_label, ApiState};
use crate::cluster::registry::list_hosts;
use crate::cluster::tasks::list_tasks;
use crate::reconcile::status::{DatabaseStatus, LinkStatus, ReconcilerStats};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Renders the agent's metrics plus the cluster's from etcd. What cannot be
/// read is left out or zero rather than failing the scrape.
pub async fn get(State(state): State<ApiState>) -> impl IntoResponse {
    let hosts_up = list_hosts(&state.store)
        .await
        .ok()
        .map(|h| h.iter().filter(|h| h.healthy).count());
    let mut by_state: BTreeMap<String, usize> = ["pending", "running", "succeeded", "failed"]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    if let Ok(tasks) = list_tasks(&state.store).await {
        for t in tasks {
            *by_state.entry(t.state.as_str().to_owned()).or_default() += 1;
        }
    }
    let tasks: Vec<(String, usize)> = by_state.into_iter().collect();
    let stats = match state
        .store
        .get_json::<ReconcilerStats>(crate::cluster::keys::RECONCILER_STATS)
        .await
    {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the reconciler's counters; /metrics shows zeros");
            ReconcilerStats::default()
        }
    };
    let dbs = databases::all(&state.store).await.unwrap_or_default();
    let mut text = state.metrics.render(hosts_up, &tasks);
    text.push_str(&render_reconciler(&stats, &dbs));
    text.push_str(&super::backups::metrics(&state.store).await);
    if let Ok((entries, _)) = state
        .store
        .get_prefix_paged(crate::cluster::keys::SCHEDULES, 0)
        .await
    {
        let records: Vec<crate::state::schedule::ScheduleRecord> =
            entries.iter().filter_map(|e| e.json().ok()).collect();
        text.push_str(&render_schedules(&records));
    }
    text.push_str(&render_restore_checks(&dbs));
    if let Ok(certs) = super::certificates::read_all(&state).await {
        text.push_str(&render_certificates(&certs));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Renders each backup schedule's runs, missed times (a time that passed
/// while no leader ran: alert on its increase) and latest time run.
pub fn render_schedules(records: &[crate::state::schedule::ScheduleRecord]) -> String {
    let mut out = String::new();
    // Restore rehearsals keep their times in the same records (`_verify`);
    // their own metrics are `pgcd_restore_check_*`.
    let records: Vec<&crate::state::schedule::ScheduleRecord> = records
        .iter()
        .filter(|r| !r.schedule.starts_with('_'))
        .collect();
    let labels = |r: &crate::state::schedule::ScheduleRecord| {
        format!(
            "database=\"{}\",node=\"{}\",schedule=\"{}\"",
            escape_label(r.database.as_str()),
            escape_label(&r.node),
            escape_label(&r.schedule)
        )
    };
    let _ = writeln!(out, "# HELP pgcd_backup_schedule_runs_total Scheduled backups started by the leader, per schedule.");
    let _ = writeln!(out, "# TYPE pgcd_backup_schedule_runs_total counter");
    for r in &records {
        let _ = writeln!(
            out,
            "pgcd_backup_schedule_runs_total{{{}}} {}",
            labels(r),
            r.runs
        );
    }
    let _ = writeln!(out, "# HELP pgcd_backup_schedule_missed_total Scheduled times that passed without a run (no leader then); the latest one runs late.");
    let _ = writeln!(out, "# TYPE pgcd_backup_schedule_missed_total counter");
    for r in &records {
        let _ = writeln!(
            out,
            "pgcd_backup_schedule_missed_total{{{}}} {}",
            labels(r),
            r.missed
        );
    }
    let _ = writeln!(out, "# HELP pgcd_backup_schedule_last_run_timestamp_seconds The latest scheduled time run (Unix time).");
    let _ = writeln!(
        out,
        "# TYPE pgcd_backup_schedule_last_run_timestamp_seconds gauge"
    );
    for r in &records {
        if let Some(t) = r.last_due {
            let _ = writeln!(
                out,
                "pgcd_backup_schedule_last_run_timestamp_seconds{{{}}} {}",
                labels(r),
                t.timestamp()
            );
        }
    }
    out
}

/// Renders each node's last restore rehearsal (from the databases'
/// statuses): `pgcd_restore_check_success` (1 passed, 0 failed), its
/// restore time (`_duration_seconds`, the RTO), the age of the data it
/// brought back (`_age_seconds`, the RPO), when it ended
/// (`_timestamp_seconds`) and the failures so far (`_failures_total`).
pub fn render_restore_checks(dbs: &[DatabaseStatus]) -> String {
    let mut out = String::new();
    let checks: Vec<(String, &crate::state::rehearsal::RestoreCheck)> = dbs
        .iter()
        .flat_map(|d| d.restore_checks.iter())
        .map(|c| {
            (
                format!(
                    "database=\"{}\",node=\"{}\"",
                    escape_label(&c.database),
                    escape_label(&c.node)
                ),
                c,
            )
        })
        .collect();
    type Value = fn(&crate::state::rehearsal::RestoreCheck) -> Option<f64>;
    let families: [(&str, &str, &str, Value); 5] = [
        ("pgcd_restore_check_success", "1 when the node's last restore rehearsal restored its newest backup and matched its source, else 0.", "gauge", |c| Some(if c.ok { 1.0 } else { 0.0 })),
        ("pgcd_restore_check_duration_seconds", "Seconds the last restore rehearsal took from the start of the restore to a consistent copy (RTO).", "gauge", |c| c.restore_seconds),
        ("pgcd_restore_check_age_seconds", "Age of the data the last restore rehearsal brought back: its start minus the backup's stop (RPO).", "gauge", |c| c.age_seconds),
        ("pgcd_restore_check_timestamp_seconds", "When the last restore rehearsal ended (Unix time).", "gauge", |c| {
            chrono::DateTime::parse_from_rfc3339(&c.finished_at).ok().map(|t| t.timestamp_millis() as f64 / 1000.0)
        }),
        ("pgcd_restore_check_failures_total", "Restore rehearsals of the node that failed.", "counter", |c| Some(c.failed as f64)),
    ];
    for (name, help, kind, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, c) in &checks {
            if let Some(v) = value(c) {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
    }
    out
}

/// Renders `pgcd_certificate_expiry_seconds{host,kind}`: each
/// certificate's not-after as a Unix time (alert on it minus `time()`).
pub fn render_certificates(certs: &[super::certificates::HostCertificates]) -> String {
    let mut out = String::from(
        "# HELP pgcd_certificate_expiry_seconds When the certificate expires (Unix time)\n# TYPE pgcd_certificate_expiry_seconds gauge\n",
    );
    for h in certs {
        for (kind, c) in &h.certificates {
            let _ = writeln!(
                out,
                "pgcd_certificate_expiry_seconds{{host=\"{}\",kind=\"{kind}\"}} {}",
                h.host, c.not_after_unix
            );
        }
    }
    out
}

/// Renders the reconciler's counters and a `pgcd_database_condition` gauge
/// per database and condition (1 when it holds).
pub fn render_reconciler(stats: &ReconcilerStats, dbs: &[DatabaseStatus]) -> String {
    let mut out = String::new();
    let mut one = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    one(
        "pgcd_reconcile_passes_total",
        "counter",
        "Reconcile passes run by the leaders.",
        stats.passes.to_string(),
    );
    one(
        "pgcd_reconcile_last_duration_seconds",
        "gauge",
        "Duration of the last reconcile pass (observe, plan, apply).",
        stats.last_pass_seconds.to_string(),
    );
    one(
        "pgcd_reconcile_last_cpu_seconds",
        "gauge",
        "CPU time of the leader's process during the last reconcile pass.",
        stats.last_pass_cpu_seconds.to_string(),
    );
    one(
        "pgcd_plan_steps",
        "gauge",
        "Steps in the last reconcile pass's plan.",
        stats.last_plan_steps.to_string(),
    );
    one(
        "pgcd_drift_corrections_total",
        "counter",
        "Steps carried out that corrected drift made by hand.",
        stats.drift_corrections_total.to_string(),
    );
    one(
        "pgcd_failovers_total",
        "counter",
        "Automatic failovers carried out: a standby recorded as its node's primary after the primary was lost.",
        stats.failovers_total.to_string(),
    );
    one(
        "pgcd_apply_failures_total",
        "counter",
        "Plan steps that failed.",
        stats.apply_failures_total.to_string(),
    );
    one(
        "pgcd_apply_steps_total",
        "counter",
        "Plan steps carried out.",
        stats.steps_total.to_string(),
    );
    // A summary without quantiles: with `_count`, `_sum` gives the mean.
    let _ = writeln!(
        out,
        "# HELP pgcd_reconcile_duration_seconds Duration of reconcile passes."
    );
    let _ = writeln!(out, "# TYPE pgcd_reconcile_duration_seconds summary");
    let _ = writeln!(
        out,
        "pgcd_reconcile_duration_seconds_sum {}",
        stats.pass_seconds_sum
    );
    let _ = writeln!(
        out,
        "pgcd_reconcile_duration_seconds_count {}",
        stats.passes
    );
    let _ = writeln!(
        out,
        "# HELP pgcd_database_condition 1 when the database's condition holds, per its last status."
    );
    let _ = writeln!(out, "# TYPE pgcd_database_condition gauge");
    for db in dbs {
        for c in &db.conditions {
            let _ = writeln!(
                out,
                "pgcd_database_condition{{database=\"{}\",condition=\"{}\"}} {}",
                escape_label(&db.name),
                c.kind.as_str(),
                u8::from(c.status)
            );
        }
    }
    render_links(&mut out, dbs);
    out
}

/// Per replication link: lag, apply and copy errors, conflicts by kind.
fn render_links(out: &mut String, dbs: &[DatabaseStatus]) {
    let links = || {
        dbs.iter().flat_map(|d| {
            d.links.iter().map(move |l| {
                (
                    format!(
                        "database=\"{}\",subscription=\"{}\",from=\"{}\",to=\"{}\"",
                        escape_label(&d.name),
                        escape_label(&l.subscription),
                        escape_label(&l.from),
                        escape_label(&l.to)
                    ),
                    l,
                )
            })
        })
    };
    let mut family =
        |name: &str, kind: &str, help: &str, value: &dyn Fn(&LinkStatus) -> Option<String>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, l) in links() {
                if let Some(v) = value(l) {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        };
    family(
        "pgcd_replication_link_up",
        "gauge",
        "1 when the link's subscription is enabled and its apply worker runs.",
        &|l| Some(u8::from(l.state == "streaming").to_string()),
    );
    family(
        "pgcd_replication_lag_bytes",
        "gauge",
        "WAL of the publisher not yet applied by the subscriber.",
        &|l| l.lag_bytes.map(|v| v.to_string()),
    );
    family(
        "pgcd_replication_lag_seconds",
        "gauge",
        "Replay lag of the link.",
        &|l| l.lag_seconds.map(|v| v.to_string()),
    );
    family(
        "pgcd_replication_apply_errors_total",
        "counter",
        "Errors applying the link's changes.",
        &|l| Some(l.apply_errors.to_string()),
    );
    family(
        "pgcd_replication_sync_errors_total",
        "counter",
        "Errors copying tables for the link.",
        &|l| Some(l.sync_errors.to_string()),
    );
    let _ = writeln!(
        out,
        "# HELP pgcd_replication_conflicts_total Conflicts met applying the link's changes, by kind (PostgreSQL 18+)."
    );
    let _ = writeln!(out, "# TYPE pgcd_replication_conflicts_total counter");
    for (labels, l) in links() {
        for (kind, n) in &l.conflicts {
            let _ = writeln!(
                out,
                "pgcd_replication_conflicts_total{{{labels},kind=\"{}\"}} {n}",
                escape_label(kind)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::status::ConditionType;

    #[test]
    fn restore_checks_render_success_rto_and_rpo_per_node() {
        let mut db = DatabaseStatus::new("orders", "2026-12-01T00:00:00Z");
        db.restore_checks
            .push(crate::state::rehearsal::RestoreCheck {
                database: "orders".into(),
                node: "n1".into(),
                finished_at: "2026-12-01T04:00:12.000Z".into(),
                ok: false,
                restore_seconds: None,
                age_seconds: Some(30.5),
                failed: 2,
                ..Default::default()
            });
        let text = render_restore_checks(&[db]);
        for want in [
            "pgcd_restore_check_success{database=\"orders\",node=\"n1\"} 0",
            "pgcd_restore_check_age_seconds{database=\"orders\",node=\"n1\"} 30.5",
            "pgcd_restore_check_timestamp_seconds{database=\"orders\",node=\"n1\"} 1796097612",
            "pgcd_restore_check_failures_total{database=\"orders\",node=\"n1\"} 2",
            "# TYPE pgcd_restore_check_duration_seconds gauge",
        ] {
            assert!(text.contains(want), "{want} missing in\n{text}");
        }
        assert!(
            !text.contains("pgcd_restore_check_duration_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label("orders"), "orders");
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn absent_stats_render_as_zeros() {
        let text = render_reconciler(&ReconcilerStats::default(), &[]);
        for line in [
            "pgcd_reconcile_passes_total 0",
            "pgcd_reconcile_last_duration_seconds 0",
            "pgcd_reconcile_duration_seconds_sum 0",
            "pgcd_plan_steps 0",
            "pgcd_drift_corrections_total 0",
            "pgcd_apply_failures_total 0",
            "pgcd_failovers_total 0",
            "pgcd_apply_steps_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn schedules_render_runs_missed_and_the_latest_time_run() {
        let r: crate::state::schedule::ScheduleRecord = serde_json::from_value(serde_json::json!({
            "database": "orders", "node": "n1", "schedule": "nightly",
            "cron_expression": "0 0 1 * * *", "since": "2026-01-01T00:00:00Z",
            "last_due": "2026-01-03T01:00:00Z", "runs": 2, "missed": 1
        }))
        .unwrap();
        let text = render_schedules(&[r]);
        let l = "database=\"orders\",node=\"n1\",schedule=\"nightly\"";
        for line in [
            format!("pgcd_backup_schedule_runs_total{{{l}}} 2\n"),
            format!("pgcd_backup_schedule_missed_total{{{l}}} 1\n"),
            format!("pgcd_backup_schedule_last_run_timestamp_seconds{{{l}}} 1767402000\n"),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
    }

    #[test]
    fn each_condition_is_a_gauge_with_escaped_database() {
        let mut db = DatabaseStatus::new("we\"ird", "t0");
        db.set(ConditionType::Ready, true, "Applied", String::new(), "t0");
        db.set(ConditionType::Stalled, false, "Ok", String::new(), "t0");
        let stats = ReconcilerStats {
            passes: 4,
            pass_seconds_sum: 2.5,
            ..ReconcilerStats::default()
        };
        let text = render_reconciler(&stats, &[db]);
        assert!(text
            .contains("pgcd_database_condition{database=\"we\\\"ird\",condition=\"Ready\"} 1\n"));
        assert!(text
            .contains("pgcd_database_condition{database=\"we\\\"ird\",condition=\"Stalled\"} 0\n"));
        assert!(text.contains("pgcd_reconcile_duration_seconds_sum 2.5\n"));
        assert!(text.contains("pgcd_reconcile_duration_seconds_count 4\n"));
    }
}
