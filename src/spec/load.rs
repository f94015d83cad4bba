//! From file texts to a desired state: parse, decode, check each file, then
//! check what spans files (ports shared on a host, operations' references).

use super::backup::BackupConfig;
use super::config::ClusterConfig;
use super::database::{Database, DatabaseState};
use super::decode::{decode, Ctx, Decode};
use super::diag::{Diagnostic, FieldPath, SpanMap};
use super::images::ImageCatalog;
use super::operation::{Action, Operation};
use super::rules;
use super::values::PgVersion;
use super::yaml;
use super::{defaults, Desired, SourceFile};
use std::collections::HashMap;

/// Reads back one item of a stored desired state (JSON as `Serialize` wrote
/// it, validated and defaulted when its revision was recorded): decoded
/// again, so every value is typed and checked, and defaulted again (a no-op
/// on a defaulted item). The checks that span files ran at recording.
pub fn stored<T: Decode + Default0 + Stored>(
    path: &str,
    json: &serde_json::Value,
) -> Result<T, String> {
    let file = SourceFile {
        path: path.to_string(),
        text: serde_json::to_string(json).map_err(|e| e.to_string())?,
    };
    let mut diags = Vec::new();
    match read_one::<T>(&file, false, None, &mut diags) {
        Some((mut v, _)) if diags.is_empty() => {
            v.defaults();
            Ok(v)
        }
        _ => Err(diags
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// The kinds a stored desired state holds, with their defaults.
pub trait Stored {
    /// Applies the defaults of the kind.
    fn defaults(&mut self);
}
impl Stored for ClusterConfig {
    fn defaults(&mut self) {
        defaults::config(self);
    }
}
impl Stored for Database {
    fn defaults(&mut self) {
        defaults::database(self);
    }
}
impl Stored for Operation {
    fn defaults(&mut self) {
        defaults::operation(self);
    }
}

/// Validates a revision's files and returns the defaulted desired state, or
/// every error found (sorted by file, line and column).
pub fn load(files: &[SourceFile]) -> Result<Desired, Vec<Diagnostic>> {
    load_checked(files, &ImageCatalog::default())
}

/// Like [`load`], and every declared extension must be in the image of its
/// database's PostgreSQL major, and every `postgresql_conf` setting one that
/// image's server takes, when `images` has that image's manifest and
/// `pgcd.yaml` does not name another image for the major.
pub fn load_checked(
    files: &[SourceFile],
    images: &ImageCatalog,
) -> Result<Desired, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut config: Option<ClusterConfig> = None;
    let mut databases: Vec<(Database, SpanMap)> = Vec::new();
    let mut operations: Vec<(Operation, SpanMap)> = Vec::new();
    let mut config_spans = SpanMap::new("pgcd.yaml");

    let is_config = |f: &SourceFile| f.path == "pgcd.yaml" || f.path == "pgcd.yml";
    // pgcd.yaml first: its `postgres_version` is the default of every database.
    for file in files.iter().filter(|f| is_config(f)) {
        if let Some((c, spans)) = read_one::<ClusterConfig>(file, true, None, &mut diags) {
            config_spans = spans;
            config = Some(c);
        }
    }
    let default_version = config.as_ref().and_then(|c| c.postgres_version);
    for file in files.iter().filter(|f| !is_config(f)) {
        let stem = file
            .path
            .rsplit('/')
            .next()
            .unwrap_or(&file.path)
            .trim_end_matches(".yaml")
            .trim_end_matches(".yml");
        if file.path.starts_with("databases/") {
            if let Some((db, spans)) =
                read_one::<Database>(file, false, default_version, &mut diags)
            {
                diags.extend(rules::check_database(&db, stem, &spans));
                databases.push((db, spans));
            }
        } else if file.path.starts_with("operations/") {
            if let Some((op, spans)) = read_one::<Operation>(file, false, None, &mut diags) {
                if op.id.as_str() != stem {
                    diags.push(spans.error(
                        "id",
                        format!("id \"{}\" differs from the file name; ids equal the file name (operations/{}.yaml)", op.id, op.id),
                    ));
                }
                operations.push((op, spans));
            }
        }
    }
    let config = config.unwrap_or_default();
    check_config(&config, &config_spans, &mut diags);
    for (db, spans) in &databases {
        check_images(db, spans, &config, images, &mut diags);
        super::conf::check(db, spans, &config, images, &mut diags);
    }
    super::ports::check(&databases, &mut diags);
    check_duplicate_names(&databases, &mut diags);
    for (op, spans) in &operations {
        check_operation(op, spans, &databases, &mut diags);
    }

    if !diags.is_empty() {
        diags.sort();
        diags.dedup();
        return Err(diags);
    }
    let mut desired = Desired {
        config,
        databases: databases.into_iter().map(|(d, _)| d).collect(),
        operations: operations.into_iter().map(|(o, _)| o).collect(),
    };
    defaults::config(&mut desired.config);
    desired.databases.iter_mut().for_each(defaults::database);
    desired.operations.iter_mut().for_each(defaults::operation);
    desired
        .databases
        .sort_by(|a, b| a.database_name.cmp(&b.database_name));
    desired.operations.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(desired)
}

/// Each `postgres_version` must be built (when the catalog knows builds of
/// its major and `pgcd.yaml` names no image for it), and each extension
/// must be in the image of every version the database's nodes run.
fn check_images(
    db: &Database,
    spans: &SpanMap,
    config: &ClusterConfig,
    images: &ImageCatalog,
    diags: &mut Vec<Diagnostic>,
) {
    let mut versions: Vec<(String, PgVersion)> =
        vec![("postgres_version".into(), db.postgres_version)];
    for (i, n) in db.nodes.iter().enumerate() {
        if let Some(v) = n.postgres_version {
            versions.push((format!("nodes[{i}].postgres_version"), v));
        }
    }
    let mut checked: Vec<PgVersion> = Vec::new();
    for (field, v) in versions {
        if config.pins_image(v) {
            continue; // another image: its contents are not known here
        }
        let Some(m) = images.resolve(v) else {
            let built = images.minors_of(v.major);
            if !built.is_empty() {
                let list: Vec<String> = built.iter().map(ToString::to_string).collect();
                diags.push(spans.error(
                    &field,
                    format!(
                        "PostgreSQL {v} is not built here (built: {}); choose a built one (`pgcd images` lists them), build it (scripts/build-images.sh builds 17.10 besides each major's newest), or name an image for \"{v}\" under images: in pgcd.yaml",
                        list.join(", ")
                    ),
                ));
            }
            continue;
        };
        if checked.contains(&v) {
            continue;
        }
        checked.push(v);
        for (i, ext) in db.extensions.iter().enumerate() {
            if ext.present() && !m.extensions.contains(&ext.name) {
                diags.push(spans.error(
                    &format!("extensions[{i}]"),
                    format!(
                        "extension \"{}\" is not in the PostgreSQL {} image ({}, {} extensions); remove it, or name an image that has it under images: in pgcd.yaml",
                        ext.name,
                        m.version,
                        config.image_for(v),
                        m.extensions.len()
                    ),
                ));
            }
        }
    }
}

fn read_one<T: Decode + Default0>(
    file: &SourceFile,
    empty_ok: bool,
    default_version: Option<PgVersion>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(T, SpanMap)> {
    let node = match yaml::parse(&file.text) {
        Ok(Some(node)) => node,
        Ok(None) if empty_ok => return T::empty().map(|t| (t, SpanMap::new(&file.path))),
        Ok(None) => {
            diags.push(Diagnostic {
                file: file.path.clone(),
                line: 1,
                column: 1,
                field: String::new(),
                message: "the file is empty".into(),
            });
            return None;
        }
        Err(e) => {
            diags.push(Diagnostic {
                file: file.path.clone(),
                line: e.pos.line,
                column: e.pos.column,
                field: String::new(),
                message: format!("YAML syntax error: {}", e.message),
            });
            return None;
        }
    };
    let mut cx = Ctx::new(&file.path);
    cx.postgres_version = default_version;
    let value = decode::<T>(&node, &FieldPath::root(), &mut cx);
    diags.append(&mut cx.diags);
    // A file with errors in optional fields still decodes (without them), so
    // its other rules are checked too and the person sees everything at once.
    value.map(|v| (v, cx.spans))
}

/// What an empty file of a kind means (`pgcd.yaml` may be empty).
pub trait Default0: Sized {
    /// The value of an empty file, when one is allowed.
    fn empty() -> Option<Self> {
        None
    }
}
impl Default0 for ClusterConfig {
    fn empty() -> Option<Self> {
        Some(Self::default())
    }
}
impl Default0 for Database {}
impl Default0 for Operation {}

fn check_config(c: &ClusterConfig, spans: &SpanMap, diags: &mut Vec<Diagnostic>) {
    for key in c.images.keys() {
        if PgVersion::parse(key).is_err() {
            diags.push(spans.error(
                &format!("images.{key}"),
                format!("\"{key}\" is not a supported PostgreSQL major (16, 17, 18) or exact version (\"17.10\")"),
            ));
        }
    }
    for (i, r) in c.source.plan_refs.iter().enumerate() {
        if !r.starts_with("refs/") {
            diags.push(spans.error(
                &format!("source.plan_refs[{i}]"),
                format!("\"{r}\" is not a ref pattern (e.g. refs/heads/*, refs/pull/*/head)"),
            ));
        }
    }
    if c.source.require_signed_commits == Some(true) && c.source.allowed_signers.is_empty() {
        diags.push(spans.error(
            "source.require_signed_commits",
            "requires at least one entry in source.allowed_signers",
        ));
    }
    super::reporters::check(&c.reporters, spans, diags);
}

fn check_duplicate_names(dbs: &[(Database, SpanMap)], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (db, spans) in dbs {
        if let Some(first) = seen.insert(db.database_name.as_str(), spans.file()) {
            diags.push(spans.error(
                "database_name",
                format!(
                    "database \"{}\" is already defined in {first}",
                    db.database_name
                ),
            ));
        }
    }
}

fn repositories(db: &Database, node: Option<&str>) -> Vec<String> {
    let from = |b: &BackupConfig| {
        b.repositories
            .iter()
            .map(|r| r.id.as_str().to_string())
            .collect::<Vec<_>>()
    };
    let node_cfg = node
        .and_then(|n| db.nodes.iter().find(|x| x.name.as_str() == n))
        .and_then(|n| n.backup_config.as_ref());
    node_cfg
        .or(db.backup_config.as_ref())
        .map(from)
        .unwrap_or_default()
}

fn check_operation(
    op: &Operation,
    spans: &SpanMap,
    dbs: &[(Database, SpanMap)],
    diags: &mut Vec<Diagnostic>,
) {
    let mut err = |path: &str, msg: String| diags.push(spans.error(path, msg));
    let Some(db_name) = op.action.database() else {
        return;
    };
    let Some(db) = dbs
        .iter()
        .map(|(d, _)| d)
        .find(|d| d.database_name == db_name)
    else {
        let names: Vec<&str> = dbs.iter().map(|(d, _)| d.database_name.as_str()).collect();
        err(
            "database",
            format!(
                "no database \"{db_name}\" (databases: {})",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        );
        return;
    };
    if db.state == Some(DatabaseState::Absent) {
        err(
            "database",
            format!("database \"{db_name}\" is being deleted (state: absent)"),
        );
    }
    let node_names = || {
        db.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find_node = |name: &str| db.nodes.iter().find(|n| n.name.as_str() == name);
    let check_node = |path: &str, name: &str, err: &mut dyn FnMut(&str, String)| {
        if find_node(name).is_none() {
            err(
                path,
                format!(
                    "no node \"{name}\" in database {db_name} (nodes: {})",
                    node_names()
                ),
            );
        }
    };
    match &op.action {
        Action::Switchover {
            node, candidate, ..
        }
        | Action::Failover {
            node, candidate, ..
        } => {
            check_node("node", node.as_str(), &mut err);
            if let Some(n) = find_node(node.as_str()) {
                if n.host_ids.len() < 2 {
                    err(
                        "node",
                        format!(
                            "node {node} has no standby to promote (host_ids: {})",
                            n.host_ids
                                .iter()
                                .map(|h| h.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                if let Some(c) = candidate {
                    if !n.host_ids.contains(c) {
                        err(
                            "candidate",
                            format!(
                                "host \"{c}\" has no instance of node {node} (hosts: {})",
                                n.host_ids
                                    .iter()
                                    .map(|h| h.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
            }
        }
        Action::Backup {
            node, repository, ..
        } => {
            check_node("node", node.as_str(), &mut err);
            let repos = repositories(db, Some(node.as_str()));
            if repos.is_empty() {
                err(
                    "database",
                    format!("database {db_name} has no backup_config for node {node}"),
                );
            } else if let Some(r) = repository {
                if !repos.iter().any(|x| x == r.as_str()) {
                    err(
                        "repository",
                        format!("no repository \"{r}\" (repositories: {})", repos.join(", ")),
                    );
                }
            }
        }
        Action::Restore {
            target_nodes,
            repository,
            restore_options,
            ..
        } => {
            if target_nodes.is_empty() {
                err("target_nodes", "name at least one node".into());
            }
            for (i, n) in target_nodes.iter().enumerate() {
                check_node(&format!("target_nodes[{i}]"), n.as_str(), &mut err);
            }
            let repos = repositories(db, target_nodes.first().map(|n| n.as_str()));
            if repos.is_empty() {
                err(
                    "database",
                    format!("database {db_name} has no backup_config to restore from"),
                );
            } else if let Some(r) = repository {
                if !repos.iter().any(|x| x == r.as_str()) {
                    err(
                        "repository",
                        format!("no repository \"{r}\" (repositories: {})", repos.join(", ")),
                    );
                }
            }
            if let Some(o) = restore_options {
                rules::check_restore_options(o, "restore_options", &mut err);
            }
        }
        Action::Restart { node, host, .. }
        | Action::Stop { node, host, .. }
        | Action::Start { node, host, .. } => {
            if let Some(n) = node {
                check_node("node", n.as_str(), &mut err);
            }
            if let Some(h) = host {
                let in_scope = db
                    .nodes
                    .iter()
                    .filter(|n| node.as_ref().is_none_or(|want| n.name == want))
                    .any(|n| n.host_ids.contains(h));
                if !in_scope {
                    err(
                        "host",
                        format!(
                            "host \"{h}\" has no instance of {}",
                            node.as_ref()
                                .map_or(format!("database {db_name}"), |n| format!("node {n}"))
                        ),
                    );
                }
            }
        }
        Action::Cancel { .. } => {}
    }
}

#[cfg(test)]
mod image_tests {
    use super::*;

    #[test]
    fn an_extension_the_image_lacks_is_an_error_at_its_line() {
        let files = vec![SourceFile {
            path: "databases/shop.yaml".into(),
            text: "database_name: shop\npostgres_version: \"17\"\nnodes:\n  - name: n1\n    host_ids: [h1]\nextensions:\n  - pg_cron\n  - vector\n".into(),
        }];
        let images = ImageCatalog::from_texts([
            r#"{"major":17,"version":"17.12","extensions":["pg_cron","plpgsql"]}"#,
        ]);
        let diags = load_checked(&files, &images).unwrap_err();
        assert_eq!(diags.len(), 1);
        let text = diags[0].to_string();
        assert!(text.starts_with("databases/shop.yaml:8:5: extensions[1]: extension \"vector\" is not in the PostgreSQL 17.12 image"), "{text}");
        // Without a manifest for the major, nothing is checked.
        assert!(load_checked(&files, &ImageCatalog::default()).is_ok());
    }
}
