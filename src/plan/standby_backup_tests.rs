//! Standbys from a backup: with a backup of the primary's cluster in the
//! first repository the new standby is restored from the newest one;
//! without, it is copied with pg_basebackup and the plan says why.

use super::super::example::{converged_of, desired, ORDERS};
use super::super::{plan, Action, NoteKind, Plan};
use crate::state::actual::{BackupActual, NodeBackupsActual};
use crate::state::Actual;

const SYSID: &str = "7000000000000000001";

fn spec(hosts: &str, node_level: bool) -> crate::spec::Desired {
    let repos =
        "  repositories:\n    - id: nfs\n      type: posix\n      base_path: /mnt/backups\n";
    let text = if node_level {
        // The database's backup_config has no option; the node's wins.
        ORDERS.replace(
            "    host_ids: [h1]\n",
            &format!(
                "    host_ids: {hosts}\n    backup_config:\n      repositories:\n        - id: nfs\n          type: posix\n          base_path: /mnt/backups\n      standbys_from_backup: true\n"
            ),
        ) + &format!("backup_config:\n{repos}")
    } else {
        ORDERS.replace("    host_ids: [h1]\n", &format!("    host_ids: {hosts}\n"))
            + &format!("backup_config:\n{repos}  standbys_from_backup: true\n")
    };
    desired(&[("orders", &text)])
}

/// The node with h1 running as primary and h2 added (no instance yet).
fn h2_added(d: &crate::spec::Desired) -> Actual {
    let mut a = converged_of(d);
    a.instances.retain(|i| i.host.as_str() != "h2");
    for i in &mut a.instances {
        i.backup.system_identifier = Some(SYSID.into());
        i.slots.clear(); // the new standby's slot is not made yet
    }
    a
}

fn backup(label: &str, repo: u32, stop: &str, sysid: &str) -> BackupActual {
    BackupActual {
        label: label.into(),
        repo,
        stop: stop.into(),
        system_identifier: Some(sysid.into()),
    }
}

fn listed(a: &mut Actual, backups: Vec<BackupActual>) {
    a.backups = vec![NodeBackupsActual {
        database: "orders".into(),
        node: "n1".into(),
        backups,
    }];
}

fn create_standby(p: &Plan) -> &super::super::Step {
    p.steps
        .iter()
        .find(|s| matches!(s.action, Action::CreateStandby { .. }))
        .unwrap_or_else(|| panic!("a CreateStandby step in {p}"))
}

#[test]
fn a_new_standby_is_restored_from_the_newest_backup_of_the_primarys_cluster() {
    for node_level in [false, true] {
        let d = spec("[h1, h2]", node_level);
        let mut a = h2_added(&d);
        listed(
            &mut a,
            vec![
                backup("20261201-020000F", 1, "2026-12-01T02:10:00Z", SYSID),
                backup("20261202-020000F", 1, "2026-12-02T02:10:00Z", SYSID),
                // Newer, but of another cluster, or in another repository.
                backup("20261203-020000F", 1, "2026-12-03T02:10:00Z", "6999"),
                backup("20261203-030000F", 2, "2026-12-03T03:10:00Z", SYSID),
            ],
        );
        let p = plan(&d, &a);
        let s = create_standby(&p);
        let Action::CreateStandby {
            from_backup: Some(b),
            slot,
            ..
        } = &s.action
        else {
            panic!("restored from a backup (node level {node_level}): {p}")
        };
        assert_eq!(b.label, "20261202-020000F");
        assert_eq!(b.system_identifier, SYSID);
        assert_eq!((b.repo, b.repo_id.as_str()), (1, "nfs"));
        assert_eq!(b.conf.stanza, "orders-n1");
        assert!(
            s.reason.contains("restored from backup 20261202-020000F")
                && s.reason.contains("pgbackrest restore --type=standby")
                && s.reason.contains(&format!("through slot {slot}")),
            "{}",
            s.reason
        );
        assert!(
            p.steps
                .iter()
                .any(|e| matches!(&e.action, Action::EnsureReplication { slot: x } if x == slot)),
            "the slot is made first: {p}"
        );
        assert!(!p.notes.iter().any(|n| n.message.contains("pg_basebackup")));
        assert!(
            p.to_string().contains("from backup 20261202-020000F"),
            "{p}"
        );
    }
}

#[test]
fn without_a_usable_backup_the_standby_is_copied_with_pg_basebackup_and_noted() {
    let d = spec("[h1, h2]", false);
    let mut cases = Vec::new();
    // Nothing listed.
    cases.push(("holds no backup", h2_added(&d)));
    // Only backups of an earlier cluster.
    let mut a = h2_added(&d);
    listed(
        &mut a,
        vec![backup(
            "20261201-020000F",
            1,
            "2026-12-01T02:10:00Z",
            "6999",
        )],
    );
    cases.push(("holds no backup", a));
    // The primary's system identifier not reported yet.
    let mut a = h2_added(&d);
    for i in &mut a.instances {
        i.backup.system_identifier = None;
    }
    cases.push(("not known yet", a));
    for (why, a) in cases {
        let p = plan(&d, &a);
        let s = create_standby(&p);
        assert!(
            matches!(
                &s.action,
                Action::CreateStandby {
                    from_backup: None,
                    ..
                }
            ),
            "{p}"
        );
        assert!(s.reason.contains("pg_basebackup"), "{}", s.reason);
        assert!(
            p.notes.iter().any(|n| n.kind == NoteKind::Backup
                && n.message.contains("standbys_from_backup")
                && n.message.contains("pg_basebackup")
                && n.message.contains(why)),
            "{why}: {:?}",
            p.notes
        );
    }
}

#[test]
fn without_the_option_nothing_changes() {
    let text = ORDERS.replace("    host_ids: [h1]\n", "    host_ids: [h1, h2]\n")
        + "backup_config:\n  repositories:\n    - id: nfs\n      type: posix\n      base_path: /mnt/backups\n";
    let d = desired(&[("orders", &text)]);
    let mut a = h2_added(&d);
    listed(
        &mut a,
        vec![backup("20261202-020000F", 1, "2026-12-02T02:10:00Z", SYSID)],
    );
    let p = plan(&d, &a);
    assert!(matches!(
        &create_standby(&p).action,
        Action::CreateStandby {
            from_backup: None,
            ..
        }
    ));
    assert!(!p
        .notes
        .iter()
        .any(|n| n.message.contains("standbys_from_backup")));
}
