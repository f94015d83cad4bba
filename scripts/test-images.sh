#!/usr/bin/env bash
# Checks each built image for real: initdb, start, connect, and create every
# extension the manifest lists as packaged beyond contrib (vector, postgis,
# pg_cron, pgaudit where present); prints the version and pgBackRest's.
#   scripts/test-images.sh [16 17 18]
set -euo pipefail
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(16 17 18)
for m in "${majors[@]}"; do
  docker run --rm --network none "pgcd/postgres:$m" bash -ec '
    manifest=/etc/pgcd/manifest.json
    mkdir -p /tmp/pg && chown postgres /tmp/pg
    su postgres -c "initdb -D /tmp/pg/data -A trust >/dev/null && pg_ctl -D /tmp/pg/data -o \"-k /tmp/pg -c listen_addresses= -c shared_preload_libraries=$(grep -o "\"pg_cron\"\|\"pgaudit\"" $manifest | tr -d "\"" | paste -sd, -)\" -w start >/dev/null"
    for ext in vector postgis pg_cron pgaudit pg_stat_statements; do
      if grep -q "\"$ext\"" $manifest; then
        su postgres -c "psql -h /tmp/pg -qAtc \"create extension $ext\" postgres" && echo "  $ext: created"
      fi
    done
    echo "  $(su postgres -c "psql -h /tmp/pg -Atc \"select version()\" postgres" | cut -d, -f1); pgBackRest $(pgbackrest version 2>/dev/null | cut -d" " -f2 || echo none)"
  ' | sed "s/^/pgcd\/postgres:$m /"
done
