#!/usr/bin/env bash
# Installs what pgcd's build, tests and demo need on a fresh Debian machine,
# and nothing when it is all there already (idempotent, no network then).
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_cmd protoc || need+=(protobuf-compiler)   # etcd-client's build script
have_cmd etcd || need+=(etcd-server)           # embedded etcd of every agent
have_cmd etcdctl || need+=(etcd-client)
have_cmd git || need+=(git)
have_cmd pkg-config || need+=(pkg-config)
have_pkg libssl-dev || need+=(libssl-dev)
have_cmd ssh-keygen || need+=(openssh-client)  # signed-commit verification
have_cmd gpg || need+=(gnupg)
have_cmd curl || need+=(curl)
have_cmd openssl || need+=(openssl)         # tests read the certificate a server presents
have_cmd debootstrap || need+=(debootstrap)     # scripts/build-images.sh

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
