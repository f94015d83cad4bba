#!/usr/bin/env bash
# Idle cost and reload latency of the three-host demo (issue 11), for
# bench/scale.md:
#   1. brings the demo up (scripts/demo.sh) and waits until it has settled;
#   2. idle: CPU of the leader's agent and of its etcd over IDLE_SECS (60),
#      from utime+stime in /proc, and the etcd requests a second it answered
#      (grpc_server_handled_total on its client port's /metrics);
#   3. commit -> applied for a reload-only setting (work_mem) on `orders`:
#      git commit + push in the demo's clone, until /v1/databases/orders is
#      Ready at that commit, ROUNDS (5) times.
# Run: benches/idle_demo.sh   (leaves the demo running; `scripts/demo.sh down`)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECS="${IDLE_SECS:-60}"
ROUNDS="${ROUNDS:-5}"
DEMO="${PGCD_DEMO_DIR:-$HOME/.local/share/pgcd-demo}"

scripts/demo.sh >/tmp/pgcd-idle-demo.log 2>&1 || { tail -30 /tmp/pgcd-idle-demo.log; exit 1; }
tls="$DEMO/tls"
curl_api() { curl -sf --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key" "$@"; }
api=https://127.0.0.11:7800

leader=$(curl_api "$api/v1/cluster" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])')
case "$leader" in h1) addr=127.0.0.11 ;; h2) addr=127.0.0.12 ;; h3) addr=127.0.0.13 ;; *) echo "no leader: $leader"; exit 1 ;; esac
agent_pid=$(cat "$DEMO/$leader.pid")
etcd_pid=$(pgrep -P "$agent_pid" -x etcd || true)
[ -n "$etcd_pid" ] || etcd_pid=$(for t in /proc/"$agent_pid"/task/*/children; do cat "$t"; done | tr ' ' '\n' | while read -r p; do [ -n "$p" ] && [ "$(cat /proc/"$p"/comm 2>/dev/null)" = etcd ] && echo "$p"; done | head -1)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
requests() {
  curl -sf --cacert "$tls/ca.crt" --cert "$tls/client.crt" --key "$tls/client.key" "https://$addr:2379/metrics" |
    awk '/^grpc_server_handled_total\{/ {s += $NF} END {printf "%d\n", s}'
}
hz=$(getconf CLK_TCK)

sleep 20 # the demo has just come up: its first observations and statuses settle
a0=$(cpu "$agent_pid"); e0=$(cpu "$etcd_pid"); r0=$(requests); t0=$(date +%s.%N)
sleep "$IDLE_SECS"
a1=$(cpu "$agent_pid"); e1=$(cpu "$etcd_pid"); r1=$(requests); t1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$agent_pid/status")

echo "## Idle demo (three hosts, three databases), leader $leader, ${IDLE_SECS} s"
echo
echo "| | CPU-s in ${IDLE_SECS} s | share of a core |"
echo "|---|---|---|"
python3 - "$a0" "$a1" "$e0" "$e1" "$t0" "$t1" "$hz" <<'EOF'
import sys
a0, a1, e0, e1, t0, t1, hz = map(float, sys.argv[1:])
secs = t1 - t0
for name, d in (("leader's agent", (a1 - a0) / hz), ("its etcd", (e1 - e0) / hz)):
    print(f"| {name} | {d:.2f} | {d / secs * 100:.2f} % |")
EOF
python3 -c "import sys; print(f'\netcd requests a second (grpc_server_handled_total on {sys.argv[4]}): {(int(sys.argv[2]) - int(sys.argv[1])) / float(sys.argv[3]):.1f}')" "$r0" "$r1" "$(python3 -c "print($t1 - $t0)")" "$leader"
echo "leader agent RSS: $((rss / 1024)) MiB"
echo

work="$DEMO/config"
echo "## Commit → applied, reload-only setting (work_mem) on orders"
echo
echo "| round | commit + push → first step dispatched | commit + push → Ready at the commit |"
echo "|---|---|---|"
for i in $(seq 1 "$ROUNDS"); do
  mem="$((8 + i))MB"
  python3 - "$work/databases/orders.yaml" "$mem" <<'EOF'
import re, sys
p, mem = sys.argv[1], sys.argv[2]
s = open(p).read()
if re.search(r"^  work_mem: .*$", s, re.M):
    s = re.sub(r"^  work_mem: .*$", f"  work_mem: {mem}", s, count=1, flags=re.M)
else:
    s = s.replace("postgresql_conf:\n", f"postgresql_conf:\n  work_mem: {mem}\n", 1)
open(p, "w").write(s)
EOF
  start=$(date +%s.%N)
  git -C "$work" commit -qam "work_mem $mem"
  git -C "$work" push -q origin HEAD:main
  sha=$(git -C "$work" rev-parse HEAD)
  deadline=$(( $(date +%s) + 120 ))
  until curl_api "$api/v1/databases/orders" | python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = d.get("observed_revision") == sys.argv[1] and any(c["type"] == "Ready" and c["status"] is True for c in d.get("conditions", []))
sys.exit(0 if ok else 1)' "$sha"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "round $i: not Ready within 120 s"; exit 1; }
    sleep 0.1
  done
  end=$(date +%s.%N)
  # The first task the leader wrote for orders after the commit (created_at).
  first=$(curl_api "$api/v1/tasks" | python3 -c '
import json, sys, datetime
start = float(sys.argv[1])
ts = []
for t in json.load(sys.stdin):
    c = t.get("created_at")
    if "orders" in t["id"] and c:
        at = datetime.datetime.fromisoformat(c.replace("Z", "+00:00")).timestamp()
        if at >= start:
            ts.append(at)
print(f"{min(ts) - start:.2f} s" if ts else "none")' "$start")
  python3 -c "print(f'| $i | $first | {$end - $start:.2f} s |')"
done
