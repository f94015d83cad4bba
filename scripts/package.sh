#!/usr/bin/env bash
# Builds pgcd's Debian package with dpkg-deb: the binary, the agent's unit and
# environment file, shell completions and manual pages generated from the
# command line, the Grafana dashboard. Prints the .deb's path last.
#   scripts/package.sh          a release build  -> $target/debian/pgcd_<version>-1_<arch>.deb
#   scripts/package.sh --debug  the debug build (what `cargo test` has built),
#                               the same layout -> $target/debian/pgcd_<version>-1_<arch>-debug.deb
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
  "") ;;
  --debug) profile=debug ;;
  *) echo "usage: scripts/package.sh [--debug]" >&2; exit 2 ;;
esac
target="${CARGO_TARGET_DIR:-$PWD/target}"

# dpkg-shlibdeps (dpkg-dev) computes the library dependencies.
if ! command -v dpkg-shlibdeps >/dev/null 2>&1; then
  echo "installing dpkg-dev" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi

t0=$SECONDS
if [ "$profile" = release ]; then
  cargo build --release --locked --bin pgcd >&2
else
  cargo build --locked --bin pgcd >&2
fi
bin="$target/$profile/pgcd"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
suffix=""; [ "$profile" = release ] || suffix="-$profile"
work="$target/debian/pgcd$suffix"
deb="$target/debian/pgcd_${version}-1_${arch}${suffix}.deb"

rm -rf "$work" && mkdir -p "$work/DEBIAN"
put() { # put MODE SOURCE DEST
  install -D -m "$1" "$2" "$work/$3"
}
put 755 "$bin" usr/bin/pgcd
put 644 deploy/systemd/pgcd-agent.service lib/systemd/system/pgcd-agent.service
put 640 deploy/agent.env.example etc/pgcd/agent.env
put 644 deploy/grafana/pgcd.json usr/share/pgcd/grafana/pgcd.json
put 644 README.md usr/share/doc/pgcd/README.md
mkdir -p "$work/usr/share/bash-completion/completions" "$work/usr/share/zsh/vendor-completions" \
  "$work/usr/share/fish/vendor_completions.d" "$work/usr/share/man/man1"
"$bin" completion bash > "$work/usr/share/bash-completion/completions/pgcd"
"$bin" completion zsh > "$work/usr/share/zsh/vendor-completions/_pgcd"
"$bin" completion fish > "$work/usr/share/fish/vendor_completions.d/pgcd.fish"
"$bin" man --out "$work/usr/share/man/man1" >/dev/null
gzip -9n "$work"/usr/share/man/man1/*.1
chmod 644 "$work"/usr/share/*/*/* "$work"/usr/share/*/*/*/* 2>/dev/null || true
for s in postinst prerm postrm; do put 755 "deploy/debian/$s" "DEBIAN/$s"; done
echo /etc/pgcd/agent.env > "$work/DEBIAN/conffiles"

# dpkg-shlibdeps reads debian/control of the directory it runs in.
shlib=$(mktemp -d)
mkdir -p "$shlib/debian"
printf 'Source: pgcd\n\nPackage: pgcd\nArchitecture: any\n' > "$shlib/debian/control"
libs=$(cd "$shlib" && dpkg-shlibdeps -O "$work/usr/bin/pgcd" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlib"
size=$(du -sk --exclude=DEBIAN "$work" | cut -f1)
cat > "$work/DEBIAN/control" <<CONTROL
Package: pgcd
Version: ${version}-1
Architecture: ${arch}
Maintainer: pgcd developers <pgcd-dev@localhost>
Installed-Size: ${size}
Depends: ${libs:+$libs, }passwd
Recommends: etcd-server, docker.io | docker-ce
Suggests: git, openssh-client, gnupg
Section: database
Priority: optional
Description: GitOps control plane for PostgreSQL
 pgcd keeps PostgreSQL databases on a set of hosts equal to what a Git
 repository says they should be. Install it on every host; configure
 /etc/pgcd/agent.env and start pgcd-agent.service. The agent runs PostgreSQL
 in Docker containers (images built locally with scripts/build-images.sh) and
 an embedded etcd (the etcd-server package), unless told to use an existing one.
CONTROL
dpkg-deb --root-owner-group -Zxz --build "$work" "$deb" >/dev/null
echo "built in $((SECONDS - t0)) s" >&2
echo "$deb"
