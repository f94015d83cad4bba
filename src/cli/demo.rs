//! `pgcd demo up|down`: three agents on 127.0.0.11–13 with embedded etcd,
//! following a local bare clone of `sample-repo/`, so a person can clone it,
//! edit, commit, push and watch. The agents run the sample's databases as
//! PostgreSQL containers; the passwords of its `{env: ...}` secrets are
//! generated into `secrets.env`. Everything lives under one demo directory;
//! `down` stops the agents and their containers and keeps the files.

// A command-line verb: synchronous from start to end, so blocking file I/O is fine.
#![allow(clippy::disallowed_methods)]

use crate::pki::client::ClientTls;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The simulated hosts: id and loopback address.
const HOSTS: [(&str, &str); 3] = [
    ("h1", "127.0.0.11"),
    ("h2", "127.0.0.12"),
    ("h3", "127.0.0.13"),
];

/// How long `up` waits for the cluster to form before it gives up.
pub(super) const FORM_DEADLINE: Duration = Duration::from_secs(120);

/// Arguments of `pgcd demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// Where the demo keeps its repositories, data and logs.
    #[arg(long, env = "PGCD_DEMO_DIR", global = true)]
    dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start the three-host demo cluster (idempotent).
    Up {
        /// The sample repository to seed the demo's config repository with.
        #[arg(long, default_value = "sample-repo")]
        sample: PathBuf,
    },
    /// Stop the demo's agents (files are kept; `--purge` removes them).
    Down {
        /// Also delete the demo directory.
        #[arg(long)]
        purge: bool,
    },
}

/// Runs the verb.
pub fn run(args: Args) -> Result<i32> {
    let dir = args.dir.unwrap_or_else(default_dir);
    match args.action {
        Action::Up { sample } => up(&dir, &sample),
        Action::Down { purge } => down(&dir, purge),
    }
}

fn default_dir() -> PathBuf {
    let base = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(".local/share/pgcd-demo")
}

fn up(dir: &Path, sample: &Path) -> Result<i32> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bare = dir.join("config.git");
    let work = dir.join("config");
    if !bare.exists() {
        seed_repository(sample, &bare, &work)?;
    }
    let exe = std::env::current_exe().context("locating the pgcd binary")?;
    let secrets = demo_secrets(dir, &work)?;
    let tls = super::demo_pki::demo_pki(dir)?;
    let repo_url = format!("file://{}", bare.display());
    let api = format!("https://{}:7800", HOSTS[0].1);
    for (index, (host, addr)) in HOSTS.iter().enumerate() {
        if read_pid(&pid_file(dir, host)).is_some_and(|pid| is_demo_agent(pid, dir, host)) {
            println!("{host}: already running");
            continue;
        }
        let data = dir.join("hosts").join(host);
        fs::create_dir_all(&data)?;
        let mut cmd = Command::new(&exe);
        cmd.envs(secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.args(["agent", "--host-id", host, "--advertise", addr])
            .arg("--data-dir")
            .arg(&data)
            .args(["--label", &format!("zone=demo-{}", index + 1)]);
        if index == 0 {
            cmd.args(["--init", "--repo", &repo_url, "--branch", "main"])
                .arg("--ca")
                .arg(dir.join("ca"));
        } else {
            cmd.args(["--join", &api]);
            // A first join needs a token, so h1 must be up; a restart
            // needs none and starts at once.
            if !data.join(crate::cluster::identity::FILE_NAME).exists() {
                cmd.args([
                    "--join-token",
                    &super::demo_pki::demo_join_token(&tls, &api)?,
                ]);
            }
        }
        spawn_detached(cmd, &dir.join(format!("{host}.log")), &pid_file(dir, host))?;
    }
    // All at once: a new host's join waits until etcd can add it, and after
    // `demo down` each agent waits for the others to give its etcd a quorum.
    wait_for(FORM_DEADLINE, || {
        HOSTS
            .iter()
            .any(|(_, addr)| healthy_hosts(&tls, addr) == HOSTS.len())
    })
    .with_context(|| {
        format!(
            "the three hosts did not form a cluster; see the logs in {}",
            dir.display()
        )
    })?;
    // The leader fetches the repository at once (a file watcher catches later pushes).
    let mut first = None;
    let _ = wait_for(FORM_DEADLINE, || {
        first = applied_revision(&tls, &api);
        first.is_some()
    });
    println!("waiting for the databases (the first start of an image takes a minute)...");
    let databases = wait_databases(&tls, &api, DATABASES_DEADLINE);
    println!();
    println!("pgcd demo is up: three agents (h1, h2, h3) with embedded etcd.");
    for line in &databases {
        println!("  database  {line}");
    }
    println!(
        "  passwords: {} (the agents' environment; user NAME's is NAME_PASSWORD)",
        dir.join("secrets.env").display()
    );
    match first {
        Some((sha, summary)) => println!("  in force: {} {summary}", &sha[..sha.len().min(12)]),
        None => println!("  in force: nothing yet; see {}/h1.log", dir.display()),
    }
    let tls_dir = dir.join("tls");
    for (host, addr) in HOSTS {
        println!(
            "  {host}: API https://{addr}:7800   log {}/{host}.log",
            dir.display()
        );
    }
    println!(
        "  client:   export PGCD_TLS_DIR={}   (your client certificate, `root`; every command below needs it)",
        tls_dir.display()
    );
    println!(
        "  page:     {api}/  (import {} into your browser, password `root`, and trust {})",
        tls_dir.join("client.p12").display(),
        tls_dir.join("ca.crt").display()
    );
    println!("  status:   pgcd status --api {api}");
    println!(
        "  config:   {} (push to {})",
        work.display(),
        bare.display()
    );
    println!(
        "  try:      cd {} && $EDITOR databases/orders.yaml && git commit -am change && git push",
        work.display()
    );
    println!(
        "  watch:    curl -s --cacert {0}/ca.crt --cert {0}/client.crt --key {0}/client.key {api}/v1/revisions   (applied / failed with errors / superseded / planned_only)",
        tls_dir.display()
    );
    println!(
        "  plan:     pgcd plan {} --api {api}   (what your uncommitted edit would change)",
        work.display()
    );
    println!(
        "  statuses: cd {} && git fetch -q origin refs/notes/pgcd:refs/notes/pgcd && git log --notes=pgcd -3",
        work.display()
    );
    println!("  stop:     pgcd demo down");
    Ok(0)
}

/// How long `up` waits for every database to leave `Reconciling`.
const DATABASES_DEADLINE: Duration = Duration::from_secs(240);

/// A password for every `{env: NAME}` secret of the config repository's
/// files, generated once and kept in `secrets.env` (mode 0600); the agents
/// get them in their environment.
fn demo_secrets(dir: &Path, work: &Path) -> Result<Vec<(String, String)>> {
    let file = dir.join("secrets.env");
    let mut out: Vec<(String, String)> = fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let files =
        crate::spec::read_dir(work).with_context(|| format!("reading {}", work.display()))?;
    let mut changed = false;
    for f in files {
        for part in f.text.split("{env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !name.is_empty() && !out.iter().any(|(k, _)| *k == name) {
                out.push((name, crate::cluster::identity::random_hex(12)));
                changed = true;
            }
        }
    }
    if changed {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing {}", file.display()))?;
        for (k, v) in &out {
            writeln!(f, "{k}={v}")?;
        }
    }
    Ok(out)
}

/// Waits until no database is `Reconciling` (or the deadline); returns a
/// line per database: name, the conditions that hold, and the message of
/// a Stalled or Degraded one.
fn wait_databases(tls: &ClientTls, api: &str, deadline: Duration) -> Vec<String> {
    let client = tls.blocking_http(Duration::from_secs(2));
    let fetch = || -> Option<Vec<serde_json::Value>> {
        let c = client.as_ref().ok()?;
        c.get(format!("{api}/v1/databases"))
            .send()
            .ok()?
            .json()
            .ok()
    };
    let holds = |d: &serde_json::Value, kind: &str| {
        d["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == true))
    };
    let mut last = Vec::new();
    let _ = wait_for(deadline, || {
        last = fetch().unwrap_or_default();
        !last.is_empty()
            && last
                .iter()
                // Degraded right after a restart is hosts still coming back.
                .all(|d| {
                    (holds(d, "Ready") && !holds(d, "Degraded"))
                        || holds(d, "Stalled")
                        || holds(d, "Orphaned")
                })
    });
    last.iter()
        .map(|d| {
            let held: Vec<&str> = ["Ready", "Reconciling", "Stalled", "Degraded", "Orphaned"]
                .into_iter()
                .filter(|k| holds(d, k))
                .collect();
            let why = d["conditions"]
                .as_array()
                .and_then(|cs| {
                    cs.iter().find(|c| {
                        (c["type"] == "Stalled" || c["type"] == "Degraded") && c["status"] == true
                    })
                })
                .and_then(|c| c["message"].as_str())
                .map(|m| format!(" — {m}"))
                .unwrap_or_default();
            let endpoints: Vec<&str> = d["instances"]
                .as_array()
                .map(|is| is.iter().filter_map(|i| i["endpoint"].as_str()).collect())
                .unwrap_or_default();
            format!(
                "{} [{}] at {}{why}",
                d["name"].as_str().unwrap_or("?"),
                held.join(", "),
                endpoints.join(", ")
            )
        })
        .collect()
}

/// The revision in force and its summary, once the leader has applied one.
fn applied_revision(tls: &ClientTls, api: &str) -> Option<(String, String)> {
    let client = tls.blocking_http(Duration::from_secs(2)).ok()?;
    let source: serde_json::Value = client
        .get(format!("{api}/v1/source"))
        .send()
        .ok()?
        .json()
        .ok()?;
    let sha = source["applied"]["sha"].as_str()?.to_string();
    let rev: serde_json::Value = client
        .get(format!("{api}/v1/revisions/{sha}"))
        .send()
        .ok()?
        .json()
        .ok()?;
    Some((sha, rev["summary"].as_str().unwrap_or("").to_string()))
}

fn down(dir: &Path, purge: bool) -> Result<i32> {
    for (host, _) in HOSTS {
        let file = pid_file(dir, host);
        // Only a process that is this demo's agent: a stale pid file may
        // name a pid the system has since given to something else.
        if let Some(pid) = read_pid(&file).filter(|pid| is_demo_agent(*pid, dir, host)) {
            // SIGTERM lets the agent stop its etcd child cleanly.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let stopped = wait_for(Duration::from_secs(15), || !process_alive(pid));
            if stopped.is_err() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            println!("{host}: stopped");
        }
        let _ = fs::remove_file(&file);
        // The host's PostgreSQL containers stop with it (data kept);
        // `--purge` removes them too.
        containers(host, if purge { &["rm", "-f"] } else { &["stop"] });
    }
    if purge && dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        println!("removed {}", dir.display());
    }
    Ok(0)
}

/// Runs `docker <verb> <container>` on each PostgreSQL container of a demo host.
fn containers(host: &str, verb: &[&str]) {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=io.pgcd.host={host}"))
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(verb)
            .args(&ids)
            .stdout(Stdio::null())
            .status();
        println!(
            "{host}: {} PostgreSQL container(s) {}",
            ids.len(),
            if verb[0] == "rm" {
                "removed"
            } else {
                "stopped"
            }
        );
    }
}

/// Makes the bare config repository from the sample, plus a working clone.
fn seed_repository(sample: &Path, bare: &Path, work: &Path) -> Result<()> {
    if !sample.join("databases").is_dir() {
        bail!(
            "{} is not a config repository (no databases/); run from the pgcd checkout or pass --sample",
            sample.display()
        );
    }
    git(
        None,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
        Some(bare),
    )?;
    // A new working copy pushed to the empty bare one (cloning an empty
    // repository only earns a warning).
    git(
        None,
        &["init", "--quiet", "--initial-branch=main"],
        Some(work),
    )?;
    git(
        Some(work),
        &["remote", "add", "origin", &bare.display().to_string()],
        None,
    )?;
    copy_tree(sample, work)?;
    git(Some(work), &["add", "-A"], None)?;
    git(
        Some(work),
        &[
            "-c",
            "user.name=pgcd demo",
            "-c",
            "user.email=demo@pgcd.local",
            "commit",
            "--quiet",
            "-m",
            "Seed from sample-repo",
        ],
        None,
    )?;
    git(
        Some(work),
        &["push", "--quiet", "-u", "origin", "main"],
        None,
    )?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn git(cwd: Option<&Path>, args: &[&str], extra: Option<&Path>) -> Result<()> {
    let mut cmd = Command::new("git");
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.args(args);
    if let Some(extra) = extra {
        cmd.arg(extra);
    }
    let status = cmd.status().context("running git")?;
    if !status.success() {
        bail!("git {} failed", args.join(" "));
    }
    Ok(())
}

fn spawn_detached(mut cmd: Command, log: &Path, pid_path: &Path) -> Result<()> {
    let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // A new session: the agent outlives the shell that ran `demo up`.
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let child = cmd.spawn().context("starting pgcd agent")?;
    fs::write(pid_path, child.id().to_string())?;
    Ok(())
}

fn pid_file(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.pid"))
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` runs `pgcd agent --host-id HOST` with its data dir under `dir`.
fn is_demo_agent(pid: i32, dir: &Path, host: &str) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let data = dir.join("hosts").join(host).display().to_string();
    args.iter().any(|a| a == "agent")
        && args.windows(2).any(|w| w[0] == "--host-id" && w[1] == host)
        && args.contains(&data)
}

fn process_alive(pid: i32) -> bool {
    // A zombie has no cmdline; treat it as gone.
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Counts the healthy hosts the first agent's API reports (0 when it is not up).
fn healthy_hosts(tls: &ClientTls, addr: &str) -> usize {
    let url = format!("https://{addr}:7800/v1/hosts");
    let Ok(client) = tls.blocking_http(Duration::from_secs(2)) else {
        return 0;
    };
    let Ok(value) = client
        .get(&url)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json::<serde_json::Value>())
    else {
        return 0;
    };
    let hosts = value.get("hosts").unwrap_or(&value);
    hosts
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|h| h.get("healthy").and_then(|v| v.as_bool()).unwrap_or(false))
                .count()
        })
        .unwrap_or(0)
}

pub(super) fn wait_for(deadline: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("not ready after {} s", deadline.as_secs())
}
