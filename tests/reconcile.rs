//! A commit becomes running PostgreSQL, for real: agents with the Docker
//! runtime reconcile a Git repository into containers of pgcd's images, and
//! the tests connect to them. Needs the images (scripts/build-images.sh).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

mod common;

use common::gitrepo::git;
use common::pg::*;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const READY: Duration = Duration::from_secs(120);

fn repo(dir: &Path) -> PathBuf {
    let work = dir.join("repo");
    std::fs::create_dir_all(work.join("databases")).unwrap();
    git(dir, &["init", "-q", "-b", "main", work.to_str().unwrap()]);
    work
}

/// Writes (or with `None` removes) a file and commits; returns the sha.
fn commit(repo: &Path, files: &[(&str, Option<&str>)], msg: &str) -> String {
    for (path, text) in files {
        let p = repo.join(path);
        match text {
            Some(t) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, t).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "--allow-empty", "-m", msg]);
    git(repo, &["rev-parse", "HEAD"])
}

fn shop(host: &str, work_mem: &str, shared_buffers: &str) -> String {
    format!(
        r#"database_name: shop
postgres_version: "17"
port: 6543
nodes:
  - name: n1
    host_ids: [{host}]
database_users:
  - username: app
    password: {{env: PGCD_TEST_APP_PASSWORD}}
    db_owner: true
    attributes: [LOGIN]
extensions:
  - vector
postgresql_conf:
  work_mem: {work_mem}
  shared_buffers: {shared_buffers}
"#
    )
}

fn plain(name: &str, version: &str, port: u16, host: &str) -> String {
    format!(
        "database_name: {name}\npostgres_version: \"{version}\"\nport: {port}\nnodes:\n  - name: n1\n    host_ids: [{host}]\n"
    )
}

/// The first agent of a block, following the repository at `work`.
fn first_agent(block: u8, dir: &Path, work: &Path) -> AgentGuard {
    pg_agent(
        block,
        0,
        dir,
        vec!["--init".into(), "--repo".into(), work.display().to_string()],
    )
    .guarded()
}

const PASSWORD: &str = "app-secret-'quoted";

#[test]
fn a_commit_becomes_running_postgresql_and_drift_is_put_back() {
    require_image(17);
    std::env::set_var("PGCD_TEST_APP_PASSWORD", PASSWORD);
    let block = 60;
    let dir = tempfile::tempdir().unwrap();
    let h1 = host_id(block, 0);
    let _containers = Containers::new(vec![h1.clone()]);
    let work = repo(dir.path());
    let first = commit(
        &work,
        &[
            ("databases/shop.yaml", Some(&shop(&h1, "16MB", "128MB"))),
            (
                "databases/books.yaml",
                Some(&plain("books", "17", 6544, &h1)),
            ),
        ],
        "shop and books",
    );
    let agent = first_agent(block, dir.path(), &work);
    let api = agent.api();
    let a = agent.addr.clone();
    let c = format!("pgcd-shop-n1-{h1}");

    // Both databases run on one host, each on its own port.
    let s = wait_ready(&api, "shop", Some(&first), READY);
    wait_ready(&api, "books", Some(&first), READY);
    assert_eq!(s["instances"][0]["endpoint"], format!("{a}:6543"));
    assert_eq!(s["instances"][0]["role"], "primary");
    assert!(s["instances"][0]["version"]
        .as_str()
        .unwrap()
        .starts_with("17."));
    // The user connects with its password, owns the database, and sees the extension and setting.
    let q = |sql: &str| psql(&c, &a, 6543, "app", PASSWORD, "shop", sql);
    assert_eq!(
        q("SELECT extname FROM pg_extension WHERE extname = 'vector'").as_deref(),
        Some("vector")
    );
    assert_eq!(q("SHOW work_mem").as_deref(), Some("16MB"));
    assert_eq!(
        q("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'").as_deref(),
        Some("app")
    );
    assert!(psql(&c, &a, 6543, "app", "wrong", "shop", "SELECT 1").is_none());
    assert_eq!(
        psql(
            &format!("pgcd-books-n1-{h1}"),
            &a,
            6544,
            "postgres",
            &std::fs::read_to_string(agent.data_dir.join("instances/books-n1/superuser.pw"))
                .unwrap(),
            "books",
            "SELECT current_database()"
        )
        .as_deref(),
        Some("books")
    );
    // The task log shows the SQL with the password masked.
    let tasks = get_json(&format!("{api}/v1/tasks")).unwrap();
    let role_task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["id"].as_str().unwrap().starts_with("s-shop.n1.")
                && t["id"].as_str().unwrap().contains("role.app")
        })
        .expect("a task created role app");
    let log = get_text(&format!(
        "{api}/v1/tasks/{}/log",
        role_task["id"].as_str().unwrap()
    ))
    .unwrap();
    assert!(
        log.contains(r#"CREATE ROLE "app" WITH INHERIT LOGIN PASSWORD '********'"#),
        "{log}"
    );
    assert!(!log.contains("app-secret"), "{log}");

    // The commit gets its pgcd/apply status once both databases are Ready
    // (a Git note in the leader's mirror: this origin is not bare, so not pushed).
    let mirror = agent.data_dir.join("source");
    wait_for("pgcd/apply success note", READY, || {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&mirror)
            .args(["notes", "--ref", "pgcd", "show", &first])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["pgcd/apply"]["state"] == "success").then_some(())
    });
    // `pgcd plan --api` plans an uncommitted edit against the live cluster.
    let plan = |dir: &Path| {
        pgcd_client()
            .args(["plan", "--api", &api])
            .arg(dir)
            .env("PGCD_MANIFESTS", "/nonexistent")
            .output()
            .unwrap()
    };
    let out = plan(&work);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No changes."));
    std::fs::write(work.join("databases/shop.yaml"), shop(&h1, "48MB", "128MB")).unwrap();
    let out = plan(&work);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("work_mem") && text.contains("48MB"), "{text}");
    assert!(!text.contains("create instance"), "{text}");

    // A reload setting is applied without a restart.
    let started = inspect(&c, "{{.State.StartedAt}}").unwrap();
    let second = commit(
        &work,
        &[("databases/shop.yaml", Some(&shop(&h1, "32MB", "128MB")))],
        "work_mem 32MB",
    );
    let s = wait_ready(&api, "shop", Some(&second), READY);
    assert_eq!(q("SHOW work_mem").as_deref(), Some("32MB"));
    assert_eq!(
        inspect(&c, "{{.State.StartedAt}}").unwrap(),
        started,
        "a reload setting must not restart"
    );
    assert!(!s["last_plan"]["text"]
        .as_str()
        .unwrap()
        .contains("! restart"));

    // shared_buffers needs a restart: one restart, shown in the plan.
    let third = commit(
        &work,
        &[("databases/shop.yaml", Some(&shop(&h1, "32MB", "256MB")))],
        "shared_buffers 256MB",
    );
    let s = wait_ready(&api, "shop", Some(&third), READY);
    assert_eq!(q("SHOW shared_buffers").as_deref(), Some("256MB"));
    let plan = s["last_plan"]["text"].as_str().unwrap();
    assert_eq!(plan.matches("! restart").count(), 1, "{plan}");
    assert!(plan.contains("shared_buffers"), "{plan}");
    assert_ne!(inspect(&c, "{{.State.StartedAt}}").unwrap(), started);

    // Drift: a role dropped by hand and a container stopped by hand are put back.
    let before = s["drift_corrections"].as_u64().unwrap();
    let su =
        std::fs::read_to_string(agent.data_dir.join("instances/shop-n1/superuser.pw")).unwrap();
    let admin = |sql: &str| psql(&c, &a, 6543, "postgres", &su, "postgres", sql);
    // One transaction: the leader's drift correction (the owner put back)
    // cannot come between the two.
    admin("ALTER DATABASE shop OWNER TO postgres; DROP ROLE app").unwrap();
    wait_for("role app put back", READY, || {
        q("SELECT current_user").filter(|u| u == "app")
    });
    docker(&["stop", &c]);
    wait_for("container started again", READY, || {
        (inspect(&c, "{{.State.Running}}").as_deref() == Some("true") && q("SELECT 1").is_some())
            .then_some(())
    });
    let s = wait_ready(&api, "shop", Some(&third), READY);
    assert!(
        s["drift_corrections"].as_u64().unwrap() >= before + 2,
        "{s}"
    );
    let metrics = get_text(&format!("{api}/metrics")).unwrap();
    assert!(
        metric(&metrics, "pgcd_drift_corrections_total").unwrap() >= 2.0,
        "{metrics}"
    );

    // An invalid revision changes nothing.
    let bad = commit(
        &work,
        &[(
            "databases/shop.yaml",
            Some("database_name: shop\nport: [\n"),
        )],
        "broken",
    );
    wait_for("bad revision recorded", READY, || {
        get_json(&format!("{api}/v1/revisions/{bad}")).filter(|r| r["state"] == "failed")
    });
    let s = status(&api, "shop").unwrap();
    assert_eq!(s["observed_revision"], third);
    assert!(condition(&s, "Ready"));

    // A removed file: the database keeps running and is reported Orphaned.
    let fixed = commit(
        &work,
        &[
            ("databases/shop.yaml", Some(&shop(&h1, "32MB", "256MB"))),
            ("databases/books.yaml", None),
        ],
        "remove books",
    );
    wait_ready(&api, "shop", Some(&fixed), READY);
    let books = wait_for("books orphaned", READY, || {
        status(&api, "books").filter(|s| condition(s, "Orphaned"))
    });
    assert!(
        books["conditions"].to_string().contains("confirm_delete"),
        "{books}"
    );
    assert_eq!(
        inspect(&format!("pgcd-books-n1-{h1}"), "{{.State.Running}}").as_deref(),
        Some("true")
    );

    // Deleting takes `state: absent` with `confirm_delete`; the data stays.
    let absent = format!(
        "{}state: absent\nconfirm_delete: books\n",
        plain("books", "17", 6544, &h1)
    );
    commit(
        &work,
        &[("databases/books.yaml", Some(&absent))],
        "delete books",
    );
    wait_for("books container removed", READY, || {
        inspect(&format!("pgcd-books-n1-{h1}"), "{{.State.Running}}")
            .is_none()
            .then_some(())
    });
    wait_for("books status gone", READY, || {
        status(&api, "books").is_none().then_some(())
    });
    assert!(agent
        .data_dir
        .join("instances/books-n1/data/PG_VERSION")
        .exists());
    assert!(q("SELECT 1").is_some(), "shop is untouched");

    // Maintenance mode: steps are planned and shown, none runs; drift is
    // not corrected; resumed, everything is carried out.
    let suspended = format!("{}suspend: true\n", shop(&h1, "40MB", "256MB"));
    let held = commit(
        &work,
        &[("databases/shop.yaml", Some(&suspended))],
        "suspend shop, work_mem 40MB",
    );
    let s = wait_for("shop suspended with its step held", READY, || {
        status(&api, "shop").filter(|s| {
            s["observed_revision"] == held.as_str()
                && condition(s, "Suspended")
                && s["conditions"].to_string().contains("held")
        })
    });
    assert!(!condition(&s, "Ready"), "{s}");
    assert!(
        s["last_plan"]["text"].as_str().unwrap().contains("40MB"),
        "{s}"
    );
    // One transaction: the leader's drift correction (the owner put back)
    // cannot come between the two.
    admin("ALTER DATABASE shop OWNER TO postgres; DROP ROLE app").unwrap();
    wait_for("the dropped role planned and held", READY, || {
        status(&api, "shop").filter(|s| {
            s["last_plan"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("role app"))
        })
    });
    assert_eq!(
        admin("SHOW work_mem").as_deref(),
        Some("32MB"),
        "nothing ran while suspended"
    );
    assert_eq!(
        admin("SELECT count(*) FROM pg_roles WHERE rolname = 'app'").as_deref(),
        Some("0"),
        "no drift corrected while suspended"
    );
    let resumed = commit(
        &work,
        &[("databases/shop.yaml", Some(&shop(&h1, "40MB", "256MB")))],
        "resume shop",
    );
    let s = wait_ready(&api, "shop", Some(&resumed), READY);
    assert!(!condition(&s, "Suspended"), "{s}");
    assert_eq!(q("SHOW work_mem").as_deref(), Some("40MB"));
}

#[test]
fn postgresql_16_and_18_converge_too() {
    require_image(16);
    require_image(18);
    let block = 61;
    let dir = tempfile::tempdir().unwrap();
    let h1 = host_id(block, 0);
    let _containers = Containers::new(vec![h1.clone()]);
    let work = repo(dir.path());
    let sha = commit(
        &work,
        &[
            ("databases/old.yaml", Some(&plain("old", "16", 6545, &h1))),
            ("databases/new.yaml", Some(&plain("new", "18", 6546, &h1))),
        ],
        "16 and 18",
    );
    let agent = first_agent(block, dir.path(), &work);
    let api = agent.api();
    let old = wait_ready(&api, "old", Some(&sha), READY);
    let new = wait_ready(&api, "new", Some(&sha), READY);
    assert!(
        old["instances"][0]["version"]
            .as_str()
            .unwrap()
            .starts_with("16."),
        "{old}"
    );
    assert!(
        new["instances"][0]["version"]
            .as_str()
            .unwrap()
            .starts_with("18."),
        "{new}"
    );

    // `state: stopped` on a node stops its instance; the status says so.
    let stopped = plain("old", "16", 6545, &h1).replace(
        &format!("    host_ids: [{h1}]\n"),
        &format!("    host_ids: [{h1}]\n    state: stopped\n"),
    );
    let sha = commit(&work, &[("databases/old.yaml", Some(&stopped))], "stop old");
    let old = wait_ready(&api, "old", Some(&sha), READY);
    assert_eq!(old["instances"][0]["state"], "stopped", "{old}");
    assert_eq!(
        inspect(&format!("pgcd-old-n1-{h1}"), "{{.State.Running}}").as_deref(),
        Some("false")
    );
}

fn leader(api: &str) -> Option<String> {
    get_json(&format!("{api}/v1/cluster"))?["leader"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_new_leader_finishes_the_plan_and_a_restart_operation_runs_once() {
    require_image(17);
    let block = 62;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(|i| host_id(block, i)).collect();
    let _containers = Containers::new(ids.clone());
    let work = repo(dir.path());
    commit(&work, &[("databases/.keep", Some(""))], "empty");
    let mut agents = vec![pg_agent(
        block,
        0,
        dir.path(),
        vec!["--init".into(), "--repo".into(), work.display().to_string()],
    )];
    for i in 1..3 {
        let api = agents[0].api();
        wait_for("previous agents healthy", READY, || {
            (healthy_hosts(&api).len() == i).then_some(())
        });
        agents.push(pg_agent(
            block,
            i,
            dir.path(),
            vec!["--join".into(), agents[0].api()],
        ));
    }
    let mut agents: Vec<AgentGuard> = agents.into_iter().map(Agent::guarded).collect();
    let apis: Vec<String> = agents.iter().map(|a| a.api()).collect();
    let api_of = |i: usize| apis[i].clone();
    wait_for("three healthy hosts", READY, || {
        (healthy_hosts(&api_of(0)).len() == 3).then_some(())
    });
    let first_leader = wait_for("a leader", READY, || leader(&api_of(0)));
    let li = agents.iter().position(|a| a.id == first_leader).unwrap();
    let oi = (li + 1) % 3; // the database's host: not the leader's
    let other_api = api_of(oi);
    let db_host = agents[oi].id.clone();

    let sha = commit(
        &work,
        &[(
            "databases/orders.yaml",
            Some(&plain("orders", "17", 6547, &db_host)),
        )],
        "orders",
    );
    // Kill the leader while a step runs.
    wait_for("a step running", READY, || {
        get_json(&format!("{other_api}/v1/tasks"))?
            .as_array()?
            .iter()
            .any(|t| {
                t["id"].as_str().is_some_and(|i| i.starts_with("s-orders."))
                    && t["state"] == "running"
            })
            .then_some(())
    });
    agents[li].kill9();
    let s = wait_ready(&other_api, "orders", Some(&sha), READY);
    assert_eq!(s["instances"][0]["state"], "running");
    let second_leader = leader(&other_api).unwrap();
    assert_ne!(second_leader, first_leader);
    // Bring the first leader back, so a second kill keeps etcd's quorum.
    agents[li].spawn();
    wait_for("three healthy hosts again", READY, || {
        (healthy_hosts(&other_api).len() == 3).then_some(())
    });

    // A Restart operation runs once, even across a change of leader.
    let c = format!("pgcd-orders-n1-{db_host}");
    let started = inspect(&c, "{{.State.StartedAt}}").unwrap();
    commit(
        &work,
        &[(
            "operations/restart-orders.yaml",
            Some("id: restart-orders\nkind: Restart\ndatabase: orders\n"),
        )],
        "restart orders",
    );
    let task = format!("op-restart-orders-n1-{db_host}");
    wait_for("the restart task succeeded", READY, || {
        get_json(&format!("{other_api}/v1/tasks/{task}")).filter(|t| t["state"] == "succeeded")
    });
    let restarted = inspect(&c, "{{.State.StartedAt}}").unwrap();
    assert_ne!(restarted, started);
    let si = agents.iter().position(|a| a.id == second_leader).unwrap();
    let survivor = api_of((0..3).find(|i| *i != si).unwrap());
    agents[si].kill9();
    let third = wait_for("a third leader", READY, || {
        leader(&survivor).filter(|l| *l != second_leader)
    });
    let passes = |api: &str| {
        get_text(&format!("{api}/metrics")).and_then(|m| metric(&m, "pgcd_reconcile_passes_total"))
    };
    let base = wait_for("passes counted", READY, || passes(&survivor));
    wait_for("three more passes under the new leader", READY, || {
        passes(&survivor).filter(|p| *p >= base + 3.0)
    });
    assert_eq!(leader(&survivor).as_deref(), Some(third.as_str()));
    assert_eq!(
        inspect(&c, "{{.State.StartedAt}}").unwrap(),
        restarted,
        "the restart ran again"
    );
    let op_tasks = get_json(&format!("{survivor}/v1/tasks")).unwrap();
    let n = op_tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_str().unwrap().starts_with("op-restart-orders"))
        .count();
    assert_eq!(n, 1);
}
