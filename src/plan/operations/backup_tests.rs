//! The phases of `Backup` and `Restore`, from a converged example.

use crate::plan::operations::Transition;
use crate::plan::{plan_at, Action};
use crate::spec::{self, Desired, SourceFile};
use crate::state::operation::OperationState;

const LEDGER: &str = r#"
database_name: ledger
postgres_version: "17"
port: 6590
nodes:
  - name: n1
    host_ids: [h1, h2]
backup_config:
  repositories:
    - id: nfs
      type: posix
      base_path: /mnt/backups
    - id: second
      type: posix
      base_path: /mnt/other
"#;

fn with_op(db: &str, op: &str) -> Desired {
    let files = vec![
        SourceFile {
            path: "databases/ledger.yaml".into(),
            text: db.into(),
        },
        SourceFile {
            path: "operations/op1.yaml".into(),
            text: format!("id: op1\n{op}"),
        },
    ];
    spec::load(&files).unwrap_or_else(|d| panic!("{d:?}"))
}

fn one(d: &Desired) -> crate::plan::operations::OperationPlan {
    let a = crate::plan::converged(d);
    let p = plan_at(d, &a, Some(chrono::Utc::now()));
    assert_eq!(p.operations.len(), 1, "{p}");
    p.operations[0].clone()
}

fn phases(op: &crate::plan::operations::OperationPlan) -> Vec<(String, String)> {
    let Some(Transition::Start { phases }) = &op.transition else {
        panic!("not started: {op:?}");
    };
    phases
        .iter()
        .map(|p| {
            let s = &p.steps[0];
            let dbg = format!("{:?}", s.action);
            let verb = dbg.split([' ', '{']).next().unwrap_or_default().to_string();
            (p.name.clone(), format!("{} {verb}", s.host))
        })
        .collect()
}

#[test]
fn a_backup_runs_on_the_nodes_primary_in_the_named_repository() {
    let d = with_op(
        LEDGER,
        "kind: Backup\ndatabase: ledger\nnode: n1\ntype: incr\nrepository: second\n",
    );
    let op = one(&d);
    assert_eq!(op.state, OperationState::Running, "{op:?}");
    let Some(Transition::Start { phases }) = &op.transition else {
        panic!("{op:?}")
    };
    assert_eq!(phases.len(), 1);
    let s = &phases[0].steps[0];
    assert_eq!(s.host, "h1");
    match &s.action {
        Action::RunBackup {
            repo, backup_type, ..
        } => assert_eq!((*repo, backup_type.to_string().as_str()), (2, "incr")),
        other => panic!("{other:?}"),
    }
    assert!(s.operation.is_some());
}

#[test]
fn a_backup_the_spec_no_longer_allows_is_refused_by_the_planner_too() {
    // Validation refuses these first; the planner refuses them again for a
    // revision in force whose database has changed since.
    let mut d = with_op(
        LEDGER,
        "kind: Backup\ndatabase: ledger\nnode: n1\nrepository: second\n",
    );
    let cfg = d.databases[0].backup_config.as_mut().unwrap();
    cfg.repositories.truncate(1);
    let op = one(&d);
    assert_eq!(op.state, OperationState::Failed);
    assert!(
        op.reason.contains("no repository second") && op.reason.contains("(its repositories: nfs)"),
        "{}",
        op.reason
    );
    d.databases[0].backup_config = None;
    assert!(one(&d).reason.contains("has no backup_config"));
}

#[test]
fn a_restore_stops_the_standbys_restores_the_primary_then_rebuilds_them() {
    let d = with_op(
        LEDGER,
        "kind: Restore\ndatabase: ledger\ntarget_nodes: [n1]\nrestore_options:\n  type: time\n  target: \"2026-12-01 10:00:00+00\"\n",
    );
    let op = one(&d);
    assert_eq!(
        phases(&op),
        [
            ("stop-n1-h2".to_string(), "h2 StopInstance".to_string()),
            ("restore-n1-h1".into(), "h1 RestoreInstance".into()),
            ("slot-n1-h2".into(), "h1 EnsureReplication".into()),
            ("rebuild-n1-h2".into(), "h2 RejoinAsStandby".into()),
        ]
    );
    let Some(Transition::Start { phases }) = &op.transition else {
        unreachable!()
    };
    assert!(phases[1].disruptive);
    assert!(matches!(
        &phases[3].steps[0].action,
        Action::RejoinAsStandby { fresh: true, primary, .. } if primary == "h1"
    ));
}

#[test]
fn a_restore_of_a_node_of_an_active_active_database_is_refused() {
    let two = LEDGER.replace(
        "    host_ids: [h1, h2]\n",
        "    host_ids: [h1]\n  - name: n2\n    host_ids: [h2]\n",
    );
    let d = with_op(
        &two,
        "kind: Restore\ndatabase: ledger\ntarget_nodes: [n1]\n",
    );
    let op = one(&d);
    assert_eq!(op.state, OperationState::Failed);
    assert!(op.reason.contains("active-active"), "{}", op.reason);
}

#[test]
fn no_failover_is_planned_while_a_restore_holds_the_primary_down() {
    let d = with_op(
        LEDGER,
        "kind: Restore\ndatabase: ledger\ntarget_nodes: [n1]\n",
    );
    let mut a = crate::plan::converged(&d);
    let op = one(&d);
    let Some(Transition::Start { phases }) = op.transition else {
        unreachable!()
    };
    let now = chrono::Utc::now();
    let mut phases = phases;
    phases[0].state = crate::state::operation::PhaseState::Succeeded;
    a.operations.push(crate::state::operation::OperationRecord {
        id: "op1".into(),
        kind: "Restore".into(),
        database: Some("ledger".parse().unwrap()),
        state: OperationState::Running,
        reason: String::new(),
        phases,
        leaders: vec![],
        created_at: now.to_rfc3339(),
        started_at: None,
        finished_at: None,
    });
    // The primary is down (restoring) long past any grace time.
    let i = crate::plan::example::instance(&mut a, "ledger", "n1", "h1");
    i.running = false;
    a.down_since
        .insert("ledger/n1/h1".into(), now - chrono::Duration::hours(1));
    let p = plan_at(&d, &a, Some(now));
    assert!(p.steps.iter().all(|s| !s.id.contains("failover")), "{p}");
    let ids: Vec<&str> = p.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["ledger/n1/h1/restore:op1"], "{p}");
}

#[test]
fn a_switchover_says_how_long_writes_pause_from_this_clusters_own_switchovers() {
    let d = with_op(
        LEDGER,
        "kind: Switchover\ndatabase: ledger\nnode: n1\ncandidate: h2\n",
    );
    let mut a = crate::plan::converged(&d);
    let primary = crate::plan::example::instance(&mut a, "ledger", "n1", "h1");
    primary.replicas = vec![crate::state::ReplicaActual {
        name: "pgcd_n1_h2".into(),
        state: "streaming".into(),
        lag_bytes: Some(128),
        lag_seconds: None,
        sync_state: None,
        flush_lsn: None,
    }];
    for (kind, s) in [
        ("switchover-stop", 0.5),
        ("promote", 0.25),
        ("switchover-stop", 0.7),
    ] {
        a.durations.record(kind, s);
    }
    let p = plan_at(&d, &a, Some(chrono::Utc::now()));
    let op = &p.operations[0];
    let stop = op
        .phases
        .iter()
        .find(|ph| {
            ph.step
                .as_ref()
                .is_some_and(|s| matches!(s.action, Action::StopForSwitchover { .. }))
        })
        .unwrap_or_else(|| panic!("{p}"));
    let impact = stop.impact.as_deref().unwrap_or_default();
    assert!(
        impact.starts_with("writes to ledger/n1 pause from this step until the candidate is promoted: about 0.8 s (median of the last 1 switchovers timed on this cluster)"),
        "{impact}"
    );
    assert!(
        impact.ends_with("; the candidate (pgcd_n1_h2) is 128 bytes behind now"),
        "{impact}"
    );
    assert!(
        p.to_string()
            .contains("       ! clients: writes to ledger/n1 pause"),
        "{p}"
    );
}
