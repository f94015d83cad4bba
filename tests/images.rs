//! The images' manifests as `scripts/build-images.sh` wrote them on this
//! machine (`$PGCD_CACHE/manifests`, `/var/cache/pgcd/manifests` by default):
//! each carries the settings catalog read from the image's own server, its
//! modules' settings attributed to them; the image holds the same manifest;
//! the planner's list of restart settings is the catalogs' answer; and the
//! checked-in catalog the validation fixtures use says what the real one says.
//! Set `UPDATE_EXPECT=1` to rewrite `src/plan/restart_settings.txt`.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use pgcd::spec::images::{ImageCatalog, Manifest};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn catalog() -> ImageCatalog {
    let dir = ImageCatalog::default_dir();
    let c = ImageCatalog::read_dir(&dir);
    for major in [16, 17, 18] {
        assert!(
            c.images.get(&major).is_some_and(|m| !m.settings.is_empty()),
            "{}/{major}.json is missing or has no settings catalog: run scripts/build-images.sh (scripts/test.sh does)",
            dir.display()
        );
    }
    c
}

fn manifest(major: u16) -> Manifest {
    catalog().images[&major].clone()
}

#[test]
fn every_manifest_carries_the_servers_settings_catalog() {
    for major in [16, 17, 18] {
        let m = manifest(major);
        let sb = m.setting("shared_buffers").expect("shared_buffers");
        assert_eq!(sb.unit.as_deref(), Some("8kB"), "{major}");
        assert!(sb.needs_restart(), "{major}");
        assert_eq!(sb.min, Some(16.0), "{major}");
        let wm = m.setting("work_mem").expect("work_mem");
        assert_eq!(
            (wm.unit.as_deref(), wm.context.as_str()),
            (Some("kB"), "user")
        );
        let wl = m.setting("wal_level").expect("wal_level");
        assert!(
            wl.values.iter().any(|v| v == "logical"),
            "{major}: {:?}",
            wl.values
        );
        assert_eq!(
            m.setting("statement_timeout")
                .and_then(|s| s.unit.as_deref()),
            Some("ms")
        );
        assert_eq!(
            m.setting("block_size").map(|s| s.context.as_str()),
            Some("internal")
        );
        // pgvector's settings come from loading its module; so does plpgsql's.
        assert_eq!(
            m.setting("hnsw.ef_search")
                .and_then(|s| s.library.as_deref()),
            Some("vector")
        );
        assert_eq!(
            m.setting("plpgsql.variable_conflict")
                .and_then(|s| s.library.as_deref()),
            Some("plpgsql")
        );
        assert!(m
            .libraries
            .get("vector")
            .is_some_and(|e| e.contains(&"vector".to_string())));
    }
    for major in [17, 18] {
        let m = manifest(major);
        // Modules that define settings only preloaded are read preloaded.
        let cron = m.setting("cron.database_name").expect("cron.database_name");
        assert_eq!(cron.library.as_deref(), Some("pg_cron"));
        assert!(cron.needs_restart());
        assert!(m
            .setting("pgaudit.log")
            .is_some_and(|s| s.library.as_deref() == Some("pgaudit")));
        assert!(m.setting("pg_stat_statements.max").is_some());
        assert!(m.setting("auto_explain.log_min_duration").is_some());
        for lib in ["pg_cron", "pgaudit", "pg_stat_statements"] {
            assert!(
                m.preload_only.contains(lib),
                "{major}: {lib} {:?}",
                m.preload_only
            );
        }
        assert!(!m.preload_only.contains("vector"));
        assert!(m.libraries["postgis-3"].contains(&"postgis".to_string()));
    }
}

#[test]
fn each_image_holds_the_manifest_its_cache_has() {
    let image = std::env::var("PGCD_IMAGE").unwrap_or_else(|_| "pgcd/postgres".into());
    let dir = ImageCatalog::default_dir();
    for major in [16, 17, 18] {
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                &format!("{image}:{major}"),
                "cat",
                "/etc/pgcd/manifest.json",
            ])
            .output()
            .expect("docker");
        assert!(
            out.status.success(),
            "{image}:{major}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cached = std::fs::read(dir.join(format!("{major}.json"))).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&cached),
            "{image}:{major} and {}/{major}.json differ: rebuild with scripts/build-images.sh",
            dir.display()
        );
    }
}

#[test]
fn the_planners_restart_settings_are_the_catalogs_postmaster_settings() {
    let c = catalog();
    let names: BTreeSet<&str> = c
        .images
        .values()
        .flat_map(|m| m.settings.values())
        .filter(|s| s.needs_restart())
        .map(|s| s.name.as_str())
        .collect();
    let mut text = String::from(
        "# Settings whose context is `postmaster` (a change needs a restart) in any\n\
         # image pgcd builds (16, 17, 18, their modules included), from the images'\n\
         # settings catalogs. Generated: UPDATE_EXPECT=1 cargo test --test images\n",
    );
    for n in &names {
        text.push_str(n);
        text.push('\n');
    }
    let path = root().join("src/plan/restart_settings.txt");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text,
        "src/plan/restart_settings.txt is stale: UPDATE_EXPECT=1 cargo test --test images"
    );
    for s in [
        "shared_buffers",
        "max_connections",
        "shared_preload_libraries",
        "cron.database_name",
    ] {
        assert!(pgcd::plan::settings::needs_restart(s), "{s}");
    }
    for s in [
        "work_mem",
        "statement_timeout",
        "log_min_duration_statement",
    ] {
        assert!(!pgcd::plan::settings::needs_restart(s), "{s}");
    }
}

/// The fixtures that carry the checked-in catalog give the same errors with
/// this machine's own, so the snapshot says what the images say.
#[test]
fn settings_fixtures_fail_the_same_way_against_the_built_catalog() {
    let validate = |dir: &Path, manifests: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_pgcd"))
            .arg("validate")
            .arg(dir)
            .arg("--manifests")
            .arg(manifests)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let real = ImageCatalog::default_dir();
    catalog();
    let mut checked = 0;
    for e in std::fs::read_dir(root().join("tests/fixtures/invalid")).unwrap() {
        let dir = e.unwrap().path();
        let snapshot = dir.join("manifests");
        // minor-not-built names the versions built, which are this machine's.
        if !snapshot.is_dir() || dir.ends_with("minor-not-built") {
            continue;
        }
        let (code, with_snapshot) = validate(&dir, &snapshot);
        assert_eq!(code, Some(1), "{}", dir.display());
        assert_eq!(
            validate(&dir, &real),
            (Some(1), with_snapshot),
            "{}",
            dir.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} fixtures use the catalog");
}
