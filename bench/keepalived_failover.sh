#!/usr/bin/env bash
# bench/keepalived_failover.sh -- the baseline TCP-R is compared with: a
# plain Redis server behind a VRRP virtual IP (keepalived), where a
# failover breaks every established connection.
#
# The same topology as bench/tcpr_stall.sh (tests/netns/lib.sh): servers
# n1 and n2 and the client c on one bridge, VIP 10.77.0.100/24 on eth0 of
# the master.  Each server namespace runs its own redis-server (7.x, no
# persistence, no replication: two independent servers -- the data does not
# follow the VIP; only the connection behaviour is measured) and its own
# keepalived (VRRP only, unicast to the peer, state BACKUP + nopreempt on
# both so that a restarted node does not take the VIP back, priorities
# 150/100, advert_int from --advert-int, a list run one after the other
# (default "1 0.1": keepalived's default, and 100 ms, which needs VRRPv3 --
# used for every value below 1 s); config, pid files and logs in a temp dir;
# nothing touches the host's own interfaces.  The client
# (bench/stall_tool.py) keeps --conns connections (default 4) to the VIP
# issuing INCR back to back; a connection that fails is recorded as broken
# and replaced at once (connect attempts every 20 ms).
#
# Variants (--variants, default both):
#   process  SIGKILL of the master's redis-server and keepalived (VRRP
#            child first, then its parent: no priority-0 advert, the VIP
#            stays on the dead host's interface -- a crash);
#   host     the master's link is cut (host death).
# Per kill: which connections broke, and the time from the kill until a
# replacement connection got its first reply ("served again").  Then the
# killed node is brought back: its leftover VIP removed (as a reboot
# would), the link up, redis-server and keepalived restarted; it comes up
# as BACKUP (nopreempt) and the next kill hits the current master.
#
# Usage: bench/keepalived_failover.sh [--kills N] [--conns N]
#          [--advert-int "S..."] [--variants "process host"] [--out FILE]
#          [--tcpr FILE] [--capture DIR]                   (as root)
# --capture: bench/pktlog.py logs the client namespace's packets to
# DIR/<variant>-<advert>.pkts (kill times in DIR/<variant>-<advert>.kills).
# --tcpr: bench/tcpr_stall.sh's JSON for the side-by-side summary
# (default bench/results/tcpr_stall.json).  A kill takes about 6 s with
# advert_int 1 and 3 s with 0.1: ~3 min for the defaults (2 x 2 x 10 kills).
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
KILLS=10
CONNS=4
ADVERTS="1 0.1"
VARIANTS="process host"
OUT=$SRC/bench/results/keepalived_failover.json
TCPR=$SRC/bench/results/tcpr_stall.json
CAPTURE=
while [[ $# -gt 0 ]]; do
  case $1 in
  --kills) KILLS=$2; shift 2 ;;
  --conns) CONNS=$2; shift 2 ;;
  --advert-int) ADVERTS=$2; shift 2 ;;
  --variants) VARIANTS=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  --tcpr) TCPR=$2; shift 2 ;;
  --capture) CAPTURE=$2; shift 2 ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
TOOL=$SRC/bench/stall_tool.py
PY=/usr/bin/python3
VIP=10.77.0.100

if [[ $(id -u) -ne 0 ]]; then
  echo "needs root (network namespaces)" >&2
  exit 77
fi
for t in keepalived redis-server; do
  command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
mkdir -p "$(dirname "$OUT")"
OUT=$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-bench-vrrp-XXXXXX)
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    for i in 1 2; do
      echo "--- n$i keepalived log (tail)" >&2
      tail -15 "$WORK/ka$i.log" 2>/dev/null >&2 || true
    done
  fi
  local i
  # keepalived's VRRP children are not in NETNS_PIDS.
  for i in 1 2; do ka_kill "$i" 2>/dev/null || true; done
  netns_cleanup
  if [[ -n ${KEEP:-} ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
netns_setup 2
trap cleanup EXIT
trap 'exit 1' TERM INT

write_config() { # i
  local i=$1 peer prio
  peer=$((3 - i))
  prio=$((i == 1 ? 150 : 100))
  cat >"$WORK/ka$i.conf" <<EOF
global_defs {
  router_id bench-n$i
  vrrp_version $VERSION
  # no scripts, no SNMP, no mail
}
vrrp_instance VI_bench {
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 77
  priority $prio
  advert_int $ADVERT
  unicast_src_ip $(netns_ip "$i")
  unicast_peer {
    $(netns_ip "$peer")
  }
  virtual_ipaddress {
    $VIP/24 dev eth0
  }
}
EOF
}

spawn() { # netns_spawn without the shell's "Killed" job reports
  netns_spawn "$@"
  disown "$NETNS_LAST_PID"
}

declare -A RPID KPID
redis_start() { # i
  mkdir -p "$WORK/r$1"
  spawn "n$1" "$WORK/redis$1.log" redis-server --port 6379 --bind 0.0.0.0 \
    --protected-mode no --save '' --appendonly no --daemonize no \
    --dir "$WORK/r$1" --logfile ''
  RPID[$1]=$NETNS_LAST_PID
}
ka_start() { # i
  rm -f "$WORK/ka$1.pid" "$WORK/ka$1.vrrp.pid"
  spawn "n$1" "$WORK/ka$1.log" keepalived -n -l -D -G -R -P \
    -f "$WORK/ka$1.conf" -p "$WORK/ka$1.pid" -r "$WORK/ka$1.vrrp.pid" \
    -c "$WORK/ka$1.chk.pid" -b "$WORK/ka$1.bfd.pid"
  KPID[$1]=$NETNS_LAST_PID
}
# ka_kill i: SIGKILL keepalived's VRRP child, then the parent (a crash: no
# priority-0 advert, the VIP left on the interface).
ka_kill() {
  local child
  child=$(cat "$WORK/ka$1.vrrp.pid" 2>/dev/null || true)
  [[ -z $child ]] || netns_kill "$child"
  [[ -z ${KPID[$1]:-} ]] || netns_kill "${KPID[$1]}"
}
has_vip() { netns_exec "n$1" ip -4 addr show dev eth0 | grep -q "inet $VIP/"; }
redis_up() { netns_exec "n$1" redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
ka_state_count() { # i STATE -> how many times its log says it entered STATE
  grep -c "Entering $2 STATE" "$WORK/ka$1.log" 2>/dev/null || true
}
is_backup_since() { # i n: entered BACKUP more than n times
  [[ $(ka_state_count "$1" BACKUP) -gt $2 ]]
}
master() { # the node holding the VIP with its keepalived alive
  local i
  for i in 1 2; do
    if kill -0 "${KPID[$i]:-0}" 2>/dev/null && has_vip "$i"; then
      echo "$i"
      return
    fi
  done
}
have_master() { [[ -n $(master) ]]; }
vip_on() { has_vip "$1" && kill -0 "${KPID[$1]}" 2>/dev/null; }

served_since() { # T: every connection connected and answered after T
  [[ -s $STATUS ]] && awk -v t="$1" -v n="$CONNS" '
    { if ($3 > t && $5 == 1) ok++; seen++ }
    END { exit !(seen == n && ok == n) }' "$STATUS"
}

# run_advert S: both servers and keepalived with advert_int S, every
# variant, then everything stopped.
run_advert() {
  ADVERT=$1
  # Fractional advert intervals need VRRPv3.
  VERSION=2
  if $PY -c "import sys; sys.exit(0 if float('$ADVERT') < 1 else 1)"; then VERSION=3; fi
  for i in 1 2; do
    write_config "$i"
    redis_start "$i"
  done
  for i in 1 2; do netns_wait_for 20 "redis-server on n$i" redis_up "$i"; done
  for i in 1 2; do ka_start "$i"; done
  netns_wait_for 30 "a VRRP master" have_master
  echo "VRRP v$VERSION, advert_int $ADVERT s: master n$(master)" >&2

  for variant in $VARIANTS; do
    case $variant in process | host) ;; *) echo "unknown variant $variant" >&2; exit 2 ;; esac
    tv=$SECONDS
    tag=$variant-$ADVERT
    echo "== $variant kill, $KILLS kills, $CONNS connections" >&2
    STATUS=$WORK/$tag.status
    rm -f "$WORK/$tag.stop" "$STATUS"
    spawn c "$WORK/$tag.client.log" $PY "$TOOL" client --host $VIP --port 6379 \
      --conns "$CONNS" --status "$STATUS" --out "$WORK/$tag.client.json" \
      --stop-file "$WORK/$tag.stop"
    cpid=$NETNS_LAST_PID
    netns_wait_for 30 "the clients running" served_since 0
    if [[ -n $CAPTURE ]]; then
      mkdir -p "$CAPTURE"
      spawn c "$WORK/$tag.pktlog.log" $PY "$SRC/bench/pktlog.py" \
        --out "$CAPTURE/$tag.pkts" --stop-file "$WORK/$tag.stop"
    fi
    sleep 1 # a measurement window: the baseline gaps before the first kill
    : >"$WORK/$tag.kills"
    for ((k = 1; k <= KILLS; k++)); do
      netns_wait_for 30 "a VRRP master" have_master
      p=$(master)
      o=$((3 - p))
      t_kill=$EPOCHREALTIME
      if [[ $variant == host ]]; then
        netns_link_down "$p"
      else
        child=$(cat "$WORK/ka$p.vrrp.pid")
        kill -KILL "$child" "${KPID[$p]}" "${RPID[$p]}"
      fi
      status=ok
      netns_wait_for 30 "n$o taking the VIP" vip_on "$o" || status=no_takeover
      # Replies under way at the kill do not count (a link cut takes a few
      # ms to act): served again = after the takeover.
      t_vip=$EPOCHREALTIME
      netns_wait_for 30 "every connection served again" served_since "$t_vip" ||
        [[ $status != ok ]] || status=no_reply
      sleep 0.5 # a measurement window: the load runs on after the failover
      t_end=$EPOCHREALTIME
      echo "$k n$p n$o $t_kill $t_end $status $t_vip" >>"$WORK/$tag.kills"
      printf '  kill %2d: n%s -> n%s %s\n' "$k" "$p" "$o" "$status" >&2
      # The killed node comes back (as after a reboot: no leftover VIP).
      ka_kill "$p"
      netns_kill "${RPID[$p]}"
      netns_exec "n$p" ip addr del "$VIP/24" dev eth0 2>/dev/null || true
      [[ $variant != host ]] || netns_link_up "$p"
      redis_start "$p"
      netns_wait_for 20 "redis-server on n$p" redis_up "$p"
      backups=$(ka_state_count "$p" BACKUP)
      ka_start "$p"
      netns_wait_for 30 "n$p's keepalived in BACKUP" is_backup_since "$p" "$backups"
      # An observation window, not a wait: the VIP must stay put for a
      # second (nopreempt) before the next kill.
      sleep 1
      [[ $(master) == "$o" ]] || { echo "the VIP moved back to n$p" >&2; exit 1; }
    done
    touch "$WORK/$tag.stop"
    # The client exits once it sees the stop file (bounded: 15 s).
    for ((n = 0; n < 150; n++)); do
      kill -0 "$cpid" 2>/dev/null || break
      sleep 0.1
    done
    [[ -z $CAPTURE ]] || cp "$WORK/$tag.kills" "$CAPTURE/$tag.kills"
    $PY "$TOOL" analyze --client "$WORK/$tag.client.json" --kills "$WORK/$tag.kills" \
      --case "$variant kill (advert_int $ADVERT s)" --knob "VRRPv$VERSION advert_int $ADVERT" \
      --goal-what "0 broken (TCP-R's goal; not expected here)" >"$WORK/$tag.result.json"
    results+=("$WORK/$tag.result.json")
    echo "   ($((SECONDS - tv)) s)" >&2
  done
  for i in 1 2; do
    ka_kill "$i"
    netns_kill "${RPID[$i]}"
    netns_exec "n$i" ip addr del "$VIP/24" dev eth0 2>/dev/null || true
  done
}

T0=$SECONDS
results=()
for a in $ADVERTS; do run_advert "$a"; done

$PY - "$OUT" "$KILLS" "$CONNS" "$ADVERTS" "$((SECONDS - T0))" "${results[@]}" <<'EOF'
import json, os, sys, time
out, kills, conns, adverts, secs, *files = sys.argv[1:]
d = {
    "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    "machine": f"{os.uname().release}, {os.cpu_count()} cpus",
    "note": f"2 independent redis-servers + keepalived (unicast, "
            f"nopreempt, advert_int {adverts} s; VRRPv3 below 1 s) in "
            f"network namespaces on one host, {conns} connections",
    "kills_per_case": int(kills), "run_s": int(secs),
    "cases": [json.load(open(f)) for f in files],
}
json.dump(d, open(out, "w"))
EOF
$PY - "$OUT" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"keepalived failover ({d['when']}; {d['note']})")
print(f"{'case':<36} {'kills':>5} {'conns':>5} {'broken':>6} "
      f"{'served again p50/p99/max (ms)':>31}")
for c in d["cases"]:
    s = c.get("served_again_ms") or {}
    n = c["conns"] * c["kills"]
    print(f"{c['case']:<36} {c['kills']:>5} {n:>5} {c['broken_connections']:>6} "
          f"{s.get('p50')!s:>11}/{s.get('p99')!s}/{s.get('max')!s}")
EOF
echo
$PY "$TOOL" compare "$TCPR" "$OUT"
echo "results: $OUT (whole run $((SECONDS - T0)) s)"
