#!/usr/bin/env bash
# Builds the Debian package of pgcd: a release build, the shell completions
# and manual pages generated from the command line, then `cargo deb`
# (installed from crates.io when missing). Prints the .deb's path last.
#   scripts/package.sh              -> $CARGO_TARGET_DIR/debian/pgcd_<version>-1_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
have_cmd() { command -v "$1" >/dev/null 2>&1; }

# cargo-deb, and dpkg-shlibdeps (dpkg-dev) for the `$auto` library dependencies.
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb from crates.io"
  cargo install --locked cargo-deb
fi
if ! have_cmd dpkg-shlibdeps; then
  echo "installing dpkg-dev"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi

t0=$SECONDS
cargo build --release --locked
assets="$target/release/pgcd-assets"
rm -rf "$assets" && mkdir -p "$assets/completions" "$assets/man"
"$target/release/pgcd" completion bash > "$assets/completions/pgcd.bash"
"$target/release/pgcd" completion zsh > "$assets/completions/_pgcd"
"$target/release/pgcd" completion fish > "$assets/completions/pgcd.fish"
"$target/release/pgcd" man --out "$assets/man" >/dev/null
# Compressed here: cargo-deb leaves files under target/release as they are.
gzip -9n "$assets"/man/*.1
deb=$(cargo deb --no-build --locked --quiet 2>&1 | tail -n1)
echo "built in $((SECONDS - t0)) s" >&2
echo "$deb"
