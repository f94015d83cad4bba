//! The catalog phases of one running instance: roles, the database and its
//! owner, memberships, settings, the restart they need, and extensions.
//! Pure; this file must not do I/O.

use super::instance::{Steps, DATABASE, EXTENSIONS, GRANTS, RESTART, ROLES, SETTINGS};
use super::settings;
use super::steps::{Action, Note, NoteKind, SettingChange};
use super::SUPERUSER;
use crate::spec::Database;
use crate::state::actual::{held_attributes, InstanceActual, ROLE_FLAGS};
use std::collections::BTreeMap;

/// Roles, database, memberships, settings, restart and extensions of a
/// running instance (`i`), or of one about to be created (`None`).
pub(super) fn steps(
    db: &Database,
    s: &mut Steps,
    i: Option<&InstanceActual>,
    wanted: &BTreeMap<String, String>,
    port: u16,
    notes: &mut Vec<Note>,
) {
    let fresh = i.is_none();
    let name = &db.database_name;
    let role_of = |n: &str| i.and_then(|i| i.roles.iter().find(|r| r.name == n));
    for u in &db.database_users {
        let user = u.username.as_str();
        let held = held_attributes(u.attributes.as_deref().unwrap_or_default());
        match role_of(user) {
            None => s.add(
                ROLES,
                &format!("role/{user}"),
                Action::CreateRole {
                    name: user.to_string(),
                    attributes: held,
                    password_ref: u.password.clone(),
                },
                if fresh {
                    format!("user {user} of the spec")
                } else {
                    format!("role {user} is missing")
                },
            ),
            Some(r) => {
                let (mut from, mut to) = (Vec::new(), Vec::new());
                for flag in ROLE_FLAGS {
                    let want = held.iter().any(|h| h == flag);
                    let has = r.attributes.iter().any(|a| a.eq_ignore_ascii_case(flag));
                    if want != has {
                        let clause = |on: bool| {
                            if on {
                                flag.to_string()
                            } else {
                                format!("NO{flag}")
                            }
                        };
                        from.push(clause(has));
                        to.push(clause(want));
                    }
                }
                if !to.is_empty() {
                    let reason = format!(
                        "role {user} has {}, the spec says {}",
                        from.join(" "),
                        to.join(" ")
                    );
                    s.add(
                        ROLES,
                        &format!("role/{user}/attributes"),
                        Action::AlterRole {
                            name: user.to_string(),
                            from,
                            to,
                        },
                        reason,
                    );
                }
            }
        }
    }
    let owner = db
        .database_users
        .iter()
        .find(|u| u.db_owner == Some(true))
        .map(|u| u.username.as_str());
    match i {
        Some(i) if i.database_exists => {
            let have = i.owner.as_deref().unwrap_or(SUPERUSER);
            if let Some(want) = owner.filter(|w| *w != have) {
                s.add(
                    DATABASE,
                    "database/owner",
                    Action::AlterDatabaseOwner {
                        from: have.to_string(),
                        to: want.to_string(),
                    },
                    format!("database {name} is owned by {have}, the spec says {want}"),
                );
            }
        }
        _ => s.add(
            DATABASE,
            "database",
            Action::CreateDatabase {
                owner: owner.unwrap_or(SUPERUSER).to_string(),
            },
            if fresh {
                format!("database {name} of the spec")
            } else {
                format!("database {name} is missing on the instance")
            },
        ),
    }
    for u in &db.database_users {
        let user = u.username.as_str();
        let member_of = role_of(user).map_or(&[][..], |r| r.member_of.as_slice());
        for role in &u.roles {
            if !member_of.contains(role) {
                s.add(
                    GRANTS,
                    &format!("grant/{role}/{user}"),
                    Action::GrantRole {
                        role: role.clone(),
                        member: user.to_string(),
                    },
                    if fresh {
                        format!("user {user} is a member of {role} in the spec")
                    } else {
                        format!("{user} is not a member of {role}; the spec says it is")
                    },
                );
            }
        }
    }
    let mut restart: Vec<String> = Vec::new();
    if let Some(i) = i {
        let mut changes = Vec::new();
        if i.port != port {
            changes.push(SettingChange {
                name: "port".into(),
                old: Some(i.port.to_string()),
                new: port.to_string(),
                needs_restart: true,
            });
        }
        for (k, v) in wanted {
            let old = i.settings.get(k);
            if old.is_some_and(|o| settings::same(o, v)) {
                continue;
            }
            changes.push(SettingChange {
                name: k.clone(),
                old: old.cloned(),
                new: v.clone(),
                needs_restart: settings::needs_restart(k),
            });
        }
        restart.extend(
            changes
                .iter()
                .filter(|c| c.needs_restart)
                .map(|c| c.name.clone()),
        );
        if !changes.is_empty() {
            let said: Vec<String> = changes
                .iter()
                .map(|c| {
                    let old = c.old.as_deref().unwrap_or("at its default");
                    format!("{} is {old}, the spec says {}", c.name, c.new)
                })
                .collect();
            let reason = said.join("; ");
            let needs_restart = !restart.is_empty();
            s.add(
                SETTINGS,
                "settings",
                Action::SetSettings {
                    changes,
                    needs_restart,
                },
                reason,
            );
        }
        restart.extend(i.pending_restart.iter().cloned());
        restart.sort();
        restart.dedup();
        if !restart.is_empty() {
            let reason = format!(
                "{} {} a restart",
                restart.join(", "),
                if restart.len() == 1 { "needs" } else { "need" }
            );
            s.add(
                RESTART,
                "restart",
                Action::RestartInstance { settings: restart },
                reason,
            );
        }
    }
    for e in &db.extensions {
        let installed = i.and_then(|i| i.extensions.iter().find(|x| x.name == e.name));
        let offered = i.is_none_or(|i| i.available_extensions.contains(&e.name));
        match installed {
            None if !offered => notes.push(Note {
                kind: NoteKind::Unavailable,
                database: name.clone(),
                message: format!(
                    "extension {} is not available in the image of {name}/{} on {}; not created",
                    e.name, s.node, s.host
                ),
            }),
            None => s.add(
                EXTENSIONS,
                &format!("extension/{}", e.name),
                Action::CreateExtension {
                    name: e.name.clone(),
                    version: e.version.clone(),
                },
                if fresh {
                    format!("extension {} of the spec", e.name)
                } else {
                    format!("extension {} is not installed", e.name)
                },
            ),
            Some(x) => {
                if let Some(v) = e.version.as_ref().filter(|v| **v != x.version) {
                    s.add(
                        EXTENSIONS,
                        &format!("extension/{}/update", e.name),
                        Action::UpdateExtension {
                            name: e.name.clone(),
                            from: x.version.clone(),
                            to: v.clone(),
                        },
                        format!(
                            "extension {} is at {}, the spec says {v}",
                            e.name, x.version
                        ),
                    );
                }
            }
        }
    }
}
