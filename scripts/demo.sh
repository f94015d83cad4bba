#!/usr/bin/env bash
# The demo from a fresh machine: install what is missing, build pgcd, then
# validate the sample repository and print it fully defaulted, then start
# three agents (h1-h3 on 127.0.0.11-13) with embedded etcd, following a
# local bare Git copy of sample-repo/, running its databases as PostgreSQL
# containers (the PostgreSQL 17 image is built first, once).
#   scripts/demo.sh        validate, then start the cluster (idempotent)
#   scripts/demo.sh down   stop the agents (add --purge to delete the demo dir)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --quiet
pgcd="${CARGO_TARGET_DIR:-target}/debug/pgcd"

if [ "${1:-up}" = "down" ]; then
  shift || true
  exec "$pgcd" demo down "$@"
fi

echo "== the sample repository, validated and fully defaulted (pgcd validate sample-repo -o json)"
"$pgcd" validate sample-repo -o json
"$pgcd" validate sample-repo
echo
echo "== PostgreSQL images (built once, then cached by recipe hash)"
scripts/build-images.sh 17
echo
echo "== starting the three-host demo cluster (pgcd demo up)"
"$pgcd" demo up --sample sample-repo
