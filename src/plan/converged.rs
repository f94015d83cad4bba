//! The actual state in which a desired state is fully carried out: tests and
//! benchmarks start from it and change what they study.

use crate::spec::database::DatabaseState;
use crate::spec::names::HostId;
use crate::spec::Desired;
use crate::state::actual::{held_attributes, AuthActual, IMAGE_EXTENSIONS, ROLE_FLAGS};
use crate::state::names::{publication_name, standby_name, subscription_name, REPLICATION_ROLE};
use crate::state::{
    native_mesh, spock_wired, Actual, DatabaseActual, ExtActual, InstanceActual, InstanceRole,
    RoleActual, SubscriptionActual,
};
use std::collections::BTreeMap;

/// The state in which `desired` is fully carried out: every node's
/// instances exist and run (the first host primary, the others
/// standbys), with the spec's settings, roles and extensions, each
/// database's spec recorded as applied. Tests and
/// benchmarks start from it and change what they study.
pub fn converged(desired: &Desired) -> Actual {
    converged_at(desired, &BTreeMap::new())
}

/// [`converged`], on hosts registered at these addresses: the
/// authentication files name them (a real cluster's observations do).
pub fn converged_at(desired: &Desired, addresses: &BTreeMap<HostId, String>) -> Actual {
    let mut hosts: Vec<HostId> = Vec::new();
    let mut instances = Vec::new();
    let mut primaries = Vec::new();
    for db in &desired.databases {
        if db.state == Some(DatabaseState::Absent) {
            continue;
        }
        let owner = db
            .database_users
            .iter()
            .find(|u| u.db_owner == Some(true))
            .map(|u| u.username.to_string())
            .unwrap_or_else(|| crate::plan::SUPERUSER.to_string());
        let mut roles = vec![RoleActual {
            name: crate::plan::SUPERUSER.to_string(),
            attributes: ROLE_FLAGS.iter().map(|f| f.to_string()).collect(),
            member_of: Vec::new(),
        }];
        if native_mesh(db) || db.nodes.iter().any(|n| n.host_ids.len() > 1) {
            roles.push(RoleActual {
                name: REPLICATION_ROLE.to_string(),
                attributes: vec!["INHERIT".into(), "LOGIN".into(), "REPLICATION".into()],
                member_of: Vec::new(),
            });
        }
        roles.extend(
            db.database_users
                .iter()
                .filter(|u| u.present())
                .map(|u| RoleActual {
                    name: u.username.to_string(),
                    attributes: held_attributes(u.attributes.as_deref().unwrap_or_default()),
                    member_of: u.roles.clone(),
                }),
        );
        let mut extensions = vec![ExtActual {
            name: "plpgsql".into(),
            version: "1.0".into(),
        }];
        extensions.extend(
            db.extensions
                .iter()
                .filter(|e| e.present())
                .map(|e| ExtActual {
                    name: e.name.clone(),
                    version: e.version.clone().unwrap_or_else(|| "1.0".into()),
                }),
        );
        let mut available: Vec<String> = IMAGE_EXTENSIONS
            .iter()
            .chain(crate::spec::extensions::CONTRIB)
            .map(|e| e.to_string())
            .collect();
        for e in &extensions {
            if !available.contains(&e.name) {
                available.push(e.name.clone());
            }
        }
        let meshed = native_mesh(db) || spock_wired(db);
        for node in &db.nodes {
            let settings = super::settings::desired(db, node, &|_| true);
            let running = node.state != Some(crate::spec::database::NodeState::Stopped);
            let version = node.postgres_version.unwrap_or(db.postgres_version);
            if node.host_ids.len() > 1 {
                primaries.push(crate::state::primary::PrimaryRecord {
                    database: db.database_name.clone(),
                    node: node.name.clone(),
                    host: node.host_ids[0].clone(),
                    term: 1,
                    since: "2026-12-01T00:00:00Z".into(),
                    reason: "first primary".into(),
                });
            }
            for (i, host) in node.host_ids.iter().enumerate() {
                if !hosts.contains(host) {
                    hosts.push(host.clone());
                }
                instances.push(InstanceActual {
                    database: db.database_name.clone(),
                    node: node.name.clone(),
                    host: host.clone(),
                    container_exists: true,
                    running,
                    version: running
                        .then(|| format!("{}.{}", version.major, version.minor.unwrap_or(6))),
                    port: node.port.or(db.port).unwrap_or(5432),
                    role: match (running, i) {
                        (false, _) => InstanceRole::Unknown,
                        (true, 0) => InstanceRole::Primary,
                        (true, _) => InstanceRole::Standby,
                    },
                    settings: settings.clone(),
                    pending_restart: Vec::new(),
                    database_exists: true,
                    owner: Some(owner.clone()),
                    roles: roles.clone(),
                    extensions: extensions.clone(),
                    available_extensions: available.clone(),
                    available_versions: Default::default(),
                    data_dir_exists: true,
                    data_major: Some(version.major),
                    image_major: Some(version.major),
                    slots: if i == 0 {
                        node.host_ids[1..]
                            .iter()
                            .map(|h| standby_name(node.name.as_str(), h.as_str()))
                            .collect()
                    } else {
                        Vec::new()
                    },
                    replicas: Vec::new(),
                    publications: if meshed && i == 0 {
                        vec![publication_name().to_string()]
                    } else {
                        Vec::new()
                    },
                    unaligned_sequences: Vec::new(),
                    autoddl: meshed && i == 0,
                    ddl_rows: None,
                    ddl_failures: Vec::new(),
                    wal: None,
                    standby_signal: i > 0,
                    tables: 0,
                    post_init_ran: false,
                    backup: super::backup::converged(db, node),
                    auth: None,
                    subscriptions: if meshed && i == 0 {
                        db.nodes
                            .iter()
                            .filter(|o| o.name != node.name)
                            .map(|o| SubscriptionActual {
                                name: subscription_name(o.name.as_str(), node.name.as_str()),
                                enabled: true,
                                running: true,
                                ..Default::default()
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }
    hosts.sort();
    let databases = desired
        .databases
        .iter()
        .map(|db| DatabaseActual {
            name: db.database_name.to_string(),
            applied_spec: crate::state::spec_digest(db),
        })
        .collect();
    let mut actual = Actual {
        instances,
        databases,
        primaries,
        ..Actual::empty(&hosts)
    };
    for h in &mut actual.hosts {
        if let Some(a) = addresses.get(&h.id) {
            h.address.clone_from(a);
        }
    }
    // The authentication files pgcd wrote, on every running instance.
    let auth: Vec<Option<AuthActual>> = {
        actual
            .instances
            .iter()
            .map(|i| {
                let db = desired
                    .databases
                    .iter()
                    .find(|d| d.database_name == i.database)?;
                let node = db.nodes.iter().find(|n| n.name == i.node)?;
                i.running.then(|| AuthActual {
                    tls: true,
                    hba: super::hba::hba_lines(db, node, &actual, true),
                    ident: super::hba::ident_lines(db, node),
                })
            })
            .collect()
    };
    for (i, a) in actual.instances.iter_mut().zip(auth) {
        i.auth = a;
    }
    actual
}
