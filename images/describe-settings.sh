#!/usr/bin/env bash
# Runs inside an image's root file system (as root, with /proc mounted) and
# prints the image's settings catalog as a JSON fragment for its manifest:
#   "settings":[{name, type, unit, min, max, values, context, library}, ...],
#   "libraries":{"<module>": ["<extension>", ...], ...},
#   "preload_only":["<module>", ...]
# `postgres --describe-config` lacks units and enum values, so a throwaway
# server (initdb in a temporary directory, Unix socket only) is asked through
# pg_settings instead. The core settings come from a server with nothing
# preloaded; every module that defines settings (DefineCustom*) is then
# loaded on its own — with LOAD, or preloaded when it defines nothing
# otherwise (those are listed as preload_only) — and the settings it adds
# are recorded with its name, so the validator knows `cron.*` belongs to
# pg_cron. Usage: describe-settings.sh BINDIR
set -euo pipefail
bindir=$1
pkglib=$("$bindir/pg_config" --pkglibdir)
share=$("$bindir/pg_config" --sharedir)
work=$(mktemp -d /tmp/pgcd-describe.XXXXXX)
chown postgres: "$work"
trap 'as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
start() {
  as_pg "$bindir/pg_ctl" -D "$work/data" -w -t 60 -l "$work/log" \
    -o "-c listen_addresses= -c unix_socket_directories=$work $*" start >/dev/null 2>&1
}
stop() { as_pg "$bindir/pg_ctl" -D "$work/data" -w -t 60 -m fast stop >/dev/null 2>&1 || true; }
sql() { as_pg "$bindir/psql" -h "$work" -U postgres -d postgres -X -q -At -v ON_ERROR_STOP=1 "$@" 2>/dev/null; }
record() { # record LIBRARY: the settings this session sees that are not recorded yet
  echo "INSERT INTO pgcd_settings SELECT name, vartype, unit, min_val, max_val, enumvals, context, $1
        FROM pg_settings WHERE name NOT IN (SELECT name FROM pgcd_settings);"
}

as_pg "$bindir/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
start
sql -c "CREATE TABLE pgcd_settings (name text PRIMARY KEY, vartype text, unit text, min_val text,
          max_val text, enumvals text[], context text, library text)" -c "$(record NULL)"
stop

modules=$(grep -l -a DefineCustom "$pkglib"/*.so 2>/dev/null | xargs -r -n1 basename | sed 's/\.so$//' | sort)
preload_only=""
for lib in $modules; do
  # LOAD first, then preloaded (some settings exist only then); a module
  # that defines none without preloading (pg_cron, pgaudit,
  # pg_stat_statements) works only from shared_preload_libraries.
  loaded=0
  if start; then
    sql -c "LOAD '$lib'" -c "$(record "'$lib'")" || true
    loaded=$(sql -c "SELECT count(*) FROM pgcd_settings WHERE library = '$lib'" || echo 0)
    stop
  fi
  if start "-c shared_preload_libraries=$lib"; then
    sql -c "$(record "'$lib'")" || true
    if [ "$loaded" = 0 ] && [ "$(sql -c "SELECT count(*) FROM pgcd_settings WHERE library = '$lib'")" != 0 ]; then
      preload_only="$preload_only${preload_only:+,}\"$lib\""
    fi
    stop
  fi
done

start
settings=$(sql -c "SELECT json_agg(json_strip_nulls(json_build_object(
    'name', name, 'type', vartype, 'unit', unit, 'min', min_val::float8, 'max', max_val::float8,
    'values', enumvals, 'context', context, 'library', library)) ORDER BY name) FROM pgcd_settings")
stop

# Every loadable module, with the extensions whose control file names it.
libraries=""
for so in "$pkglib"/*.so; do
  lib=$(basename "$so" .so)
  exts=$( (grep -l -E "module_pathname *= *'\\\$libdir/$lib'" "$share"/extension/*.control 2>/dev/null || true) \
    | xargs -r -n1 basename | sed 's/\.control$//' | sort | sed 's/.*/"&"/' | paste -sd, -)
  if [ -z "$exts" ] && [ -f "$share/extension/$lib.control" ]; then exts="\"$lib\""; fi
  libraries="$libraries${libraries:+,}\"$lib\":[$exts]"
done
printf '"settings":%s,"libraries":{%s},"preload_only":[%s]' "$settings" "$libraries" "$preload_only"
