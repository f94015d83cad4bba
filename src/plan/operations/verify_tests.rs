//! Restore rehearsals: followed from when first seen, one run per time on
//! the chosen host, never held back by the database's other steps.

use crate::plan::operations::{OperationPlan, Transition};
use crate::plan::plan_at;
use crate::plan::steps::Action;
use crate::spec::{self, Desired, SourceFile};
use crate::state::operation::OperationState;
use crate::state::schedule::ScheduleRecord;
use chrono::{DateTime, TimeZone, Utc};

fn ledger(verify: &str, hosts: &str) -> String {
    format!(
        r#"
database_name: ledger
postgres_version: "17"
port: 6590
nodes:
  - name: n1
    host_ids: [{hosts}]
backup_config:
  repositories:
    - id: nfs
      type: posix
      base_path: /mnt/backups
  verify:
{verify}
"#
    )
}

fn desired(text: &str) -> Desired {
    spec::load(&[SourceFile {
        path: "databases/ledger.yaml".into(),
        text: text.into(),
    }])
    .unwrap_or_else(|d| panic!("{d:?}"))
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, h, m, 5).unwrap()
}

fn verify_plan(
    d: &Desired,
    a: &crate::state::Actual,
    now: DateTime<Utc>,
) -> (OperationPlan, Option<DateTime<Utc>>) {
    let p = plan_at(d, a, Some(now));
    let ops: Vec<_> = p
        .operations
        .iter()
        .filter(|o| o.kind == "Verify")
        .cloned()
        .collect();
    assert_eq!(ops.len(), 1, "{p}");
    (ops[0].clone(), p.wake_at)
}

fn record(t: &Transition) -> ScheduleRecord {
    match t {
        Transition::Schedule { record, .. } => (**record).clone(),
        other => panic!("{other:?}"),
    }
}

/// The actual state after the schedule's first plan recorded it at `since`.
fn followed(d: &Desired, since: DateTime<Utc>) -> crate::state::Actual {
    let mut a = crate::plan::converged(d);
    let (op, _) = verify_plan(d, &a, since);
    a.schedules.push(record(op.transition.as_ref().unwrap()));
    a
}

fn host_of(op: &OperationPlan) -> String {
    match op.transition.as_ref().unwrap() {
        Transition::Schedule {
            phases: Some(ph), ..
        } => {
            let s = &ph[0].steps[0];
            assert!(matches!(s.action, Action::RehearseRestore(_)), "{s:?}");
            s.host.to_string()
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_new_rehearsal_schedule_is_followed_from_now_and_wakes_at_its_next_time() {
    let d = desired(&ledger("    cron_expression: \"0 4 * * *\"", "h1"));
    let a = crate::plan::converged(&d);
    let (op, wake) = verify_plan(&d, &a, at(10, 7));
    assert_eq!(op.state, OperationState::Scheduled);
    let r = record(op.transition.as_ref().unwrap());
    assert_eq!(
        (r.schedule.as_str(), r.since, r.runs),
        ("_verify", at(10, 7), 0)
    );
    assert_eq!(
        wake,
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 4, 0, 0).unwrap())
    );
}

#[test]
fn a_due_rehearsal_runs_once_on_a_host_that_is_not_the_primary() {
    let d = desired(&ledger("    cron_expression: \"*/15 * * * *\"", "h1, h2"));
    let a = followed(&d, at(10, 7));
    let (op, _) = verify_plan(&d, &a, at(10, 20));
    assert_eq!(op.state, OperationState::Running);
    assert_eq!(op.id, "ledger.n1._verify.20261202t101500z");
    assert_eq!(
        host_of(&op),
        "h2",
        "the standby's host restores, not the primary's"
    );
    let r = record(op.transition.as_ref().unwrap());
    assert_eq!((r.runs, r.missed), (1, 0));
    insta::assert_snapshot!(crate::plan::plan_at(&d, &a, Some(at(10, 20))).to_string());
}

#[test]
fn without_a_standby_the_primary_host_rehearses_and_an_asked_host_wins() {
    let d = desired(&ledger("    cron_expression: \"*/15 * * * *\"", "h1"));
    let a = followed(&d, at(10, 7));
    assert_eq!(host_of(&verify_plan(&d, &a, at(10, 20)).0), "h1");
    let d = desired(&ledger(
        "    cron_expression: \"*/15 * * * *\"\n    host: h1",
        "h1, h2",
    ));
    let a = followed(&d, at(10, 7));
    assert_eq!(host_of(&verify_plan(&d, &a, at(10, 20)).0), "h1");
}

#[test]
fn an_asked_host_that_is_down_makes_the_due_rehearsal_wait_and_a_late_leader_counts_missed_times() {
    let d = desired(&ledger(
        "    cron_expression: \"*/15 * * * *\"\n    host: h9",
        "h1",
    ));
    let a = followed(&d, at(10, 7));
    let (op, _) = verify_plan(&d, &a, at(10, 20));
    assert_eq!(op.state, OperationState::Pending);
    assert!(op.reason.contains("waits until host h9"), "{}", op.reason);
    let d = desired(&ledger("    cron_expression: \"*/15 * * * *\"", "h1"));
    let a = followed(&d, at(10, 7));
    let (op, _) = verify_plan(&d, &a, at(11, 20));
    let r = record(op.transition.as_ref().unwrap());
    assert_eq!((r.runs, r.missed), (1, 4));
    assert_eq!(
        r.last_due,
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 11, 15, 0).unwrap())
    );
}

#[test]
fn a_running_rehearsal_holds_neither_its_database_nor_the_next_time() {
    let d = desired(&ledger("    cron_expression: \"*/15 * * * *\"", "h1"));
    let mut a = followed(&d, at(10, 7));
    let (op, _) = verify_plan(&d, &a, at(10, 20));
    let Some(Transition::Schedule {
        record: r,
        phases: Some(ph),
        ..
    }) = op.transition.clone()
    else {
        panic!("{op:?}")
    };
    a.schedules = vec![(*r).clone()];
    a.operations.push(crate::state::operation::OperationRecord {
        id: op.id.clone(),
        kind: "Verify".into(),
        database: op.database.clone(),
        state: OperationState::Running,
        reason: op.reason.clone(),
        phases: ph,
        leaders: vec!["h1".into()],
        created_at: String::new(),
        started_at: None,
        finished_at: None,
    });
    let p = plan_at(&d, &a, Some(at(10, 31)));
    assert!(
        p.steps
            .iter()
            .any(|s| matches!(s.action, Action::RehearseRestore(_))),
        "{p}"
    );
    assert!(
        !p.notes
            .iter()
            .any(|n| n.message.contains("wait until its running operation ends")),
        "{p}"
    );
    let next: Vec<_> = p
        .operations
        .iter()
        .filter(|o| o.kind == "Verify" && o.state == OperationState::Pending)
        .collect();
    assert_eq!(next.len(), 1, "{p}");
    assert!(
        next[0].reason.contains("previous rehearsal"),
        "{}",
        next[0].reason
    );
}
