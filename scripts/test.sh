#!/usr/bin/env bash
# The whole check, as CI runs it: install what is missing, then formatting,
# lints and every test (unit, integration with real etcd, Git and PostgreSQL
# containers of pgcd's images, doc tests).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# What the run had, for reading a failed CI log: disk, limits, etcd.
echo "== $(id -un) on $(nproc) cores; $(etcd --version | head -1); processes allowed: $(ulimit -u)"
df -h . /tmp | sed 's/^/== /'
env | grep -E '^(ETCD|PGCD)_' | sed 's/^/== env /' || true
git config --global user.email >/dev/null 2>&1 || git config --global user.email "pgcd-test@localhost"
git config --global user.name >/dev/null 2>&1 || git config --global user.name "pgcd test"

# The PostgreSQL images the reconcile tests run (cached by recipe hash).
# 17.10: the minor tests/upgrade_minor.rs upgrades from; upgrade-17-18:
# pg_upgrade's image (tests/upgrade_in_place.rs).
scripts/build-images.sh 16 17 18 17.10 upgrade-17-18

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
mkdir -p target
status=0
# Unit and doc tests, then the integration files two at a time (each has
# its own addresses); per-file logs in target/test-logs/.
scripts/run-tests.sh || status=$?
df -h . /tmp | sed 's/^/== after the tests: /'
exit "$status"
