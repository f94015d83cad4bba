//! A major upgrade in place ([`Action::UpgradeMajor`]): `pg_upgrade` in a
//! one-off container of the upgrade image, which carries both majors'
//! binaries (`scripts/build-images.sh upgrade-17-18`), on the instance
//! directory. Resumed from where the instance directory stands, so a step
//! run again after a crash finishes what the last one began:
//!
//! - the data holds the old major: `pg_upgrade --check` against the
//!   serving old server (nothing stops when it refuses), a fast shutdown,
//!   `pg_upgrade --link` into `data.new`, then `data` becomes
//!   `data.old-<from>` and `data.new` becomes `data`. A failure before the
//!   link step starts the old server again. The live check runs in the
//!   instance container's PID namespace: in one of its own, the serving
//!   server's `postmaster.pid` would look stale to the trial start
//!   pg_upgrade makes, which would then start a second server on the same
//!   data directory;
//! - the data holds the new major: the container is recreated on the new
//!   image (data kept) and started, then `vacuumdb --all
//!   --analyze-in-stages` rebuilds the statistics pg_upgrade does not
//!   carry over (before 18, all of them).

use super::instance::unreachable_action;
use super::{StepError, Target};
use crate::plan::Action;
use crate::runtime::docker::CreateSpec;
use std::time::{Duration, Instant};

/// pg_upgrade of a large schema, and `ANALYZE` of a large database.
const LONG: Duration = Duration::from_secs(12 * 3600);
/// How long the upgraded server may take to answer.
const READY: Duration = Duration::from_secs(300);

/// The image with both majors' binaries (`/usr/lib/postgresql/<major>/bin`).
pub fn upgrade_image(from: u16, to: u16) -> String {
    format!("pgcd/postgres-upgrade:{from}-{to}")
}

/// Runs in the upgrade image as root, on the instance directory at
/// `/var/lib/pgcd`: `$1` is `check` (the old server serves; the container
/// shares its PID namespace) or `link` (the instance's container is
/// stopped), `$2` the old major, `$3` the new one. The new cluster is made as pgcd makes every cluster (the
/// superuser's password, no locale, data checksums), so pg_upgrade finds
/// the two alike. The old server starts without preloaded libraries and
/// without archiving: the old image's libraries need not be in the upgrade
/// image, and its WAL after the backup taken first is not needed.
const SCRIPT: &str = r##"set -eu
MODE=$1 OLD=$2 NEW=$3
R=/var/lib/pgcd D=/var/lib/pgcd/data N=/var/lib/pgcd/data.new W=/var/lib/pgcd/upgrade
OB=/usr/lib/postgresql/$OLD/bin NB=/usr/lib/postgresql/$NEW/bin
for b in "$OB/postgres" "$OB/pg_ctl" "$NB/pg_upgrade" "$NB/initdb"; do
  [ -x "$b" ] || { echo "pgcd: this image has no $b"; exit 2; }
done
# The images' postgres users differ (Debian's suites allot their ids):
# pg_upgrade runs as the owner of the old data, and what it owned is given
# to this image's postgres once the new data is in place.
NEWUID=$(id -u postgres) NEWGID=$(id -g postgres)
OLDUID=$(stat -c %u "$D") OLDGID=$(stat -c %g "$D")
if [ "$OLDUID" != "$NEWUID" ] || [ "$OLDGID" != "$NEWGID" ]; then
  groupmod -o -g "$OLDGID" postgres
  usermod -o -u "$OLDUID" -g "$OLDGID" postgres
fi
as_pg() { setpriv --reuid="$OLDUID" --regid="$OLDGID" --init-groups "$@"; }
rm -rf "$N" "$W"
mkdir -p "$N" "$W"
chown "$OLDUID:$OLDGID" "$N" "$W"
chmod 700 "$N"
install -o "$OLDUID" -m 600 "$R/superuser.pw" /tmp/pw
if ! as_pg "$NB/initdb" -D "$N" -U postgres --pwfile=/tmp/pw -E UTF8 --no-locale --data-checksums \
    --auth-local=trust --auth-host=scram-sha-256 >"$W/initdb.log" 2>&1; then
  cat "$W/initdb.log"; exit 1
fi
rm -f /tmp/pw
cd "$W"
OLD_OPTS="-c shared_preload_libraries='' -c archive_mode=off"
if [ "$MODE" = check ]; then
  # Against the serving server: its socket and port from its postmaster.pid.
  as_pg "$NB/pg_upgrade" --check -b "$OB" -B "$NB" -d "$D" -D "$N" -U postgres -P 50432 -s "$W"
  rm -rf "$N"
  exit 0
fi
# Debian's 17.12 stamps every column with the option pg_attver (also when
# it is reset), which pg_dump 18 dumps and PostgreSQL 18 refuses: the
# stamps are taken out of the old catalog first, by the old major's
# relocatable build, which does not know them (Debian's 17.12 runs columns
# without them, as those of a cluster made by an earlier minor).
as_pg "$OB/pg_ctl" -w -D "$D" -l "$W/stamps.log" -o "-p 50431 -c listen_addresses='' -c unix_socket_directories=$W $OLD_OPTS" start >/dev/null
as_pg "$NB/psql" -X -At -h "$W" -p 50431 -U postgres -d postgres -c "SELECT datname FROM pg_database WHERE datallowconn" |
  while IFS= read -r db; do
    n=$(as_pg "$NB/psql" -X -At -v ON_ERROR_STOP=1 -h "$W" -p 50431 -U postgres -d "$db" -c "
      WITH s AS (UPDATE pg_catalog.pg_attribute a SET attoptions = (
          SELECT CASE WHEN count(*) = 0 THEN NULL ELSE array_agg(o) END
          FROM unnest(a.attoptions) o WHERE o NOT LIKE 'pg_attver=%')
        WHERE array_to_string(a.attoptions, ',') LIKE '%pg_attver=%' RETURNING 1)
      SELECT count(*) FROM s")
    [ "$n" = 0 ] || echo "pgcd: $n column stamps (pg_attver, Debian's 17.12) removed in database $db"
  done
as_pg "$OB/pg_ctl" -w -D "$D" -m fast stop >/dev/null
if ! as_pg "$NB/pg_upgrade" --link -b "$OB" -B "$NB" -d "$D" -D "$N" -U postgres -p 50431 -P 50432 -s "$W" -o "$OLD_OPTS"; then
  for f in "$N"/pg_upgrade_output.d/*/log/*.log; do [ -e "$f" ] && tail -n 20 "$f"; done
  if [ -e "$D/global/pg_control.old" ]; then
    echo "pgcd: pg_upgrade failed after linking: the old cluster cannot start again (see $W and $N)"
    exit 4
  fi
  rm -rf "$N"
  exit 1
fi
# pgcd's files in the data directory: authentication, and the settings
# the spec put in force (ALTER SYSTEM).
for f in pg_hba.conf pg_ident.conf postgresql.auto.conf; do
  [ -e "$D/$f" ] && cp -p "$D/$f" "$N/$f"
done
sync
OLDDIR="$R/data.old-$OLD"
[ ! -e "$OLDDIR" ] || mv "$OLDDIR" "$OLDDIR.$(date +%s)"
mv "$D" "$OLDDIR"
mv "$N" "$D"
if [ "$OLDUID" != "$NEWUID" ] || [ "$OLDGID" != "$NEWGID" ]; then
  find "$R" -xdev -uid "$OLDUID" -exec chown -h "$NEWUID" {} +
  find "$R" -xdev -gid "$OLDGID" -exec chgrp -h "$NEWGID" {} +
fi
sync
echo "pgcd: the data directory holds PostgreSQL $NEW; PostgreSQL $OLD's is kept as data.old-$OLD"
"##;

pub(super) async fn carry_out(t: &Target<'_>) -> Result<(), StepError> {
    let Action::UpgradeMajor {
        from,
        version,
        port,
        cpus,
        memory,
        mounts,
        check_only,
    } = &t.step.action
    else {
        return unreachable_action(&t.step.action);
    };
    let (rt, id) = (t.rt, &t.id);
    let dir = rt.instance_dir(id);
    let started = Instant::now();
    let to = version.major;
    if *check_only {
        return check(t, *from, to, mounts).await;
    }
    finish_swap(&dir, *from, to).await?;
    let data = rt.data_major(id).await;
    match data {
        Some(d) if d == to => t.log(format!(
            "the data directory already holds PostgreSQL {to}: the upgrade resumes at the new container"
        )),
        Some(d) if d == *from => {
            if tokio::fs::try_exists(dir.join("data/global/pg_control.old"))
                .await
                .unwrap_or(false)
            {
                return Err(StepError::Refused(format!(
                    "an earlier pg_upgrade --link of {} was interrupted after linking: PostgreSQL {from} cannot start on this data directory again and pgcd cannot finish it; see {}/upgrade and data.new",
                    id.container(),
                    dir.display()
                )));
            }
            upgrade(t, *from, to, mounts).await?;
        }
        other => {
            return Err(StepError::Refused(format!(
                "{} holds {}, neither PostgreSQL {from} nor {to}: nothing is changed",
                id.container(),
                other.map_or("no cluster".to_string(), |d| format!("PostgreSQL {d}"))
            )))
        }
    }
    // The new container, on the new image, on the upgraded data.
    if let Some(c) = rt.inspect(id).await? {
        if c.image != t.args.image {
            rt.remove(id, true).await?;
            t.log(format!(
                "container {} (image {}) removed, data kept",
                id.container(),
                c.image
            ));
        }
    }
    let spec = CreateSpec {
        image: t.args.image.clone(),
        port: *port,
        conf_lines: Vec::new(),
        cpus: cpus.clone(),
        memory: memory.clone(),
        standby: None,
        mounts: mounts.clone(),
        auth: None,
    };
    if rt.create(id, &spec).await? {
        t.log(format!(
            "container {} created on {} (PostgreSQL {version}), on the upgraded data directory",
            id.container(),
            t.args.image
        ));
    }
    rt.start(id).await?;
    rt.wait_healthy(id, READY).await?;
    t.log(format!(
        "PostgreSQL {version} accepts connections, {:.1} s after the step began",
        started.elapsed().as_secs_f64()
    ));
    // From 18 on pg_upgrade carries the optimizer statistics over:
    // only what it did not carry is analyzed.
    let only_missing = if to >= 18 {
        " --missing-stats-only"
    } else {
        ""
    };
    let (code, out) = rt
        .exec(
            id,
            &format!("vacuumdb --all --analyze-in-stages{only_missing} -h /var/lib/pgcd/run -p {port} -U postgres"),
            Vec::new(),
            LONG,
        )
        .await?;
    for line in out.lines().filter(|l| !l.is_empty()) {
        t.log(format!("vacuumdb: {line}"));
    }
    if code != 0 {
        return Err(StepError::Phase(format!(
            "vacuumdb --analyze-in-stages exited with {code} (the server runs PostgreSQL {version}; a later ANALYZE rebuilds the statistics): {}",
            out.trim()
        )));
    }
    t.log(format!(
        "statistics rebuilt; the upgrade took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// `pg_upgrade --check` while the old server serves, then a fast shutdown
/// and `pg_upgrade --link`. A failure before the link step starts the old
/// server again.
async fn upgrade(t: &Target<'_>, from: u16, to: u16, mounts: &[String]) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    let image = upgrade_image(from, to);
    if rt.inspect(id).await?.is_some_and(|c| c.running) {
        check(t, from, to, mounts).await?;
    } else {
        present(t, &image, from, to).await?;
    }
    let log = |line: &str| t.log(format!("pg_upgrade: {line}"));
    rt.stop(id).await?;
    let down = Instant::now();
    t.log(format!(
        "container {} stopped (fast shutdown); pg_upgrade --link from {from} to {to}",
        id.container()
    ));
    if let Err(e) = crate::backup::run::one_off_as(
        rt,
        id,
        &image,
        mounts,
        &argv("link", from, to),
        "root",
        LONG,
        &log,
    )
    .await
    {
        let linked = tokio::fs::try_exists(rt.instance_dir(id).join("data/global/pg_control.old"))
            .await
            .unwrap_or(false);
        if linked {
            return Err(StepError::Phase(format!(
                "pg_upgrade --link failed after linking; PostgreSQL {from} cannot start on this data again and pgcd leaves it stopped: {e}"
            )));
        }
        rt.start(id).await?;
        return Err(StepError::Phase(format!(
            "pg_upgrade --link failed before linking; PostgreSQL {from} was started again on its data: {e}"
        )));
    }
    t.log(format!(
        "pg_upgrade --link done {:.1} s after the shutdown",
        down.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The upgrade image is on this host, or the step refuses.
async fn present(t: &Target<'_>, image: &str, from: u16, to: u16) -> Result<(), StepError> {
    if t.rt.docker().inspect_image(image).await.is_err() {
        return Err(StepError::Refused(format!(
            "the upgrade image {image} (PostgreSQL {from} and {to}) is not on host {}: build it there with scripts/build-images.sh upgrade-{from}-{to}; nothing is changed",
            t.rt.host()
        )));
    }
    Ok(())
}

/// [`SCRIPT`]'s command line.
fn argv(mode: &str, from: u16, to: u16) -> Vec<String> {
    [
        "bash",
        "-c",
        SCRIPT,
        "upgrade",
        mode,
        &from.to_string(),
        &to.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// `pg_upgrade --check` against the serving server, in its container's PID
/// namespace; a refusal changes nothing.
async fn check(t: &Target<'_>, from: u16, to: u16, mounts: &[String]) -> Result<(), StepError> {
    let (rt, id) = (t.rt, &t.id);
    let image = upgrade_image(from, to);
    present(t, &image, from, to).await?;
    if !rt.inspect(id).await?.is_some_and(|c| c.running) {
        return Err(StepError::Refused(format!(
            "{} does not run: pg_upgrade --check needs its server",
            id.container()
        )));
    }
    t.log(format!(
        "pg_upgrade --check from {from} to {to} against the serving server ({image})"
    ));
    let log = |line: &str| t.log(format!("pg_upgrade: {line}"));
    crate::backup::run::one_off_in(rt, id, &image, mounts, &argv("check", from, to), "root", LONG, &log, true)
        .await
        .map_err(|e| {
            StepError::Refused(format!(
                "pg_upgrade --check refuses the upgrade from {from} to {to}; PostgreSQL {from} serves on, nothing changed: {e}"
            ))
        })
}

/// An earlier run stopped between its two renames (`data` already moved
/// to `data.old-<from>`, `data.new` not yet to `data`): the second one.
async fn finish_swap(dir: &std::path::Path, from: u16, to: u16) -> Result<(), StepError> {
    let data = dir.join("data");
    let new = dir.join("data.new");
    let old = dir.join(format!("data.old-{from}"));
    let holds = |p: std::path::PathBuf| async move {
        tokio::fs::read_to_string(p.join("PG_VERSION"))
            .await
            .ok()
            .and_then(|v| v.trim().parse::<u16>().ok())
    };
    if !tokio::fs::try_exists(&data).await.unwrap_or(false)
        && holds(new.clone()).await == Some(to)
        && holds(old).await == Some(from)
    {
        tokio::fs::rename(&new, &data)
            .await
            .map_err(|e| StepError::Arguments(format!("{}: {e}", new.display())))?;
    }
    Ok(())
}
