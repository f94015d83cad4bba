# Makes a former primary a standby of the node's primary, in its own
# container while its server is down (fenced). Run as root; the tools run
# as postgres. Env: P, PP (the primary's address and port), SLOT (this
# standby's slot there), PGCD_REPLICATION_PASSWORD, PGCD_TLS_OPTIONS.
set -eu
# libpq looks for a client certificate under $HOME/.postgresql: a home
# postgres can read (the start script's), not root's.
export HOME=/var/lib/pgcd
D=/var/lib/pgcd/data
TLS="${PGCD_TLS_OPTIONS:-}"
if ! ldd "$(command -v postgres)" 2>/dev/null | grep -q libssl; then TLS=""; fi
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
umask 077
printf '*:*:*:pgcd_replication:%s\n' "$PGCD_REPLICATION_PASSWORD" > /var/lib/pgcd/pgpass.new
chown postgres:postgres /var/lib/pgcd/pgpass.new
mv /var/lib/pgcd/pgpass.new /var/lib/pgcd/pgpass
SRC="host=$P port=$PP user=pgcd_replication dbname=postgres passfile=/var/lib/pgcd/pgpass $TLS"
FRESH="${PGCD_REJOIN_FRESH:-0}"
if [ -s "$D/PG_VERSION" ]; then
  state=$(as_pg pg_controldata "$D" | sed -n 's/^Database cluster state: *//p')
else
  state=none # an earlier attempt moved it aside and could not copy the primary
fi
echo "pgcd: the cluster's state: $state"
if [ "$FRESH" = 1 ]; then
  echo "pgcd: an earlier rewind did not become a consistent standby: copying the primary afresh"
else
  case "$state" in
    "shut down"|"shut down in recovery"|none) ;;
    *)
      echo "pgcd: crash recovery in single-user mode first (pg_rewind needs a cleanly shut down server)"
      as_pg postgres --single -D "$D" -c listen_addresses='' -c archive_mode=off postgres < /dev/null > /dev/null
      ;;
  esac
fi
if [ "$FRESH" != 1 ] && [ "$state" != none ] && as_pg pg_rewind --target-pgdata="$D" --source-server="$SRC" --progress 2>&1; then
  echo "pgcd: pg_rewind done: on the primary's timeline"
else
  if [ "$state" != none ]; then
    # Nothing is deleted: the former data directory is kept beside, named.
    KEEP="/var/lib/pgcd/data.former-$(date -u +%Y%m%dT%H%M%SZ)"
    echo "pgcd: this data directory is kept as $KEEP and the primary is copied afresh (pg_basebackup)"
    mkdir -m 700 "$KEEP" && chown postgres:postgres "$KEEP"
    find "$D" -mindepth 1 -maxdepth 1 -exec mv -t "$KEEP" {} +
  else
    echo "pgcd: no data directory (an earlier attempt kept it aside): copying the primary (pg_basebackup)"
  fi
  as_pg pg_basebackup -D "$D" -X stream -c fast -S "$SLOT" \
    -d "host=$P port=$PP user=pgcd_replication application_name=$SLOT passfile=/var/lib/pgcd/pgpass $TLS" 2>&1
fi
touch "$D/postgresql.auto.conf"
sed -i '/^primary_conninfo\|^primary_slot_name\|^synchronous_standby_names/d' "$D/postgresql.auto.conf"
echo "primary_conninfo = 'host=$P port=$PP user=pgcd_replication application_name=$SLOT passfile=/var/lib/pgcd/pgpass $TLS'" >> "$D/postgresql.auto.conf"
echo "primary_slot_name = '$SLOT'" >> "$D/postgresql.auto.conf"
chown postgres:postgres "$D/postgresql.auto.conf"
as_pg touch "$D/standby.signal"
echo "pgcd: a standby of $P:$PP now (slot $SLOT)"
