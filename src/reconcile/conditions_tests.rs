//! Each rule of `derive`, fed values and compared with a reviewed snapshot
//! of the conditions it sets.

use super::*;
use crate::plan::example;
use crate::plan::{converged, plan};
use crate::reconcile::worker::{BatchOutcome, StepOutcome};
use crate::spec::Desired;

const REV: &str = "0123456789abcdef0123456789abcdef01234567";
const NOW: &str = "2026-12-01T12:00:00.000Z";

/// The conditions as `type status reason: message` lines.
fn lines(st: &DatabaseStatus) -> String {
    st.conditions
        .iter()
        .map(|c| {
            format!(
                "{} {} {}: {}",
                c.kind.as_str(),
                c.status,
                c.reason,
                c.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn derive_for(
    d: &Desired,
    actual: &Actual,
    name: &str,
    activity: Activity,
    ended: Option<&BatchOutcome>,
    prev: Option<&DatabaseStatus>,
) -> Derived {
    let p = plan(d, actual);
    let slice = super::super::slice(&p).remove(name).unwrap_or_default();
    let instances: Vec<&InstanceActual> = actual
        .instances
        .iter()
        .filter(|i| i.database == name)
        .collect();
    let applied = actual
        .databases
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.applied_spec.as_str());
    derive(
        prev,
        &Inputs {
            name,
            spec: d.databases.iter().find(|x| x.database_name == name),
            revision: REV,
            plan: &slice,
            actual,
            instances: &instances,
            applied,
            activity,
            ended,
            now: NOW,
            suspended: d
                .databases
                .iter()
                .find(|x| x.database_name == name)
                .is_some_and(|db| crate::plan::suspended(db, &d.config)),
        },
    )
}

const IDLE: Activity = Activity::Idle {
    failed: None,
    repeating: false,
    held: false,
};

#[test]
fn a_converged_database_is_ready_and_its_spec_recorded_once() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let mut a = converged(&d);
    a.databases.clear();
    let got = derive_for(&d, &a, "orders", IDLE, None, None);
    let st = got.status.unwrap();
    insta::assert_snapshot!(lines(&st));
    assert!(got.applied.is_some(), "the spec is recorded as carried out");
    let again = derive_for(&d, &converged(&d), "orders", IDLE, None, Some(&st));
    assert!(again.applied.is_none(), "recorded already");
    assert!(
        !changed(Some(&st), &again.status.unwrap()),
        "an idle pass writes nothing"
    );
}

#[test]
fn a_new_database_is_reconciling_while_its_steps_run() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let got = derive_for(&d, &a, "orders", Activity::Applying, None, None);
    insta::assert_snapshot!(lines(&got.status.unwrap()));
}

#[test]
fn a_step_that_keeps_failing_stalls_the_database_with_the_step_and_error() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let failed = Activity::Idle {
        failed: Some(
            "step orders/n1/h1/create-instance failed after 3 attempt(s): docker: no such image",
        ),
        repeating: false,
        held: false,
    };
    let got = derive_for(&d, &a, "orders", failed, None, None);
    insta::assert_snapshot!(lines(&got.status.unwrap()));
}

#[test]
fn steps_that_keep_coming_back_are_not_converging() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let repeating = Activity::Idle {
        failed: None,
        repeating: true,
        held: false,
    };
    let got = derive_for(&d, &a, "orders", repeating, None, None);
    insta::assert_snapshot!(lines(&got.status.unwrap()));
}

#[test]
fn drift_corrected_by_a_batch_is_counted_once() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = converged(&d);
    let step = plan(&d, &Actual::empty(&["h1".parse().unwrap()])).steps[0].clone();
    let mut drifted = step.clone();
    drifted.drift = true;
    drifted.reason = "drift: role app was dropped".into();
    let batch = BatchOutcome {
        database: "orders".parse().unwrap(),
        revision: REV.into(),
        outcomes: vec![StepOutcome {
            step: drifted,
            tasks: vec!["s-orders.n1.h1.role-1".into()],
            error: None,
            seconds: 0.1,
        }],
        deposed: false,
    };
    let first = derive_for(&d, &a, "orders", IDLE, Some(&batch), None)
        .status
        .unwrap();
    assert_eq!(first.drift_corrections, 1);
    assert_eq!(first.tasks, ["s-orders.n1.h1.role-1"]);
    let next = derive_for(&d, &a, "orders", IDLE, None, Some(&first))
        .status
        .unwrap();
    assert_eq!(next.drift_corrections, 1, "not counted again");
}

#[test]
fn a_database_without_a_file_is_orphaned_and_kept() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = converged(&d);
    let none = example::desired(&[("inventory", example::INVENTORY)]);
    let got = derive_for(&none, &a, "orders", IDLE, None, None);
    insta::assert_snapshot!(lines(&got.status.unwrap()));
}

#[test]
fn an_operation_the_sample_carries_out_leaves_the_database_healthy() {
    // Every kind is carried out now; the Backup of the sample starts.
    let d = example::sample_repo();
    let got = derive_for(&d, &converged(&d), "inventory", IDLE, None, None);
    let st = got.status.unwrap();
    insta::assert_snapshot!(lines(&st));
    assert_eq!(st.operations.len(), 1);
    assert_eq!(st.operations[0].state, OperationState::Running);
}

#[test]
fn a_deleted_database_without_instances_leaves_no_status() {
    let gone = example::desired(&[(
        "orders",
        &format!("{}state: absent\nconfirm_delete: orders\n", example::ORDERS),
    )]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let got = derive_for(&gone, &a, "orders", IDLE, None, None);
    assert_eq!(got.status, None);
}

#[test]
fn a_suspended_database_holds_its_steps_and_says_since_when() {
    let text = format!("{}suspend: true\n", example::ORDERS);
    let d = example::desired(&[("orders", &text)]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let got = derive_for(&d, &a, "orders", IDLE, None, None);
    let st = got.status.unwrap();
    insta::assert_snapshot!(lines(&st));
    assert!(got.applied.is_none(), "nothing is recorded as carried out");
    assert!(
        !st.last_plan.as_ref().unwrap().steps.is_empty(),
        "the plan is shown"
    );
    // Resumed: the condition turns false (kept, with its time), steps run.
    let d2 = example::desired(&[("orders", example::ORDERS)]);
    let resumed = derive_for(&d2, &a, "orders", Activity::Applying, None, Some(&st));
    let st2 = resumed.status.unwrap();
    let c = st2.condition(C::Suspended).unwrap();
    assert!(!c.status);
    assert_eq!(c.reason, "Resumed");
}

const VERIFIED: &str = "backup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: /mnt/backups\n  verify:\n    cron_expression: \"0 4 * * *\"\n";

fn check(db: &str, ok: bool) -> crate::state::rehearsal::RestoreCheck {
    crate::state::rehearsal::RestoreCheck {
        database: db.into(),
        node: "n1".into(),
        host: "h1".into(),
        operation: format!("{db}.n1._verify.20261201t040000z"),
        label: Some("20261201-035900F".into()),
        backup_stop: Some("2026-12-01T03:59:30Z".into()),
        started_at: "2026-12-01T04:00:00.000Z".into(),
        finished_at: "2026-12-01T04:00:12.000Z".into(),
        ok,
        reason: (!ok).then(|| {
            "the restore of backup 20261201-035900F failed (exit 1): ERROR: [039]: invalid data"
                .into()
        }),
        restore_seconds: ok.then_some(11.5),
        age_seconds: Some(30.0),
        ..Default::default()
    }
}

#[test]
fn a_failed_restore_rehearsal_degrades_its_database_only_and_keeps_it_ready() {
    let orders = format!("{}{VERIFIED}", example::ORDERS);
    let inventory = format!("{}{VERIFIED}", example::INVENTORY);
    let d = example::desired(&[("orders", &orders), ("inventory", &inventory)]);
    let mut a = converged(&d);
    a.restore_checks = vec![check("orders", false), check("inventory", true)];
    let got = derive_for(&d, &a, "orders", IDLE, None, None)
        .status
        .unwrap();
    insta::assert_snapshot!(lines(&got));
    assert!(got.is(C::Ready) && got.is(C::Degraded));
    assert_eq!(got.restore_checks.len(), 1);
    let other = derive_for(&d, &a, "inventory", IDLE, None, None)
        .status
        .unwrap();
    assert!(
        other.is(C::Ready) && !other.is(C::Degraded),
        "{}",
        lines(&other)
    );
    assert_eq!(other.restore_checks[0].restore_seconds, Some(11.5));
}

#[test]
fn a_failed_rehearsal_of_a_node_without_verify_any_more_is_not_reported() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let mut a = converged(&d);
    a.restore_checks = vec![check("orders", false)];
    let got = derive_for(&d, &a, "orders", IDLE, None, None)
        .status
        .unwrap();
    assert!(!got.is(C::Degraded), "{}", lines(&got));
    assert!(got.restore_checks.is_empty());
}

#[test]
fn a_held_script_failure_stalls_the_database_as_script_failed() {
    let d = example::desired(&[("orders", example::ORDERS)]);
    let a = Actual::empty(&["h1".parse().unwrap()]);
    let held = Activity::Idle {
        failed: Some("step orders/n1/h1/database failed after 1 attempt(s): scripts.post_database_create[0] (SELECT 1/0): ERROR: division by zero; not tried again until the spec of orders changes"),
        repeating: false,
        held: true,
    };
    let got = derive_for(&d, &a, "orders", held, None, None)
        .status
        .unwrap();
    let stalled = got
        .condition(crate::reconcile::status::ConditionType::Stalled)
        .unwrap();
    assert!(stalled.status);
    assert_eq!(stalled.reason, "ScriptFailed");
    assert!(stalled.message.contains("not tried again"));
}
