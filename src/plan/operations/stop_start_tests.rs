//! `Stop` and `Start`: their order, the refusal to stop a primary alone,
//! and a Stop's lasting effect on the rest of the plan.

use crate::plan::operations::{OperationPlan, Transition};
use crate::plan::steps::{NoteKind, Plan};
use crate::plan::{example, plan_at};
use crate::spec::{self, Desired, SourceFile};
use crate::state::operation::{OperationRecord, OperationState, PhaseState};
use crate::state::{Actual, InstanceRole};
use chrono::{DateTime, TimeZone, Utc};

fn ledger(hosts: &str) -> String {
    format!(
        "database_name: ledger\npostgres_version: \"17\"\nport: 6590\nnodes:\n  - name: n1\n    host_ids: [{hosts}]\n"
    )
}

/// The database and these operations (`id`, the rest of its file).
fn with_ops(db: &str, ops: &[(&str, &str)]) -> Desired {
    let mut files = vec![SourceFile {
        path: "databases/ledger.yaml".into(),
        text: db.into(),
    }];
    for (id, op) in ops {
        files.push(SourceFile {
            path: format!("operations/{id}.yaml"),
            text: format!("id: {id}\n{op}"),
        });
    }
    spec::load(&files).unwrap_or_else(|d| panic!("{d:?}"))
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, 9, minute, 0).unwrap()
}

/// The plan's operation `id`.
fn op<'a>(p: &'a Plan, id: &str) -> &'a OperationPlan {
    p.operations
        .iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("no operation {id}: {p}"))
}

/// Each phase as `<host> <action>`.
fn phases(op: &OperationPlan) -> Vec<String> {
    let Some(Transition::Start { phases }) = &op.transition else {
        panic!("not started: {op:?}");
    };
    phases
        .iter()
        .map(|p| {
            let s = &p.steps[0];
            let dbg = format!("{:?}", s.action);
            let verb = dbg.split([' ', '{']).next().unwrap_or_default().to_string();
            format!("{} {verb}", s.host)
        })
        .collect()
}

/// Carries operation `id` out in full at `when`, as the reconciler would:
/// its steps applied to the instances, its record succeeded.
fn carry_out(d: &Desired, a: &Actual, id: &str, when: DateTime<Utc>) -> Actual {
    let p = plan_at(d, a, Some(when));
    let o = op(&p, id);
    let Some(Transition::Start { phases }) = o.transition.clone() else {
        panic!("{id} does not start: {o:?}");
    };
    let steps = phases.iter().flat_map(|ph| ph.steps.clone()).collect();
    let mut after = example::simulate(
        &Plan {
            steps,
            ..Plan::default()
        },
        a,
    );
    let phases = phases
        .into_iter()
        .map(|mut ph| {
            ph.state = PhaseState::Succeeded;
            ph
        })
        .collect();
    after.operations.push(OperationRecord {
        id: id.into(),
        kind: o.kind.clone(),
        database: o.database.clone(),
        state: OperationState::Succeeded,
        reason: "all phase(s) succeeded".into(),
        phases,
        leaders: vec!["h1".into()],
        created_at: when.to_rfc3339(),
        started_at: Some(when.to_rfc3339()),
        finished_at: Some(when.to_rfc3339()),
    });
    after
}

fn steps(p: &Plan) -> Vec<&str> {
    p.steps.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn a_stop_stops_the_standbys_before_the_primary() {
    let d = with_ops(
        &ledger("h1, h2, h3"),
        &[("stop1", "kind: Stop\ndatabase: ledger\n")],
    );
    let a = crate::plan::converged(&d);
    let p = plan_at(&d, &a, Some(at(0)));
    assert_eq!(
        phases(op(&p, "stop1")),
        ["h2 StopInstance", "h3 StopInstance", "h1 StopInstance"]
    );
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn a_start_starts_the_primary_first() {
    let stop = ("stop1", "kind: Stop\ndatabase: ledger\nnode: n1\n");
    let start = ("start1", "kind: Start\ndatabase: ledger\n");
    let d = with_ops(&ledger("h1, h2, h3"), &[stop]);
    let a = carry_out(&d, &crate::plan::converged(&d), "stop1", at(0));
    let d = with_ops(&ledger("h1, h2, h3"), &[stop, start]);
    let p = plan_at(&d, &a, Some(at(5)));
    assert_eq!(
        phases(op(&p, "start1")),
        ["h1 StartInstance", "h2 StartInstance", "h3 StartInstance"]
    );
}

#[test]
fn instances_stopped_by_a_stop_stay_stopped_until_a_start() {
    let stop = ("stop1", "kind: Stop\ndatabase: ledger\n");
    let d = with_ops(&ledger("h1, h2"), &[stop]);
    let mut a = carry_out(&d, &crate::plan::converged(&d), "stop1", at(0));
    assert!(a.instances.iter().all(|i| !i.running));
    // Long past failover's grace time, the spec still says running.
    for h in ["h1", "h2"] {
        a.down_since.insert(format!("ledger/n1/{h}"), at(0));
    }
    let p = plan_at(&d, &a, Some(at(50)));
    assert!(
        p.steps.is_empty(),
        "nothing starts, nothing fails over: {p}"
    );
    let notes: Vec<&str> = p
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::Operation)
        .map(|n| n.message.as_str())
        .collect();
    assert_eq!(
        notes,
        [
            "ledger/n1 on h1 is stopped by operation stop1; a Start operation starts it",
            "ledger/n1 on h2 is stopped by operation stop1; a Start operation starts it",
        ],
        "{p}"
    );
    // Started by hand, it is stopped again.
    example::instance(&mut a, "ledger", "n1", "h2").running = true;
    let p = plan_at(&d, &a, Some(at(51)));
    assert_eq!(steps(&p), ["ledger/n1/h2/stop"], "{p}");
    assert!(p.steps[0].reason.contains("stopped by operation stop1"));
    example::instance(&mut a, "ledger", "n1", "h2").running = false;

    // A Start of the standby alone: the primary stays stopped (and is not
    // failed over to it).
    let start = ("start1", "kind: Start\ndatabase: ledger\nhost: h2\n");
    let d = with_ops(&ledger("h1, h2"), &[stop, start]);
    let mut a = carry_out(&d, &a, "start1", at(52));
    // It starts as what its data directory says (standby.signal).
    example::instance(&mut a, "ledger", "n1", "h2").role = InstanceRole::Standby;
    let p = plan_at(&d, &a, Some(at(53)));
    assert!(p.steps.is_empty(), "{p}");
    let notes: Vec<&str> = p.notes.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(
        notes,
        [
            "ledger/n1 on h1 is stopped by operation stop1; a Start operation starts it",
            "ledger/n1: the standby on h2 waits for the primary on h1 to run",
        ],
        "{p}"
    );

    // Then the whole database: the plan is the spec's again.
    let all = ("start2", "kind: Start\ndatabase: ledger\n");
    let d = with_ops(&ledger("h1, h2"), &[stop, start, all]);
    let a = carry_out(&d, &a, "start2", at(54));
    assert!(a.instances.iter().all(|i| i.running));
    let p = plan_at(&d, &a, Some(at(55)));
    assert!(p.steps.is_empty() && p.notes.is_empty(), "{p}");

    // A later Stop decides again.
    let again = ("stop2", "kind: Stop\ndatabase: ledger\n");
    let d = with_ops(&ledger("h1, h2"), &[stop, start, all, again]);
    let a = carry_out(&d, &a, "stop2", at(56));
    let p = plan_at(&d, &a, Some(at(57)));
    assert!(p.steps.is_empty(), "{p}");
    assert!(p
        .notes
        .iter()
        .all(|n| n.message.contains("operation stop2")));
}

#[test]
fn stopping_a_primary_without_its_standby_is_refused_and_stops_nothing() {
    let d = with_ops(
        &ledger("h1, h2"),
        &[("stop1", "kind: Stop\ndatabase: ledger\nhost: h1\n")],
    );
    let a = crate::plan::converged(&d);
    let p = plan_at(&d, &a, Some(at(0)));
    let o = op(&p, "stop1");
    assert_eq!(o.state, OperationState::Failed);
    assert_eq!(
        o.reason,
        "refused: h1 is the primary of ledger/n1, whose instance(s) on h2 would keep running without it; a primary is stopped only with its whole node (a Stop with `node: n1` and no `host`); nothing was stopped"
    );
    assert!(
        matches!(
            &o.transition,
            Some(Transition::State {
                state: OperationState::Failed,
                ..
            })
        ),
        "{o:?}"
    );
    assert!(p.steps.is_empty(), "{p}");

    // The standby alone may stop; then the primary alone, its node stopped as a whole.
    let d = with_ops(
        &ledger("h1, h2"),
        &[("stop0", "kind: Stop\ndatabase: ledger\nhost: h2\n")],
    );
    let p = plan_at(&d, &a, Some(at(0)));
    assert_eq!(phases(op(&p, "stop0")), ["h2 StopInstance"]);
    let a = carry_out(&d, &a, "stop0", at(1));
    let d = with_ops(
        &ledger("h1, h2"),
        &[
            ("stop0", "kind: Stop\ndatabase: ledger\nhost: h2\n"),
            ("stop1", "kind: Stop\ndatabase: ledger\nhost: h1\n"),
        ],
    );
    let p = plan_at(&d, &a, Some(at(2)));
    assert_eq!(phases(op(&p, "stop1")), ["h1 StopInstance"]);
}

#[test]
fn a_stop_or_start_with_nothing_to_do_fails_and_says_so() {
    let d = with_ops(
        &ledger("h1, h2"),
        &[("start1", "kind: Start\ndatabase: ledger\n")],
    );
    let a = crate::plan::converged(&d);
    let p = plan_at(&d, &a, Some(at(0)));
    let o = op(&p, "start1");
    assert_eq!(o.state, OperationState::Failed);
    assert!(
        o.reason.contains("no instance of ledger matches"),
        "{}",
        o.reason
    );
}

#[test]
fn a_start_cancelled_after_the_primarys_phase_leaves_only_the_standby_stopped() {
    let stop = ("stop1", "kind: Stop\ndatabase: ledger\n");
    let start = ("start1", "kind: Start\ndatabase: ledger\n");
    let d = with_ops(&ledger("h1, h2"), &[stop]);
    let a = carry_out(&d, &crate::plan::converged(&d), "stop1", at(0));
    let d = with_ops(&ledger("h1, h2"), &[stop, start]);
    let p = plan_at(&d, &a, Some(at(1)));
    let Some(Transition::Start { mut phases }) = op(&p, "start1").transition.clone() else {
        panic!("{p}");
    };
    // Its first phase (the primary) ran; then it was cancelled.
    let mut a = example::simulate(
        &Plan {
            steps: phases[0].steps.clone(),
            ..Plan::default()
        },
        &a,
    );
    phases[0].state = PhaseState::Succeeded;
    phases[0].finished_at = Some(at(2).to_rfc3339());
    phases[1].state = PhaseState::Skipped;
    a.operations.push(OperationRecord {
        id: "start1".into(),
        kind: "Start".into(),
        database: Some("ledger".parse().unwrap()),
        state: OperationState::Cancelled,
        reason: "cancelled by operation cancel1".into(),
        phases,
        leaders: vec!["h1".into()],
        created_at: at(1).to_rfc3339(),
        started_at: Some(at(1).to_rfc3339()),
        finished_at: Some(at(3).to_rfc3339()),
    });
    let p = plan_at(&d, &a, Some(at(4)));
    assert!(p.steps.is_empty(), "the primary is not stopped again: {p}");
    let notes: Vec<&str> = p.notes.iter().map(|n| n.message.as_str()).collect();
    assert_eq!(
        notes,
        ["ledger/n1 on h2 is stopped by operation stop1; a Start operation starts it"],
        "{p}"
    );
}

#[test]
fn a_restart_restarts_the_recorded_primary_last() {
    let d = with_ops(&ledger("h1, h2, h3"), &[]);
    let mut a = crate::plan::converged(&d);
    // After a switchover to h2: h2 is recorded and reports primary.
    a.primaries[0].host = "h2".parse().unwrap();
    example::instance(&mut a, "ledger", "n1", "h1").role = InstanceRole::Standby;
    example::instance(&mut a, "ledger", "n1", "h2").role = InstanceRole::Primary;
    let index = crate::plan::Index::new(&a, None);
    let hosts: Vec<String> =
        super::super::restart::phases("r1", &d.databases[0], &index, None, None)
            .iter()
            .map(|p| p.steps[0].host.to_string())
            .collect();
    assert_eq!(hosts, ["h1", "h3", "h2"]);
}

#[test]
fn a_node_stopped_in_the_spec_stops_its_standbys_too_and_does_not_fail_over() {
    let stopped = format!("{}    state: stopped\n", ledger("h1, h2, h3"));
    let d = with_ops(&stopped, &[]);
    let running = with_ops(&ledger("h1, h2, h3"), &[]);
    let a = crate::plan::converged(&running);
    let p = plan_at(&d, &a, Some(at(0)));
    assert_eq!(
        steps(&p),
        [
            "ledger/n1/h1/stop",
            "ledger/n1/h2/stop",
            "ledger/n1/h3/stop"
        ],
        "{p}"
    );
    // Stopped, long past failover's grace time: nothing starts or fails over.
    let mut a = example::simulate(&p, &a);
    assert!(a.instances.iter().all(|i| !i.running));
    for h in ["h1", "h2", "h3"] {
        a.down_since.insert(format!("ledger/n1/{h}"), at(0));
    }
    let p = plan_at(&d, &a, Some(at(50)));
    assert!(p.steps.is_empty(), "{p}");
}
