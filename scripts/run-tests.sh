#!/usr/bin/env bash
# Every test, as scripts/test.sh runs them: the unit tests and doc tests,
# then the integration test files in PGCD_TEST_JOBS lanes (default 2).
# Each file takes its own block of loopback addresses and labels its
# containers by host, so files run side by side; the slowest start first.
# Each file's output goes to target/test-logs/<file>.txt; a failed file's
# tail is printed, and every file's time. Exit status: 0 when all passed.
# PGCD_TEST_FILES="validate images" runs just those files (no unit tests).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs="${PGCD_TEST_JOBS:-2}"
logs=target/test-logs
rm -rf "$logs" && mkdir -p "$logs"

# Build every test binary once; list the integration ones.
cargo test --no-run --message-format=json 2>"$logs/build.txt" >"$logs/build.json" || {
  cat "$logs/build.txt"
  exit 1
}
declare -A bin
while IFS= read -r line; do
  exe=$(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' <<<"$line")
  [ -n "$exe" ] || continue
  # Test harnesses only (the pgcd binary itself is an artifact too).
  grep -q '"profile":{[^}]*"test":true' <<<"$line" || continue
  kind=$(sed -n 's/.*"target":{[^}]*"kind":\["\([a-z-]*\)"\].*/\1/p' <<<"$line")
  name=$(sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*/\1/p' <<<"$line")
  case "$kind" in
    test) bin[$name]=$exe ;;
    lib) bin[__lib]=$exe ;;
    bin) bin[__bin_$name]=$exe ;;
  esac
done < <(grep '"reason":"compiler-artifact"' "$logs/build.json")

run() { # name exe: runs one test binary, records its time and result
  local name=$1 exe=$2 start=$SECONDS status=0
  "$exe" >"$logs/$name.txt" 2>&1 || status=$?
  echo "$name $status $((SECONDS - start))" >>"$logs/results"
  if [ "$status" = 0 ]; then
    echo "== $name: ok in $((SECONDS - start)) s"
  else
    echo "== $name: FAILED (exit $status) in $((SECONDS - start)) s; its last lines:"
    tail -n 120 "$logs/$name.txt" | sed "s/^/   $name| /"
  fi
}
export -f run
export logs

status=0
only="${PGCD_TEST_FILES:-}"
[ -n "$only" ] || for n in "${!bin[@]}"; do
  case "$n" in __lib | __bin_*) run "${n#__}" "${bin[$n]}" ;; esac
done
if [ -z "$only" ]; then
  if cargo test --doc >"$logs/doc.txt" 2>&1; then echo "== doc tests: ok"; else
    echo "== doc tests: FAILED"
    tail -n 60 "$logs/doc.txt"
    status=1
  fi
fi

# The slowest files first (measured here, 2026-12-02), then the rest by name.
slow=(package backup_schedule mesh_join cold_restart ha scripts backup_ops reconcile backup_verify mesh backup_clone standby
  reconcile_core backup_posix upgrade_minor security_pg source_https cluster_formation backup_s3)
order=()
[ -z "$only" ] || slow=($only)
for n in "${slow[@]}"; do [ -n "${bin[$n]:-}" ] && order+=("$n"); done
[ -n "$only" ] || for n in $(printf '%s\n' "${!bin[@]}" | sort); do
  case "$n" in __*) continue ;; esac
  [[ " ${order[*]} " == *" $n "* ]] || order+=("$n")
done
for n in "${order[@]}"; do printf '%s\t%s\n' "$n" "${bin[$n]}"; done |
  xargs -P "$jobs" -L 1 bash -c 'run "$0" "$1"'

echo "== times (s), slowest first:"
sort -k3 -n -r "$logs/results" | awk '{printf "==   %-22s %5d %s\n", $1, $3, ($2 == 0 ? "ok" : "FAILED")}'
if awk '$2 != 0 {bad = 1} END {exit !bad}' "$logs/results"; then status=1; fi
cat "$logs"/*.txt >target/test-output.txt 2>/dev/null || true
exit "$status"
