#!/usr/bin/env bash
# bench/restart_bench.sh -- one staggered restart cycle of a 3-member KV
# group holding SIZE_MB of state, with and without a recent local
# checkpoint (issue 7's measurement).
#
# The group runs in network namespaces (tests/netns/lib.sh), mutual TLS,
# the VIP with the tc-BPF gate, fsync durability, no periodic checkpoints.
# It is filled with SIZE_MB of 1000-byte values (MSET through the VIP,
# redis-cli --pipe), checkpointed by every member (in the background), and
# then, while a writer (redis-benchmark SET on the VIP, 4 connections)
# keeps changing it:
#
#   A. smrctl restart --staggered: each member leaves, checkpoints where it
#      left, comes back as a new process that loads that checkpoint and
#      receives the delta (what the group applied while it was away);
#   B. smrctl restart --staggered --rebuild: each member discards its
#      files and receives the whole state from a donor (no local
#      checkpoint at all: a full transfer).
#
# For each member the figures come from smrctl's own timing (--json) and
# from the members' logs (checkpoint and load times); the bytes sent as
# state come from smr_state_transfer_bytes_sent_total.
#
# Usage: bench/restart_bench.sh BUILD_DIR     (as root; SIZE_MB=1024)
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
MKCERTS=$SRC/smr/net/smr-mkcerts
PY=/usr/bin/python3
VIP=10.77.0.100
SIZE_MB=${SIZE_MB:-1024}

[[ $(id -u) -eq 0 ]] || { echo "needs root (network namespaces)"; exit 77; }
source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-restart-bench-XXXXXX)
cleanup() {
  local rc=$?
  [[ -n ${WRITER_PID:-} ]] && kill -KILL "$WRITER_PID" 2>/dev/null
  [[ $rc -eq 0 ]] || netns_log_tails "$WORK" 3 20
  netns_cleanup
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
netns_setup 3
trap cleanup EXIT
trap 'exit 1' TERM INT
source "$SRC/tests/netns/group.sh"

"$MKCERTS" "$WORK/certs" n1 n2 n3 >/dev/null
netns_write_configs "$WORK" 3 "[failure]
heartbeat_ms = 20
suspect_ms = 1000
[durability]
mode = fsync
checkpoint_every = 1000000000000
[vip]
address = $VIP/24
device = eth0
gate = bpf
[service]
port = 6379"

metric() { # i name: the value of a metric on member i
  ctl "$1" metrics | sed -n "s/^$2{[^}]*} //p"
}
recv_bytes() { # state bytes the members' current processes received
  local i t=0 v
  for i in 1 2 3; do
    v=$(metric "$i" smr_state_transfer_bytes_received_total)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}
applied() { ctl "$1" status --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["applied"])'; }
same_applied() {
  local a
  a=$(applied 1)
  [[ $(applied 2) == "$a" && $(applied 3) == "$a" ]]
}
rss_mb() { # i: resident size of member i's smrd, MB
  awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/${PID[$1]}/status"
}

for i in 1 2 3; do start "$i"; done
netns_wait_for 30 "all three in a view of 3" all_in_view
netns_wait_for 10 "a member holding the VIP" have_primary

# ---- fill ---------------------------------------------------------------------
keys=$((SIZE_MB * 1024 * 1024 / 1000))
echo "filling: $keys keys of 1000 bytes ($SIZE_MB MB of values)"
t0=$(date +%s.%N)
$PY - "$keys" <<'EOF' | ip netns exec "$(netns_name c)" redis-cli -h $VIP --pipe >"$WORK/fill.out"
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
batch = 200
for first in range(0, n, batch):
    ks = range(first, min(n, first + batch))
    parts = [b"*%d\r\n$4\r\nMSET\r\n" % (1 + 2 * len(ks))]
    for i in ks:
        k = b"key:%010d" % i
        v = (b"%08d" % i) * 125
        parts.append(b"$%d\r\n%s\r\n$1000\r\n%s\r\n" % (len(k), k, v))
    out.write(b"".join(parts))
EOF
t1=$(date +%s.%N)
grep -q "errors: 0" "$WORK/fill.out" || { echo "fill failed: $(cat "$WORK/fill.out")"; exit 1; }
netns_wait_for 120 "every member applied the fill" same_applied
echo "filled in $(echo "$t1 - $t0" | bc) s; RSS n1 $(rss_mb 1) MB, n2 $(rss_mb 2) MB, n3 $(rss_mb 3) MB"

ctl 1 checkpoint >/dev/null
netns_wait_for 300 "every member checkpointed (digests agree)" \
  bash -c "'$SMRCTL' -s '$WORK/d1/admin.sock' digest --json 2>/dev/null | grep -q '\"agree\":true'"
ls -l "$WORK"/d1/checkpoint.smr | awk '{printf "checkpoint file: %d MB\n", $5 / 1048576}'
grep -h "written by process" "$WORK"/log[123] | sed 's/^/  /'
# A member whose loop stalls (e.g. on a log sync behind GBs of dirty
# checkpoint pages) is suspected and excluded: there should be none.
echo "views installed so far: $(grep -h -o 'view [0-9]*: [0-9] members' "$WORK"/log[123] | sort -u | tr '\n' ';')"
echo "members excluded so far: $(cat "$WORK"/log[123] | grep -c 'went on without us' || true)"

writer_start() {
  ip netns exec "$(netns_name c)" timeout -s INT 900 redis-benchmark -h $VIP -p 6379 \
    -c 4 -n 1000000000 -t set -r 200000 -d 100 -q >"$WORK/writer.$1" 2>&1 &
  WRITER_PID=$!
}
writer_stop() {
  kill -INT "$WRITER_PID" 2>/dev/null || true
  wait "$WRITER_PID" 2>/dev/null || true
  WRITER_PID=
  if grep -qiE "error|closed|reset" "$WORK/writer.$1"; then
    echo "  the writer saw: $(grep -iE 'error|closed|reset' "$WORK/writer.$1" | head -2)"
  fi
}

cycle() { # name [--rebuild]
  local name=$1
  shift
  local b1 p0 p1
  p0=$(applied 1)
  writer_start "$name"
  "$SMRCTL" -s "$WORK/d1/admin.sock" restart --staggered --timeout 600 --json "$@" \
    >"$WORK/$name.json"
  writer_stop "$name"
  netns_wait_for 60 "the group whole again" all_in_view
  # Every member restarted once: its new process's counter is what it
  # received in this cycle.
  b1=$(recv_bytes)
  p1=$(applied 1)
  $PY - "$WORK/$name.json" "$name" "$b1" "$((p1 - p0))" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("%s: one staggered cycle %.2f s (ok=%s); %d requests applied meanwhile; "
      "%.1f MB received as state" % (sys.argv[2], r["seconds"], r["ok"],
                                 int(sys.argv[4]), int(sys.argv[3]) / 1e6))
for m in r["restarted"]:
    print("  %-3s %6.2f s from the request to caught up; out of the view "
          "%.2f s" % (m["id"], m["seconds"], m["away_seconds"]))
EOF
}

# The members' own account of each restart: the checkpoint as it left,
# the new process's load of it, and what it received.
phases() { # since-line-count files
  local i
  for i in 1 2 3; do
    tail -n +"$(( ${MARK[$i]} + 1 ))" "$WORK/log$i" |
      grep -E "asked to restart|for the restart took|restarting from the checkpoint|stopped; starting|state at [0-9]+, |serving kv|receiving the state|state received|written by process" |
      sed 's/^/  /' || true
  done
}
# Per member: local = from the old process stopping to the new one
# holding its recovered state (checkpoint load and log replay: grows
# with the state); rejoin = from the new process serving to caught up
# (smrctl's end: the group-facing part, the delta or the snapshot).
split() { # name
  local i
  for i in 1 2 3; do
    tail -n +"$(( ${MARK[$i]} + 1 ))" "$WORK/log$i" | sed "s/^/n$i /"
  done | $PY -c '
import json, sys, datetime
r = {m["id"]: m for m in json.load(open(sys.argv[1]))["restarted"]}
def ts(line):
    return datetime.datetime.strptime(line.split()[1], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
ev = {}
for line in sys.stdin:
    node = line.split()[0]
    for key, pat in (("asked", "asked to restart"), ("stopped", "stopped; starting"),
                     ("loaded", "member " + node + " of group"), ("serving", "serving kv")):
        e = ev.setdefault(node, {})
        # (the new process\x27s lines: after the old one stopped)
        if pat in line and key not in e and (key in ("asked", "stopped") or "stopped" in e):
            e[key] = ts(line)
for node in sorted(r):
    e, m = ev.get(node, {}), r[node]
    if not all(k in e for k in ("asked", "stopped", "loaded", "serving")):
        continue
    print("  %s: local %.2f s, rejoin %.2f s" % (node, e["loaded"] - e["stopped"],
                                                 e["asked"] + m["seconds"] - e["serving"]))
' "$WORK/$1.json"
}
declare -A MARK
mark() { local i; for i in 1 2 3; do MARK[$i]=$(wc -l <"$WORK/log$i"); done; }

mark
cycle A
split A
phases
mark
cycle B --rebuild
split B
phases
echo "RSS after: n1 $(rss_mb 1) MB, n2 $(rss_mb 2) MB, n3 $(rss_mb 3) MB"
