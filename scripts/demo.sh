#!/usr/bin/env bash
# The demo from a fresh machine: install what is missing, build pgcd, then
# validate the sample repository and print it fully defaulted.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo build --quiet
pgcd="${CARGO_TARGET_DIR:-target}/debug/pgcd"

echo "== the sample repository, validated and fully defaulted (pgcd validate sample-repo -o json)"
"$pgcd" validate sample-repo -o json
"$pgcd" validate sample-repo
