#!/usr/bin/env bash
# bench/vm_rdma_bench.sh -- the member transport over soft-RoCE against
# perftest, and against itself over TCP, in ONE VM run (tests/vm/run-vm;
# Debian's kernel under qemu TCG, three rdma_rxe devices from
# tests/vm/rxe.sh).
#
# It runs tests/vm/test_rxe.sh with RXE_BENCH=1 (guest_rxe.sh step 6d) and
# without the KV group test: perftest's ib_write_bw (RC, 64 KiB) and
# ib_send_lat (RC, 2 B) between members 1 and 2, then smr_net_bench
# (bench/net_bench.c) with mutual TLS, kind tcp and kind rdma:
#   - 64 KiB frames from member 1 to member 2 (the pair ib_write_bw used);
#   - the same to members 2 and 3 at once (what the primary does with every
#     ORDER: one copy per backup);
#   - 2000 ping-pongs of a 2-byte frame with member 2 (beside ib_send_lat);
# then smr_group_bench (bench/group_bench.c, step 6e): the whole ordered,
# stable multicast of a 3-member libsmr group, kind tcp and rdma, relay off
# and chain, 1000 requests of 64 KiB and 500 ping-pongs of 2 bytes.
# It prints the NET_BENCH lines and INFO lines with the ratios to perftest,
# and writes them to bench/results/vm_rdma_bench-DATE.txt.
#
# Usage: bench/vm_rdma_bench.sh BUILD_DIR [--count N]   (root; ~3 minutes)
# Under TCG every figure measures the emulator as much as rxe; compare
# only figures from the same run.
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR [--count N]}" && pwd)
shift
count=2000
while [[ $# -gt 0 ]]; do
  case $1 in
    --count) count=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
SRC=$(cd "$(dirname "$0")/.." && pwd)
[[ -x $BUILD/bench/smr_net_bench ]] || { echo "no $BUILD/bench/smr_net_bench: build first" >&2; exit 1; }
mkdir -p "$SRC/bench/results"
out=$SRC/bench/results/vm_rdma_bench-$(date -u +%Y%m%dT%H%M%SZ).txt
RXE_BENCH=1 RXE_BENCH_COUNT=$count RXE_SKIP_GROUP=1 RXE_PROBE_RECORDS=20000 \
  "$SRC/tests/vm/test_rxe.sh" "$BUILD" 2>&1 |
  grep -E '^(RXE_BASELINE|RDMA_PROBE|NET_BENCH|GROUP_BENCH|INFO|FAIL|    n[0-9]: )' | tee "$out"
echo "(saved in $out)"
