#!/usr/bin/env bash
# tests/netns/test_tcpr_vip.sh -- TCP-R's VIP (tcpr/vip.c) in network
# namespaces: two servers n1, n2 and a client c on one bridge.
#
#   1. add 10.77.0.100/24 on n1 (a secondary beside 10.77.0.1/24, with its
#      broadcast address); adding twice succeeds; the client reaches it;
#   2. move it: del on n1 (n1's own address survives; deleting twice
#      succeeds), add on n2, gratuitous ARP from n2: the client's
#      neighbour entry for the VIP changes to n2's MAC at once (it still
#      had n1's MAC just before), and the client reaches the VIP on n2;
#   3. refusals: an unknown device, a bad address, and deleting a VIP that
#      is the primary of its subnet while promote_secondaries is off (the
#      kernel would delete its secondaries with it: shown with ip(8)).
#
# Which server answers is told by a tiny TCP server on each that writes its
# name.  Usage: test_tcpr_vip.sh TCPR_VIP_TOOL   (as root; PASS/FAIL lines)
set -euo pipefail

TOOL=$(realpath "${1:?usage: $0 TCPR_VIP_TOOL}")
SRC=$(cd "$(dirname "$0")/../.." && pwd)

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (network namespaces)"
  exit 77
fi
for t in python3 timeout ip; do
  command -v $t >/dev/null || { echo "FAIL: $t is not installed"; exit 1; }
done

source "$SRC/tests/netns/lib.sh"
WORK=$(mktemp -d /tmp/smr-tcprvip-XXXXXX)
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    tail -5 "$WORK"/listen*.log 2>/dev/null || true
  fi
  netns_cleanup
  rm -rf "$WORK"
}
netns_setup 2
trap cleanup EXIT
trap 'exit 1' TERM INT

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
info() { echo "INFO: $*"; }

VIP=10.77.0.100
CIDR=$VIP/24
PORT=7777

tool() { # HOST args...
  local host=$1
  shift
  netns_exec "$host" "$TOOL" "$@"
}
addrs() { ip -n "$(netns_name "$1")" -4 -o addr show dev eth0; }
has_addr() { addrs "$1" | grep >/dev/null " inet $2 "; } # HOST a.b.c.d/len
is_secondary() { addrs "$1" | grep " inet $2 " | grep >/dev/null " secondary "; }
mac_of() { ip -n "$(netns_name "$1")" -br link show eth0 | awk '{print $3}'; }
neigh() { ip -n "$(netns_name "$1")" neigh show "$VIP" dev eth0; }
neigh_has() { neigh "$1" | grep >/dev/null "lladdr $2 "; } # HOST MAC
# The name written by the server that answers ADDR:PORT from the client.
answer() {
  netns_exec c timeout 2 bash -c "exec 3<>/dev/tcp/$1/$PORT && cat <&3"
}
served_by() { [[ $(answer "$1" 2>/dev/null) == "$2" ]]; } # ADDR NAME
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

server='
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[2])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[1].encode() + b"\n")
    c.close()
'
for i in 1 2; do
  netns_spawn "n$i" "$WORK/listen$i.log" python3 -c "$server" "n$i" "$PORT"
done
for i in 1 2; do
  netns_wait_for 10 "the server on n$i" served_by "$(netns_ip "$i")" "n$i"
done
MAC1=$(mac_of n1)
MAC2=$(mac_of n2)
info "n1 eth0 $MAC1, n2 eth0 $MAC2; client arp_accept=$(netns_exec c \
  cat /proc/sys/net/ipv4/conf/eth0/arp_accept), kernel $(uname -r)"

# ---------------------------------------------------------------- 1. add
if out=$(tool n1 add eth0 "$CIDR" 2>&1); then
  pass "add $CIDR on n1"
else
  fail "add $CIDR on n1: $out"
fi
if is_secondary n1 "$CIDR" && ! is_secondary n1 10.77.0.1/24; then
  pass "the VIP is a secondary on n1; 10.77.0.1/24 stays the primary"
else
  fail "primary/secondary on n1: $(addrs n1)"
fi
if addrs n1 | grep >/dev/null " inet $CIDR brd 10.77.0.255 "; then
  pass "the VIP has the subnet's broadcast address 10.77.0.255"
else
  fail "broadcast address: $(addrs n1)"
fi
if out=$(tool n1 add eth0 "$CIDR" 2>&1); then
  pass "adding it again succeeds"
else
  fail "adding it again: $out"
fi
if [[ $(tool n1 present eth0 "$CIDR" 2>&1) == present ]] &&
  [[ $(tool n2 present eth0 "$CIDR" 2>&1) == absent ]] &&
  [[ $(tool n1 present eth0 $VIP/16 2>&1) == absent ]]; then
  pass "present: on n1, not on n2, not as $VIP/16"
else
  fail "present"
fi
if netns_wait_for 5 "the client reaches the VIP on n1" served_by $VIP n1; then
  pass "the client reaches the VIP on n1"
else
  fail "the client does not reach the VIP on n1"
fi
if neigh_has c "$MAC1"; then
  pass "the client's neighbour entry for the VIP: $(neigh c)"
else
  fail "the client's neighbour entry for the VIP: '$(neigh c)'"
fi

# ---------------------------------------------------------------- 2. move
if out=$(tool n1 del eth0 "$CIDR" 2>&1); then
  pass "del $CIDR on n1"
else
  fail "del $CIDR on n1: $out"
fi
if [[ $(tool n1 present eth0 "$CIDR" 2>&1) == absent ]] &&
  ! has_addr n1 "$CIDR"; then
  pass "the VIP is gone from n1"
else
  fail "the VIP is still on n1: $(addrs n1)"
fi
if has_addr n1 10.77.0.1/24; then
  pass "n1's own address 10.77.0.1/24 survives the delete"
else
  fail "n1 lost its own address: $(addrs n1)"
fi
if out=$(tool n1 del eth0 "$CIDR" 2>&1); then
  pass "deleting it again succeeds"
else
  fail "deleting it again: $out"
fi
if out=$(tool n2 add eth0 "$CIDR" 2>&1) && is_secondary n2 "$CIDR"; then
  pass "add $CIDR on n2 (a secondary beside 10.77.0.2/24)"
else
  fail "add $CIDR on n2: $out $(addrs n2)"
fi
before=$(neigh c)
if neigh_has c "$MAC1"; then
  pass "before the GARP the client still has n1's MAC: $before"
else
  fail "before the GARP the client's entry is not n1's MAC: '$before'"
fi
n1_before=$(neigh n1)
t0=$(date +%s%N)
if out=$(tool n2 garp eth0 "$CIDR" 2>&1); then
  pass "garp $VIP from n2"
else
  fail "garp from n2: $out"
fi
if netns_wait_for 3 "the client's entry for the VIP to have n2's MAC" \
  neigh_has c "$MAC2"; then
  pass "after the GARP the client's entry has n2's MAC" \
    "within $(ms_since "$t0") ms: $(neigh c)"
else
  fail "the client's entry did not follow the GARP: '$(neigh c)'"
fi
# n1 had no entry for the VIP (it was its own address): with arp_accept=0
# a gratuitous ARP updates entries, it does not create them.
n1_after=$(neigh n1 || true)
info "n1's entry for the VIP: before the GARP '${n1_before:-none}'," \
  "after '${n1_after:-none}'"
if netns_wait_for 5 "the client reaches the VIP on n2" served_by $VIP n2; then
  pass "the client reaches the VIP on n2"
else
  fail "the client does not reach the VIP on n2"
fi

# ---------------------------------------------------------------- 3. refusals
want="tcpr: vip add $CIDR on nosuchdev: No such device"
if out=$(tool n1 add nosuchdev "$CIDR" 2>&1); then
  fail "add on a missing device succeeded"
elif [[ $out == "$want" ]]; then
  pass "a missing device: $out"
else
  fail "a missing device: '$out', want '$want'"
fi
want="tcpr: garp $VIP on nosuchdev: No such device"
if out=$(tool n1 garp nosuchdev "$CIDR" 2>&1); then
  fail "garp on a missing device succeeded"
elif [[ $out == "$want" ]]; then
  pass "garp on a missing device: $out"
else
  fail "garp on a missing device: '$out', want '$want'"
fi
if out=$(tool n1 add eth0 10.77.0.100/33 2>&1); then
  fail "add of 10.77.0.100/33 succeeded"
elif [[ $out == "tcpr: vip add 10.77.0.100/33 on eth0: Invalid argument"* ]]
then
  pass "a bad address: $out"
else
  fail "a bad address: '$out'"
fi

# What the kernel does, with ip(8): deleting the primary of a subnet with
# promote_secondaries off deletes its secondaries too.
ip -n "$(netns_name n2)" addr add 10.99.0.100/24 dev eth0
ip -n "$(netns_name n2)" addr add 10.99.0.5/24 dev eth0
ip -n "$(netns_name n2)" addr del 10.99.0.100/24 dev eth0
if ! has_addr n2 10.99.0.5/24; then
  pass "kernel: deleting a primary (promotion off) took its secondary along"
else
  info "kernel: deleting a primary kept its secondary: $(addrs n2)"
fi
# So a VIP that became the primary of its subnet (it came first) is not
# deleted while promotion is off: that would take 10.88.0.5 along.
tool n1 add eth0 10.88.0.100/24 >/dev/null
tool n1 add eth0 10.88.0.5/24 >/dev/null
if ! is_secondary n1 10.88.0.100/24 && is_secondary n1 10.88.0.5/24; then
  pass "10.88.0.100/24 added first is the primary, 10.88.0.5/24 a secondary"
else
  fail "primary/secondary of 10.88.0.0/24: $(addrs n1)"
fi
if out=$(tool n1 del eth0 10.88.0.100/24 2>&1); then
  fail "deleting a primary with a secondary succeeded: $(addrs n1)"
elif [[ $out == *"Device or resource busy"*"10.88.0.5/24"* ]] &&
  has_addr n1 10.88.0.100/24 && has_addr n1 10.88.0.5/24; then
  pass "deleting a primary with a secondary is refused: $out"
else
  fail "deleting a primary with a secondary: '$out' $(addrs n1)"
fi
# With promotion on (this namespace's own sysctl) the secondary is
# promoted, so the delete goes ahead.
netns_exec n1 sh -c \
  'echo 1 >/proc/sys/net/ipv4/conf/eth0/promote_secondaries'
if out=$(tool n1 del eth0 10.88.0.100/24 2>&1) &&
  ! has_addr n1 10.88.0.100/24 && has_addr n1 10.88.0.5/24 &&
  ! is_secondary n1 10.88.0.5/24; then
  pass "with promote_secondaries=1 the delete goes ahead;" \
    "10.88.0.5/24 is promoted"
else
  fail "delete with promote_secondaries=1: '$out' $(addrs n1)"
fi
if has_addr n1 10.77.0.1/24; then
  pass "n1's own address 10.77.0.1/24 is still there"
else
  fail "n1 lost its own address: $(addrs n1)"
fi

if ((failures > 0)); then
  echo "FAIL: $failures check(s) failed"
  exit 1
fi
echo "PASS: all VIP checks"
