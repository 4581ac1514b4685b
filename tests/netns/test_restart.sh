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
#      the history linearizable, every member's incarnation grew while the
#      pid each reports in its status stayed the one it was started as
#      (the restart execs a fresh image in the same process), each came
#      back with a delta (a checkpoint each, no snapshot sent), and the
#      digests agree at a checkpoint made afterwards;
#   2. a backup's copy is changed behind the group's back (the test-only
#      debug-corrupt command): at the next checkpoint the members compare
#      digests, the backup finds it is in the minority, leaves, discards
#      its files and comes back with the whole state from a good member;
#      the others count the divergence (smr_divergences_seen_total).  A
#      reader on the VIP runs throughout; after the rebuild the primary is
#      restarted (once or twice) until the rebuilt member holds the VIP,
#      and the reader goes on for 40+ reads with it as the primary: it
#      never read the corrupted value, and every read from the rebuilt
#      primary was good.  Then the digests agree at a new checkpoint, and
#      `smrctl restart --rebuild` rebuilds the member once (not again when
#      the request is replayed to it);
#   3. [restart] every = 4s: the primary restarts members by itself, in
#      turn; every member began a restart (its log says it is leaving to
#      restart: not a refusal) and came back as a newer incarnation; the
#      views in the members' logs never lack more than one member.
#
# "Digests agree" means: `smrctl digest` shows every member's digest equal
# at a position no older than member 1's applied position when the test
# asked for the checkpoint (an older row that agreed does not count).
# Any FAIL line makes the test fail (exit 1).
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
# inc_of ID LIST: ID's incarnation in an incarnations list, or nothing.
inc_of() { sed -n "s/.* $1=\([0-9]*\) .*/\1/p" <<<" $2 "; }
grew_all() { # BEFORE AFTER (incarnations lists): each member's is larger
  local i b a
  for i in 1 2 3; do
    b=$(inc_of "n$i" "$1")
    a=$(inc_of "n$i" "$2")
    [[ -n $a && -n $b && $a -gt $b ]] || return 1
  done
}
status_pids() { # each member's own pid, from its status: "pid1 pid2 pid3"
  local i out=()
  for i in 1 2 3; do out+=("$(json "$i" 'd["pid"]' 2>/dev/null || echo "?")"); done
  echo "${out[*]}"
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
digest_reached() { # POS: every member reported a digest at POS or later, all equal
  ctl 1 digest --json 2>/dev/null | $PY -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["agree"] is True and d["position"] >= int(sys.argv[1]) else 1)' "$1"
}
digests_agree() { # a checkpoint made now: not an older row that agreed
  local at
  at=$(json 1 'd["applied"]') && [[ $at =~ ^[0-9]+$ ]] &&
    ctl 1 checkpoint >/dev/null &&
    netns_wait_for 20 "digests reported by all at position $at or later, agreeing" \
      digest_reached "$at"
}

write_configs
start_group

# ---- 1. staggered restart under load ----------------------------------------
if [[ $ONLY == *" 1 "* ]]; then
  before=$(incarnations 1)
  # The pids the members report themselves (not the ones we recorded).
  pids_started="${PID[1]} ${PID[2]} ${PID[3]}"
  pids_before=$(status_pids)
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
  grew_all "$before" "$after" || grew=0
  pids_after=$(status_pids)
  alive_all=1
  for i in 1 2 3; do alive "$i" || alive_all=0; done
  # Each member says, before and after, the pid we started it as: the
  # restart exec'd a new image in the same process.
  if [[ $grew -eq 1 && $alive_all -eq 1 && $pids_before == "$pids_started" &&
        $pids_after == "$pids_started" ]]; then
    pass "every incarnation grew ($before -> $after), each member reports the pid it was started as before and after ($pids_after)"
  else
    fail "incarnations $before -> $after (grew: $grew), pids reported $pids_before -> $pids_after (started as $pids_started), all alive: $alive_all"
  fi
  # (awk, not grep -c: no match is a count of 0, not a failed pipeline.)
  n_ckpt=$(awk 'index($0, "for the restart took") || index($0, "restarting from the checkpoint at") {n++} END {print n+0}' "$WORK"/log[123])
  n_snap=$(awk 'index($0, "receiving the state at position") {n++} END {print n+0}' "$WORK"/log[123])
  if [[ $n_snap -eq 0 && $n_ckpt -eq 3 ]]; then
    pass "each member checkpointed as it left and came back with a delta (no snapshot sent)"
  else
    fail "$n_ckpt restart checkpoints, $n_snap whole-state transfers during the staggered restart"
    # Which member got what from whom, and why (the donors' lines).
    grep -h -E "sending n[0-9] |receiving the state at|restarting from|for the restart took|went on without us" \
      "$WORK"/log[123] | sort | sed 's/^/    /'
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
  b=$(others_of "$p" | sed -n 1p) # (sed reads it all: no SIGPIPE under pipefail)
  netns_exec c redis-cli -h $VIP set canary good >/dev/null
  netns_wait_for 10 "n$b has the canary" \
    bash -c "[[ \$(ip netns exec $(netns_name c) redis-cli -h $(netns_ip "$b") get canary) == good ]]"
  inc_b=$(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]')
  # A reader on the VIP for the whole scenario: one connection, GET in a
  # loop.  Every 20 reads it appends its counts so far to reader.progress
  # ("reads=N good=N evil=N other=N"); at the stop file it prints them
  # (and any other values it read) to reader.out.
  rm -f "$WORK/reader.stop" "$WORK/reader.progress"
  ip netns exec "$(netns_name c)" $PY -c '
import redis, sys, time
r = redis.Redis(host=sys.argv[1], port=6379, socket_timeout=10)
n = {"good": 0, "evil": 0, "other": 0}
others = set()
def counts():
    return "reads=%d good=%d evil=%d other=%d" % (
        sum(n.values()), n["good"], n["evil"], n["other"])
while True:
    try:
        open(sys.argv[2] + ".stop").close()
        break
    except FileNotFoundError:
        pass
    v = r.get("canary")
    if v in (b"good", b"evil"):
        n[v.decode()] += 1
    else:
        n["other"] += 1
        others.add(repr(v))
    if sum(n.values()) % 20 == 0:
        with open(sys.argv[2] + ".progress", "a") as f:
            f.write(counts() + "\n")
    time.sleep(0.005)
print(counts() + ("" if not others else " values=" + ",".join(sorted(others))))
' $VIP "$WORK/reader" >"$WORK/reader.out" 2>&1 &
  READER_PID=$!
  count_in() { # FIELD TEXT: the reader's count FIELD=N in TEXT (0 if none)
    local v
    v=$(sed -n "s/.*\<$1=\([0-9]*\).*/\1/p" <<<"$2")
    echo "${v:-0}"
  }
  reader_now() { # FIELD: from the reader's last progress line
    count_in "$1" "$(tail -n 1 "$WORK/reader.progress" 2>/dev/null || true)"
  }
  reader_past() { [[ $(reader_now reads) -ge $1 ]]; }
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
  # So far the reader read through the primary, never n$b: it could not
  # have seen the corruption.  Now the primary role moves to n$b while the
  # reader goes on (a restart of the primary hands the VIP to the next
  # rank; n$b, back last, may be two ranks down), and the reader reads
  # n$b's rebuilt copy.
  mark_reads='' mark_good=''
  if netns_wait_for 30 "the group settled after the rebuild" settled; then
    moves=0
    while [[ $(primary) != "$b" ]] && ((moves < 2)); do
      p=$(primary)
      moves=$((moves + 1))
      if ! ctl "$b" restart "n$p" --timeout 60 >"$WORK/move$moves.out" 2>&1; then
        fail "smrctl restart n$p (to move the primary role to n$b): $(tail -2 "$WORK/move$moves.out")"
        break
      fi
      netns_wait_for 30 "the group settled after n$p's restart" settled || break
    done
    if [[ $(primary) == "$b" ]]; then
      # Counts from the last progress line: every read after it is one
      # after n$b took the VIP or, at most 19 of them, just before.
      mark_reads=$(reader_now reads) mark_good=$(reader_now good)
      pass "n$b holds the VIP after $moves restart(s) of the primary (the reader at $mark_reads reads)"
      netns_wait_for 30 "the reader did 60 more reads (40 or more with n$b the primary)" \
        reader_past $((mark_reads + 60)) ||
        fail "the reader on the VIP stopped reading with n$b the primary ($(reader_now reads) reads; $(cat "$WORK/reader.out"))"
    else
      fail "n$b is not the primary after $moves restart(s) of the primary (the primary: n$(primary))"
    fi
  else
    fail "the group did not settle after n$b's rebuild"
  fi
  touch "$WORK/reader.stop"
  if wait_bounded "$READER_PID" 20; then
    r=$(cat "$WORK/reader.out")
    reads=$(count_in reads "$r") good=$(count_in good "$r") evil=$(count_in evil "$r")
    if [[ $r == reads=* && $good -ge 1 && $evil -eq 0 ]]; then
      pass "the reader on the VIP never saw the corrupted value ($r)"
    else
      fail "the reader on the VIP saw: $r"
    fi
    if [[ -n $mark_reads ]]; then
      n_after=$((reads - mark_reads)) good_after=$((good - mark_good))
      if [[ $n_after -ge 60 && $good_after -eq $n_after ]]; then
        pass "with n$b the primary the reader read its rebuilt copy: all $n_after reads since good"
      else
        fail "with n$b the primary: $good_after good of $n_after reads ($r)"
      fi
    fi
  else
    fail "the reader on the VIP did not stop"
  fi
  READER_PID=
  digests_agree && pass "digests agree after the rebuild" || fail "digests after the rebuild: $(ctl 1 digest 2>&1)"
  # An operator's rebuild: the member comes back from nothing once, and
  # the request, replayed to it as history, does not rebuild it again.
  # Asked through the primary, or another member if n$b is the primary.
  p=$(primary)
  [[ -n $p && $p != "$b" ]] || p=$(others_of "$b" | sed -n 1p)
  if ctl "$p" restart "n$b" --rebuild --timeout 60 >"$WORK/rebuild.out" 2>&1; then
    i1=$(json "$b" '[m["incarnation"] for m in d["members"] if m["id"] == "n'"$b"'"][0]')
    ctl "$p" checkpoint >/dev/null
    digests_agree >/dev/null || fail "digests after smrctl restart n$b --rebuild: $(ctl 1 digest 2>&1)"
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
  inc3=$(incarnations 1)
  restarted() { # every member began a restart at least once (not a refusal)
    local i
    for i in 1 2 3; do
      grep -q ": leaving the group, then restarting" "$WORK/log$i" || return 1
    done
  }
  grown3() { # some member sees all three with newer incarnations than at the start
    local i now
    for i in 1 2 3; do
      now=$(incarnations "$i" 2>/dev/null) || continue
      grew_all "$inc3" "$now" && return 0
    done
    return 1
  }
  if netns_wait_for 90 "every member restarted by the schedule" restarted; then
    pass "the schedule restarted every member ($(grep -h "rejuvenation: restarting" "$WORK"/log[123] | sed 's/.*restarting \(n[0-9]*\).*/\1/' | tr '\n' ' '))"
    if netns_wait_for 30 "every member back as a new incarnation" grown3; then
      pass "every member came back as a new incarnation ($inc3 -> $(for i in 1 2 3; do incarnations "$i" 2>/dev/null && break; done))"
    else
      fail "not every incarnation grew: $inc3 -> $(for i in 1 2 3; do incarnations "$i" 2>/dev/null && break; done)"
    fi
  else
    fail "the schedule did not restart every member"
  fi
  stop_group
  # The views every member installed, from its log: never fewer than two.
  views=$(cat "$WORK"/log[123] | { grep "view [0-9]*: [0-9] members" || true; } | sed 's/.*view \([0-9]*\): \([0-9]\) members.*members \(.*\)$/\1 \2 \3/' | sort -n -u)
  min=$(awk 'NR == 1 || $2 < m {m = $2} END {print m}' <<<"$views")
  if [[ ${min:-0} -ge 2 ]]; then
    pass "never two members away: the smallest of $(wc -l <<<"$views") views had $min members"
  else
    fail "a view had ${min:-?} members: $(tr '\n' ';' <<<"$views")"
  fi
fi

# (Every FAIL line fails the test, not only an abort.)
if [[ $failures -eq 0 ]]; then
  echo "test_restart: all passed"
  exit 0
fi
echo "test_restart: $failures failed"
exit 1
