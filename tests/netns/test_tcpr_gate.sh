#!/usr/bin/env bash
# tests/netns/test_tcpr_gate.sh -- TCP-R's tc-BPF ACK gate (tcpr/gate*.c)
# with real TCP: a server namespace n1 whose eth0 carries the VIP
# 10.77.0.100 and the gate, a client namespace c, a bridge between them.
# tcpr_gate_probe plays both ends (it prints the PASS lines):
#
#   - a new gate is fenced (connect and ping to the VIP time out);
#   - request bytes are not acknowledged until released, also those that
#     arrive before accept(); a release reaches the client with the next
#     reply; bytes beyond it stay unacknowledged;
#   - the right edge of the offered window stays where the kernel put it;
#   - 10 MB of request/reply traffic with checked bytes, and 2 MB more
#     without transmit checksum offload (checksums verified by the client);
#   - a D-SACK for held bytes is stripped;
#   - FIN (process exit) and RST (close with unread data) of a gated
#     connection are dropped until tcpr_gate_allow_close;
#   - a forked child fences with the inherited handle; unfencing lets the
#     held data through;
#   - tcpr_gate_close leaves the program attached and fenced, a new gate
#     replaces it.
#
# Then, after the probe has exited, this script checks that exactly one
# filter is on eth0's egress and that the VIP is still silent.
#
# Usage: test_tcpr_gate.sh PROBE   (as root; prints PASS/FAIL lines)
#   SMR_GATE_KIND=kmod tests the kernel module instead (loaded: tests/vm).
set -euo pipefail

PROBE=$(realpath "${1:?usage: $0 PATH_TO_tcpr_gate_probe}")
SRC=$(cd "$(dirname "$0")/../.." && pwd)
VIP=10.77.0.100
PORT=7300

if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (network namespaces, BPF)"
  exit 77
fi
command -v tc >/dev/null || { echo "FAIL: tc is not installed"; exit 1; }

source "$SRC/tests/netns/lib.sh"
netns_setup 1
trap 'exit 1' TERM INT

netns_exec n1 ip addr add "$VIP/24" dev eth0

# Bounded by the probe's own waits (each at most a few seconds); timeout
# is a backstop.
timeout 60 "$PROBE" run "/run/netns/$(netns_name n1)" \
  "/run/netns/$(netns_name c)" "$VIP" "$PORT"

if [[ ${SMR_GATE_KIND:-bpf} == bpf ]]; then
  filters=$(netns_exec n1 tc filter show dev eth0 egress |
    grep -c 'tcpr_gate' || true)
  if [[ $filters -ne 1 ]]; then
    echo "FAIL: $filters gate filters on eth0 egress after the probe, wanted 1"
    netns_exec n1 tc filter show dev eth0 egress
    exit 1
  fi
fi
if "$PROBE" ping "/run/netns/$(netns_name c)" "$VIP" 1000; then
  echo "FAIL: the VIP answers after the gate's process exited"
  exit 1
fi
echo "PASS: after the process exited: ${SMR_GATE_KIND:-bpf} gate still" \
  "fenced (no ping reply)"
