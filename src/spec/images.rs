//! What pgcd's images really contain, from the manifests
//! `scripts/build-images.sh` writes (`<cache>/manifests/<major>.json`):
//! the validator refuses an extension the image of a database's
//! PostgreSQL major lacks, naming the file, line and field, so it fails
//! before any step runs rather than as a failed `CREATE EXTENSION`. The
//! manifest also carries the image's settings catalog (every setting's type,
//! unit, range, enum values and context, those of its modules included), so
//! `postgresql_conf` is checked the same way (`super::settings`). Plain
//! data: reading the files is the caller's (see [`ImageCatalog::read_dir`]).

use super::settings::Setting;
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, BTreeSet};

/// One image's manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Manifest {
    /// The PostgreSQL major.
    pub major: u16,
    /// The exact version, e.g. `17.12`.
    pub version: String,
    /// The extensions it offers (`*.control` names).
    pub extensions: BTreeSet<String>,
    /// Every setting the server and its modules define, by name (empty in
    /// manifests written before the catalog was: then nothing is checked).
    #[serde(default, deserialize_with = "by_name")]
    pub settings: BTreeMap<String, Setting>,
    /// Every loadable module (`$libdir/<name>.so`) and the extensions whose
    /// control files name it (`postgis-3` → `postgis`; `auto_explain` → none).
    #[serde(default)]
    pub libraries: BTreeMap<String, Vec<String>>,
    /// Modules that define their settings only from `shared_preload_libraries`
    /// (pg_cron, pgaudit, pg_stat_statements): loading them later does not do.
    #[serde(default)]
    pub preload_only: BTreeSet<String>,
}

fn by_name<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Setting>, D::Error> {
    let list = Vec::<Setting>::deserialize(d)?;
    Ok(list.into_iter().map(|s| (s.name.clone(), s)).collect())
}

impl Manifest {
    /// The setting called `name`; names are case-insensitive (`timezone` is `TimeZone`).
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name).or_else(|| {
            self.settings
                .values()
                .find(|s| s.name.eq_ignore_ascii_case(name))
        })
    }
}

/// The manifests known, by major. An empty catalog checks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageCatalog {
    /// Manifest per major.
    pub images: BTreeMap<u16, Manifest>,
}

impl ImageCatalog {
    /// Builds a catalog from manifest texts; unreadable ones are skipped
    /// with a warning (an unknown image is simply not checked).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut images = BTreeMap::new();
        for t in texts {
            match serde_json::from_str::<Manifest>(t) {
                Ok(m) => {
                    images.insert(m.major, m);
                }
                Err(e) => tracing::warn!(error = %e, "an image manifest is unreadable; skipped"),
            }
        }
        Self { images }
    }

    /// Reads `<dir>/<major>.json` for every file there (none: empty).
    // Three small manifests, read once per revision or CLI run.
    #[allow(clippy::disallowed_methods)]
    pub fn read_dir(dir: &std::path::Path) -> Self {
        let texts: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Self::from_texts(texts.iter().map(String::as_str))
    }

    /// The manifests directory of this machine: `$PGCD_CACHE/manifests`,
    /// `/var/cache/pgcd/manifests` by default.
    pub fn default_dir() -> std::path::PathBuf {
        std::env::var_os("PGCD_CACHE")
            .map_or_else(|| "/var/cache/pgcd".into(), std::path::PathBuf::from)
            .join("manifests")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_bad_ones_are_skipped() {
        let c = ImageCatalog::from_texts([
            r#"{"major":17,"version":"17.12","suite":"trixie","extensions":["vector","pg_cron"]}"#,
            "not json",
        ]);
        assert_eq!(c.images.len(), 1);
        assert!(c.images[&17].extensions.contains("vector"));
        assert!(
            c.images[&17].settings.is_empty(),
            "an older manifest has no catalog"
        );
    }

    #[test]
    fn the_settings_catalog_is_read_by_name() {
        let c = ImageCatalog::from_texts([r#"{"major":17,"version":"17.12","extensions":[],
                "settings":[{"name":"TimeZone","type":"string","context":"user"},
                            {"name":"shared_buffers","type":"integer","unit":"8kB","min":16,"max":1073741823,"context":"postmaster"}],
                "libraries":{"pg_cron":["pg_cron"]}}"#]);
        let m = &c.images[&17];
        assert!(m
            .setting("shared_buffers")
            .is_some_and(|s| s.needs_restart()));
        assert_eq!(
            m.setting("timezone").map(|s| s.name.as_str()),
            Some("TimeZone")
        );
        assert_eq!(m.libraries["pg_cron"], ["pg_cron"]);
    }
}
