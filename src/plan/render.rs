//! Printing a plan the way Terraform prints one: a line per change with its
//! sign (`+` add, `~` change, `!` restart, `-` remove), the reason beneath,
//! then the notes and a summary line. Formatting only; this file must not
//! do I/O.

use super::steps::{Action, Effect, Plan, Step};
use crate::spec::secret::SecretRef;
use std::fmt;

fn phase_state(s: crate::state::operation::PhaseState) -> &'static str {
    use crate::state::operation::PhaseState as P;
    match s {
        P::Pending => "pending",
        P::Running => "running",
        P::Succeeded => "done",
        P::Failed => "failed",
        P::Skipped => "skipped",
    }
}

fn sign(effect: Effect) -> char {
    match effect {
        Effect::Add => '+',
        Effect::Change => '~',
        Effect::Restart => '!',
        Effect::Remove => '-',
    }
}

fn password(p: &SecretRef) -> String {
    match p {
        SecretRef::Env(name) => format!("password from env {name}"),
        SecretRef::File(path) => format!("password from file {path}"),
        SecretRef::Age(_) => "password age-encrypted".into(),
    }
}

/// The lines of one step, without the reason (several for a settings step).
fn lines(s: &Step) -> Vec<String> {
    let at = format!("{}/{}", s.database, s.node);
    let on = format!("{at} on {}", s.host);
    match &s.action {
        Action::CreateStandby {
            version,
            port,
            primary,
            slot,
            from_backup,
            ..
        } => vec![match from_backup {
            None => format!(
                "create standby {on} (PostgreSQL {version}, port {port}) from the primary on {primary}, slot {slot}"
            ),
            Some(b) => format!(
                "create standby {on} (PostgreSQL {version}, port {port}) from backup {} in repository {}, then from the primary on {primary}, slot {slot}",
                b.label, b.repo_id
            ),
        }],
        Action::CreatePublication { name } => vec![format!("create publication {name} on {on}")],
        Action::CreateSubscription {
            name, publisher, ..
        } => vec![format!(
            "subscribe {on} to node {publisher} ({name}, origin = none)"
        )],
        Action::RefreshSubscription { name } => {
            vec![format!("refresh subscription {name} on {on} (new tables)")]
        }
        Action::AlignSequences {
            offset,
            stride,
            sequences,
        } => vec![format!(
            "align {} sequence(s) on {on}: INCREMENT BY {stride}, values ≡ {offset} (mod {stride})",
            sequences.len()
        )],
        Action::InstallAutoDdl { .. } => vec![format!("install DDL replication on {on}")],
        Action::JoinMesh { source, others, .. } => vec![format!(
            "join {on} to the nodes that replicate: copy {} at a slot's consistent point, then receive from {}{} (writers keep writing)",
            source.node,
            source.node,
            others
                .iter()
                .map(|p| format!(", {}", p.node))
                .collect::<String>()
        )],
        Action::EnableSubscription { name } => {
            vec![format!("enable subscription {name} on {on}")]
        }
        Action::DropSubscription { name } => vec![format!("drop subscription {name} on {on}")],
        Action::DropSlot { slot } => vec![format!("drop replication slot {slot} on {on}")],
        Action::EnsureReplication { slot } => {
            vec![format!("replication role and slot {slot} on {on}")]
        }
        Action::CreateInstance {
            version,
            port,
            reuse_data,
            restore_from,
            ..
        } => vec![format!(
            "create instance {on} (PostgreSQL {version}, port {port}{})",
            match restore_from {
                Some(src) => format!(
                    ", from a backup of stanza {} in repository {}",
                    src.stanza, src.repo.id
                ),
                None if *reuse_data => ", existing data".to_string(),
                None => String::new(),
            }
        )],
        Action::ConfigureBackup { conf, primary, .. } => vec![format!(
            "configure pgBackRest on {on}: stanza {}, {}{}",
            conf.stanza,
            conf.repos
                .iter()
                .map(|r| format!("repo{} {} ({})", r.index, r.id, r.repo_type))
                .collect::<Vec<_>>()
                .join(", "),
            if *primary {
                "; create the stanza, check archiving"
            } else {
                ""
            }
        )],
        Action::RunBackup {
            stanza,
            repo,
            backup_type,
            measure,
        } => vec![format!(
            "{backup_type} backup of {on} (stanza {stanza}) to repo{repo}{}",
            if *measure {
                ", then its databases measured for restore rehearsals"
            } else {
                ""
            }
        )],
        Action::RehearseRestore(r) => vec![format!(
            "restore rehearsal of stanza {} from repo{} into a scratch instance on {} (the node is not touched)",
            r.conf.stanza, r.repo, s.host
        )],
        Action::RestoreInstance {
            stanza,
            repo,
            target,
            ..
        } => vec![format!(
            "restore {on} from repo{repo} (stanza {stanza}, {}{}) (disrupts clients)",
            target.restore_type,
            target
                .target
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default()
        )],
        Action::StartInstance => vec![format!("start {on}")],
        Action::RecordPrimary { host, term, why } => vec![format!(
            "record {at}'s primary: {host} (term {term}; {why})"
        )],
        Action::PromoteStandby { .. } => vec![format!(
            "promote {on} to primary once it has replayed what it received (writes resume there)"
        )],
        Action::RepointStandby { primary, slot, .. } => vec![format!(
            "repoint the standby {on} to the primary on {primary} (slot {slot}; reload, no restart)"
        )],
        Action::RejoinAsStandby { primary, slot, .. } => vec![format!(
            "rejoin {on} as a standby of the primary on {primary} (fenced, pg_rewind, slot {slot})"
        )],
        Action::StopForSwitchover { candidate_slot } => vec![format!(
            "stop {on} for the switchover: checkpoint, wait until {candidate_slot} has its WAL, fast shutdown (writes pause)"
        )],
        Action::StopInstance => vec![format!("stop {on} (disrupts clients)")],
        Action::UpgradeMajor {
            from,
            version,
            check_only: true,
            ..
        } => vec![format!(
            "check that {on} can be upgraded in place from PostgreSQL {from} to {version}: pg_upgrade --check while it serves"
        )],
        Action::UpgradeMajor { from, version, .. } => vec![format!(
            "upgrade {on} in place from PostgreSQL {from} to {version}: pg_upgrade --check while it serves, fast shutdown, pg_upgrade --link, start on the {version} image, vacuumdb --analyze-in-stages (disrupts clients)"
        )],
        Action::RestartInstance { settings } => vec![format!(
            "restart {on}: {} {} a restart",
            settings.join(", "),
            if settings.len() == 1 { "needs" } else { "need" }
        )],
        Action::RemoveInstance { keep_data } => vec![format!(
            "remove instance {on} ({})",
            if *keep_data {
                "data kept"
            } else {
                "data deleted"
            }
        )],
        Action::CreateDatabase {
            owner,
            post_database_create,
        } => {
            let mut lines = vec![format!(
                "create database {} on {at} (owner {owner})",
                s.database
            )];
            if !post_database_create.is_empty() {
                lines.push(format!(
                    "run scripts.post_database_create in {} on {at} ({} statement{}, one transaction, once)",
                    s.database,
                    post_database_create.len(),
                    if post_database_create.len() == 1 { "" } else { "s" }
                ));
            }
            lines
        }
        Action::RunPostInit { statements } => vec![format!(
            "run scripts.post_init in postgres on {at} ({} statement{}, one transaction, once)",
            statements.len(),
            if statements.len() == 1 { "" } else { "s" }
        )],
        Action::DropRole { name, reassign_to } => vec![format!(
            "drop role {name} on {at} (its objects reassigned to {reassign_to} first)"
        )],
        Action::DropExtension { name, cascade } => vec![format!(
            "drop extension {name} on {at}{}",
            if *cascade {
                " CASCADE (what depends on it goes too)"
            } else {
                ""
            }
        )],
        Action::AlterDatabaseOwner { from, to } => {
            vec![format!(
                "alter database {} on {at}: OWNER {from} → {to}",
                s.database
            )]
        }
        Action::CreateRole {
            name,
            attributes,
            password_ref,
        } => {
            let mut what = attributes.join(" ");
            if let Some(p) = password_ref {
                what.push_str(", ");
                what.push_str(&password(p));
            }
            vec![format!("create role {name} on {at} ({what})")]
        }
        Action::AlterRole { name, from, to } => vec![format!(
            "alter role {name} on {at}: {} → {}",
            from.join(" "),
            to.join(" ")
        )],
        Action::GrantRole { role, member } => vec![format!("grant {role} to {member} on {at}")],
        Action::CreateExtension { name, version } => vec![match version {
            Some(v) => format!("create extension {name} {v} on {at}"),
            None => format!("create extension {name} on {at}"),
        }],
        Action::UpdateExtension { name, from, to } => {
            vec![format!("update extension {name} on {at}: {from} → {to}")]
        }
        Action::WriteAuthFiles { hba, ident } => vec![format!(
            "write pg_hba.conf ({} lines) and pg_ident.conf ({} lines) on {at}, then reload",
            hba.len(),
            ident.len()
        )],
        Action::SetSettings { changes, .. } => changes
            .iter()
            .map(|c| {
                format!(
                    "set {} {} → {} on {at} ({})",
                    c.name,
                    c.old.as_deref().unwrap_or("(default)"),
                    c.new,
                    if c.needs_restart { "restart" } else { "reload" }
                )
            })
            .collect(),
    }
}

impl Plan {
    /// One line: `No changes.` or `Plan: 2 to add, 1 to change, 0 restarts, 0 to remove.`
    pub fn summary(&self) -> String {
        let text = self.to_string();
        text.lines().last().unwrap_or_default().to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mut add, mut change, mut restart, mut remove) = (0, 0, 0, 0);
        for s in &self.steps {
            let effect = s.action.effect();
            match effect {
                Effect::Add => add += 1,
                Effect::Change => change += 1,
                Effect::Restart => restart += 1,
                Effect::Remove => remove += 1,
            }
            for line in lines(s) {
                writeln!(f, "{} {line}", sign(effect))?;
            }
            writeln!(f, "    # {}", s.reason)?;
            if let Some(i) = &s.impact {
                writeln!(f, "    ! clients: {i}")?;
            }
        }
        if !self.notes.is_empty() {
            if !self.steps.is_empty() {
                writeln!(f)?;
            }
            for n in &self.notes {
                writeln!(f, "note ({}): {}", n.kind.as_str(), n.message)?;
            }
        }
        if !self.operations.is_empty() {
            if !self.steps.is_empty() || !self.notes.is_empty() {
                writeln!(f)?;
            }
            for o in &self.operations {
                writeln!(
                    f,
                    "operation {} ({}): {} — {}",
                    o.id,
                    o.kind,
                    o.state.as_str(),
                    o.reason
                )?;
                for (i, p) in o.phases.iter().enumerate() {
                    writeln!(
                        f,
                        "    {}. {} [{}{}] {}",
                        i + 1,
                        p.name,
                        phase_state(p.state),
                        if p.disruptive { ", disruptive" } else { "" },
                        p.description
                    )?;
                    if let Some(i) = &p.impact {
                        writeln!(f, "       ! clients: {i}")?;
                    }
                }
            }
        }
        if !self.steps.is_empty() || !self.notes.is_empty() || !self.operations.is_empty() {
            writeln!(f)?;
        }
        if self.steps.is_empty() {
            writeln!(f, "No changes.")
        } else {
            writeln!(
                f,
                "Plan: {add} to add, {change} to change, {restart} restart{}, {remove} to remove.",
                if restart == 1 { "" } else { "s" }
            )
        }
    }
}
