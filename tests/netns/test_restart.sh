#!/usr/bin/env bash
# tests/netns/test_restart.sh -- staggered proactive restart, divergence
# detection and the rejuvenation schedule, with clients on the VIP.
#
# A 3-member KV group with mutual TLS and the VIP (tc-BPF gate), each
# member in its own namespace, stock clients in a fifth (as test_tcpr.sh).
#
#   1. `smrctl restart --staggered` through member 1 (which restarts too)
#      while redis-benchmark, a redis-cli session and kvhist.py run on
#      connections to the VIP opened before: no client error or reconnect,
#      the history linearizable, every member's incarnation grew (same
#      pid: a fresh process image), each came back with a delta, and the
#      digests agree at a checkpoint afterwards;
#   2. a backup's copy is changed behind the group's back (the test-only
#      debug-corrupt command): at the next checkpoint the members compare
#      digests, the backup finds it is in the minority, leaves, discards
#      its files and comes back with the whole state from a good member;
#      a reader on the VIP never sees the corrupted value; the others
#      count the divergence (smr_divergences_seen_total);
#   3. [restart] every = 4s: the primary restarts members by itself, in
#      turn; the views in the members' logs never lack more than one
#      member, and every member was restarted.
#
# Usage: test_restart.sh BUILD_DIR [SCENARIO...]   (as root; PASS/FAIL lines)
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR [SCENARIO...]}" && pwd)
shift
ONLY=" ${*:-1 2 3} "
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
MKCERTS=$SRC/smr/net/smr-mkcerts
KVHIST=$SRC/tests/netns/kvhist.py
PY=/usr/bin/python3
VIP=10.77.0.100

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (network namespaces, BPF, TCP_REPAIR)"
  exit 77
fi
for t in redis-cli redis-benchmark openssl iptables; do
  command -v $t >/dev/null || { echo "FAIL: $t is not installed"; exit 1; }
done
$PY -c 'import redis' 2>/dev/null || { echo "FAIL: python3-redis is not installed"; exit 1; }

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-restart-XXXXXX)
failures=0
cleanup() {
  local rc=$? p
  for p in ${CLIFEED_PID:-} ${CLI_PID:-} ${BENCH_PID:-} ${HIST_PID:-} ${READER_PID:-}; do
    kill -KILL "$p" 2>/dev/null || true
  done
  if [[ $rc -ne 0 || $failures -ne 0 ]]; then
    netns_log_tails "$WORK" 3 30
  fi
  netns_cleanup
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
netns_setup 3
trap cleanup EXIT
trap 'exit 1' TERM INT

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$MKCERTS" "$WORK/certs" n1 n2 n3 >/dev/null
SUSPECT_MS=${SMR_SUSPECT_MS:-300}

write_configs() { # [extra ini]
  netns_write_configs "$WORK" 3 "[failure]
heartbeat_ms = 20
suspect_ms = $SUSPECT_MS
[durability]
mode = fsync
checkpoint_every = 1000000
[vip]
address = $VIP/24
device = eth0
gate = bpf
[service]
port = 6379
[test]
corrupt_command = yes
${1:-}"
}

source "$SRC/tests/netns/group.sh"
source "$SRC/tests/netns/load.sh"

json() { # i python-expression-on-d: evaluates it on member i's status
  ctl "$1" status --json | $PY -c "import json,sys; d=json.load(sys.stdin); print($2)"
}
incarnations() { # i: "id=incarnation ..." as member i sees them
  json "$1" '" ".join("%s=%d" % (m["id"], m["incarnation"]) for m in d["members"])'
}
settled() { all_in_view && [[ -n $(primary) ]]; }
start_group() {
  local i
  for i in 1 2 3; do start "$i"; done
  netns_wait_for 30 "all three in a view of 3" all_in_view
  netns_wait_for 10 "a member holding the VIP" have_primary
}
stop_group() {
  local i
  for i in 1 2 3; do
    if alive "$i"; then kill -TERM "${PID[$i]}"; fi
  done
  for i in 1 2 3; do
    netns_wait_for 20 "n$i stopped" bash -c "! kill -0 ${PID[$i]} 2>/dev/null"
  done
}
digests_agree() {
  ctl 1 checkpoint >/dev/null &&
    netns_wait_for 20 "digests reported by all" \
      bash -c "'$SMRCTL' -s '$WORK/d1/admin.sock' digest --json 2>/dev/null | grep -q '\"agree\":true'"
}

write_configs
start_group

# ---- 1. staggered restart under load ----------------------------------------
if [[ $ONLY == *" 1 "* ]]; then
  before=$(incarnations 1)
  pids_before="${PID[1]} ${PID[2]} ${PID[3]}"
  LOAD_SECONDS=90 load_start s1 8
  if "$SMRCTL" -s "$WORK/d1/admin.sock" restart --staggered --pause 0.5 --timeout 60 \
       >"$WORK/staggered.out" 2>&1; then
    pass "smrctl restart --staggered returned: $(tail -1 "$WORK/staggered.out")"
  else
    fail "smrctl restart --staggered: $(tail -3 "$WORK/staggered.out")"
  fi
  sed 's/^/    /' "$WORK/staggered.out"
  load_stop s1 "staggered restart of all three"
  netns_wait_for 30 "the group settled" settled
  after=$(incarnations 1)
  grew=1
  for i in 1 2 3; do
    b=$(grep -o "n$i=[0-9]*" <<<"$before" | cut -d= -f2)
    a=$(grep -o "n$i=[0-9]*" <<<"$after" | cut -d= -f2)
    if [[ -z $a || -z $b || $a -le $b ]]; then grew=0; fi
  done
  pids_after="${PID[1]} ${PID[2]} ${PID[3]}"
  alive_all=1
  for i in 1 2 3; do alive "$i" || alive_all=0; done
  if [[ $grew -eq 1 && $alive_all -eq 1 && $pids_before == "$pids_after" ]]; then
    pass "every incarnation grew ($before -> $after), same pids ($pids_after)"
  else
    fail "incarnations $before -> $after, pids $pids_before -> $pids_after, all alive: $alive_all"
  fi
  n_ckpt=$(grep -h -c "for the restart took\|restarting from the checkpoint at" "$WORK"/log[123] | awk "{s+=\$1} END {print s+0}")
  n_snap=$(cat "$WORK"/log[123] | grep -c "receiving the state at position" || true)
  if [[ $n_snap -eq 0 && $n_ckpt -eq 3 ]]; then
    pass "each member checkpointed as it left and came back with a delta (no snapshot sent)"
  else
    fail "$n_ckpt restart checkpoints, $n_snap whole-state transfers during the staggered restart"
  fi
  if digests_agree; then
    pass "digests agree after the staggered restart"
  else
    fail "digests after the staggered restart: $(ctl 1 digest 2>&1)"
  fi
fi

# ---- 2. a diverged copy is found and rebuilt ---------------------------------
if [[ $ONLY == *" 2 "* ]]; then
  netns_wait_for 30 "the group settled" settled
  p=$(primary)
  b=$(others_of "$p" | head -1)
  netns_exec c redis-cli -h $VIP set canary good >/dev/null
  netns_wait_for 10 "n$b has the canary" \
    bash -c "[[ \$(ip netns exec $(netns_name c) redis-cli -h $(netns_ip "$b") get canary) == good ]]"
  inc_b=$(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]')
  # A reader on the VIP for the whole scenario: one connection, GET in a loop.
  ip netns exec "$(netns_name c)" $PY -c '
import redis, sys, time
r = redis.Redis(host=sys.argv[1], port=6379, socket_timeout=10)
seen = {}
while True:
    try:
        open(sys.argv[2] + ".stop").close()
        break
    except FileNotFoundError:
        pass
    v = r.get("canary")
    seen[v] = seen.get(v, 0) + 1
    time.sleep(0.005)
print(" ".join("%s=%d" % (k.decode() if k else None, n) for k, n in seen.items()))
' $VIP "$WORK/reader" >"$WORK/reader.out" 2>&1 &
  READER_PID=$!
  if ! ctl "$b" debug-corrupt canary evil >/dev/null 2>&1; then
    fail "debug-corrupt was refused"
  fi
  v=$(netns_exec c redis-cli -h "$(netns_ip "$b")" get canary)
  if [[ $v == evil ]]; then
    pass "n$b's own copy is corrupted (a read there gives \"$v\")"
  else
    fail "the corruption did not take (n$b reads \"$v\")"
  fi
  ctl "$p" checkpoint >/dev/null
  back() { # n$b came back: newer incarnation, in a view of 3, with its state
    in_view_of "$b" 3 &&
      [[ $(json "$b" '" ".join(str(m[k]) for m in d["members"] if m["id"] == "n'"$b"'" for k in ("incarnation", "state"))') == *" up" ]] &&
      [[ $(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]') -gt $inc_b ]]
  }
  if netns_wait_for 60 "n$b rebuilt" back; then
    pass "n$b found its digest in the minority, left and came back as a new process"
  else
    fail "n$b did not come back rebuilt"
  fi
  grep -q "our state diverged" "$WORK/log$b" &&
    pass "n$b's log says why: $(grep -h -m1 "our state diverged" "$WORK/log$b" | cut -d' ' -f5- | cut -c1-120)" ||
    fail "n$b's log has no divergence line"
  # The new process starts from nothing (its files were discarded) and
  # gets everything from the group: the snapshot, or the whole history
  # while the group still retains it.
  if sed -n '/our state diverged/,$p' "$WORK/log$b" | grep -q "state at 0$"; then
    how=$(sed -n '/our state diverged/,$p' "$WORK/log$b" | grep -q "receiving the state at" && echo "a snapshot" || echo "the whole history as a delta")
    pass "n$b came back with nothing and received the state from the group ($how)"
  else
    fail "n$b did not start again from nothing: $(sed -n '/our state diverged/,$p' "$WORK/log$b" | grep "state at" | head -1)"
  fi
  v=$(netns_exec c redis-cli -h "$(netns_ip "$b")" get canary)
  [[ $v == good ]] && pass "n$b's copy is good again" || fail "n$b reads \"$v\" after the rebuild"
  seen=$(ctl "$p" metrics | sed -n 's/^smr_divergences_seen_total{[^}]*} //p')
  [[ ${seen:-0} -ge 1 ]] && pass "the primary counted the divergence (smr_divergences_seen_total $seen)" ||
    fail "smr_divergences_seen_total on the primary is ${seen:-missing}"
  touch "$WORK/reader.stop"
  if wait_bounded "$READER_PID" 20; then
    r=$(cat "$WORK/reader.out")
    if [[ $r == *good=* && $r != *evil* ]]; then
      pass "the reader on the VIP never saw the corrupted value ($r)"
    else
      fail "the reader on the VIP saw: $r"
    fi
  else
    fail "the reader on the VIP did not stop"
  fi
  READER_PID=
  digests_agree && pass "digests agree after the rebuild" || fail "digests after the rebuild: $(ctl 1 digest 2>&1)"
  # An operator's rebuild: the member comes back from nothing once, and
  # the request, replayed to it as history, does not rebuild it again.
  if ctl "$p" restart "n$b" --rebuild --timeout 60 >"$WORK/rebuild.out" 2>&1; then
    i1=$(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]')
    ctl "$p" checkpoint >/dev/null
    digests_agree >/dev/null
    i2=$(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]')
    if [[ $i1 == "$i2" ]]; then
      pass "smrctl restart n$b --rebuild: $(tail -1 "$WORK/rebuild.out" | cut -c1-100); rebuilt once"
    else
      fail "n$b rebuilt again after smrctl restart --rebuild ($i1 -> $i2)"
    fi
  else
    fail "smrctl restart n$b --rebuild: $(tail -2 "$WORK/rebuild.out")"
  fi
fi

# ---- 3. rejuvenation schedule --------------------------------------------------
if [[ $ONLY == *" 3 "* ]]; then
  stop_group
  write_configs "[restart]
every = 4s
jitter = 1s"
  for i in 1 2 3; do mv "$WORK/log$i" "$WORK/log$i.before"; done
  start_group
  mark=$(date +%s)
  restarted() { # every member restarted at least once by the schedule
    local i
    for i in 1 2 3; do
      grep -q "asked to restart" "$WORK/log$i" || return 1
    done
  }
  if netns_wait_for 90 "every member restarted by the schedule" restarted; then
    pass "the schedule restarted every member ($(grep -h "rejuvenation: restarting" "$WORK"/log[123] | sed 's/.*restarting \(n[0-9]*\).*/\1/' | tr '\n' ' '))"
  else
    fail "the schedule did not restart every member"
  fi
  stop_group
  # The views every member installed, from its log: never fewer than two.
  views=$(grep -h "view [0-9]*: [0-9] members" "$WORK"/log[123] | sed 's/.*view \([0-9]*\): \([0-9]\) members.*members \(.*\)$/\1 \2 \3/' | sort -n -u)
  min=$(awk '{print $2}' <<<"$views" | sort -n | head -1)
  if [[ ${min:-0} -ge 2 ]]; then
    pass "never two members away: the smallest of $(wc -l <<<"$views") views had $min members"
  else
    fail "a view had ${min:-?} members: $(tr '\n' ';' <<<"$views")"
  fi
fi
exit 0
