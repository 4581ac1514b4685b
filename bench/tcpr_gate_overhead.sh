#!/usr/bin/env bash
# bench/tcpr_gate_overhead.sh -- what the TCP-R ACK gate costs in
# throughput: redis-benchmark against the VIP with [vip] gate = bpf versus
# gate = off, in the same run.
#
# The topology of bench/tcpr_stall.sh: a 3-member KV group (smrd, mutual
# TLS, heartbeat 20 ms, suspect 200 ms) in network namespaces on one bridge,
# the VIP on the primary, redis-benchmark in the client namespace.  With
# gate = off everything else of TCP-R still runs (connection table
# replication, VIP, keeper); only the gate's work is gone: the tc-BPF
# egress program and the per-request release (a BPF map update).
#
# --rounds R (default 3) rounds, each running both gates in alternating
# order (bpf first in odd rounds, off first in even ones); every run starts
# a fresh group (data dirs wiped) and runs, one after the other:
#   pipelined:   redis-benchmark -c 20 -P 16 -t set,get -n 200000
#   unpipelined: redis-benchmark -c 20 -P 1  -t set,get -n 100000
# Reported: the median requests/s of each gate and test over the rounds,
# every round's figure, and the overhead (off - bpf) / off in %.  Goal:
# at most 5 %.  --durability fsync|memory (default fsync, as in the stall
# benchmark and the integration test).
#
# Usage: bench/tcpr_gate_overhead.sh BUILD_DIR [--rounds R]
#          [--durability fsync|memory] [--out FILE]          (as root)
# Takes about 35 s per round and gate: ~3.5 min with 3 rounds.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=
ROUNDS=3
DURABILITY=fsync
OUT=$SRC/bench/results/tcpr_gate_overhead.json
while [[ $# -gt 0 ]]; do
  case $1 in
  --rounds) ROUNDS=$2; shift 2 ;;
  --durability) DURABILITY=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "unknown option $1" >&2; exit 2 ;;
  *) BUILD=$1; shift ;;
  esac
done
[[ -n $BUILD ]] || { echo "usage: $0 BUILD_DIR [--rounds R] [--durability fsync|memory] [--out FILE]" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
MKCERTS=$SRC/smr/net/smr-mkcerts
PY=/usr/bin/python3
VIP=10.77.0.100
TESTS=(
  "pipelined|-c 20 -P 16 -t set,get -n 200000"
  "unpipelined|-c 20 -P 1 -t set,get -n 100000"
)

if [[ $(id -u) -ne 0 ]]; then
  echo "needs root (network namespaces, BPF, TCP_REPAIR)" >&2
  exit 77
fi
[[ -x $SMRD ]] || { echo "no smrd under $BUILD" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is not installed" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-bench-gate-XXXXXX)
cleanup() {
  local rc=$?
  [[ $rc -eq 0 ]] || netns_log_tails "$WORK" 3 15
  netns_cleanup
  if [[ -n ${KEEP:-} ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
netns_setup 3
trap cleanup EXIT
trap 'exit 1' TERM INT

"$MKCERTS" "$WORK/certs" n1 n2 n3 >/dev/null

write_configs() { # gate
  netns_write_configs "$WORK" 3 "[failure]
heartbeat_ms = 20
suspect_ms = 200
[durability]
mode = $DURABILITY
checkpoint_every = 20000
[vip]
address = $VIP/24
device = eth0
gate = $1
[service]
port = 6379"
}

source "$SRC/tests/netns/group.sh"
vip_gate_is() { # gate: some member holds the VIP with that gate
  local i s
  for i in 1 2 3; do
    s=$(ctl "$i" status --json 2>/dev/null) || continue
    if grep -q '"vip_held":true' <<<"$s"; then
      grep -q "\"gate\":\"$1\"" <<<"$s" && return 0
      echo "n$i holds the VIP with $(grep -o '"gate":"[a-z]*"' <<<"$s")" >&2
      return 1
    fi
  done
  return 1
}
start_group() { # gate
  local i
  write_configs "$1"
  rm -rf "$WORK"/d1 "$WORK"/d2 "$WORK"/d3
  # Fresh hosts: no tc program or VIP left by the previous run.  (smrd with
  # gate = off leaves a tcpr_gate program that a killed gate = bpf member
  # left attached, fenced: the VIP is then black-holed -- reported.)
  for i in 1 2 3; do
    netns_exec "n$i" tc qdisc del dev eth0 clsact 2>/dev/null || true
    netns_exec "n$i" ip addr del "$VIP/24" dev eth0 2>/dev/null || true
  done
  for i in 1 2 3; do start "$i"; done
  netns_wait_for 30 "a view of 3" all_in_view
  netns_wait_for 10 "the VIP held with gate $1" vip_gate_is "$1"
}
stop_group() {
  local i
  for i in 1 2 3; do kill9 "$i"; done
}

# bench LABEL ARGS: one redis-benchmark run; appends "gate round label
# test rps" lines to $WORK/rps.
bench() { # gate round label args...
  local gate=$1 round=$2 label=$3
  shift 3
  local out
  # (redis-benchmark retries forever when it cannot connect: bounded.)
  out=$(netns_exec c timeout -s INT 300 redis-benchmark -h $VIP -p 6379 "$@" --csv 2>&1) || {
    echo "redis-benchmark failed: $out" >&2
    return 1
  }
  # CSV: "SET","41152.26",... (a header line first with redis 7)
  awk -F, -v g="$gate" -v r="$round" -v l="$label" '
    $1 ~ /^"(SET|GET)"$/ { gsub(/"/, "", $1); gsub(/"/, "", $2); print g, r, l, $1, $2 }' \
    <<<"$out" | tee -a "$WORK/rps" >&2
}

T0=$SECONDS
: >"$WORK/rps"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order="bpf off"; else order="off bpf"; fi
  for gate in $order; do
    echo "== round $r, gate $gate" >&2
    start_group "$gate"
    sleep 1
    for t in "${TESTS[@]}"; do
      # shellcheck disable=SC2086
      bench "$gate" "$r" "${t%%|*}" ${t#*|}
    done
    stop_group
  done
done

$PY - "$WORK/rps" "$OUT" "$ROUNDS" "$DURABILITY" "$((SECONDS - T0))" "${TESTS[@]}" <<'EOF'
import json, os, statistics, sys, time
rps_file, out, rounds, durability, secs, *tests = sys.argv[1:]
rows = [l.split() for l in open(rps_file) if l.strip()]
params = dict(t.split("|", 1) for t in tests)
res = []
for label in params:
    for cmd in ("SET", "GET"):
        per = {g: [float(x[4]) for x in rows if x[0] == g and x[2] == label
                   and x[3] == cmd] for g in ("bpf", "off")}
        if not per["bpf"] or not per["off"]:
            continue
        mb, mo = statistics.median(per["bpf"]), statistics.median(per["off"])
        res.append({"test": label, "cmd": cmd, "params": params[label],
                    "bpf_rps": per["bpf"], "off_rps": per["off"],
                    "bpf_median": mb, "off_median": mo,
                    "overhead_pct": round((mo - mb) / mo * 100, 1)})
d = {"when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
     "machine": f"{os.uname().release}, {os.cpu_count()} cpus",
     "note": f"3 smrd members + redis-benchmark in network namespaces on one "
             f"host, durability {durability}, rounds {rounds} "
             f"(order alternating), every run on a fresh group",
     "run_s": int(secs), "goal_pct": 5, "results": res}
json.dump(d, open(out, "w"), indent=1)
print(f"TCP-R gate overhead ({d['when']}; {d['note']})")
print(f"{'test':<12} {'cmd':<4} {'gate off rps':>13} {'gate bpf rps':>13} "
      f"{'overhead':>9}  verdict   (every round: off | bpf)")
for x in res:
    v = "MET" if x["overhead_pct"] <= 5 else "NOT MET"
    print(f"{x['test']:<12} {x['cmd']:<4} {x['off_median']:>13.0f} "
          f"{x['bpf_median']:>13.0f} {x['overhead_pct']:>8.1f}%  {v:<8}  "
          f"{' '.join(f'{v:.0f}' for v in x['off_rps'])} | "
          f"{' '.join(f'{v:.0f}' for v in x['bpf_rps'])}")
print("medians over the rounds; overhead = (off - bpf) / off; goal <= 5 %")
EOF
echo "results: $OUT (whole run $((SECONDS - T0)) s)"
