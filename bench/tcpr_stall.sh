#!/usr/bin/env bash
# bench/tcpr_stall.sh -- the client-visible stall of a TCP-R failover.
#
# A 3-member KV group (smrd, mutual TLS, durability fsync, heartbeat 20 ms,
# suspect 200 ms), each member in its own network namespace on one bridge
# (tests/netns/lib.sh), the VIP 10.77.0.100/24 following the primary, the
# tc-BPF ACK gate.  In the client namespace, bench/stall_tool.py keeps
# --conns connections (default 4) to the VIP, each issuing INCR on its own
# key back to back and timestamping every reply.  Per case, --kills times
# (default 20): kill the primary, wait until another member holds the VIP
# and every connection got a reply after that (bounded), let the load run
# 0.5 s,
# then bring the killed member back and wait until it is in the view.
#
#   a. replicated: [test] reply_delay_ms = 20 -- the primary holds each
#      reply 20 ms after the group applied the request, so a SIGKILL
#      mostly lands after replication, before the reply; goal p99 <= 50 ms
#      over the samples whose in-flight request was replicated before the
#      kill.  Which were is read from the new primary's connection table
#      (smrctl connections) right after the takeover, before any client
#      retransmits: it holds the request's end iff it was replicated.
#   b. not yet replicated: [test] replication_delay_ms = 60 -- the primary
#      holds each request 60 ms before submitting it, so a SIGKILL lands
#      between receipt and replication; the client has to retransmit
#      (its RTO, >= 200 ms): no stall goal, only zero broken connections.
#   c. host death: the primary's link is cut (no knob); goal p99 <=
#      suspect_ms + 30 ms over all samples.  Afterwards its smrd is killed,
#      the link put back and smrd restarted.  The takeover lands about
#      suspect_ms after the cut; a client whose request was lost resends it
#      at its RTO (200 ms minimum on Linux), and a resend that comes before
#      the takeover is lost too: the next one is an RTO later.  So the goal
#      holds when suspect_ms plus the view change stays under the client's
#      RTO: --suspect 190 does, the default 200 races it.
#
# The stall (per kill and connection: the largest gap between two replies
# open at some instant between the kill and the moment the new primary was
# seen holding the VIP; later gaps are the new primary's ordinary service,
# reported apart as the window figure) includes the knob's own delay; the
# baseline (the same connection's largest gap in the second
# before the kill) is reported next to it.  Every connection failure
# counts as broken (the goal is zero); the client replaces a broken
# connection so that the run goes on, and checks every INCR reply is the
# previous plus one.
#
# Usage: bench/tcpr_stall.sh BUILD_DIR [--kills N] [--conns N]
#                            [--cases "a b c"] [--out FILE] [--capture DIR]
#                            [--suspect MS] [--heartbeat MS] [--gate bpf|kmod]
#                            [--test "KEY = VALUE"]  (one more [test] line)
#   (--gate kmod needs the smr_tcpr module loaded: bench/vm_stall.sh runs
#   both gates in the VM, where it can be)
#   (as root; --capture: bench/pktlog.py logs the client namespace's packets
#   to DIR/<case>.pkts, and the kill times are in DIR/<case>.kills)
# Takes about 3-4 s per kill plus ~10 s per case: ~4-5 min with 3 x 20.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=
KILLS=20
CONNS=4
CASES="a b c"
OUT=$SRC/bench/results/tcpr_stall.json
CAPTURE=
SUSPECT_MS=200
HEARTBEAT_MS=20
GATE=bpf
TEST_EXTRA=
while [[ $# -gt 0 ]]; do
  case $1 in
  --suspect) SUSPECT_MS=$2; shift 2 ;;
  --heartbeat) HEARTBEAT_MS=$2; shift 2 ;;
  --gate) GATE=$2; shift 2 ;;
  --test) TEST_EXTRA=$2; shift 2 ;;
  --kills) KILLS=$2; shift 2 ;;
  --conns) CONNS=$2; shift 2 ;;
  --cases) CASES=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  --capture) CAPTURE=$2; shift 2 ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "unknown option $1" >&2; exit 2 ;;
  *) BUILD=$1; shift ;;
  esac
done
[[ -n $BUILD ]] || { echo "usage: $0 BUILD_DIR [--kills N] [--conns N] [--cases \"a b c\"] [--out FILE]" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
MKCERTS=$SRC/smr/net/smr-mkcerts
TOOL=$SRC/bench/stall_tool.py
PY=/usr/bin/python3
VIP=10.77.0.100

if [[ $(id -u) -ne 0 ]]; then
  echo "needs root (network namespaces, BPF, TCP_REPAIR)" >&2
  exit 77
fi
[[ -x $SMRD && -x $SMRCTL ]] || { echo "no smrd/smrctl under $BUILD" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-bench-stall-XXXXXX)
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

write_configs() { # extra lines for [test] (may be empty)
  local test=""
  [[ -z $1 && -z $TEST_EXTRA ]] || test=$'\n[test]\n'"$1"$'\n'"$TEST_EXTRA"
  netns_write_configs "$WORK" 3 "[failure]
heartbeat_ms = $HEARTBEAT_MS
suspect_ms = $SUSPECT_MS
[durability]
mode = fsync
checkpoint_every = 20000
[vip]
address = $VIP/24
device = eth0
gate = $GATE
[service]
port = 6379$test"
}

source "$SRC/tests/netns/group.sh"

stop_group() {
  local i
  for i in 1 2 3; do
    [[ -z ${PID[$i]:-} ]] || kill9 "$i"
    netns_link_up "$i"
  done
  rm -rf "$WORK"/d1 "$WORK"/d2 "$WORK"/d3
}
start_group() {
  local i
  for i in 1 2 3; do start "$i"; done
  netns_wait_for 30 "a view of 3" all_in_view
  netns_wait_for 10 "a member holding the VIP" have_primary
}

# served_since T: every client connection is connected and got a reply
# after wall time T.
served_since() {
  [[ -s $STATUS ]] && awk -v t="$1" -v n="$CONNS" '
    { if ($3 > t && $5 == 1) ok++; seen++ }
    END { exit !(seen == n && ok == n) }' "$STATUS"
}
clients_running() { served_since 0; }

run_case() { # ID NAME KIND(process|host) "KNOB LINES" GOAL_MS GOAL_WHAT [GOAL_ON]
  local id=$1 name=$2 kind=$3 knob=$4 goal=$5 what=$6 goal_on=${7:-all}
  local k p np status t_kill t_vip t_end
  local t0=$SECONDS
  echo "== case $name: $kind kill, ${knob:-no knob}, $KILLS kills, $CONNS connections" >&2
  stop_group
  write_configs "$knob"
  start_group
  STATUS=$WORK/$id.status
  rm -f "$WORK/$id.stop" "$STATUS"
  spawn c "$WORK/$id.client.log" $PY "$TOOL" client --host $VIP \
    --port 6379 --conns "$CONNS" --status "$STATUS" --out "$WORK/$id.client.json" \
    --stop-file "$WORK/$id.stop" --check
  local cpid=$NETNS_LAST_PID
  netns_wait_for 30 "the clients running" clients_running
  if [[ -n $CAPTURE ]]; then
    mkdir -p "$CAPTURE"
    spawn c "$WORK/$id.pktlog.log" $PY "$SRC/bench/pktlog.py" \
      --out "$CAPTURE/$id.pkts" --stop-file "$WORK/$id.stop"
  fi
  sleep 1.5 # a baseline before the first kill
  : >"$WORK/$id.kills"
  for ((k = 1; k <= KILLS; k++)); do
    netns_wait_for 10 "a member holding the VIP" have_primary
    p=$(primary)
    t_kill=$EPOCHREALTIME
    if [[ $kind == host ]]; then
      netns_link_down "$p"
    else
      kill -KILL "${PID[$p]}"
    fi
    status=ok
    if ! np=$(new_primary_after "$p"); then
      np=none
      status=no_takeover
    fi
    # Replies that were under way when the kill happened do not count
    # (a link cut takes a few ms to act): served again = after the takeover.
    t_vip=$EPOCHREALTIME
    # The new primary's table now, before any client retransmits (>= 200
    # ms after its send): which in-flight requests were replicated.
    [[ $np == none ]] || ctl "$np" connections --json >"$WORK/$id.tab.$k" 2>/dev/null || true
    if ! netns_wait_for 10 "every connection served again" served_since "$t_vip"; then
      [[ $status != ok ]] || status=no_reply
    fi
    sleep 0.5 # the load runs on through the new primary
    t_end=$EPOCHREALTIME
    echo "$k n$p n$np $t_kill $t_end $status $t_vip" >>"$WORK/$id.kills"
    printf '  kill %2d: n%s -> n%s %s\n' "$k" "$p" "$np" "$status" >&2
    # Bring the killed member back.
    kill9 "$p"
    [[ $kind != host ]] || netns_link_up "$p"
    start "$p"
    netns_wait_for 30 "n$p back in the view" all_in_view
    sleep 0.5
  done
  touch "$WORK/$id.stop"
  local n
  for ((n = 0; n < 150; n++)); do # the client writes its record and exits
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$cpid" 2>/dev/null && { echo "the client did not stop" >&2; return 1; }
  [[ -z $CAPTURE ]] || cp "$WORK/$id.kills" "$CAPTURE/$id.kills"
  $PY "$TOOL" analyze --client "$WORK/$id.client.json" --kills "$WORK/$id.kills" \
    --case "$name" --knob "${knob:-none}" ${goal:+--goal-ms "$goal"} --goal-what "$what" \
    --goal-on "$goal_on" --tables "$WORK/$id.tab" \
    >"$WORK/$id.result.json"
  echo "   ($((SECONDS - t0)) s)" >&2
}

T0=$SECONDS
results=()
for c in $CASES; do
  case $c in
  a) run_case a "a. replicated, process SIGKILL" process "reply_delay_ms = 20" 50 \
       "p99 <= 50 ms (in-flight request replicated, primary process killed), 0 broken" \
       replicated ;;
  b) run_case b "b. not yet replicated, SIGKILL" process "replication_delay_ms = 60" "" \
       "0 broken (no stall goal: the client must retransmit, RTO >= 200 ms)" ;;
  c) run_case c "c. host death (link cut)" host "" $((SUSPECT_MS + 30)) \
       "p99 <= suspect_ms + 30 ms = $((SUSPECT_MS + 30)) ms (primary host died), 0 broken" ;;
  *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  results+=("$WORK/$c.result.json")
done

$PY - "$OUT" "$KILLS" "$CONNS" "$SUSPECT_MS" "$HEARTBEAT_MS" "$((SECONDS - T0))" "$GATE" "${results[@]}" <<'EOF'
import json, os, sys, time
out, kills, conns, suspect, hb, secs, gate, *files = sys.argv[1:]
d = {
    "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    "machine": f"{os.uname().release}, {os.cpu_count()} cpus",
    "note": f"3 smrd members + client in network namespaces on one host, "
            f"gate {gate}, heartbeat {hb} ms, suspect {suspect} ms, "
            f"{conns} connections",
    "kills_per_case": int(kills), "run_s": int(secs),
    "cases": [json.load(open(f)) for f in files],
}
json.dump(d, open(out, "w"))
EOF
$PY "$TOOL" report "$OUT"
echo "results: $OUT (whole run $((SECONDS - T0)) s)"
