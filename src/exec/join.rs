//! Zero-downtime node addition for native logical replication: the
//! `JoinMesh` step, run by the new node's agent, fills the new node's empty
//! database from one member (the source) and wires it to every member so
//! that no change is lost or applied twice, while every member keeps taking
//! writes.
//!
//! The order is what makes it exact:
//! 1. On every other member X a logical slot for the new node is made now,
//!    so X's changes from here on are kept for it.
//! 2. The source waits until it has received X's stream past that slot's
//!    start, then pauses its subscription from X (it stops applying X's
//!    changes, X's writers go on) and reads how far it applied X (`L_X`).
//! 3. A slot for the new node is made on the source with an exported
//!    snapshot, and `pg_dump` copies the database at exactly that
//!    snapshot: the source's own changes up to the slot, X's up to `L_X`.
//! 4. The source's subscriptions resume (it catches up on X).
//! 5. In one transaction: the copy is restored into the new node's empty
//!    database, its sequences move to the new node's residue, and the
//!    subscriptions are made, disabled, on the slots of steps 1 and 3, X's
//!    starting after `L_X`.
//! 6. The subscriptions are enabled. The other members subscribe to the
//!    new node in the planner's next pass.
//!
//! A failure before step 6 leaves the new node's database as it was (its
//! next attempt starts over); a failure during it leaves disabled
//! subscriptions, which the planner enables. The agent connects to the
//! members as the replication role, which may only read, make slots and
//! call pgcd's `subscription_pause` / `subscription_position` functions;
//! to a member whose server has TLS, over TLS verified against the cluster
//! CA (its `pg_hba.conf` admits the role no other way), `pg_dump` too.

use super::{
    db_error, ensure_replication_role, exists, replication_client, run_sql, ReplicationPeer,
};
use crate::cluster::tasks::TaskContext;
use crate::plan::steps::Peer;
use crate::postgres::sql::{self, Conninfo, Statement};
use crate::runtime::docker::Runtime;
use crate::runtime::observe;
use crate::state::names::{publication_name, subscription_name, REPLICATION_ROLE};
use crate::state::InstanceId;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

fn sql_err(e: sql::SqlError) -> String {
    e.to_string()
}

/// Where the copy is written, inside the container (the instance directory).
const DUMP_DIR: &str = "/var/lib/pgcd/join.dump";
/// How long the source may take to receive a member's stream past a slot.
const CATCH_UP: Duration = Duration::from_secs(120);
/// How long copying and restoring may take.
const COPY: Duration = Duration::from_secs(3000);

/// One node addition, as its step describes it.
pub struct Join<'a> {
    /// This host's runtime.
    pub rt: &'a Runtime,
    /// The task (for its log).
    pub ctx: &'a TaskContext,
    /// The new node's instance.
    pub id: &'a InstanceId,
    /// Its port.
    pub port: u16,
    /// The replication role's password.
    pub password: &'a str,
    /// The member copied.
    pub source: &'a Peer,
    /// The other members.
    pub others: &'a [Peer],
    /// The new node's key residue.
    pub offset: i64,
    /// The key stride.
    pub stride: i64,
}

impl Join<'_> {
    fn log(&self, line: String) {
        self.ctx.log(line);
    }

    fn db(&self) -> &str {
        &self.id.database
    }

    fn me(&self) -> &str {
        &self.id.node
    }

    /// Connects to a member's database as the replication role (over
    /// verified TLS when its server has TLS).
    async fn member(&self, p: &Peer) -> Result<Client, String> {
        let to = ReplicationPeer {
            address: &p.address,
            port: p.port,
            tls: p.tls,
        };
        replication_client(self.rt, &to, self.password, self.db())
            .await
            .map_err(|e| format!("node {}: {e}", p.node))
    }

    async fn local(&self, dbname: &str) -> Result<Client, String> {
        observe::connect(self.rt, self.id, self.port, dbname).await
    }

    /// Carries out the addition (idempotent: a joined node is left alone).
    pub async fn run(&self) -> Result<(), String> {
        let admin = self.local("postgres").await?;
        // One attempt at a time (a new leader may send the step again while
        // its predecessor's attempt still runs): the lock lives as long as
        // this session.
        let alone: bool = admin
            .query_one("SELECT pg_try_advisory_lock(hashtext('pgcd_join'))", &[])
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        if !alone {
            return Err(format!(
                "another attempt to join {} to the mesh is running",
                self.me()
            ));
        }
        ensure_replication_role(&admin, self.ctx, self.password).await?;
        let target = self.local(self.db()).await?;
        if exists(
            &target,
            "SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
             WHERE d.datname = current_database() AND s.subname LIKE $1",
            &"pgcd\\_sub\\_%",
        )
        .await?
        {
            self.log(format!("{} already subscribes to the mesh", self.me()));
            return Ok(());
        }
        self.require_empty(&target).await?;
        drop(target);

        // 1. A slot on every other member, kept from now on.
        let mut starts = Vec::new();
        for x in self.others {
            let c = self.member(x).await?;
            let slot = subscription_name(&x.node, self.me());
            let lsn = fresh_slot(&c, &slot).await?;
            self.log(format!(
                "slot {slot} made on {} at {lsn}: {}'s changes from here on are kept for {}",
                x.node,
                x.node,
                self.me()
            ));
            starts.push(lsn);
        }
        let src = self.member(self.source).await?;
        let src_slot = subscription_name(&self.source.node, self.me());
        drop_idle_slot(&src, &src_slot).await?;

        // 2–4. Pause the source's inbound links, copy, resume.
        let mut paused = Vec::new();
        let copied = self.copy(&src, &starts, &mut paused).await;
        for sub in &paused {
            match src
                .execute("SELECT pgcd.subscription_pause($1, true)", &[sub])
                .await
            {
                Ok(_) => self.log(format!(
                    "{}: {sub} resumed (it catches up on what it missed)",
                    self.source.node
                )),
                Err(e) => self.log(format!(
                    "{}: {sub} not resumed ({}); pgcd's next pass enables it",
                    self.source.node,
                    db_error(&e)
                )),
            }
        }
        let positions = copied?;

        // 5. Restore, move the sequences to this node's residue and subscribe
        //    (disabled, X's start set), all in one transaction: a failure
        //    leaves the database as empty as it was.
        let mut tail = vec![sql::align_all_sequences(self.offset, self.stride)];
        tail.extend(self.subscription(self.source, None)?);
        for (x, applied) in self.others.iter().zip(&positions) {
            tail.extend(self.subscription(x, Some(applied))?);
            self.log(format!(
                "{} starts after {applied} of {}'s stream (what the copy holds)",
                subscription_name(&x.node, self.me()),
                x.node
            ));
        }
        self.restore(&tail).await?;

        // 6. Start receiving.
        let target = self.local(self.db()).await?;
        let mut names = vec![subscription_name(&self.source.node, self.me())];
        names.extend(
            self.others
                .iter()
                .map(|x| subscription_name(&x.node, self.me())),
        );
        for n in &names {
            run_sql(
                &target,
                self.ctx,
                &[sql::enable_subscription(n).map_err(sql_err)?],
            )
            .await?;
        }
        let (code, out) = self
            .rt
            .exec(
                self.id,
                &format!("rm -rf {DUMP_DIR}"),
                Vec::new(),
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())?;
        if code != 0 {
            self.log(format!("the copy was not removed: {}", out.trim()));
        }
        self.log(format!(
            "{} joined: copied {} and receives from {}",
            self.me(),
            self.source.node,
            names.join(", ")
        ));
        Ok(())
    }

    /// Fails unless the database holds no tables of its own: a join never
    /// replaces data.
    async fn require_empty(&self, c: &Client) -> Result<(), String> {
        let n: i64 = c
            .query_one(observe::OWN_TABLES, &[])
            .await
            .map_err(|e| db_error(&e))?
            .get(0);
        if n > 0 {
            return Err(format!(
                "database {} on {} holds {n} table(s); pgcd copies another node only into an empty database and will not overwrite them",
                self.db(),
                self.me()
            ));
        }
        Ok(())
    }

    /// Steps 2–3: pauses the source's subscription from each other member
    /// once it has received past that member's new slot (recording each in
    /// `paused`), then copies the source at a new slot's snapshot. Returns
    /// where the source stood in each member's stream.
    async fn copy(
        &self,
        src: &Client,
        starts: &[String],
        paused: &mut Vec<String>,
    ) -> Result<Vec<String>, String> {
        let mut applied = Vec::new();
        for (x, start) in self.others.iter().zip(starts) {
            let sub = subscription_name(&x.node, &self.source.node);
            let until = Instant::now() + CATCH_UP;
            loop {
                let row = src
                    .query_opt(
                        "SELECT received >= $2::text::pg_lsn FROM pgcd.subscription_position($1)",
                        &[&sub, start],
                    )
                    .await
                    .map_err(|e| format!("{}: {sub}: {}", self.source.node, db_error(&e)))?
                    .ok_or_else(|| format!("{} has no subscription {sub}", self.source.node))?;
                if row.get::<_, Option<bool>>(0) == Some(true) {
                    break;
                }
                if Instant::now() >= until {
                    return Err(format!(
                        "{} did not receive {}'s changes up to {start} within {}s",
                        self.source.node,
                        x.node,
                        CATCH_UP.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            src.execute("SELECT pgcd.subscription_pause($1, false)", &[&sub])
                .await
                .map_err(|e| format!("{}: pausing {sub}: {}", self.source.node, db_error(&e)))?;
            paused.push(sub.clone());
            let until = Instant::now() + CATCH_UP;
            let lsn = loop {
                let row = src
                    .query_one(
                        "SELECT worker, applied::text FROM pgcd.subscription_position($1)",
                        &[&sub],
                    )
                    .await
                    .map_err(|e| db_error(&e))?;
                if !row.get::<_, bool>(0) {
                    break row
                        .get::<_, Option<String>>(1)
                        .unwrap_or_else(|| "0/0".into());
                }
                if Instant::now() >= until {
                    return Err(format!("{sub} on {} did not stop", self.source.node));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            self.log(format!(
                "{}: {sub} paused at {lsn} ({}'s writers go on; the copy holds {}'s changes up to there)",
                self.source.node, x.node, x.node
            ));
            applied.push(lsn);
        }
        let slot = subscription_name(&self.source.node, self.me());
        // psql holds the replication connection, and so the exported
        // snapshot, while pg_dump copies at it.
        let script = format!(
            r#"set -euo pipefail
rm -rf {DUMP_DIR}
psql -X -q -v ON_ERROR_STOP=1 -v slot="$PGCD_SLOT" "dbname=$PGDATABASE replication=database" <<'PGCD_EOF'
CREATE_REPLICATION_SLOT :"slot" LOGICAL pgoutput (SNAPSHOT 'export') \gset pgcd_
\echo PGCD_CONSISTENT_POINT :pgcd_consistent_point
\setenv PGCD_SNAPSHOT :pgcd_snapshot_name
\! pg_dump -Fd -j 2 --compress=0 --snapshot="$PGCD_SNAPSHOT" -f {DUMP_DIR} && echo PGCD_DUMP_OK
PGCD_EOF
"#
        );
        let mut env = vec![
            format!("PGHOST={}", self.source.address),
            format!("PGPORT={}", self.source.port),
            format!("PGUSER={REPLICATION_ROLE}"),
            format!("PGPASSWORD={}", self.password),
            format!("PGDATABASE={}", self.db()),
            format!("PGCD_SLOT={slot}"),
            "PGAPPNAME=pgcd".to_string(),
        ];
        // The source's pg_hba.conf admits the role over TLS only when its
        // server has TLS: then libpq checks it as the subscriptions do,
        // against the CA in this container and the address dialled.
        if self.source.tls {
            env.push("PGSSLMODE=verify-full".to_string());
            env.push(format!("PGSSLROOTCERT={}", crate::pki::INSTANCE_CA_FILE));
        }
        let started = Instant::now();
        let (code, out) = self
            .rt
            .exec(self.id, &script, env, COPY)
            .await
            .map_err(|e| e.to_string())?;
        if code != 0 || !out.contains("PGCD_DUMP_OK") {
            return Err(format!(
                "copying {} failed (exit {code}): {}",
                self.source.node,
                out.trim()
            ));
        }
        let point = out
            .lines()
            .find_map(|l| l.strip_prefix("PGCD_CONSISTENT_POINT "))
            .unwrap_or("?");
        self.log(format!(
            "copied {} at the consistent point {point} of slot {slot} in {:.1}s{}",
            self.source.node,
            started.elapsed().as_secs_f64(),
            if self.source.tls {
                ", over verified TLS"
            } else {
                ""
            }
        ));
        Ok(applied)
    }

    /// Restores the copy into the new node's database and runs `tail` in
    /// the same transaction, without pgcd's event trigger (installed by the
    /// planner once the node has joined).
    async fn restore(&self, tail: &[Statement]) -> Result<(), String> {
        for s in tail {
            self.log(format!("sql (in the restore's transaction): {}", s.shown));
        }
        let script = format!(
            r#"set -euo pipefail
pg_restore -l {DUMP_DIR} | grep -v ' EVENT TRIGGER ' > {DUMP_DIR}/list
# A column option of the source's build that this server does not know is
# left out of the copy: Debian's 17.12 stamps every column with
# `pg_attver`, which pg_dump 18 dumps and PostgreSQL 18.6 refuses (a major
# upgrade by node addition). Any other option is kept, and only the
# definitions (pre-data) are filtered, never the rows.
options() {{ cat; }}
if ! psql -X -q -h /var/lib/pgcd/run -p "$PGCD_PORT" -U postgres -d "$PGCD_DB" \
  -c 'CREATE TEMP TABLE pgcd_probe (a int); ALTER TABLE pgcd_probe ALTER COLUMN a SET (pg_attver = 1)' >/dev/null 2>&1; then
  options() {{ sed -E -e '/^ALTER TABLE ONLY .* ALTER COLUMN .* SET \(/{{ s/pg_attver=[0-9]+, //; s/, pg_attver=[0-9]+\)/)/; /SET \(pg_attver=[0-9]+\);$/d; }}'; }}
fi
restore() {{ pg_restore -f - -L {DUMP_DIR}/list --section="$1" {DUMP_DIR}; }}
{{ restore pre-data | options; restore data; restore post-data; printf '%s\n' "$PGCD_TAIL"; }} \
  | psql -X -q -v ON_ERROR_STOP=1 --single-transaction -h /var/lib/pgcd/run -p "$PGCD_PORT" -U postgres -d "$PGCD_DB" >/dev/null
echo PGCD_RESTORE_OK
"#
        );
        let tail: Vec<&str> = tail.iter().map(|s| s.sql.as_str()).collect();
        let started = Instant::now();
        let (code, out) = self
            .rt
            .exec(
                self.id,
                &script,
                vec![
                    format!("PGCD_PORT={}", self.port),
                    format!("PGCD_DB={}", self.db()),
                    format!("PGCD_TAIL={};", tail.join(";\n")),
                    "PGAPPNAME=pgcd".to_string(),
                ],
                COPY,
            )
            .await
            .map_err(|e| e.to_string())?;
        if code != 0 || !out.contains("PGCD_RESTORE_OK") {
            return Err(format!(
                "restoring the copy failed (exit {code}), nothing was kept: {}",
                out.replace(self.password, "********").trim()
            ));
        }
        self.log(format!(
            "restored the copy in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// The subscription to `p` on the slot made for it, disabled; with
    /// `applied`, starting after that position of its stream.
    fn subscription(&self, p: &Peer, applied: Option<&String>) -> Result<Vec<Statement>, String> {
        let name = subscription_name(&p.node, self.me());
        let mut out = vec![sql::create_subscription_on_slot(
            &name,
            &Conninfo {
                host: &p.address,
                port: p.port,
                dbname: self.db(),
                user: REPLICATION_ROLE,
                password: self.password,
                application_name: &name,
            },
            publication_name(),
        )
        .map_err(sql_err)?];
        if let Some(lsn) = applied {
            out.push(sql::advance_subscription_origin(&name, lsn).map_err(sql_err)?);
        }
        Ok(out)
    }
}

/// Drops the slot `slot` when no one streams from it (a former attempt's).
async fn drop_idle_slot(c: &Client, slot: &str) -> Result<(), String> {
    c.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
         WHERE slot_name = $1::text::name AND NOT active",
        &[&slot],
    )
    .await
    .map_err(|e| format!("dropping slot {slot}: {}", db_error(&e)))?;
    Ok(())
}

/// Makes the logical slot `slot` anew; returns its start.
async fn fresh_slot(c: &Client, slot: &str) -> Result<String, String> {
    drop_idle_slot(c, slot).await?;
    c.query_one(
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1::text::name, 'pgoutput')",
        &[&slot],
    )
    .await
    .map(|r| r.get(0))
    .map_err(|e| format!("making slot {slot}: {}", db_error(&e)))
}
