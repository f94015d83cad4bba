//! Rules of backups and restores: repositories have what their type needs,
//! ids are unique, schedules are cron expressions naming repositories, and
//! point-in-time targets have the shape their type needs.

use super::backup::{BackupConfig, RepoType, Repository, RestoreOptions, RestoreType};
use super::diag::SpanMap;
use std::collections::{HashMap, HashSet};

/// Parses a cron expression: five fields (minute first), or six with seconds.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    use std::str::FromStr;
    let fields = expr.split_whitespace().count();
    let full = match fields {
        5 => format!("0 {expr}"),
        6 => expr.to_string(),
        n => {
            return Err(format!(
            "\"{expr}\" has {n} fields; a cron expression has 5 (minute hour day month weekday)"
        ))
        }
    };
    cron::Schedule::from_str(&full).map_err(|e| {
        // The crate's message spans lines (with a caret); its last line says what is wrong.
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid")
            .trim()
            .to_string();
        format!("\"{expr}\" is not a valid cron expression ({why})")
    })
}

fn check_repository(repo: &Repository, p: &str, err: &mut impl FnMut(&str, String)) {
    let need = |field: &str, v: bool, err: &mut dyn FnMut(&str, String)| {
        if !v {
            err(
                p,
                format!("a repository of type {} needs `{field}`", repo.repo_type),
            );
        }
    };
    match repo.repo_type {
        RepoType::Posix | RepoType::Cifs => match &repo.base_path {
            Some(b) if !b.starts_with('/') => {
                err(&format!("{p}.base_path"), "must be an absolute path".into())
            }
            Some(_) => {}
            None => need("base_path", false, err),
        },
        RepoType::S3 => {
            need("s3_bucket", repo.s3_bucket.is_some(), err);
            need("s3_region", repo.s3_region.is_some(), err);
        }
        RepoType::Gcs => need("gcs_bucket", repo.gcs_bucket.is_some(), err),
        RepoType::Azure => {
            need("azure_account", repo.azure_account.is_some(), err);
            need("azure_container", repo.azure_container.is_some(), err);
        }
    }
    for (name, value) in &repo.custom_options {
        if let Some(why) = super::pgbackrest::check_custom_option(name, value) {
            err(&format!("{p}.custom_options.{name}"), why);
        }
    }
    if repo.retention_full == Some(0) {
        err(
            &format!("{p}.retention_full"),
            "keep at least one full backup".into(),
        );
    }
}

pub(super) fn check_backup(
    b: &BackupConfig,
    path: &str,
    spans: &SpanMap,
    err: &mut impl FnMut(&str, String),
) {
    // An empty list is reported while decoding, where it can tell an empty
    // list from one whose every item had its own error.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, repo) in b.repositories.iter().enumerate() {
        let p = format!("{path}.repositories[{i}]");
        if let Some(first) = ids.insert(repo.id.as_str(), i) {
            let derived = |k: usize| !spans.has(&format!("{path}.repositories[{k}].id"));
            let how = if derived(i) || derived(first) {
                " (an id left out is the type and position, e.g. s3-1); give one an explicit id"
            } else {
                ""
            };
            err(
                &format!("{p}.id"),
                format!(
                    "repository id \"{}\" is also {path}.repositories[{first}]'s{how}",
                    repo.id
                ),
            );
        }
        check_repository(repo, &p, err);
    }
    if let Some(v) = &b.verify {
        if let Err(msg) = parse_cron(&v.cron_expression) {
            err(&format!("{path}.verify.cron_expression"), msg);
        }
    }
    let mut sched_ids = HashSet::new();
    for (i, s) in b.schedules.iter().enumerate() {
        let p = format!("{path}.schedules[{i}]");
        if !sched_ids.insert(s.id.as_str()) {
            err(
                &format!("{p}.id"),
                format!("schedule id \"{}\" is used twice", s.id),
            );
        }
        if let Err(msg) = parse_cron(&s.cron_expression) {
            err(&format!("{p}.cron_expression"), msg);
        }
        if let Some(r) = &s.repository {
            if !ids.contains_key(r.as_str()) {
                err(
                    &format!("{p}.repository"),
                    format!("no repository \"{r}\" in {path}.repositories"),
                );
            }
        }
    }
}

/// Checks point-in-time options: a target exactly when the type needs one.
pub fn check_restore_options(o: &RestoreOptions, p: &str, err: &mut impl FnMut(&str, String)) {
    let t = o.restore_type.unwrap_or(RestoreType::Default);
    let needs_target = matches!(
        t,
        RestoreType::Time | RestoreType::Xid | RestoreType::Lsn | RestoreType::Name
    );
    match (&o.target, needs_target) {
        (None, true) => err(&format!("{p}.type"), format!("type {t} needs a `target`")),
        (Some(_), false) => err(&format!("{p}.target"), format!("type {t} takes no target")),
        (Some(target), true) if t == RestoreType::Lsn && !is_lsn(target) => err(
            &format!("{p}.target"),
            format!("\"{target}\" is not an LSN (e.g. 0/3000060)"),
        ),
        (Some(target), true) if t == RestoreType::Time && !is_target_time(target) => err(
            &format!("{p}.target"),
            format!("\"{target}\" is not a timestamp with a time zone (e.g. 2026-11-24T18:00:00Z)"),
        ),
        _ => {}
    }
}

/// A timestamp with a time zone as PostgreSQL's `recovery_target_time` and
/// pgEdge's examples write it: RFC 3339, or a space for the `T` and a zone
/// of `+HH`, `+HHMM` or `+HH:MM` (`2025-05-05 09:38:52-04`).
fn is_target_time(s: &str) -> bool {
    let t = s.trim().replacen(' ', "T", 1);
    chrono::DateTime::parse_from_rfc3339(&t).is_ok()
        || chrono::DateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f%#z").is_ok()
}

fn is_lsn(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|h| !h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

pub(super) fn check_restore(
    repo: &Repository,
    options: Option<&RestoreOptions>,
    path: &str,
    err: &mut impl FnMut(&str, String),
) {
    check_repository(repo, &format!("{path}.repository"), err);
    if let Some(o) = options {
        check_restore_options(o, &format!("{path}.restore_options"), err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_accepts_five_and_six_fields() {
        assert!(parse_cron("0 2 * * *").is_ok());
        assert!(parse_cron("30 0 2 * * *").is_ok());
        assert!(parse_cron("0 25 * * *").is_err());
        assert!(parse_cron("every day").unwrap_err().contains("2 fields"));
    }

    #[test]
    fn target_times_take_postgres_zone_forms() {
        assert!(is_target_time("2026-11-24T18:00:00Z"));
        assert!(is_target_time("2025-05-05 09:38:52-04"));
        assert!(is_target_time("2025-05-05 09:38:52.123+05:30"));
        assert!(is_target_time("2025-05-05 09:38:52+0200"));
        assert!(!is_target_time("2025-05-05 09:38:52"));
        assert!(!is_target_time("yesterday"));
    }

    fn errors(yaml: &str) -> Vec<crate::spec::diag::Diagnostic> {
        crate::spec::load(&[crate::spec::SourceFile {
            path: "databases/app.yaml".into(),
            text: yaml.into(),
        }])
        .expect_err("the spec is refused")
    }

    const APP: &str = "database_name: app\npostgres_version: \"17\"\nnodes:\n  - name: n1\n    host_ids: [h1, h2]\n";

    #[test]
    fn standbys_from_backup_needs_a_repository_and_a_boolean() {
        let e = errors(&format!(
            "{APP}backup_config:\n  repositories: []\n  standbys_from_backup: true\n"
        ));
        let d = e
            .iter()
            .find(|d| d.field == "backup_config.standbys_from_backup")
            .unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!((d.file.as_str(), d.line), ("databases/app.yaml", 8), "{d}");
        assert!(d.message.contains("needs a repository"), "{d}");
        // At node level too, and without the list at all.
        let e = errors(&format!(
            "{APP}    backup_config:\n      standbys_from_backup: true\n"
        ));
        assert!(
            e.iter()
                .any(|d| d.field == "nodes[0].backup_config.standbys_from_backup"
                    && d.line == 7
                    && d.message.contains("needs a repository")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{APP}backup_config:\n  repositories:\n    - {{type: posix, base_path: /b}}\n  standbys_from_backup: sometimes\n  standbys_from_bakup: true\n"
        ));
        assert!(
            e.iter()
                .any(|d| d.field == "backup_config.standbys_from_backup" && d.line == 9),
            "a type error: {e:?}"
        );
        assert!(
            e.iter()
                .any(|d| d.field == "backup_config.standbys_from_bakup"
                    && d.message.contains("standbys_from_backup")),
            "an unknown field, with the suggestion: {e:?}"
        );
        // Accepted with a repository.
        let ok = crate::spec::load(&[crate::spec::SourceFile {
            path: "databases/app.yaml".into(),
            text: format!("{APP}backup_config:\n  repositories:\n    - {{type: posix, base_path: /b}}\n  standbys_from_backup: true\n"),
        }])
        .unwrap();
        let b = ok.databases[0].backup_config.as_ref().unwrap();
        assert_eq!(b.standbys_from_backup, Some(true));
    }

    #[test]
    fn lsn_shape() {
        assert!(is_lsn("0/3000060"));
        assert!(!is_lsn("3000060"));
    }
}
