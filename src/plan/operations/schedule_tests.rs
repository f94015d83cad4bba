//! Schedules: followed from when they are first seen, one run per time,
//! a late leader runs the latest time and counts the others missed.

use crate::plan::operations::{OperationPlan, Transition};
use crate::plan::plan_at;
use crate::spec::{self, Desired, SourceFile};
use crate::state::operation::{OperationRecord, OperationState};
use crate::state::schedule::ScheduleRecord;
use chrono::{DateTime, TimeZone, Utc};

const LEDGER: &str = r#"
database_name: ledger
postgres_version: "17"
port: 6590
nodes:
  - name: n1
    host_ids: [h1]
backup_config:
  repositories:
    - id: nfs
      type: posix
      base_path: /mnt/backups
  schedules:
    - id: quarter
      type: incr
      cron_expression: "*/15 * * * *"
"#;

fn desired() -> Desired {
    spec::load(&[SourceFile {
        path: "databases/ledger.yaml".into(),
        text: LEDGER.into(),
    }])
    .unwrap_or_else(|d| panic!("{d:?}"))
}

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 2, h, m, 5).unwrap()
}

fn schedule_plan(
    d: &Desired,
    a: &crate::state::Actual,
    now: DateTime<Utc>,
) -> (OperationPlan, Option<DateTime<Utc>>) {
    let p = plan_at(d, a, Some(now));
    let ops: Vec<_> = p
        .operations
        .iter()
        .filter(|o| o.kind == "Backup")
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

#[test]
fn a_new_schedule_is_followed_from_now_and_wakes_the_loop_at_its_next_time() {
    let d = desired();
    let a = crate::plan::converged(&d);
    let (op, wake) = schedule_plan(&d, &a, at(10, 7));
    assert_eq!(op.state, OperationState::Scheduled);
    let r = record(op.transition.as_ref().unwrap());
    assert_eq!((r.since, r.last_due, r.runs), (at(10, 7), None, 0));
    assert_eq!(
        wake,
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 10, 15, 0).unwrap())
    );
}

#[test]
fn a_time_that_came_starts_one_run_named_by_it_and_nothing_before_it() {
    let d = desired();
    let mut a = crate::plan::converged(&d);
    let (op, _) = schedule_plan(&d, &a, at(10, 7));
    a.schedules.push(record(op.transition.as_ref().unwrap()));
    // Before the time: nothing to do, the loop wakes at it.
    let p = plan_at(&d, &a, Some(at(10, 14)));
    assert!(p.operations.iter().all(|o| o.kind != "Backup"), "{p}");
    // Past it: one run, its id names the time.
    let (op, wake) = schedule_plan(&d, &a, at(10, 16));
    assert_eq!(op.id, "ledger.n1.quarter.20261202t101500z");
    assert_eq!(op.state, OperationState::Running);
    assert_eq!(
        wake,
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 10, 30, 0).unwrap())
    );
    let Some(Transition::Schedule {
        record: r,
        phases: Some(ph),
        ..
    }) = &op.transition
    else {
        panic!("{op:?}")
    };
    assert_eq!((r.runs, r.missed), (1, 0));
    assert!(matches!(
        &ph[0].steps[0].action,
        crate::plan::Action::RunBackup { backup_type, .. } if backup_type.to_string() == "incr"
    ));
    // Once the record says so, the same time is not run again.
    a.schedules[0] = (**r).clone();
    let p = plan_at(&d, &a, Some(at(10, 20)));
    assert!(p.operations.iter().all(|o| o.kind != "Backup"), "{p}");
}

#[test]
fn a_leader_that_comes_late_runs_the_latest_time_and_counts_the_others_missed() {
    let d = desired();
    let mut a = crate::plan::converged(&d);
    let (op, _) = schedule_plan(&d, &a, at(10, 7));
    a.schedules.push(record(op.transition.as_ref().unwrap()));
    // No leader from 10:07 to 11:02: 10:15, 10:30, 10:45 and 11:00 passed.
    let (op, _) = schedule_plan(&d, &a, at(11, 2));
    assert_eq!(op.id, "ledger.n1.quarter.20261202t110000z");
    let r = record(op.transition.as_ref().unwrap());
    assert_eq!((r.runs, r.missed), (1, 3));
    assert_eq!(
        r.last_missed,
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 10, 45, 0).unwrap())
    );
    a.schedules[0] = r;
    let p = plan_at(&d, &a, Some(at(11, 3)));
    assert!(
        p.notes
            .iter()
            .any(|n| n.message.contains("3 scheduled run(s) were missed")),
        "{p}"
    );
}

#[test]
fn a_run_waits_while_the_database_is_busy_and_old_runs_records_are_pruned() {
    let d = desired();
    let mut a = crate::plan::converged(&d);
    let (op, _) = schedule_plan(&d, &a, at(10, 7));
    let mut r = record(op.transition.as_ref().unwrap());
    r.recent = (0..5).map(|i| format!("old{i}")).collect();
    a.schedules.push(r);
    for i in 0..5 {
        a.operations.push(OperationRecord {
            id: format!("old{i}"),
            kind: "Backup".into(),
            database: Some("ledger".parse().unwrap()),
            state: OperationState::Succeeded,
            reason: String::new(),
            phases: vec![],
            leaders: vec![],
            created_at: String::new(),
            started_at: None,
            finished_at: None,
        });
    }
    let (op, _) = schedule_plan(&d, &a, at(10, 16));
    let Some(Transition::Schedule { prune, record, .. }) = &op.transition else {
        panic!("{op:?}")
    };
    assert_eq!(prune, &["old0"]);
    assert_eq!(record.recent.len(), 5);
    // The instance's settings differ: the database has steps first.
    crate::plan::example::instance(&mut a, "ledger", "n1", "h1").running = false;
    let p = plan_at(&d, &a, Some(at(10, 16)));
    let op = p.operations.iter().find(|o| o.kind == "Backup").unwrap();
    assert_eq!(op.state, OperationState::Pending, "{p}");
    assert!(op.transition.is_none());
}
