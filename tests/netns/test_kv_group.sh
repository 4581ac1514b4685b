#!/usr/bin/env bash
# tests/netns/test_kv_group.sh -- a 3-member KV group with mutual TLS, each
# member in its own network namespace, stock Redis clients in a fourth.
#
#   1. redis-cli and redis-benchmark (pipelined) against the primary:
#      writes, reads, backups serve reads and refuse writes;
#   2. SIGKILL a backup under load, keep writing, restart it: it rejoins
#      and `smrctl digest` agrees on all three;
#   3. kill all three, restart all: every acknowledged write is there;
#   4. bad input: garbage to a member port and to the RESP port, a peer
#      with a certificate from another CA, a truncated log: each gets a
#      clear log line and no replica crashes.
#
# Usage: test_kv_group.sh BUILD_DIR   (as root; prints PASS/FAIL lines)
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
MKCERTS=$SRC/smr/net/smr-mkcerts

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (network namespaces)"
  exit 77
fi
for t in redis-cli redis-benchmark openssl iptables; do
  command -v $t >/dev/null || { echo "FAIL: $t is not installed"; exit 1; }
done

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-kvgroup-XXXXXX)
cleanup() {
  local rc=$?
  [[ $rc -eq 0 ]] || netns_log_tails "$WORK" 3 15
  netns_cleanup
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
netns_setup 3
trap cleanup EXIT
trap 'exit 1' TERM INT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

"$MKCERTS" "$WORK/certs" n1 n2 n3 >/dev/null
"$MKCERTS" "$WORK/evil" n2 >/dev/null # another CA, same member name

netns_write_configs "$WORK" 3 "[failure]
heartbeat_ms = 20
suspect_ms = 300
[durability]
mode = fsync
checkpoint_every = 20000
[service]
port = 6379"

declare -A PID
start() { # i
  netns_spawn "n$1" "$WORK/log$1" "$SMRD" --config "$WORK/n$1.ini"
  PID[$1]=$NETNS_LAST_PID
}
stop_kill() { # i
  netns_kill "${PID[$1]}"
}
ctl() { # i args...
  local i=$1
  shift
  "$SMRCTL" -s "$WORK/d$i/admin.sock" "$@"
}
leader_of() { # i: the primary member i knows of, as a number
  local l
  l=$(ctl "$1" status --json 2>/dev/null | sed -n 's/.*"leader":"n\([0-9]*\)".*/\1/p')
  echo "${l:-$1}"
}
cli() { # i args... (from the client host)
  local i=$1
  shift
  netns_exec c timeout 5 redis-cli -h "$(netns_ip "$i")" -p 6379 "$@"
}
in_view_of() { # i n: member i is in a running view of n members
  ctl "$1" status --json | grep -q "\"role\":\"\\(primary\\|backup\\)\"" &&
    [[ $(ctl "$1" status --json | grep -o '"id"' | wc -l) -eq $2 ]]
}
alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do
  netns_wait_for 20 "n$i in a view of 3" in_view_of "$i" 3
done
pass "three members with mutual TLS formed a group"

# ---- 1. clients ------------------------------------------------------------
primary=$(ctl 1 status --json | sed 's/.*"leader":"\([^"]*\)".*/\1/')
p=${primary#n}
b=$((p % 3 + 1))
[[ $(cli "$p" set greeting hello) == OK ]] || fail "SET through the primary"
[[ $(cli "$p" get greeting) == hello ]] || fail "GET through the primary"
netns_wait_for 5 "the backup has the write" \
  bash -c "[[ \$(ip netns exec $(netns_name c) redis-cli -h $(netns_ip "$b") get greeting) == hello ]]"
[[ $(cli "$b" set x 1) == READONLY* ]] || fail "a backup refuses writes"
raw=$(netns_exec c timeout 120 redis-benchmark -h "$(netns_ip "$p")" -q -n 20000 -c 20 -P 16 \
      -t ping,set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange,mset 2>&1 |
      tr '\r' '\n' || true)
out=$(grep "requests per second" <<<"$raw" || true)
n=$(grep -c "requests per second" <<<"$out" || true)
if [[ $n -eq 20 ]] && ! grep -qi "error" <<<"$raw"; then
  pass "redis-benchmark's suite against the group ($n tests, pipelined)"
  grep -E "^(SET|GET):" <<<"$out" | sed 's/^/  /'
else
  fail "redis-benchmark's suite: $n of 20 tests completed"
  grep -i "error" <<<"$raw" | head -3 | sed 's/^/  /'
fi

# ---- 2. a backup killed under load rejoins ---------------------------------
p=$(leader_of 1)
b=$((p % 3 + 1))
acked=$WORK/acked
: >"$acked"
writer() { # writes key:0..399 through whichever member is primary;
           # records the acknowledged ones
  local k w=$p tries
  for ((k = 0; k < 400; k++)); do
    for ((tries = 0; tries < 50; tries++)); do
      if [[ $(netns_exec c timeout 5 redis-cli -h "$(netns_ip "$w")" set "key:$k" "v$k" 2>/dev/null) == OK ]]; then
        echo "key:$k v$k" >>"$acked"
        break
      fi
      w=$(leader_of "$w") # moved, or changing views: ask again
    done
  done
}
writer &
wpid=$!
netns_wait_for 10 "writes flowing" bash -c "[[ \$(wc -l <$acked) -ge 50 ]]"
stop_kill "$b"
wait $wpid
start "$b"
netns_wait_for 30 "the killed backup back in the view" in_view_of "$b" 3
ctl "$p" checkpoint >/dev/null
digest_agree() { ctl "$p" digest --json | grep -q '"agree":true'; }
netns_wait_for 20 "digests agree after the rejoin" digest_agree
pass "a backup killed under load rejoined; digests agree ($(wc -l <"$acked") writes acknowledged meanwhile)"

# ---- 3. total crash: nothing acknowledged is lost --------------------------
for i in 1 2 3; do stop_kill "$i"; done
for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do
  netns_wait_for 30 "n$i in a view after the total restart" in_view_of "$i" 3
done
p=$(leader_of 1)
lost=0
while read -r key val; do
  [[ $(cli "$p" get "$key") == "$val" ]] || lost=$((lost + 1))
done <"$acked"
if [[ $lost -eq 0 ]]; then
  pass "total restart: all $(wc -l <"$acked") acknowledged writes are there"
else
  fail "total restart: $lost acknowledged writes lost"
fi

# ---- 4. bad input ----------------------------------------------------------
b=$((p % 3 + 1))
head -c 4096 /dev/urandom | netns_exec c timeout 5 bash -c \
  "cat > /dev/tcp/$(netns_ip "$b")/7000" 2>/dev/null || true
printf '*2\r\n$3\r\nGET\r\n$-7\r\nxx\r\n' | netns_exec c timeout 5 bash -c \
  "exec 3<>/dev/tcp/$(netns_ip "$p")/6379; cat >&3; timeout 2 cat <&3" >"$WORK/resp-err" 2>/dev/null || true
grep -q "Protocol error" "$WORK/resp-err" || fail "a malformed RESP request gets a protocol error"
# A peer with a certificate from another CA, posing as n2.
netns_exec c timeout 5 openssl s_client -connect "$(netns_ip "$p"):7000" \
  -cert "$WORK/evil/n2.pem" -key "$WORK/evil/n2.key" -CAfile "$WORK/evil/ca.pem" \
  </dev/null >/dev/null 2>&1 || true
netns_wait_for 5 "the unknown peer logged as refused" \
  grep -q "refused" "$WORK/log$p"
for i in 1 2 3; do alive "$i" || fail "n$i died of bad input"; done
[[ $(cli "$p" get greeting) == hello ]] || fail "the group serves after bad input"
pass "garbage to a member port and to the RESP port, and a foreign certificate, were refused; all members up"

# A truncated log: the member refuses it, says so, and recovers from the group.
stop_kill "$b"
log=$WORK/d$b/log.smr
size=$(stat -c %s "$log")
truncate -s $((size / 2)) "$log"
printf 'garbage' >>"$log"
start "$b"
netns_wait_for 30 "the member with a damaged log back in the view" in_view_of "$b" 3
if grep -qE "log.smr: .*(refused|cut off)" "$WORK/log$b"; then
  pass "a damaged log was refused with a clear line; the member recovered from the group"
else
  fail "no log line about the damaged log"
fi
ctl "$p" checkpoint >/dev/null
netns_wait_for 20 "digests agree after recovering from the group" digest_agree

if [[ $failures -eq 0 ]]; then
  echo "test_kv_group: all passed"
  exit 0
fi
echo "test_kv_group: $failures failed"
exit 1
