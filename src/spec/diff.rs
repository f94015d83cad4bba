//! What a revision changes in the desired state, at the level of the spec:
//! databases added, changed (which fields) and dropped from the repository,
//! and operations that are new. Until the planner compares with the live
//! cluster this is what `pgcd plan` and the `pgcd/plan` status show.
//!
//! The old side is JSON (as recorded in etcd and served by `GET /v1/desired`),
//! so a client can diff without the server's types.

use super::Desired;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The difference between two desired states.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpecDiff {
    /// Databases only in the new state.
    pub added: Vec<String>,
    /// Databases in both, with the top-level fields that differ.
    pub changed: BTreeMap<String, Vec<String>>,
    /// Databases whose file is gone. Nothing is deleted for that: removal
    /// needs `state: absent` with `confirm_delete`.
    pub dropped_from_repo: Vec<String>,
    /// Operations (by id) not in the old state.
    pub new_operations: Vec<String>,
    /// Whether `pgcd.yaml` settings differ.
    pub config_changed: bool,
}

impl SpecDiff {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn by_key<'a>(list: &'a Value, key: &str) -> BTreeMap<String, &'a Value> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| Some((v.get(key)?.as_str()?.to_string(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares a new desired state with the old one's JSON (`None`: nothing yet).
pub fn diff(new: &Desired, old: Option<&Value>) -> SpecDiff {
    let new_json = serde_json::to_value(new).unwrap_or(Value::Null);
    let empty = Value::Null;
    let old = old.unwrap_or(&empty);
    let (new_dbs, old_dbs) = (
        by_key(&new_json["databases"], "database_name"),
        by_key(&old["databases"], "database_name"),
    );
    let mut d = SpecDiff::default();
    for (name, db) in &new_dbs {
        match old_dbs.get(name) {
            None => d.added.push(name.clone()),
            Some(prev) if prev != db => {
                let fields = |v: &Value| v.as_object().cloned().unwrap_or_default();
                let (a, b) = (fields(db), fields(prev));
                let mut keys: Vec<String> = a
                    .keys()
                    .chain(b.keys())
                    .filter(|k| a.get(*k) != b.get(*k))
                    .cloned()
                    .collect();
                keys.sort();
                keys.dedup();
                d.changed.insert(name.clone(), keys);
            }
            Some(_) => {}
        }
    }
    d.dropped_from_repo = old_dbs
        .keys()
        .filter(|k| !new_dbs.contains_key(*k))
        .cloned()
        .collect();
    let old_ops = by_key(&old["operations"], "id");
    d.new_operations = by_key(&new_json["operations"], "id")
        .into_keys()
        .filter(|k| !old_ops.contains_key(k))
        .collect();
    d.config_changed = !old.is_null() && new_json["config"] != old["config"];
    d
}

impl fmt::Display for SpecDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("add {}", self.added.join(", ")));
        }
        if !self.changed.is_empty() {
            let c: Vec<String> = self
                .changed
                .iter()
                .map(|(db, fields)| format!("{db} ({})", fields.join(", ")))
                .collect();
            parts.push(format!("change {}", c.join(", ")));
        }
        if !self.dropped_from_repo.is_empty() {
            parts.push(format!(
                "file removed, database kept: {}",
                self.dropped_from_repo.join(", ")
            ));
        }
        if !self.new_operations.is_empty() {
            parts.push(format!("run {}", self.new_operations.join(", ")));
        }
        if self.config_changed {
            parts.push("pgcd.yaml settings".into());
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{load, SourceFile};

    fn desired(files: &[(&str, &str)]) -> Desired {
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(p, t)| SourceFile {
                path: p.to_string(),
                text: t.to_string(),
            })
            .collect();
        load(&files).unwrap()
    }

    const APP: &str =
        "database_name: app\npostgres_version: \"17\"\nnodes:\n  - name: n1\n    host_ids: [h1]\n";

    #[test]
    fn added_changed_dropped_and_new_operations() {
        let old = desired(&[("databases/app.yaml", APP)]);
        let old_json = serde_json::to_value(&old).unwrap();
        assert!(diff(&old, Some(&old_json)).is_empty());
        assert_eq!(diff(&old, Some(&old_json)).to_string(), "no change");

        let changed = APP.replace("\"17\"", "\"18\"");
        let shop = "database_name: shop\npostgres_version: \"16\"\nnodes:\n  - name: n1\n    host_ids: [h2]\n";
        let op = "id: b1\nkind: Restart\ndatabase: app\n";
        let new = desired(&[
            ("databases/app.yaml", &changed),
            ("databases/shop.yaml", shop),
            ("operations/b1.yaml", op),
        ]);
        let d = diff(&new, Some(&old_json));
        assert_eq!(d.added, ["shop"]);
        assert_eq!(d.changed["app"], ["nodes", "postgres_version"]);
        assert_eq!(d.new_operations, ["b1"]);
        assert_eq!(
            d.to_string(),
            "add shop; change app (nodes, postgres_version); run b1"
        );

        let gone = desired(&[("databases/shop.yaml", shop)]);
        let d = diff(&gone, Some(&serde_json::to_value(&new).unwrap()));
        assert_eq!(d.dropped_from_repo, ["app"]);
    }
}
