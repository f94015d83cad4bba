//! Example systems for the planner's tests: desired states read from YAML
//! through `spec::load`, actual states built from `Actual::converged` and
//! changed, and `simulate`, which carries a plan's effects out on an actual
//! state as the agents would. Test-only; no I/O except reading `sample-repo/`.

use super::steps::{Action, Plan};
use super::SUPERUSER;
use crate::spec::{self, Desired, SourceFile};
use crate::state::actual::{
    ExtActual, InstanceActual, InstanceRole, RoleActual, IMAGE_EXTENSIONS, ROLE_FLAGS,
};
use crate::state::names::REPLICATION_ROLE;
use crate::state::Actual;
use std::collections::BTreeMap;

/// One database, PostgreSQL 17, on h1: a user, an owner, pgvector and settings.
pub const ORDERS: &str = r#"
database_name: orders
postgres_version: "17"
port: 6432
nodes:
  - name: n1
    host_ids: [h1]
database_users:
  - username: orders_owner
    password: {env: ORDERS_OWNER_PASSWORD}
    db_owner: true
  - username: app
    password: {file: /etc/pgcd/secrets/app}
    attributes: [LOGIN, CREATEDB]
    roles: [pg_read_all_data]
extensions:
  - pgvector
postgresql_conf:
  work_mem: 16MB
  shared_buffers: 1GB
  jit: false
"#;

/// A second database on the same host, on another port.
pub const INVENTORY: &str = r#"
database_name: inventory
postgres_version: "16"
port: 5433
nodes:
  - name: n1
    host_ids: [h1]
database_users:
  - username: inventory
    password: {env: INVENTORY_PASSWORD}
    db_owner: true
"#;

/// A desired state from `(name, yaml)` database files; panics with the
/// diagnostics when they do not load.
pub fn desired(databases: &[(&str, &str)]) -> Desired {
    let files: Vec<SourceFile> = databases
        .iter()
        .map(|(name, text)| SourceFile {
            path: format!("databases/{name}.yaml"),
            text: text.to_string(),
        })
        .collect();
    match spec::load(&files) {
        Ok(d) => d,
        Err(diags) => panic!(
            "example spec does not load:\n{}",
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// `ORDERS` with `from` replaced by `to` (the replaced text must be there).
pub fn orders_with(from: &str, to: &str) -> Desired {
    assert!(ORDERS.contains(from), "{from:?} is not in ORDERS");
    desired(&[("orders", &ORDERS.replace(from, to))])
}

/// The spec of `sample-repo/`.
pub fn sample_repo() -> Desired {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-repo");
    let files = spec::read_dir(&root).expect("sample-repo is readable");
    spec::load(&files).expect("sample-repo is valid")
}

/// The converged actual state of `desired` (see [`super::converged`]).
pub fn converged_of(desired: &Desired) -> Actual {
    super::converged(desired)
}

/// The instance of `db`/`node` on `host`, to change it.
pub fn instance<'a>(a: &'a mut Actual, db: &str, node: &str, host: &str) -> &'a mut InstanceActual {
    a.instances
        .iter_mut()
        .find(|i| i.database == db && i.node == node && i.host == host)
        .expect("the example has this instance")
}

fn fresh(database: &str, node: &str, host: &str) -> InstanceActual {
    InstanceActual {
        database: database.parse().expect("an example database name"),
        node: node.parse().expect("an example node name"),
        host: host.parse().expect("an example host id"),
        container_exists: false,
        running: false,
        version: None,
        port: 5432,
        role: InstanceRole::Unknown,
        settings: BTreeMap::new(),
        pending_restart: Vec::new(),
        database_exists: false,
        owner: None,
        roles: vec![RoleActual {
            name: SUPERUSER.into(),
            attributes: ROLE_FLAGS.iter().map(|f| f.to_string()).collect(),
            member_of: Vec::new(),
        }],
        extensions: vec![ExtActual {
            name: "plpgsql".into(),
            version: "1.0".into(),
        }],
        available_extensions: IMAGE_EXTENSIONS
            .iter()
            .chain(crate::spec::extensions::CONTRIB)
            .map(|e| e.to_string())
            .collect(),
        available_versions: BTreeMap::new(),
        data_dir_exists: false,
        data_major: None,
        image_major: None,
        slots: Vec::new(),
        replicas: Vec::new(),
        publications: Vec::new(),
        subscriptions: Vec::new(),
        unaligned_sequences: Vec::new(),
        autoddl: false,
        ddl_rows: None,
        ddl_failures: Vec::new(),
        auth: None,
        wal: None,
        standby_signal: false,
        tables: 0,
        post_init_ran: false,
        backup: Default::default(),
    }
}

/// Carries out a plan's steps on `actual` the way the agents would, and
/// returns the state they would report afterwards.
pub fn simulate(plan: &Plan, actual: &Actual) -> Actual {
    let mut a = actual.clone();
    for s in &plan.steps {
        if let Action::RecordPrimary { host, term, why } = &s.action {
            a.primaries
                .retain(|r| !(r.database == s.database && r.node == s.node));
            a.primaries.push(crate::state::primary::PrimaryRecord {
                database: s.database.clone(),
                node: s.node.clone(),
                host: host.clone(),
                term: *term,
                since: "2026-12-01T00:00:00Z".into(),
                reason: why.clone(),
            });
            continue;
        }
        let pos = a
            .instances
            .iter()
            .position(|i| i.database == s.database && i.node == s.node && i.host == s.host);
        let pos = pos.unwrap_or_else(|| {
            a.instances.push(fresh(&s.database, &s.node, &s.host));
            a.instances.len() - 1
        });
        let i = &mut a.instances[pos];
        match &s.action {
            Action::CreateInstance {
                version,
                port,
                settings,
                reuse_data,
                mounts,
                hba,
                ident,
                ..
            } => {
                if !reuse_data {
                    let keep = i.available_extensions.clone();
                    *i = fresh(&s.database, &s.node, &s.host);
                    i.available_extensions = keep;
                }
                if !hba.is_empty() {
                    // The images of the examples have TLS.
                    i.auth = Some(crate::state::actual::AuthActual {
                        tls: true,
                        hba: hba.clone(),
                        ident: ident.clone(),
                    });
                }
                i.backup.mounts.clone_from(mounts);
                i.container_exists = true;
                i.data_dir_exists = true;
                i.image_major = Some(version.major);
                if !reuse_data || i.data_major.is_none() {
                    i.data_major = Some(version.major);
                }
                i.port = *port;
                if !reuse_data {
                    // Written after initdb only: data kept keeps its own.
                    i.settings = settings.clone();
                }
                i.version = Some(format!("{}.{}", version.major, version.minor.unwrap_or(6)));
            }
            Action::CreateStandby {
                version,
                port,
                mounts,
                ..
            } => {
                i.backup.mounts.clone_from(mounts);
                i.container_exists = true;
                i.data_dir_exists = true;
                i.data_major = Some(version.major);
                i.image_major = Some(version.major);
                i.port = *port;
                i.version = Some(format!("{}.{}", version.major, version.minor.unwrap_or(6)));
                i.role = InstanceRole::Standby; // once it runs
                i.standby_signal = true;
            }
            Action::RecordPrimary { .. } => {}
            Action::PromoteStandby { .. } => {
                i.role = InstanceRole::Primary;
                i.standby_signal = false;
            }
            Action::RepointStandby {
                primary_address, ..
            } => {
                i.wal.get_or_insert_with(Default::default).upstream = Some(primary_address.clone());
            }
            Action::RejoinAsStandby {
                primary_address, ..
            } => {
                i.running = true;
                i.role = InstanceRole::Standby;
                i.standby_signal = true;
                i.wal.get_or_insert_with(Default::default).upstream = Some(primary_address.clone());
            }
            Action::StopForSwitchover { .. } => {
                i.running = false;
                i.role = InstanceRole::Unknown;
            }
            Action::EnsureReplication { slot } => {
                if !i.roles.iter().any(|r| r.name == REPLICATION_ROLE) {
                    i.roles.push(RoleActual {
                        name: REPLICATION_ROLE.into(),
                        attributes: vec!["INHERIT".into(), "LOGIN".into(), "REPLICATION".into()],
                        member_of: Vec::new(),
                    });
                }
                if !i.slots.contains(slot) {
                    i.slots.push(slot.clone());
                }
            }
            Action::DropSlot { slot } => i.slots.retain(|s| s != slot),
            Action::DropSubscription { name } => i.subscriptions.retain(|s| &s.name != name),
            Action::AlignSequences { .. } => i.unaligned_sequences.clear(),
            Action::InstallAutoDdl { .. } => i.autoddl = true,
            Action::EnableSubscription { name } => {
                for s in i.subscriptions.iter_mut().filter(|s| &s.name == name) {
                    s.enabled = true;
                    s.running = true;
                }
            }
            Action::JoinMesh { source, others, .. } => {
                i.publications = vec![crate::state::names::publication_name().to_string()];
                for p in std::iter::once(source).chain(others) {
                    i.subscriptions
                        .push(crate::state::actual::SubscriptionActual {
                            name: crate::state::names::subscription_name(&p.node, &s.node),
                            enabled: true,
                            running: true,
                            ..Default::default()
                        });
                }
            }
            Action::RefreshSubscription { name } => {
                for s in i.subscriptions.iter_mut().filter(|s| &s.name == name) {
                    s.stale = false;
                }
            }
            Action::CreatePublication { name } => i.publications.push(name.clone()),
            Action::CreateSubscription { name, .. } => {
                i.subscriptions
                    .push(crate::state::actual::SubscriptionActual {
                        name: name.clone(),
                        enabled: true,
                        running: true,
                        ..Default::default()
                    })
            }
            Action::StartInstance => {
                i.running = true;
                if i.role != InstanceRole::Standby {
                    i.role = InstanceRole::Primary;
                }
            }
            Action::StopInstance => {
                i.running = false;
                i.role = InstanceRole::Unknown;
            }
            Action::RestartInstance { .. } => i.pending_restart.clear(),
            Action::ConfigureBackup {
                conf,
                conf_digest,
                primary,
            } => {
                i.backup.system_identifier = Some("7000000000000000001".into());
                i.backup.conf = Some(crate::state::BackupConfActual {
                    stanza: conf.stanza.clone(),
                    digest: conf_digest.clone(),
                    system_identifier: i.backup.system_identifier.clone(),
                    checked: *primary,
                    ..Default::default()
                });
            }
            Action::RunBackup { .. }
            | Action::RestoreInstance { .. }
            | Action::RehearseRestore(_) => {}
            Action::UpgradeMajor {
                check_only: true, ..
            } => {}
            Action::UpgradeMajor { version, .. } => {
                i.data_major = Some(version.major);
                i.image_major = Some(version.major);
                i.version = Some(format!("{}.{}", version.major, version.minor.unwrap_or(6)));
                i.running = true;
            }
            Action::RemoveInstance { keep_data } => {
                i.container_exists = false;
                i.backup.mounts.clear();
                i.running = false;
                i.data_dir_exists = *keep_data;
                if !keep_data {
                    a.instances.remove(pos);
                }
            }
            Action::CreateDatabase { owner, .. } => {
                i.database_exists = true;
                i.owner = Some(owner.clone());
            }
            Action::RunPostInit { .. } => i.post_init_ran = true,
            Action::DropRole { name, .. } => i.roles.retain(|r| &r.name != name),
            Action::DropExtension { name, .. } => i.extensions.retain(|e| &e.name != name),
            Action::AlterDatabaseOwner { to, .. } => i.owner = Some(to.clone()),
            Action::CreateRole {
                name, attributes, ..
            } => i.roles.push(RoleActual {
                name: name.clone(),
                attributes: attributes.clone(),
                member_of: Vec::new(),
            }),
            Action::AlterRole { name, to, .. } => {
                let r = i
                    .roles
                    .iter_mut()
                    .find(|r| &r.name == name)
                    .expect("role exists");
                for clause in to {
                    match clause.strip_prefix("NO").filter(|f| ROLE_FLAGS.contains(f)) {
                        Some(flag) => r.attributes.retain(|a| a != flag),
                        None => r.attributes.push(clause.clone()),
                    }
                }
            }
            Action::GrantRole { role, member } => {
                let r = i
                    .roles
                    .iter_mut()
                    .find(|r| &r.name == member)
                    .expect("member exists");
                r.member_of.push(role.clone());
            }
            Action::CreateExtension { name, version } => i.extensions.push(ExtActual {
                name: name.clone(),
                version: version.clone().unwrap_or_else(|| "1.0".into()),
            }),
            Action::UpdateExtension { name, to, .. } => {
                if let Some(e) = i.extensions.iter_mut().find(|e| &e.name == name) {
                    e.version = to.clone();
                }
            }
            Action::WriteAuthFiles { hba, ident } => {
                let tls = i.auth.as_ref().is_none_or(|a| a.tls);
                i.auth = Some(crate::state::actual::AuthActual {
                    tls,
                    hba: hba.clone(),
                    ident: ident.clone(),
                });
            }
            Action::SetSettings { changes, .. } => {
                for c in changes {
                    if c.name == "port" {
                        i.port = c.new.parse().expect("a port");
                    } else {
                        i.settings.insert(c.name.clone(), c.new.clone());
                    }
                    if c.needs_restart {
                        i.pending_restart.push(c.name.clone());
                    }
                }
            }
        }
    }
    a
}
