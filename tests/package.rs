//! The Debian package installs on a clean Debian 12 (a debootstrap bookworm
//! minbase imported into Docker, as scripts/build-images.sh does — there is
//! no registry) with `dpkg -i` (and `apt-get -f install` for libssl3, the one
//! dependency a minbase lacks): the binary runs, the `pgcd` user is in
//! `docker`, the unit passes `systemd-analyze verify`, manual pages and
//! completions are where man and the shells look; removing keeps the
//! configuration and purging keeps the data.
//!
//! The package is `scripts/package.sh --debug`: the release package's
//! layout and control file around the debug binary `cargo test` has built
//! already, so the test costs a debootstrap (once per machine) and the
//! installs, not a release build. It prints how long each part took.

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)] // tests may panic and block

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const BASE: &str = "pgcd-test/debian:bookworm";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args))
}

/// A Debian 12 minbase image, made once per machine (about 30 s).
fn base_image() {
    let have = Command::new("docker")
        .args(["image", "inspect", BASE])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    let mirror = std::env::var("PGCD_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&rootfs)
        .arg(&mirror));
    run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} -c . | docker import - {BASE}",
        rootfs.display()
    )));
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn the_deb_installs_on_a_clean_debian_12_and_its_unit_verifies() {
    let t0 = Instant::now();
    // The build must see the environment a person's shell gives it, not the
    // CARGO_* variables cargo sets for this test (they change fingerprints).
    let mut package = Command::new(root().join("scripts/package.sh"));
    package.arg("--debug").current_dir(root());
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_TARGET_DIR" && k != "CARGO_HOME" {
            package.env_remove(k);
        }
    }
    let built = run(&mut package);
    let deb = PathBuf::from(built.lines().last().unwrap_or_default().trim());
    assert!(deb.is_file(), "scripts/package.sh printed {deb:?}");
    let t_build = t0.elapsed();
    eprintln!("package test: scripts/package.sh {t_build:.0?}");

    let t1 = Instant::now();
    base_image();
    let t_base = t1.elapsed();
    eprintln!("package test: Debian 12 base image {t_base:.0?}");

    let t2 = Instant::now();
    let name = format!("pgcd-package-test-{}", std::process::id());
    let c = Container(name.clone());
    let mount = format!("{}:/tmp/pgcd.deb:ro", deb.display());
    docker(&[
        "run", "-d", "--name", &c.0, "-v", &mount, BASE, "sleep", "600",
    ]);
    let sh = |script: &str| docker(&["exec", &name, "sh", "-ec", script]);
    // dpkg -i, then apt-get -f install for the dependencies the minbase
    // lacks — libssl3 alone (the binary links the system's OpenSSL).
    let first = Command::new("docker")
        .args(["exec", &name, "dpkg", "-i", "/tmp/pgcd.deb"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&first.stderr).into_owned();
    if !first.status.success() {
        let missing: Vec<&str> = said
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pgcd depends on "))
            .collect();
        assert_eq!(missing, ["libssl3 (>= 3.0.0); however:"], "{said}");
        sh("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq >/dev/null");
    }
    assert!(sh("dpkg -s pgcd").contains("Status: install ok installed"));
    let version = sh("pgcd --version");
    assert_eq!(
        version.trim(),
        format!("pgcd {}", env!("CARGO_PKG_VERSION"))
    );
    let id = sh("id pgcd");
    assert!(id.contains("(pgcd)") && id.contains("(docker)"), "{id}");
    let modes = sh("stat -c '%n %U:%G %a' /etc/pgcd/agent.env /var/lib/pgcd /usr/bin/pgcd");
    assert!(
        modes.contains("/etc/pgcd/agent.env root:pgcd 640"),
        "{modes}"
    );
    assert!(modes.contains("/var/lib/pgcd pgcd:pgcd 750"), "{modes}");
    assert!(modes.contains("/usr/bin/pgcd root:root 755"), "{modes}");
    sh("test -f /lib/systemd/system/pgcd-agent.service \
        && test -f /usr/share/man/man1/pgcd.1.gz && test -f /usr/share/man/man1/pgcd-agent.1.gz \
        && test -f /usr/share/man/man1/pgcd-import-pgedge.1.gz \
        && grep -q _pgcd /usr/share/bash-completion/completions/pgcd \
        && test -s /usr/share/zsh/vendor-completions/_pgcd \
        && grep -q 'complete -c pgcd' /usr/share/fish/vendor_completions.d/pgcd.fish \
        && test -s /usr/share/pgcd/grafana/pgcd.json");
    // The verbs work from the installed binary (no cluster needed).
    sh("mkdir -p /tmp/r/databases && printf 'database_name: app\\nnodes:\\n  - name: n1\\n    host_ids: [h1]\\n' > /tmp/r/databases/app.yaml && pgcd validate /tmp/r");
    let conffiles = sh("cat /var/lib/dpkg/info/pgcd.conffiles");
    assert_eq!(conffiles.trim(), "/etc/pgcd/agent.env");

    // The unit, with Debian 12's own systemd-analyze (a server has systemd;
    // the minbase does not, so it is added from Debian's archive).
    let t3 = Instant::now();
    let verified = Command::new("docker")
        .args(["exec", &name, "sh", "-c"])
        .arg("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null 2>&1")
        .status()
        .is_ok_and(|s| s.success());
    if verified {
        let out = Command::new("docker")
            .args(["exec", &name, "systemd-analyze", "verify", "--man=no"])
            .arg("/lib/systemd/system/pgcd-agent.service")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "systemd-analyze verify: {text}");
        let ours: Vec<&str> = text.lines().filter(|l| l.contains("pgcd")).collect();
        assert!(ours.is_empty(), "systemd-analyze verify: {ours:?}");
    } else {
        eprintln!(
            "systemd could not be installed from Debian's archive: the unit was not verified"
        );
    }
    eprintln!("package test: systemd-analyze verify {:.0?}", t3.elapsed());

    // Removing keeps the configuration and the data; purging keeps the data.
    sh("dpkg -r pgcd && ! test -e /usr/bin/pgcd && test -f /etc/pgcd/agent.env && test -d /var/lib/pgcd");
    sh("dpkg -P pgcd && ! test -e /etc/pgcd/agent.env && test -d /var/lib/pgcd && id pgcd");
    eprintln!(
        "package test: build {:.0?}, base image {:.0?}, install and checks {:.0?} (unit verified: {verified})",
        t_build,
        t_base,
        t2.elapsed()
    );
}
