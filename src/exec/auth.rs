//! Writing `pg_hba.conf` and `pg_ident.conf` as the planner rendered them
//! (see `plan::hba`): the new files go in place of the old ones, which are
//! kept aside until the server's own parser (`pg_hba_file_rules`,
//! `pg_ident_file_mappings`) has found no error in the new ones; then a
//! reload puts them in force. A file the server rejects is never left in
//! place: the old ones come back and the step fails with the server's
//! messages, so a later restart still finds files it can read.

use super::{query_error, StepError, Target};
use std::time::Duration;

/// Swaps the new files in as `postgres`, in the container; the old ones
/// stay beside them as `*.pgcd-old`.
const WRITE: &str = r#"set -eu
for f in "$PGCD_HBA_FILE" "$PGCD_IDENT_FILE"; do
  if [ -e "$f" ]; then cp -p "$f" "$f.pgcd-old"; else rm -f "$f.pgcd-old"; fi
done
printf '%s\n' "$PGCD_HBA" > "$PGCD_HBA_FILE.pgcd-new"
printf '%s\n' "$PGCD_IDENT" > "$PGCD_IDENT_FILE.pgcd-new"
chmod 600 "$PGCD_HBA_FILE.pgcd-new" "$PGCD_IDENT_FILE.pgcd-new"
mv -f "$PGCD_HBA_FILE.pgcd-new" "$PGCD_HBA_FILE"
mv -f "$PGCD_IDENT_FILE.pgcd-new" "$PGCD_IDENT_FILE"
"#;

/// Puts the old files back.
const RESTORE: &str = r#"set -eu
for f in "$PGCD_HBA_FILE" "$PGCD_IDENT_FILE"; do
  if [ -e "$f.pgcd-old" ]; then mv -f "$f.pgcd-old" "$f"; fi
done
"#;

/// Drops the old files once the new ones are in force.
const DONE: &str = r#"rm -f "$PGCD_HBA_FILE.pgcd-old" "$PGCD_IDENT_FILE.pgcd-old""#;

/// Writes both files, checks them with the server, reloads.
pub(super) async fn write(
    t: &Target<'_>,
    hba: &[String],
    ident: &[String],
) -> Result<(), StepError> {
    let c = t.admin().await?;
    let files = c
        .query_one(
            "SELECT current_setting('hba_file'), current_setting('ident_file')",
            &[],
        )
        .await
        .map_err(query_error)?;
    let (hba_file, ident_file): (String, String) = (files.get(0), files.get(1));
    let env = vec![
        format!("PGCD_HBA_FILE={hba_file}"),
        format!("PGCD_IDENT_FILE={ident_file}"),
        format!("PGCD_HBA={}", hba.join("\n")),
        format!("PGCD_IDENT={}", ident.join("\n")),
    ];
    let what = format!("{hba_file} and {ident_file}");
    let shell = |script: &'static str| run(t, script, env.clone(), &what);
    t.log(format!(
        "writing {hba_file} ({} lines) and {ident_file} ({} lines):",
        hba.len(),
        ident.len()
    ));
    for l in hba.iter().chain(ident).filter(|l| !l.starts_with('#')) {
        t.log(format!("  {l}"));
    }
    shell(WRITE).await?;
    let mut errors = Vec::new();
    for (file, view) in [
        (&hba_file, "pg_hba_file_rules"),
        (&ident_file, "pg_ident_file_mappings"),
    ] {
        let rows = c
            .query(
                &format!(
                    "SELECT line_number, error FROM {view} WHERE error IS NOT NULL ORDER BY 1"
                ),
                &[],
            )
            .await
            .map_err(query_error)?;
        for r in rows {
            let line: Option<i32> = r.get(0);
            let error: String = r.get(1);
            let at = line.map_or_else(String::new, |n| format!(" line {n}"));
            errors.push(format!("{file}{at}: {error}"));
        }
    }
    if !errors.is_empty() {
        shell(RESTORE).await?;
        t.log("the server rejects the new files; the old ones are back in place");
        return Err(StepError::Refused(format!(
            "PostgreSQL rejects the new authentication files, which are not used: {}",
            errors.join("; ")
        )));
    }
    c.batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(query_error)?;
    t.log("reloaded: the new rules apply to new connections");
    shell(DONE).await
}

/// Runs one of the scripts above in the instance's container.
async fn run(t: &Target<'_>, script: &str, env: Vec<String>, what: &str) -> Result<(), StepError> {
    let (code, out) =
        t.rt.exec(&t.id, script, env, Duration::from_secs(20))
            .await?;
    if code == 0 {
        Ok(())
    } else {
        Err(StepError::Query(format!(
            "writing {what} in {}: {}",
            t.id.container(),
            out.trim()
        )))
    }
}
