//! What pgcd's images really contain, from the manifests
//! `scripts/build-images.sh` writes (`<cache>/manifests/<major>.json`):
//! the validator refuses an extension the image of a database's
//! PostgreSQL major lacks, naming the file, line and field, so it fails
//! before any step runs rather than as a failed `CREATE EXTENSION`. Plain
//! data: reading the files is the caller's (see [`ImageCatalog::read_dir`]).

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// One image's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Manifest {
    /// The PostgreSQL major.
    pub major: u16,
    /// The exact version, e.g. `17.12`.
    pub version: String,
    /// The extensions it offers (`*.control` names).
    pub extensions: BTreeSet<String>,
}

/// The manifests known, by major. An empty catalog checks nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    }
}
