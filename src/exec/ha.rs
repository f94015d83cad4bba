//! High-availability steps: promote the node's recorded primary, repoint a
//! standby to it, rejoin a former primary as its standby (fenced, rewound),
//! and stop a primary for a switchover so that its standbys have all its
//! WAL. The decisions (which instance, when, after what fencing) are the
//! planner's; these steps only carry them out, each idempotent.

use super::instance::unreachable_action;
use super::{db_error, query_error, run_sql, StepError, Target};
use crate::plan::Action;
use crate::postgres::sql;
use crate::state::names::FENCE_FILE;
use std::time::{Duration, Instant};

/// The rejoin script (run in the instance's container while it is fenced).
const REJOIN: &str = include_str!("rejoin.sh");

/// How long a candidate may take to replay what it received.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    match &t.step.action {
        Action::PromoteStandby { min_lsn } => promote(t, *min_lsn).await,
        Action::RepointStandby {
            primary,
            primary_address,
            primary_port,
            slot,
        } => {
            let c = t.admin().await?;
            let current: String = c
                .query_one("SELECT current_setting('primary_conninfo')", &[])
                .await
                .map_err(query_error)?
                .get(0);
            let conninfo = repointed(&current, primary_address, *primary_port, slot);
            let stmts = [
                sql::alter_system("primary_conninfo", &conninfo)?,
                sql::alter_system("primary_slot_name", slot)?,
                sql::reload(),
            ];
            t.log(format!(
                "following the primary on {primary} ({primary_address}:{primary_port}) through slot {slot}"
            ));
            run_sql(&c, t.ctx, &stmts).await
        }
        Action::RejoinAsStandby {
            primary,
            primary_address,
            primary_port,
            slot,
            fresh,
        } => {
            if *fresh {
                rebuild_marked(t).await?;
            }
            rejoin(t, primary.as_str(), primary_address, *primary_port, slot).await
        }
        Action::StopForSwitchover { candidate_slot } => {
            stop_for_switchover(t, candidate_slot).await
        }
        other => unreachable_action(other),
    }
}

/// How long a candidate may take to flush what its primary wrote before
/// a switchover stops it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// A checkpoint (so the shutdown's own is short), a wait until the
/// candidate has flushed the WAL up to it, then a fast shutdown. Until the
/// shutdown, nothing is changed: a failure leaves the primary serving.
async fn stop_for_switchover(t: &Target<'_>, candidate: &str) -> Result<(), StepError> {
    let c = t.admin().await?;
    run_sql(&c, t.ctx, &[sql::checkpoint()]).await?;
    let target: i64 = c
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            &[],
        )
        .await
        .map_err(query_error)?
        .get(0);
    let started = Instant::now();
    loop {
        let row = c
            .query_opt(
                "SELECT state, pg_wal_lsn_diff(flush_lsn, '0/0')::bigint \
                 FROM pg_stat_replication WHERE application_name = $1",
                &[&candidate],
            )
            .await
            .map_err(query_error)?;
        let Some(row) = row else {
            return Err(StepError::Refused(format!(
                "the candidate {candidate} does not stream from this primary; it keeps serving"
            )));
        };
        let (state, flushed): (String, Option<i64>) = (row.get(0), row.get(1));
        if state != "streaming" {
            return Err(StepError::Refused(format!(
                "the candidate {candidate} is {state}, not streaming; this primary keeps serving"
            )));
        }
        if flushed.is_some_and(|f| f >= target) {
            t.log(format!(
                "{candidate} has flushed the WAL up to the checkpoint (byte {target}) after {:.2}s",
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        if started.elapsed() > CATCH_UP_TIMEOUT {
            return Err(StepError::Refused(format!(
                "the candidate {candidate} did not catch up within {}s (flushed {flushed:?} of {target}); this primary keeps serving",
                CATCH_UP_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c);
    let took = Instant::now();
    t.rt.stop(&t.id).await?;
    t.log(format!(
        "container {} stopped (fast shutdown: its streaming standbys confirmed every WAL record first) in {:.2}s",
        t.id.container(),
        took.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// Waits until this host's fence lets the instance run as a primary: its
/// agent has seen the record that names this host (`agent::fence`).
async fn await_fence(t: &Target<'_>) -> Result<(), StepError> {
    let path = t.rt.instance_dir(&t.id).join(FENCE_FILE);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let value = match tokio::fs::read_to_string(&path).await {
            Ok(v) => v.trim().parse::<i64>().unwrap_or(0),
            // No fence: a node without a record is never fenced.
            Err(_) => return Ok(()),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        if value > now {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(StepError::Refused(
                "this host's fence does not let the instance run as a primary: its agent has not seen the record naming it (or cannot renew its lease); not promoted".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the standby has replayed all it received (twice in a row,
/// 100 ms apart: no WAL is coming in) and its fence allows a primary, then
/// promotes it; refuses when it received less than `min_lsn`.
async fn promote(t: &Target<'_>, min_lsn: Option<i64>) -> Result<(), StepError> {
    let c = t.admin().await?;
    let started = Instant::now();
    let mut settled = 0;
    loop {
        let r = c
            .query_one(
                "SELECT pg_is_in_recovery(), \
                 pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint, \
                 pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint",
                &[],
            )
            .await
            .map_err(query_error)?;
        let (recovering, received, replayed): (bool, Option<i64>, Option<i64>) =
            (r.get(0), r.get(1), r.get(2));
        if !recovering {
            t.log("already a primary: nothing to promote");
            return Ok(());
        }
        let caught_up = match (received, replayed) {
            (Some(a), Some(b)) => b >= a,
            (None, _) => true,
            _ => false,
        };
        settled = if caught_up { settled + 1 } else { 0 };
        if settled >= 2 {
            let have = received.or(replayed).unwrap_or(0);
            if let Some(min) = min_lsn.filter(|m| have < *m) {
                return Err(StepError::Refused(format!(
                    "the standby has received WAL up to byte {have}, less than the {min} the planner requires (writes would be lost); not promoted"
                )));
            }
            t.log(format!(
                "replayed everything received (WAL byte {}) in {:.2}s",
                replayed.or(received).unwrap_or(0),
                started.elapsed().as_secs_f64()
            ));
            break;
        }
        if started.elapsed() > REPLAY_TIMEOUT {
            return Err(StepError::Refused(format!(
                "the standby did not replay what it received within {}s (received {received:?}, replayed {replayed:?}); not promoted",
                REPLAY_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    await_fence(t).await?;
    let took = Instant::now();
    let done: bool = c
        .query_one("SELECT pg_promote(true, 60)", &[])
        .await
        .map_err(|e| StepError::Sql {
            statement: "SELECT pg_promote(true, 60)".into(),
            message: db_error(&e),
        })?
        .get(0);
    if !done {
        return Err(StepError::Phase(
            "pg_promote did not finish within 60 s".into(),
        ));
    }
    t.log(format!(
        "sql: SELECT pg_promote(true, 60): a primary now, accepting writes ({:.2}s)",
        took.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// A standby's `primary_conninfo` pointed at another primary: its `host`
/// and `port` replaced, every other option kept (TLS, passfile, name).
fn repointed(current: &str, address: &str, port: u16, slot: &str) -> String {
    let mut out: Vec<String> = current
        .split_whitespace()
        .filter(|kv| !kv.starts_with("host=") && !kv.starts_with("port="))
        .map(str::to_owned)
        .collect();
    if out.is_empty() {
        out = vec![
            "user=pgcd_replication".into(),
            format!("application_name={slot}"),
            "passfile=/var/lib/pgcd/pgpass".into(),
        ];
    }
    out.insert(0, format!("port={port}"));
    out.insert(0, format!("host={address}"));
    out.join(" ")
}

/// Fences the instance (so its server cannot run as a primary), starts its
/// container (whose script then waits), rewinds it in place and lets it
/// start as a standby.
/// A rebuild (its primary was restored to an earlier point, so this
/// standby's WAL runs past the primary's): marked to copy the primary
/// afresh, its data directory kept aside, and no longer taken for a
/// standby that already rejoined.
async fn rebuild_marked(t: &Target<'_>) -> Result<(), StepError> {
    let dir = t.rt.instance_dir(&t.id);
    let marker = dir.join("rejoin-fresh");
    tokio::fs::write(&marker, "")
        .await
        .map_err(|e| StepError::Phase(format!("writing {}: {e}", marker.display())))?;
    let signal = dir.join("data/standby.signal");
    match tokio::fs::remove_file(&signal).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StepError::Phase(format!(
                "removing {}: {e}",
                signal.display()
            )))
        }
    }
    t.log("rebuild: this standby's data directory is kept aside and the primary copied afresh");
    Ok(())
}

async fn rejoin(
    t: &Target<'_>,
    primary: &str,
    address: &str,
    port: u16,
    slot: &str,
) -> Result<(), StepError> {
    let dir = t.rt.instance_dir(&t.id);
    // An earlier attempt of this step finished the script (the server may
    // be starting as a standby already): wait for it. A rewound standby
    // that never becomes consistent is copied afresh instead, its data
    // directory kept aside: taking standby.signal away makes it a fenced
    // primary again, which the watchdog stops, and the script runs anew.
    let signal = dir.join("data/standby.signal");
    let marker = dir.join("rejoin-fresh");
    if tokio::fs::try_exists(&signal).await.unwrap_or(false) {
        t.log("already a standby (an earlier attempt rejoined it): waiting until it answers");
        let info =
            t.rt.inspect(&t.id)
                .await?
                .ok_or_else(|| StepError::NoContainer(t.id.container()))?;
        if !info.running {
            t.rt.start(&t.id).await?;
        }
        if answers_as_standby(t, REWOUND_TIMEOUT).await.is_ok() {
            return Ok(());
        }
        t.log("the rewound standby does not become consistent: copying the primary afresh, this data directory kept aside");
        tokio::fs::write(&marker, "")
            .await
            .map_err(|e| StepError::Phase(format!("writing {}: {e}", marker.display())))?;
        tokio::fs::remove_file(&signal)
            .await
            .map_err(|e| StepError::Phase(format!("removing {}: {e}", signal.display())))?;
    }
    // Remembered across attempts until a rejoin succeeds.
    let fresh = tokio::fs::try_exists(&marker).await.unwrap_or(false);
    let fence = dir.join(FENCE_FILE);
    tokio::fs::write(&fence, "0\n")
        .await
        .map_err(|e| StepError::Phase(format!("fencing {}: {e}", fence.display())))?;
    t.log("fenced: this instance cannot run as a primary");
    // The fence stops a server still running as a primary within 100 ms
    // (the container then restarts and waits, fenced); wait until no
    // server runs: pg_isready says "no response" (a server starting up
    // rejects, and still runs).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let info =
            t.rt.inspect(&t.id)
                .await?
                .ok_or_else(|| StepError::NoContainer(t.id.container()))?;
        let down = if info.running {
            let probe =
                t.rt.exec_as(
                    &t.id,
                    "postgres",
                    &format!("pg_isready -q -h /var/lib/pgcd/run -p {}", info.port),
                    Vec::new(),
                    Duration::from_secs(10),
                )
                .await;
            matches!(probe, Ok((code, _)) if code >= 2)
        } else {
            t.rt.start(&t.id).await?;
            false
        };
        if down {
            break;
        }
        if Instant::now() > until {
            return Err(StepError::Refused(format!(
                "{} still runs a server after it was fenced; not rejoined",
                t.id.container()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let password = t.replication_password().await?;
    t.log(format!(
        "rejoining as a standby of the primary on {primary} ({address}:{port}), slot {slot}"
    ));
    let env = vec![
        format!("P={address}"),
        format!("PP={port}"),
        format!("SLOT={slot}"),
        format!("PGCD_REPLICATION_PASSWORD={password}"),
        format!("PGCD_REJOIN_FRESH={}", u8::from(fresh)),
    ];
    let (code, out) =
        t.rt.exec_as(&t.id, "root", REJOIN, env, Duration::from_secs(3000))
            .await?;
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        t.log(line.to_string());
    }
    if code != 0 {
        let said: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(StepError::Phase(format!(
            "rejoining failed (exit {code}): {}",
            said[said.len().saturating_sub(3)..].join(" / ")
        )));
    }
    answers_as_standby(t, REWOUND_TIMEOUT).await?;
    let _ = tokio::fs::remove_file(&marker).await;
    Ok(())
}

/// How long a rejoined standby may take to answer before the next attempt
/// copies the primary afresh.
const REWOUND_TIMEOUT: Duration = Duration::from_secs(60);

/// Waits until the rejoined standby answers; its server's last lines say
/// why when it does not.
async fn answers_as_standby(t: &Target<'_>, within: Duration) -> Result<(), StepError> {
    if let Err(e) = t.rt.wait_healthy(&t.id, within).await {
        let tail = t.rt.log_tail(&t.id, 8).await.unwrap_or_default();
        for line in tail.lines().filter(|l| !l.trim().is_empty()) {
            t.log(format!("server: {line}"));
        }
        return Err(e.into());
    }
    t.log("pg_isready: accepting connections, as a standby");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::repointed;

    #[test]
    fn a_repointed_conninfo_keeps_every_other_option() {
        let c = "host=127.0.0.11 port=6500 user=pgcd_replication application_name=pgcd_n1_h2 passfile=/var/lib/pgcd/pgpass sslmode=verify-full sslrootcert=/var/lib/pgcd/tls/ca.crt";
        assert_eq!(
            repointed(c, "127.0.0.13", 6501, "pgcd_n1_h2"),
            "host=127.0.0.13 port=6501 user=pgcd_replication application_name=pgcd_n1_h2 passfile=/var/lib/pgcd/pgpass sslmode=verify-full sslrootcert=/var/lib/pgcd/tls/ca.crt"
        );
        assert!(repointed("", "10.0.0.1", 5432, "s")
            .starts_with("host=10.0.0.1 port=5432 user=pgcd_replication"));
    }
}
