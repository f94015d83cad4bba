//! pgBackRest command lines as argument vectors (never shell strings): each
//! names pgcd's configuration file and the stanza, so nothing depends on
//! `/etc/pgbackrest` inside the image. Pure.

use crate::plan::backup::{RestoreTarget, CONF_PATH};
use crate::spec::backup::{BackupType, RestoreType};

fn base(stanza: &str) -> Vec<String> {
    base_at(CONF_PATH, stanza)
}

fn base_at(config: &str, stanza: &str) -> Vec<String> {
    vec![
        "pgbackrest".into(),
        format!("--config={config}"),
        format!("--stanza={stanza}"),
    ]
}

/// The configuration of the repository a new instance is restored from
/// (`restore_config`), beside the instance's own.
pub const SOURCE_CONF_PATH: &str = "/var/lib/pgcd/pgbackrest/source.conf";
/// Where a new instance's data is restored before it becomes `data`: a
/// restore that stops half way never leaves a data directory behind.
pub const RESTORING_PATH: &str = "/var/lib/pgcd/data.restoring";

fn with(mut argv: Vec<String>, more: &[String], command: &str) -> Vec<String> {
    argv.extend_from_slice(more);
    argv.push(command.into());
    argv
}

/// `stanza-create`: makes the stanza in every repository (succeeds when it
/// exists for this cluster).
pub fn stanza_create(stanza: &str) -> Vec<String> {
    with(
        base(stanza),
        &["--log-level-console=info".into()],
        "stanza-create",
    )
}

/// `check`: the configuration is sound and a WAL switch reaches every
/// repository (it waits for the segment to be archived).
pub fn check(stanza: &str) -> Vec<String> {
    with(base(stanza), &["--log-level-console=info".into()], "check")
}

/// `backup --type=... --repo=N`, logging progress at `info` for the task log.
pub fn backup(stanza: &str, repo: u32, backup_type: BackupType) -> Vec<String> {
    with(
        base(stanza),
        &[
            format!("--repo={repo}"),
            format!("--type={}", backup_type.as_str()),
            "--log-level-console=info".into(),
        ],
        "backup",
    )
}

/// `info --output=json`, of the stanza's current repositories or, with
/// `paths`, of other repository paths (an earlier system identifier).
pub fn info(stanza: &str, paths: &[(u32, String)]) -> Vec<String> {
    let mut more: Vec<String> = paths
        .iter()
        .map(|(n, p)| format!("--repo{n}-path={p}"))
        .collect();
    more.push("--output=json".into());
    with(base(stanza), &more, "info")
}

/// The `restore_command` recovery runs (`archive-get`), with the
/// repository path of the backups restored when it is not the current one.
pub fn restore_command(stanza: &str, path: Option<&(u32, String)>) -> String {
    let mut argv = base(stanza);
    if let Some((n, p)) = path {
        argv.push(format!("--repo{n}-path={p}"));
    }
    argv.push("archive-get".into());
    format!("{} %f \"%p\"", argv.join(" "))
}

/// `restore --delta` from `repo` to `target`, promoting there. `path`
/// points the repository at an earlier system identifier's backups.
pub fn restore(
    stanza: &str,
    repo: u32,
    target: &RestoreTarget,
    path: Option<&(u32, String)>,
) -> Vec<String> {
    let mut more = vec!["--delta".to_string()];
    more.extend(target_options(repo, target, path));
    more.push(format!(
        "--recovery-option=restore_command={}",
        restore_command(stanza, path)
    ));
    more.push("--log-level-console=info".into());
    with(base(stanza), &more, "restore")
}

/// `restore` of another cluster's backup (`restore_config`) into
/// [`RESTORING_PATH`], through [`SOURCE_CONF_PATH`] (whose `repo1-path`
/// names the source's system identifier). Archiving is off in the copy:
/// it must never push WAL into the source's archive; the new database's
/// own `backup_config` turns it on for its own stanza.
pub fn restore_new(stanza: &str, target: &RestoreTarget) -> Vec<String> {
    let mut more = vec![format!("--pg1-path={RESTORING_PATH}")];
    more.extend(target_options(1, target, None));
    more.push("--archive-mode=off".into());
    more.push(format!(
        "--recovery-option=restore_command={} --config={SOURCE_CONF_PATH} --stanza={stanza} archive-get %f \"%p\"",
        "pgbackrest"
    ));
    more.push("--log-level-console=info".into());
    with(base_at(SOURCE_CONF_PATH, stanza), &more, "restore")
}

/// `restore --type=standby` of backup `set` from `repo` into
/// [`RESTORING_PATH`], for a new standby (`standbys_from_backup`): recovery
/// fetches archived WAL through the node's own configuration, then the
/// standby streams from its primary.
pub fn restore_standby(stanza: &str, repo: u32, set: &str) -> Vec<String> {
    with(
        base(stanza),
        &[
            format!("--pg1-path={RESTORING_PATH}"),
            format!("--repo={repo}"),
            format!("--set={set}"),
            "--type=standby".into(),
            format!(
                "--recovery-option=restore_command={}",
                restore_command(stanza, None)
            ),
            "--log-level-console=info".into(),
        ],
        "restore",
    )
}

fn target_options(repo: u32, target: &RestoreTarget, path: Option<&(u32, String)>) -> Vec<String> {
    let mut more = vec![
        format!("--repo={repo}"),
        format!("--type={}", target.restore_type.as_str()),
    ];
    if let Some((n, p)) = path {
        more.push(format!("--repo{n}-path={p}"));
    }
    if let Some(t) = &target.target {
        more.push(format!("--target={t}"));
    }
    if let Some(set) = &target.set {
        more.push(format!("--set={set}"));
    }
    if target.exclusive {
        more.push("--target-exclusive".into());
    }
    // With a target, recovery pauses there unless told to promote; without
    // one it replays all WAL and promotes by itself.
    if target.restore_type != RestoreType::Default {
        more.push("--target-action=promote".into());
    }
    more
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_restore_names_the_set_the_type_and_the_nodes_own_restore_command() {
        let argv = restore_standby("ledger-n1", 1, "20260101-020000F");
        assert_eq!(argv.last().map(String::as_str), Some("restore"));
        for want in [
            "--stanza=ledger-n1",
            "--pg1-path=/var/lib/pgcd/data.restoring",
            "--repo=1",
            "--set=20260101-020000F",
            "--type=standby",
            "--recovery-option=restore_command=pgbackrest --config=/var/lib/pgcd/pgbackrest/pgbackrest.conf --stanza=ledger-n1 archive-get %f \"%p\"",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} in {argv:?}");
        }
    }

    #[test]
    fn backup_names_conf_stanza_repo_and_type() {
        assert_eq!(
            backup("orders-n1", 2, BackupType::Incr),
            [
                "pgbackrest",
                "--config=/var/lib/pgcd/pgbackrest/pgbackrest.conf",
                "--stanza=orders-n1",
                "--repo=2",
                "--type=incr",
                "--log-level-console=info",
                "backup"
            ]
        );
        assert_eq!(
            stanza_create("s").last().map(String::as_str),
            Some("stanza-create")
        );
        assert_eq!(check("s").last().map(String::as_str), Some("check"));
    }

    #[test]
    fn point_in_time_restore_promotes_at_the_target() {
        let t = RestoreTarget {
            restore_type: RestoreType::Time,
            target: Some("2026-01-02 03:04:05.123+00".into()),
            set: Some("20260102-030000F".into()),
            exclusive: true,
        };
        let argv = restore("orders-n1", 1, &t, None);
        for want in [
            "--delta",
            "--repo=1",
            "--type=time",
            "--target=2026-01-02 03:04:05.123+00",
            "--set=20260102-030000F",
            "--target-exclusive",
            "--target-action=promote",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} missing in {argv:?}");
        }
        assert_eq!(argv.last().map(String::as_str), Some("restore"));
    }

    #[test]
    fn default_restore_replays_everything_and_earlier_paths_reach_archive_get() {
        let t = RestoreTarget {
            restore_type: RestoreType::Default,
            target: None,
            set: None,
            exclusive: false,
        };
        let path = (1, "/b/orders-n1/6999".to_string());
        let argv = restore("orders-n1", 1, &t, Some(&path));
        assert!(!argv.iter().any(|a| a.starts_with("--target")), "{argv:?}");
        assert!(argv.contains(&"--repo1-path=/b/orders-n1/6999".to_string()));
        assert!(argv.contains(&"--recovery-option=restore_command=pgbackrest --config=/var/lib/pgcd/pgbackrest/pgbackrest.conf --stanza=orders-n1 --repo1-path=/b/orders-n1/6999 archive-get %f \"%p\"".to_string()));
        assert_eq!(
            info("orders-n1", &[path]),
            [
                "pgbackrest",
                "--config=/var/lib/pgcd/pgbackrest/pgbackrest.conf",
                "--stanza=orders-n1",
                "--repo1-path=/b/orders-n1/6999",
                "--output=json",
                "info"
            ]
        );
    }
}
