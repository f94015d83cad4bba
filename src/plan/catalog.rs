//! The catalog phases of one running instance: roles, the database and its
//! owner, memberships, settings, the restart they need, and extensions.
//! Pure; this file must not do I/O.

use super::instance::{Steps, DATABASE, EXTENSIONS, GRANTS, POST_INIT, RESTART, ROLES, SETTINGS};
use super::settings;
use super::steps::{Action, Note, NoteKind, SettingChange};
use super::SUPERUSER;
use crate::spec::Database;
use crate::state::actual::{held_attributes, InstanceActual, ROLE_FLAGS};
use std::collections::BTreeMap;

/// How this instance's database comes to be, for `scripts`.
struct Creation<'a> {
    /// `scripts.post_init` runs here (a new primary, before its roles).
    post_init: &'a [String],
    /// `scripts.post_database_create` runs in this instance's new
    /// database: it makes the database's first copy, on the first node.
    post_database_create: &'a [String],
    /// Another node waits for the first to create the database with its
    /// scripts (then joins by copying it): no database or extension here yet.
    waits: bool,
}

/// What `scripts` do on this instance: they run only while the database
/// is being created (see [`Creation`]).
fn creation<'a>(
    db: &'a Database,
    s: &Steps,
    i: Option<&InstanceActual>,
    index: &super::Index,
) -> Creation<'a> {
    let none: &[String] = &[];
    let (post_init, post_database_create) = db.scripts.as_ref().map_or((none, none), |x| {
        (x.post_init.as_slice(), x.post_database_create.as_slice())
    });
    // The database has a copy somewhere: on any instance, any node.
    let copied = index
        .of_database(&db.database_name)
        .iter()
        .any(|x| x.database_exists);
    let first = db.nodes.first().is_some_and(|n| n.name == *s.node);
    let creating = i.is_none_or(|i| !i.database_exists);
    Creation {
        post_init: if creating && !i.is_some_and(|i| i.post_init_ran) {
            post_init
        } else {
            none
        },
        post_database_create: if first && !copied {
            post_database_create
        } else {
            none
        },
        waits: !first && !copied && creating && !post_database_create.is_empty(),
    }
}

/// Roles, database, memberships, settings, restart and extensions of a
/// running instance (`i`), or of one about to be created (`None`).
pub(super) fn steps(
    db: &Database,
    s: &mut Steps,
    i: Option<&InstanceActual>,
    wanted: &BTreeMap<String, String>,
    port: u16,
    index: &super::Index,
    notes: &mut Vec<Note>,
) {
    let fresh = i.is_none();
    let name = &db.database_name;
    let role_of = |n: &str| i.and_then(|i| i.roles.iter().find(|r| r.name == n));
    let made = creation(db, s, i, index);
    if !made.post_init.is_empty() {
        s.add(
            POST_INIT,
            "post-init",
            Action::RunPostInit {
                statements: made.post_init.to_vec(),
            },
            if fresh {
                format!("scripts.post_init of {name}: runs once, on this new instance, before its roles")
            } else {
                format!("scripts.post_init of {name} has not run on this instance, whose database is not created yet")
            },
        );
    }
    let owner = db
        .database_users
        .iter()
        .find(|u| u.db_owner == Some(true))
        .map(|u| u.username.as_str());
    for u in db.database_users.iter().filter(|u| !u.present()) {
        let user = u.username.as_str();
        if role_of(user).is_some() {
            let to = owner.unwrap_or(SUPERUSER);
            s.add(
                GRANTS,
                &format!("drop-role/{user}"),
                Action::DropRole {
                    name: user.to_string(),
                    reassign_to: to.to_string(),
                },
                format!("user {user} has state: absent; what it owns goes to {to}"),
            );
        }
    }
    for u in db.database_users.iter().filter(|u| u.present()) {
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
        _ if made.waits => notes.push(Note {
            kind: NoteKind::Scripts,
            database: name.clone(),
            message: format!(
                "{name}/{} on {}: the database is created once the first node has created it and run scripts.post_database_create; this node then copies it",
                s.node, s.host
            ),
        }),
        _ => {
            let mut reason = if fresh {
                format!("database {name} of the spec")
            } else {
                format!("database {name} is missing on the instance")
            };
            if !made.post_database_create.is_empty() {
                reason.push_str(
                    "; scripts.post_database_create run in it once, before anything else, and the other nodes copy the result",
                );
            }
            s.add(
                DATABASE,
                "database",
                Action::CreateDatabase {
                    owner: owner.unwrap_or(SUPERUSER).to_string(),
                    post_database_create: made.post_database_create.to_vec(),
                },
                reason,
            )
        }
    }
    for u in db.database_users.iter().filter(|u| u.present()) {
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
    if made.waits {
        return;
    }
    for e in &db.extensions {
        let installed = i.and_then(|i| i.extensions.iter().find(|x| x.name == e.name));
        if !e.present() {
            if installed.is_some() {
                let cascade = e.cascade == Some(true);
                s.add(
                    EXTENSIONS,
                    &format!("drop-extension/{}", e.name),
                    Action::DropExtension {
                        name: e.name.clone(),
                        cascade,
                    },
                    if cascade {
                        format!("extension {} has state: absent with cascade: true; what depends on it is dropped too", e.name)
                    } else {
                        format!("extension {} has state: absent (refused while anything depends on it)", e.name)
                    },
                );
            }
            continue;
        }
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
            Some(x) if e.version.is_none() => {
                // The image (a new minor, say) carries another version of
                // an extension in use: it is updated to it.
                if let Some(v) = i
                    .and_then(|i| i.available_versions.get(&e.name))
                    .filter(|v| **v != x.version)
                {
                    s.add(
                        EXTENSIONS,
                        &format!("extension/{}/update", e.name),
                        Action::UpdateExtension {
                            name: e.name.clone(),
                            from: x.version.clone(),
                            to: v.clone(),
                        },
                        format!(
                            "the image of {name}/{} on {} carries extension {} {v}; it is at {}",
                            s.node, s.host, e.name, x.version
                        ),
                    );
                }
            }
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
