//! `scripts` and `state: absent`, for real: agents with the Docker runtime
//! run a database's `post_init` and `post_database_create` exactly once
//! (a new leader, re-plans and a changed script run nothing again; a
//! node added later copies the first node's result instead of running
//! them), a failing script leaves nothing half applied, its error is in
//! the database's status and it is tried once, and again only when the
//! spec changes (not at a later revision, nor under a new leader), and an
//! absent user and extension are dropped
//! while the user's objects survive, owned by the database's owner.
//! Needs the images (scripts/build-images.sh).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(240);
const PORT: u16 = 6571;
const PASSWORD: &str = "owner-secret";

/// The spec of `shop` on these hosts (one node per host), with `users`
/// and `extensions` as YAML list items, and the scripts.
fn shop(hosts: &[&str], users: &str, extensions: &str, work_mem: &str, extra: &str) -> String {
    let mut s = format!("database_name: shop\npostgres_version: \"17\"\nport: {PORT}\nnodes:\n");
    for (k, h) in hosts.iter().enumerate() {
        s.push_str(&format!("  - name: n{}\n    host_ids: [{h}]\n", k + 1));
    }
    s.push_str(&format!(
        r#"database_users:
  - username: shop_owner
    password: {{env: PGCD_TEST_OWNER_PASSWORD}}
    db_owner: true
{users}extensions:
{extensions}postgresql_conf:
  work_mem: {work_mem}
scripts:
  post_init:
    - CREATE TABLE init_runs (at timestamptz DEFAULT now())
    - INSERT INTO init_runs DEFAULT VALUES
  post_database_create:
    - CREATE TABLE seed (id int PRIMARY KEY, what text)
    - INSERT INTO seed VALUES (1, 'made by post_database_create')
{extra}"#
    ));
    s
}

const LEGACY: &str = "  - username: legacy\n    password: {env: PGCD_TEST_OWNER_PASSWORD}\n";
const LEGACY_ABSENT: &str = "  - username: legacy\n    state: absent\n";
const EXTS: &str = "  - vector\n  - pg_trgm\n";

fn commit(work: &Path, file: &str, text: &str, msg: &str) -> String {
    std::fs::write(work.join(file), text).unwrap();
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["rev-parse", "HEAD"])
}

#[test]
fn scripts_run_once_and_absent_users_and_extensions_are_dropped() {
    require_image(17);
    std::env::set_var("PGCD_TEST_OWNER_PASSWORD", PASSWORD);
    let block = 120;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (mut agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[1].api();
    let (h1, h2) = (ids[0].as_str(), ids[1].as_str());
    let file = "databases/shop.yaml";
    let sha = commit(
        &work,
        file,
        &shop(&[h1], LEGACY, EXTS, "8MB", ""),
        "shop with scripts",
    );
    wait_ready(&api, "shop", Some(&sha), WAIT);
    let su = |i: usize, node: usize| {
        std::fs::read_to_string(
            dir.path()
                .join(&ids[i])
                .join(format!("instances/shop-n{node}/superuser.pw")),
        )
        .unwrap()
    };
    let sql = |i: usize, node: usize, db: &str, q: &str| {
        psql(
            &format!("pgcd-shop-n{node}-{}", ids[i]),
            &addr(block, i),
            PORT,
            "postgres",
            &su(i, node),
            db,
            q,
        )
    };
    let counts = |i: usize, node: usize| {
        (
            sql(i, node, "postgres", "SELECT count(*) FROM init_runs"),
            sql(i, node, "shop", "SELECT count(*) FROM seed"),
        )
    };
    let once = (Some("1".to_string()), Some("1".to_string()));
    assert_eq!(counts(0, 1), once);
    // post_init ran before the users: the table is the superuser's, and
    // its record is in pgcd.scripts of `postgres`.
    assert_eq!(
        sql(
            0,
            1,
            "postgres",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'init_runs'"
        )
        .as_deref(),
        Some("postgres")
    );
    assert_eq!(
        sql(
            0,
            1,
            "postgres",
            "SELECT script || ' ' || statements FROM pgcd.scripts"
        )
        .as_deref(),
        Some("post_init 2")
    );
    // post_database_create ran in the new database, and no temporary
    // database is left.
    assert_eq!(
        sql(0, 1, "shop", "SELECT what FROM seed").as_deref(),
        Some("made by post_database_create")
    );
    assert_eq!(
        sql(
            0,
            1,
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgcd_creating_%'"
        )
        .as_deref(),
        Some("0")
    );
    let log = task_log(&api, "s-shop.n1.", "database");
    assert!(
        log.contains("scripts.post_database_create[1]: INSERT INTO seed"),
        "{log}"
    );

    // The leader and the agent of the database's host restart: a new
    // leader term. A re-plan (a changed setting) and changed scripts run
    // nothing again, and the plan says why.
    let term = newest_term(&api).expect("a leader");
    let leader = ids.iter().position(|h| *h == term.0).expect("a host leads");
    agents[0].kill9();
    agents[0].spawn();
    if leader != 0 {
        agents[leader].kill9();
        agents[leader].spawn();
    }
    wait_new_term(&api, &term, WAIT);
    let changed = shop(&[h1], LEGACY, EXTS, "16MB", "")
        .replace("INSERT INTO seed VALUES (1,", "INSERT INTO seed VALUES (2,");
    let sha = commit(&work, file, &changed, "work_mem 16MB, scripts changed");
    let s = wait_ready(&api, "shop", Some(&sha), WAIT);
    assert_eq!(sql(0, 1, "shop", "SHOW work_mem").as_deref(), Some("16MB"));
    assert_eq!(counts(0, 1), once);
    let plan = s["last_plan"]["text"].as_str().unwrap_or_default();
    assert!(plan.contains("a change to them does nothing"), "{plan}");

    // Absent: the user's objects in every database go to the owner and
    // survive; the extension is dropped. One that something depends on
    // is refused without cascade: the column and its data stay.
    sql(
        0,
        1,
        "shop",
        "CREATE TABLE legacy_t (v text); INSERT INTO legacy_t VALUES ('kept'); \
         ALTER TABLE legacy_t OWNER TO legacy; GRANT SELECT ON seed TO legacy; \
         CREATE TABLE embeddings (e vector(3)); INSERT INTO embeddings VALUES ('[1,2,3]')",
    )
    .unwrap();
    sql(
        0,
        1,
        "postgres",
        "CREATE TABLE legacy_notes (n int); ALTER TABLE legacy_notes OWNER TO legacy",
    )
    .unwrap();
    let exts = "  - name: vector\n    state: absent\n  - name: pg_trgm\n    state: absent\n";
    let sha = commit(
        &work,
        file,
        &shop(&[h1], LEGACY_ABSENT, exts, "16MB", ""),
        "legacy, vector and pg_trgm absent",
    );
    let stalled = wait_for("vector's drop refused", WAIT, || {
        status(&api, "shop").filter(|s| {
            s["observed_revision"] == sha.as_str()
                && condition(s, "Stalled")
                && s["conditions"].to_string().contains("depend")
        })
    });
    assert!(
        stalled["conditions"]
            .to_string()
            .contains("extension vector"),
        "{stalled}"
    );
    assert_eq!(
        sql(0, 1, "shop", "SELECT e::text FROM embeddings").as_deref(),
        Some("[1,2,3]")
    );
    wait_for("role legacy gone", WAIT, || {
        let role = sql(
            0,
            1,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'legacy'",
        );
        (role.as_deref() == Some("0")).then_some(())
    });
    assert_eq!(
        sql(0, 1, "shop", "SELECT tableowner || ' ' || (SELECT v FROM legacy_t) FROM pg_tables WHERE tablename = 'legacy_t'").as_deref(),
        Some("shop_owner kept")
    );
    assert_eq!(
        sql(
            0,
            1,
            "postgres",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'legacy_notes'"
        )
        .as_deref(),
        Some("shop_owner")
    );
    // vector kept; the database is Ready again, and nothing ran twice.
    let exts = "  - vector\n  - name: pg_trgm\n    state: absent\n";
    let sha = commit(
        &work,
        file,
        &shop(&[h1], LEGACY_ABSENT, exts, "16MB", ""),
        "vector kept",
    );
    wait_ready(&api, "shop", Some(&sha), WAIT);
    assert_eq!(counts(0, 1), once);
    assert_eq!(
        sql(
            0,
            1,
            "shop",
            "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension"
        )
        .as_deref(),
        Some("plpgsql,vector")
    );

    // A node added later copies n1 (the scripts' row arrives once, and no
    // second one comes back to n1); its own `postgres` gets post_init.
    let sha = commit(
        &work,
        file,
        &shop(&[h1, h2], LEGACY_ABSENT, exts, "16MB", ""),
        "n2 joins",
    );
    wait_ready(&api, "shop", Some(&sha), WAIT);
    wait_for("n2 has the seed row", WAIT, || {
        (sql(1, 2, "shop", "SELECT count(*) FROM seed").as_deref() == Some("1")).then_some(())
    });
    assert_eq!(counts(1, 2), once);
    assert_eq!(counts(0, 1), once);
    assert!(task_log(&api, "s-shop.n2.", "join").contains("copy"));
}

#[test]
fn a_failing_script_is_reported_and_leaves_nothing_half_applied() {
    require_image(17);
    std::env::set_var("PGCD_TEST_OWNER_PASSWORD", PASSWORD);
    let block = 121;
    let dir = tempfile::tempdir().unwrap();
    let h1 = host_id(block, 0);
    let _containers = Containers::new(vec![h1.clone()]);
    let (mut agents, work) = pg_cluster(block, 1, dir.path(), WAIT);
    let api = agents[0].api();
    let file = "databases/shop.yaml";
    let broken = shop(&[&h1], "", "  - vector\n", "8MB", "")
        .replace(
            "    - INSERT INTO seed VALUES (1, 'made by post_database_create')\n",
            "    - INSERT INTO seed VALUES (1, 'made by post_database_create')\n    - SELECT no_such_function()\n",
        );
    let sha = commit(&work, file, &broken, "a script that fails");
    let s = wait_for("shop Stalled on its script", WAIT, || {
        status(&api, "shop")
            .filter(|s| s["observed_revision"] == sha.as_str() && condition(s, "Stalled"))
    });
    let why = s["conditions"].to_string();
    assert!(why.contains("scripts.post_database_create[2]"), "{s}");
    assert!(why.contains("no_such_function"), "{s}");
    // Tried once, and held until the spec changes: a later revision that
    // leaves shop's spec as it is, under a new leader, tries nothing again.
    let held = s["held"]["failure"].as_str().unwrap_or_default();
    assert!(
        held.contains("not tried again until the spec of shop changes"),
        "{s}"
    );
    assert!(why.contains("ScriptFailed"), "{s}");
    let creates = || {
        get_json(&format!("{api}/v1/tasks"))
            .and_then(|t| t.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_owned))
            .filter(|id| id.starts_with("s-shop.n1.") && id.contains("database"))
            .count()
    };
    assert_eq!(creates(), 1, "the failing script ran once");
    let term = newest_term(&api).expect("a leader");
    agents[0].kill9();
    agents[0].spawn();
    wait_new_term(&api, &term, WAIT);
    let later = commit(
        &work,
        "notes.txt",
        "not a spec\n",
        "a revision shop's spec is not in",
    );
    let s = wait_for("shop still Stalled at the later revision", WAIT, || {
        status(&api, "shop")
            .filter(|s| s["observed_revision"] == later.as_str() && condition(s, "Stalled"))
    });
    assert_eq!(s["held"]["failure"].as_str(), Some(held), "{s}");
    assert_eq!(creates(), 1, "nothing tried the script again");
    let su = std::fs::read_to_string(dir.path().join(&h1).join("instances/shop-n1/superuser.pw"))
        .unwrap();
    let c = format!("pgcd-shop-n1-{h1}");
    let a = addr(block, 0);
    let sql = |db: &str, q: &str| psql(&c, &a, PORT, "postgres", &su, db, q);
    // Neither the database nor a temporary one exists: nothing of the
    // scripts is applied anywhere. post_init committed once, before.
    assert_eq!(
        sql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'shop' OR datname LIKE 'pgcd_creating_%'").as_deref(),
        Some("0")
    );
    assert_eq!(
        sql("postgres", "SELECT count(*) FROM init_runs").as_deref(),
        Some("1")
    );
    // Fixed: the database is made with its scripts, once.
    let sha = commit(
        &work,
        file,
        &shop(&[&h1], "", "  - vector\n", "8MB", ""),
        "fixed",
    );
    wait_ready(&api, "shop", Some(&sha), WAIT);
    assert_eq!(
        sql("shop", "SELECT count(*) FROM seed").as_deref(),
        Some("1")
    );
    assert_eq!(
        sql("postgres", "SELECT count(*) FROM init_runs").as_deref(),
        Some("1")
    );
    assert_eq!(
        sql(
            "shop",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"
        )
        .as_deref(),
        Some("shop_owner")
    );
}

#[test]
fn a_database_created_on_two_nodes_runs_its_scripts_on_the_first_and_copies_them() {
    require_image(17);
    std::env::set_var("PGCD_TEST_OWNER_PASSWORD", PASSWORD);
    let block = 122;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..2).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let (agents, work) = pg_cluster(block, 2, dir.path(), WAIT);
    let api = agents[0].api();
    let sha = commit(
        &work,
        "databases/shop.yaml",
        &shop(&[&ids[0], &ids[1]], "", EXTS, "8MB", ""),
        "shop on two nodes with scripts",
    );
    wait_ready(&api, "shop", Some(&sha), WAIT);
    let sql = |i: usize, db: &str, q: &str| {
        let su = std::fs::read_to_string(
            dir.path()
                .join(&ids[i])
                .join(format!("instances/shop-n{}/superuser.pw", i + 1)),
        )
        .unwrap();
        psql(
            &format!("pgcd-shop-n{}-{}", i + 1, ids[i]),
            &addr(block, i),
            PORT,
            "postgres",
            &su,
            db,
            q,
        )
    };
    for i in 0..2 {
        assert_eq!(
            sql(i, "shop", "SELECT count(*) FROM seed").as_deref(),
            Some("1"),
            "n{}",
            i + 1
        );
        assert_eq!(
            sql(i, "postgres", "SELECT count(*) FROM init_runs").as_deref(),
            Some("1"),
            "n{}",
            i + 1
        );
    }
    // n2 copied n1, and the nodes replicate: a row written on n2 reaches n1.
    assert!(task_log(&api, "s-shop.n2.", "join").contains("copy"));
    sql(1, "shop", "INSERT INTO seed VALUES (2, 'written on n2')").unwrap();
    wait_for("n2's row on n1", WAIT, || {
        (sql(0, "shop", "SELECT count(*) FROM seed").as_deref() == Some("2")).then_some(())
    });
}
