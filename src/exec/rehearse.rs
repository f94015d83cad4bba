//! The restore rehearsal step: the node's newest backup (its primary's
//! listing in etcd, `backups/<db>/<node>`) restored into a scratch instance
//! on this host until consistent, each database measured and compared with
//! what its source had when the backup ended (`backup-figures/<db>/<node>`),
//! the restore time (RTO) and the data's age (RPO) measured, the scratch
//! instance removed, and the result written to `restore-checks/<db>/<node>`.
//!
//! The step succeeds when it could record the result, whatever the result:
//! a failed rehearsal is a fact about the backups (the database goes
//! `Degraded`), not a step to try again.

use super::{StepError, Target};
use crate::backup::poll::NodeBackups;
use crate::backup::rehearse::{self, Scratch};
use crate::cluster::keys;
use crate::plan::steps::Rehearsal;
use crate::state::rehearsal::{compare, NodeFigures, RestoreCheck};
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// How long a restore may take to become consistent.
const CONSISTENT_TIMEOUT: Duration = Duration::from_secs(3600);

pub(super) async fn carry_out(t: &Target<'_>, r: &Rehearsal) -> Result<(), StepError> {
    let store = &t.ctx.store;
    let key = keys::restore_check(&t.step.database, &t.step.node);
    let prev: Option<RestoreCheck> = store.get_json(&key).await.ok().flatten();
    let started = Utc::now();
    let mut check = RestoreCheck {
        database: t.step.database.to_string(),
        node: t.step.node.to_string(),
        host: t.step.host.to_string(),
        operation: t
            .step
            .operation
            .as_ref()
            .map_or_else(|| t.ctx.task_id.clone(), |o| o.id.clone()),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        passed: prev.as_ref().map_or(0, |p| p.passed),
        failed: prev.as_ref().map_or(0, |p| p.failed),
        ..Default::default()
    };
    let scratch = Scratch::new(&t.ctx.data_dir, &t.step.database, &t.step.node, r.conf.port);
    let result = rehearse(t, r, &scratch, started, &mut check).await;
    let out = rehearse::output(t.rt, &scratch, 40).await;
    if !out.trim().is_empty() {
        t.log("the scratch instance's output:");
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            t.log(format!("  {}", line.trim_end()));
        }
    }
    match rehearse::remove(t.rt, &scratch).await {
        Ok(()) => t.log(format!(
            "scratch container {} and directory {} removed",
            scratch.name,
            scratch.dir.display()
        )),
        Err(e) => t.log(format!("removing the scratch instance failed: {e}")),
    }
    check.finished_at = crate::cluster::now_rfc3339();
    match result {
        Ok(()) => {
            check.ok = true;
            check.passed += 1;
        }
        Err(why) => {
            check.ok = false;
            check.failed += 1;
            check.reason = Some(why);
        }
    }
    t.log(format!(
        "restore rehearsal of {}/{} {}: backup {}, RTO {}, RPO {}{}",
        check.database,
        check.node,
        if check.ok { "passed" } else { "FAILED" },
        check.label.as_deref().unwrap_or("-"),
        check
            .restore_seconds
            .map_or("-".into(), |s| format!("{s:.1}s")),
        check.age_seconds.map_or("-".into(), |s| format!("{s:.0}s")),
        check
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    ));
    store
        .put_json(&key, &check)
        .await
        .map_err(|e| StepError::Query(format!("recording the rehearsal in {key}: {e}")))?;
    Ok(())
}

async fn rehearse(
    t: &Target<'_>,
    r: &Rehearsal,
    scratch: &Scratch,
    started: DateTime<Utc>,
    check: &mut RestoreCheck,
) -> Result<(), String> {
    let store = &t.ctx.store;
    let (db, node) = (t.step.database.as_str(), t.step.node.as_str());
    let listed: NodeBackups = store
        .get_json(&keys::backups(db, node))
        .await
        .map_err(|e| format!("reading the backup listing: {e}"))?
        .ok_or_else(|| format!("no backup of {db}/{node} is listed yet"))?;
    let sysid = listed
        .system_identifier
        .clone()
        .ok_or_else(|| format!("the listing of {db}/{node} names no system identifier"))?;
    let newest = listed
        .backups
        .iter()
        .filter(|b| !b.error && b.repo == r.repo)
        .filter(|b| b.system_identifier.as_deref().is_none_or(|s| s == sysid))
        .max_by(|a, b| a.stop.cmp(&b.stop))
        .ok_or_else(|| format!("no backup of {db}/{node} in repo{} to restore yet", r.repo))?;
    check.label = Some(newest.label.clone());
    check.backup_stop = Some(newest.stop.clone());
    if let Ok(stop) = DateTime::parse_from_rfc3339(&newest.stop) {
        check.age_seconds =
            Some((started - stop.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0);
    }
    let figures: Option<NodeFigures> = store
        .get_json(&keys::backup_figures(db, node))
        .await
        .ok()
        .flatten();
    let source = figures.as_ref().and_then(|f| f.of(&newest.label)).cloned();
    t.log(format!(
        "restoring backup {} ({}, stopped {}) of stanza {} into {} on {}",
        newest.label,
        newest.backup_type,
        newest.stop,
        r.conf.stanza,
        scratch.dir.display(),
        scratch.name
    ));
    if source.is_none() {
        t.log("its source's figures were not recorded (a backup taken outside pgcd, or before it recorded them): the copy is checked for consistency only");
    }
    let argv = rehearse::restore_argv(&r.conf.stanza, r.repo, &newest.label);
    t.log(format!("running {}", argv.join(" ")));
    let clock = Instant::now();
    let masked = rehearse::start(
        t.rt,
        scratch,
        &r.conf,
        &sysid,
        &t.args.image,
        &r.mounts,
        &argv,
    )
    .await
    .map_err(|e| format!("starting the scratch instance: {e}"))?;
    for line in masked
        .lines()
        .filter(|l| l.contains("-path=") || l.contains("-type="))
    {
        t.log(format!("  {line}"));
    }
    // Consistent: recovery reached the backup's end and promoted.
    let until = clock + CONSISTENT_TIMEOUT;
    loop {
        if let Some(code) = rehearse::exited(t.rt, scratch)
            .await
            .map_err(|e| e.to_string())?
        {
            let out = rehearse::output(t.rt, scratch, 12).await;
            return Err(format!(
                "the restore of backup {} failed (exit {code}): {}",
                newest.label,
                why(&out)
            ));
        }
        if let Ok(v) = rehearse::psql(t.rt, scratch, "postgres", "SELECT pg_is_in_recovery()").await
        {
            if v == "f" {
                break;
            }
        }
        if Instant::now() >= until {
            return Err(format!(
                "the restored copy of backup {} was not consistent within {}s",
                newest.label,
                CONSISTENT_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rto = clock.elapsed().as_secs_f64();
    check.restore_seconds = Some(rto);
    t.log(format!(
        "the copy is consistent and promoted after {rto:.1}s (RTO)"
    ));
    let restored = rehearse::measure(t.rt, scratch)
        .await
        .map_err(|e| format!("measuring the restored copy: {e}"))?;
    let (checks, wrong) = compare(source.as_ref(), &restored);
    for c in &checks {
        t.log(format!(
            "database {}: {} row(s) (source {}), {} bytes (source {})",
            c.database,
            c.rows,
            c.source_rows.map_or("-".into(), |v| v.to_string()),
            c.size,
            c.source_size.map_or("-".into(), |v| v.to_string())
        ));
    }
    check.databases = checks;
    if !wrong.is_empty() {
        return Err(format!(
            "backup {} restored but differs from its source: {}",
            newest.label,
            wrong.join("; ")
        ));
    }
    Ok(())
}

/// What a failed scratch instance's output says went wrong: pgBackRest's
/// and PostgreSQL's error lines (their log prefixes cut), else its last
/// lines.
fn why(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            ["ERROR:", "FATAL:", "PANIC:"]
                .iter()
                .find_map(|k| l.find(k).map(|i| l[i..].to_string()))
        })
        .collect();
    if errors.is_empty() {
        lines[lines.len().saturating_sub(3)..].join(" | ")
    } else {
        errors.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failed_restore_is_told_by_its_error_lines() {
        let out = "pgcd: restoring into the scratch directory\n2026-12-02 16:14:21.716 P00   INFO: restore command begin 2.55.1: --config=...\n2026-12-02 16:14:40.192 P00  ERROR: [029]: raised from local-1 protocol: zst error: [-10] Unknown frame descriptor\n2026-12-02 16:14:40.192 P00   INFO: restore command end: aborted with exception [029]\n";
        assert_eq!(
            super::why(out),
            "ERROR: [029]: raised from local-1 protocol: zst error: [-10] Unknown frame descriptor"
        );
        assert_eq!(super::why("a\nb\nc\nd\n"), "b | c | d");
    }
}
