//! The backup part of the planner: archiving settings, mounts, one
//! `ConfigureBackup` per instance after its other steps, rotation when the
//! system identifier changes, and nothing while a restore runs.

use super::super::example::{converged_of, desired, instance, simulate, ORDERS};
use super::super::{plan, Action, NoteKind, Plan};
use crate::state::Actual;

const BACKUP: &str = r#"backup_config:
  repositories:
    - id: nfs
      type: posix
      base_path: /mnt/backups
      retention_full: 2
"#;

fn with_backups() -> crate::spec::Desired {
    desired(&[("orders", &format!("{ORDERS}{BACKUP}"))])
}

fn of(p: &Plan, f: impl Fn(&Action) -> bool) -> Vec<&super::super::Step> {
    p.steps.iter().filter(|s| f(&s.action)).collect()
}

#[test]
fn a_new_database_with_backups_archives_from_its_first_start_then_configures() {
    let d = with_backups();
    let p = plan(&d, &Actual::empty(&["h1".parse().unwrap()]));
    let create = of(&p, |a| matches!(a, Action::CreateInstance { .. }));
    let Action::CreateInstance {
        settings, mounts, ..
    } = &create[0].action
    else {
        unreachable!()
    };
    assert_eq!(settings.get("archive_mode").map(String::as_str), Some("on"));
    assert_eq!(
        settings.get("archive_command").map(String::as_str),
        Some("pgbackrest --config=/var/lib/pgcd/pgbackrest/pgbackrest.conf --stanza=orders-n1 archive-push %p")
    );
    assert_eq!(mounts, &["/mnt/backups:/mnt/backups".to_string()]);
    let conf = of(&p, |a| matches!(a, Action::ConfigureBackup { .. }));
    assert_eq!(conf.len(), 1);
    let last = p.steps.last().unwrap();
    assert_eq!(last.id, "orders/n1/h1/backup-config", "configured last");
    assert!(conf[0]
        .depends_on
        .contains(&"orders/n1/h1/create-instance".to_string()));
    let after = simulate(&p, &Actual::empty(&["h1".parse().unwrap()]));
    assert!(plan(&d, &after).is_empty(), "{}", plan(&d, &after));
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn backups_added_to_a_running_instance_remount_once_instead_of_restarting() {
    let before = desired(&[("orders", ORDERS)]);
    let d = with_backups();
    let a = converged_of(&before);
    let p = plan(&d, &a);
    assert!(
        of(&p, |a| matches!(a, Action::RestartInstance { .. })).is_empty(),
        "the recreated container restarts it:\n{p}"
    );
    let remount = of(&p, |a| {
        matches!(a, Action::RemoveInstance { keep_data: true })
    });
    assert_eq!(remount.len(), 1, "{p}");
    assert!(remount[0].disruptive);
    assert!(remount[0]
        .depends_on
        .contains(&"orders/n1/h1/settings".to_string()));
    // Next pass: recreated on its data with the mount, started, configured.
    let a = simulate(&p, &a);
    let p2 = plan(&d, &a);
    let Action::CreateInstance {
        reuse_data, mounts, ..
    } = &of(&p2, |a| matches!(a, Action::CreateInstance { .. }))[0].action
    else {
        unreachable!()
    };
    assert!(reuse_data);
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        of(&p2, |a| matches!(a, Action::ConfigureBackup { .. })).len(),
        1
    );
}

#[test]
fn a_new_system_identifier_rewrites_the_configuration_under_a_new_path() {
    let d = with_backups();
    let mut a = converged_of(&d);
    assert!(plan(&d, &a).is_empty(), "converged: nothing to do");
    instance(&mut a, "orders", "n1", "h1")
        .backup
        .system_identifier = Some("7999".into());
    let p = plan(&d, &a);
    assert_eq!(p.steps.len(), 1, "{p}");
    assert!(matches!(
        p.steps[0].action,
        Action::ConfigureBackup { primary: true, .. }
    ));
    assert!(
        p.steps[0].reason.contains("new repository path"),
        "{}",
        p.steps[0].reason
    );
}

#[test]
fn nothing_is_planned_for_a_node_while_it_is_restored() {
    let d = with_backups();
    let mut a = converged_of(&d);
    let i = instance(&mut a, "orders", "n1", "h1");
    i.backup.restoring = true;
    i.running = false;
    let p = plan(&d, &a);
    assert!(p.steps.is_empty(), "{p}");
    assert!(p
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::Backup && n.message.contains("a restore is under way")));
}

#[test]
fn a_node_backup_config_replaces_the_database_one() {
    let spec = format!(
        "{}{BACKUP}",
        ORDERS.replace(
            "    host_ids: [h1]\n",
            "    host_ids: [h1]\n    backup_config:\n      repositories:\n        - id: own\n          type: posix\n          base_path: /srv/n1\n"
        )
    );
    let d = desired(&[("orders", &spec)]);
    let p = plan(&d, &Actual::empty(&["h1".parse().unwrap()]));
    let Action::ConfigureBackup { conf, .. } =
        &of(&p, |a| matches!(a, Action::ConfigureBackup { .. }))[0].action
    else {
        unreachable!()
    };
    assert_eq!(conf.repos.len(), 1);
    assert_eq!(conf.repos[0].id, "own");
}

#[test]
fn operation_steps_are_built_for_the_operation_path() {
    let d = with_backups();
    let db = &d.databases[0];
    let node = &db.nodes[0];
    let cfg = super::config(db, node).unwrap();
    assert_eq!(super::repo_index(cfg, Some("nfs")), Some(1));
    assert_eq!(super::repo_index(cfg, Some("nope")), None);
    let b = super::backup_step(
        db,
        node,
        &"h1".parse().unwrap(),
        "op1",
        1,
        crate::spec::backup::BackupType::Full,
    );
    assert_eq!(b.id, "orders/n1/h1/backup:op1");
    let t = super::RestoreTarget::from_options(None).unwrap();
    let r = super::restore_step(db, node, &"h1".parse().unwrap(), "op2", 1, t);
    assert!(r.disruptive);
    assert!(
        super::RestoreTarget::from_options(Some(&crate::spec::backup::RestoreOptions {
            restore_type: Some(crate::spec::backup::RestoreType::Time),
            target: None,
            set: None,
            exclusive: None,
        }))
        .is_err()
    );
}

const CLONE: &str = r#"
database_name: ledger2
postgres_version: "17"
port: 6440
nodes:
  - name: n1
    host_ids: [h1, h2]
  - name: n2
    host_ids: [h3]
restore_config:
  source_database_id: ledger
  source_node_name: n1
  repository:
    id: nfs
    type: posix
    base_path: /mnt/backups
  restore_options:
    type: time
    target: "2026-12-02 10:00:00+00"
"#;

#[test]
fn a_database_with_restore_config_creates_its_first_node_from_the_backup() {
    let d = desired(&[("ledger2", CLONE)]);
    let hosts = [
        "h1".parse().unwrap(),
        "h2".parse().unwrap(),
        "h3".parse().unwrap(),
    ];
    let p = plan(&d, &Actual::empty(&hosts));
    let created = of(&p, |a| matches!(a, Action::CreateInstance { .. }));
    let from: Vec<(&str, bool)> = created
        .iter()
        .map(|s| {
            let Action::CreateInstance { restore_from, .. } = &s.action else {
                unreachable!()
            };
            (s.id.as_str(), restore_from.is_some())
        })
        .collect();
    assert_eq!(
        from,
        [
            ("ledger2/n1/h1/create-instance", true),
            ("ledger2/n2/h3/create-instance", false)
        ],
        "the first node's primary is restored, n2 is made empty (it joins n1 once n1 runs)"
    );
    let Action::CreateInstance {
        restore_from: Some(src),
        ..
    } = &created[0].action
    else {
        unreachable!()
    };
    assert_eq!(src.stanza, "ledger-n1");
    assert_eq!(src.database, "ledger", "the database inside the backup");
    assert_eq!(src.mounts, ["/mnt/backups:/mnt/backups".to_string()]);
    assert_eq!(src.target.target.as_deref(), Some("2026-12-02 10:00:00+00"));
    assert!(
        !p.steps.iter().any(|s| s.id.starts_with("ledger2/n1/h1/")
            && s.id != "ledger2/n1/h1/create-instance"
            && !matches!(s.action, Action::RecordPrimary { .. })),
        "the restored catalog is planned once the instance reports: {p}"
    );
    insta::assert_snapshot!(p.to_string());
}

#[test]
fn restore_config_counts_at_creation_only() {
    let d = desired(&[("ledger2", CLONE)]);
    let a = converged_of(&d);
    let p = plan(&d, &a);
    assert!(p.is_empty(), "{p}");
    // A node with a restore_config of its own added beside nodes that
    // hold data joins by copying one of them, and says so.
    let more = CLONE.replace(
        "  - name: n2\n    host_ids: [h3]\n",
        "  - name: n2\n    host_ids: [h3]\n  - name: n3\n    host_ids: [h1]\n    port: 6441\n    restore_config:\n      source_database_id: ledger\n      repository: {id: nfs, type: posix, base_path: /mnt/backups}\n",
    );
    let d2 = desired(&[("ledger2", &more)]);
    let p2 = plan(&d2, &a);
    let Action::CreateInstance { restore_from, .. } =
        &of(&p2, |a| matches!(a, Action::CreateInstance { .. }))[0].action
    else {
        unreachable!()
    };
    assert!(restore_from.is_none());
    assert!(p2
        .notes
        .iter()
        .any(|n| n.kind == NoteKind::Backup && n.message.contains("not carried out yet")));
}
