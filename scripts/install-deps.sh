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
# Git servers of the remote tests (tests/source_https.rs, tests/source_ssh.rs):
# the tests start them as their own processes; no system service runs.
[ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -x /usr/sbin/fcgiwrap ] || need+=(fcgiwrap)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
have_cmd openssl || need+=(openssl)             # the S3 backup test's CA
have_cmd python3 || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Packages such as nginx-light and openssh-server start their service on
  # install unless policy-rc.d says no: say no for the length of the install.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=$?
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
fi

# moto's S3 server for tests/backup_s3.rs, in a venv of its own (PyPI).
venv="${PGCD_CACHE:-/var/cache/pgcd}/moto-venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  echo "installing moto[server] into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'moto[server]==5.*'
fi
