//! `pgbackrest info --output=json` as typed values: each backup's label,
//! type, start and stop, sizes, WAL range and the system identifier of the
//! cluster it was taken of. Pure; read through `serde_json::Value` so the
//! fields pgBackRest adds between versions do not break it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an info document could not be read.
#[derive(Debug, thiserror::Error)]
#[error("pgbackrest info: {0}")]
pub struct InfoError(String);

/// One stanza as `info` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StanzaInfo {
    /// The stanza.
    pub name: String,
    /// `status.code` (0 is ok; 2 no valid backups; 1 missing stanza path, ...).
    pub status_code: i64,
    /// `status.message`.
    pub status_message: String,
    /// The backups, oldest first.
    pub backups: Vec<BackupInfo>,
    /// The WAL archived per cluster, per repository.
    pub archives: Vec<ArchiveInfo>,
}

/// One backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Its label (`20260101-020000F`, `..._20260101-031500I`).
    pub label: String,
    /// `full`, `diff` or `incr`.
    #[serde(rename = "type")]
    pub backup_type: String,
    /// The repository it is in (`repoN`).
    pub repo: u32,
    /// When it started (RFC 3339, UTC).
    pub start: String,
    /// When it stopped (RFC 3339, UTC).
    pub stop: String,
    /// The database's size, bytes.
    pub size: u64,
    /// Bytes this backup copied (less than `size` for diff and incr).
    pub delta: u64,
    /// Its size in the repository (compressed), bytes.
    pub repo_size: u64,
    /// Its own part in the repository, bytes.
    pub repo_delta: u64,
    /// The first WAL segment it needs.
    pub wal_start: Option<String>,
    /// The last WAL segment it needs.
    pub wal_stop: Option<String>,
    /// LSN at start.
    pub lsn_start: Option<String>,
    /// LSN at stop.
    pub lsn_stop: Option<String>,
    /// The system identifier of the cluster it was taken of (decimal text).
    pub system_identifier: Option<String>,
    /// The PostgreSQL version.
    pub pg_version: Option<String>,
    /// The backup it depends on (diff, incr).
    pub prior: Option<String>,
    /// pgBackRest found page checksum errors while copying.
    pub error: bool,
}

/// Archived WAL of one cluster in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// `<pg version>-<db id>`.
    pub id: String,
    /// The repository.
    pub repo: u32,
    /// The oldest segment.
    pub min: Option<String>,
    /// The newest segment.
    pub max: Option<String>,
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(c) => cur = c,
            None => return 0,
        }
    }
    cur.as_u64().unwrap_or(0)
}

fn time(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Parses `pgbackrest info --output=json` (an array of stanzas).
pub fn parse(json: &str) -> Result<Vec<StanzaInfo>, InfoError> {
    let doc: Value = serde_json::from_str(json.trim()).map_err(|e| InfoError(e.to_string()))?;
    let stanzas = doc
        .as_array()
        .ok_or_else(|| InfoError("expected a JSON array of stanzas".into()))?;
    stanzas.iter().map(stanza).collect()
}

fn stanza(s: &Value) -> Result<StanzaInfo, InfoError> {
    let name = text(s, &["name"]).ok_or_else(|| InfoError("a stanza without a name".into()))?;
    // The clusters (`db` entries) by (id, repository): their system ids.
    let dbs: Vec<(u64, u64, Option<String>, Option<String>)> = s
        .get("db")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        number(d, &["id"]),
                        number(d, &["repo-key"]),
                        text(d, &["system-id"]),
                        text(d, &["version"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let backups = s
        .get("backup")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|b| {
                    let db_id = number(b, &["database", "id"]);
                    let repo = number(b, &["database", "repo-key"]);
                    let db = dbs.iter().find(|d| d.0 == db_id && d.1 == repo);
                    BackupInfo {
                        label: text(b, &["label"]).unwrap_or_default(),
                        backup_type: text(b, &["type"]).unwrap_or_default(),
                        repo: u32::try_from(repo).unwrap_or(0),
                        start: time(number(b, &["timestamp", "start"]) as i64),
                        stop: time(number(b, &["timestamp", "stop"]) as i64),
                        size: number(b, &["info", "size"]),
                        delta: number(b, &["info", "delta"]),
                        repo_size: number(b, &["info", "repository", "size"]),
                        repo_delta: number(b, &["info", "repository", "delta"]),
                        wal_start: text(b, &["archive", "start"]),
                        wal_stop: text(b, &["archive", "stop"]),
                        lsn_start: text(b, &["lsn", "start"]),
                        lsn_stop: text(b, &["lsn", "stop"]),
                        system_identifier: db.and_then(|d| d.2.clone()),
                        pg_version: db.and_then(|d| d.3.clone()),
                        prior: text(b, &["prior"]),
                        error: b.get("error").and_then(Value::as_bool).unwrap_or(false),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let archives = s
        .get("archive")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| ArchiveInfo {
                    id: text(x, &["id"]).unwrap_or_default(),
                    repo: u32::try_from(number(x, &["database", "repo-key"])).unwrap_or(0),
                    min: text(x, &["min"]),
                    max: text(x, &["max"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(StanzaInfo {
        name,
        status_code: s
            .get("status")
            .and_then(|v| v.get("code"))
            .and_then(Value::as_i64)
            .unwrap_or(-1),
        status_message: text(s, &["status", "message"]).unwrap_or_default(),
        backups,
        archives,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    /// Captured from the images by `tests/backup_posix.rs`
    /// (`info_json_of_each_image_parses`), never written by hand.
    fn captured(major: u16) -> Option<String> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/pgbackrest/info-{major}.json"));
        std::fs::read_to_string(p).ok()
    }

    #[test]
    fn captured_info_of_every_image_parses_into_backups() {
        let mut seen = 0;
        for major in [16, 17, 18] {
            let Some(json) = captured(major) else {
                continue;
            };
            seen += 1;
            let stanzas = parse(&json).unwrap();
            assert_eq!(stanzas.len(), 1, "{major}");
            let s = &stanzas[0];
            assert_eq!(s.name, "capture-n1");
            assert_eq!(s.status_code, 0, "{major}: {}", s.status_message);
            assert_eq!(s.backups.len(), 2, "{major}: a full and an incr");
            let (full, incr) = (&s.backups[0], &s.backups[1]);
            assert_eq!(full.backup_type, "full");
            assert_eq!(incr.backup_type, "incr");
            assert_eq!(incr.prior.as_deref(), Some(full.label.as_str()));
            assert!(full.label.ends_with('F') && incr.label.ends_with('I'));
            assert!(full.size > 1_000_000 && full.repo_size > 0, "{full:?}");
            assert!(incr.delta < full.delta, "{incr:?}");
            assert!(full.start <= full.stop && full.stop <= incr.start);
            assert!(full.wal_start.as_deref().is_some_and(|w| w.len() == 24));
            assert!(full.wal_start <= full.wal_stop);
            let sysid = full.system_identifier.as_deref().unwrap();
            assert!(sysid.len() >= 18 && sysid.parse::<u64>().is_ok(), "{sysid}");
            assert_eq!(full.pg_version.as_deref(), Some(major.to_string().as_str()));
            assert_eq!(full.repo, 1);
            assert_eq!(s.archives.len(), 1);
        }
        assert!(seen > 0, "no captured info under tests/fixtures/pgbackrest");
    }

    #[test]
    fn a_document_that_is_not_a_list_is_an_error() {
        assert!(parse("{}").is_err());
        assert!(parse("not json").is_err());
        assert_eq!(parse("[]").unwrap(), vec![]);
    }
}
