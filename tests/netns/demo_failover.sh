#!/usr/bin/env bash
# tests/netns/demo_failover.sh -- the main job: a replicated Redis-protocol
# service behind a virtual IP survives the death of its primary, and its
# clients do not notice beyond a short stall.
#
# Three smrd members, each in its own network namespace (a "host") on one
# bridge, with mutual TLS between them and the VIP 10.77.0.100 on the
# primary; clients in a fourth namespace talk to the VIP only:
#
#   - redis-benchmark (10 connections, pipelined SET/GET/INCR/LPUSH) runs
#     for the whole demo and fails loudly on any broken connection;
#   - a writer sets demo:1, demo:2, ... on one connection and remembers
#     each write that was acknowledged, and how long it waited.
#
# After a few seconds the primary's smrd is SIGKILLed.  Another member
# takes the VIP and the clients' TCP connections (TCP-R); the load goes on.
# At the end every acknowledged write is read back, and one line sums up:
#
#   summary: errors 0 (redis-benchmark: 0, writer: 0 errors, 0 reconnects);
#            largest stall 41 ms; keys verified 5200/5200; VIP n1 -> n2
#
# Usage: demo_failover.sh BUILD_DIR   (as root; nothing leaves the namespaces)
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SMRD=$BUILD/smr/smrd/smrd
SMRCTL=$BUILD/smr/smrd/smrctl
PY=/usr/bin/python3
VIP=10.77.0.100

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: needs root (network namespaces, the BPF gate, TCP_REPAIR)" >&2
  exit 1
fi
source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-demo-XXXXXX)
demo_cleanup() {
  netns_cleanup
  [[ -n ${KEEP:-} ]] || rm -rf "$WORK"
}
netns_setup 3
trap demo_cleanup EXIT
trap 'exit 1' TERM INT
say() { printf '%s demo: %s\n' "$(date +%T.%3N)" "$*"; }

"$SRC/smr/net/smr-mkcerts" "$WORK/certs" n1 n2 n3 >/dev/null
netns_write_configs "$WORK" 3 "[vip]
address = $VIP/24
device = eth0
gate = bpf
[service]
port = 6379"
source "$SRC/tests/netns/group.sh"
for i in 1 2 3; do start "$i"; done
netns_wait_for 30 "a primary holding the VIP" have_primary
p=$(primary)
say "group of 3 formed; n$p is primary and holds the VIP $VIP"

cat >"$WORK/writer.py" <<'PYEOF'
import json, os, sys, time, redis
host, ready, stop, out = sys.argv[1:5]
c = redis.Connection(host=host, port=6379, socket_timeout=30)
c.connect()
sock = c._sock
acked, errors, reconnects, gap, last = [], 0, 0, 0.0, time.monotonic()
i = 0
while not os.path.exists(stop):
    i += 1
    try:
        c.send_command("SET", "demo:%d" % i, "v%d" % i)
        if c.read_response() == b"OK":
            acked.append(i)
    except Exception as e:  # noqa: BLE001 -- any failure counts
        errors += 1
        print("writer: %s" % e, file=sys.stderr)
        break
    if c._sock is not sock:
        reconnects += 1
    now = time.monotonic()
    gap, last = max(gap, now - last), now
    if i == 50:
        open(ready, "w").close()
json.dump({"acked": acked, "errors": errors, "reconnects": reconnects,
           "stall_ms": round(gap * 1000, 1)}, open(out, "w"))
PYEOF
cat >"$WORK/verify.py" <<'PYEOF'
import json, sys, redis
host, res = sys.argv[1:3]
d = json.load(open(res))
r = redis.Redis(host=host, port=6379, socket_timeout=10)
pipe = r.pipeline(transaction=False)
for i in d["acked"]:
    pipe.get("demo:%d" % i)
vals = pipe.execute()
ok = sum(1 for i, v in zip(d["acked"], vals) if v == b"v%d" % i)
print(ok, len(d["acked"]))
PYEOF

say "starting redis-benchmark (10 connections) and a writer (1 connection) on the VIP"
ip netns exec "$(netns_name c)" timeout -s INT 120 redis-benchmark -h $VIP -p 6379 \
  -c 10 -P 8 -n 100000000 -t set,get,incr,lpush -q >"$WORK/bench" 2>&1 &
bench=$!
ip netns exec "$(netns_name c)" $PY "$WORK/writer.py" $VIP "$WORK/ready" \
  "$WORK/stop" "$WORK/writer.json" 2>"$WORK/writer.err" &
writer=$!
netns_wait_for 20 "the writer running" test -e "$WORK/ready"
sleep 3 # let the load run before the failure
say "SIGKILL smrd on n$p (the primary)"
t0=$(date +%s%N)
kill9 "$p"
new=$(new_primary_after "$p") || { say "FAILED: nobody took the VIP over"; exit 1; }
say "n$new took over the VIP and the clients' connections ($(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill, as seen by polling smrctl)"
sleep 3 # the load goes on through the new primary
touch "$WORK/stop"
wait "$writer" || true
kill -INT "$bench" 2>/dev/null || true
wait "$bench" 2>/dev/null || true
bench_errors=$(tr '\r' '\n' <"$WORK/bench" | grep -ciE "error|closed|reset" || true)
read -r verified total < <(ip netns exec "$(netns_name c)" $PY "$WORK/verify.py" $VIP "$WORK/writer.json")
read -r werr wrec stall < <($PY -c "import json; d=json.load(open('$WORK/writer.json')); print(d['errors'], d['reconnects'], d['stall_ms'])")
say "redis-benchmark last figures: $(tr '\r' '\n' <"$WORK/bench" | grep -E 'rps=' | tail -1 | sed 's/  */ /g')"
errors=$((bench_errors + werr + wrec))
echo "summary: errors $errors (redis-benchmark: $bench_errors, writer: $werr errors, $wrec reconnects); largest stall $stall ms; keys verified $verified/$total; VIP n$p -> n$new"
[[ $errors -eq 0 && $verified -eq $total && $total -gt 0 ]]
