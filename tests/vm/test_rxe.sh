#!/usr/bin/env bash
# tests/vm/test_rxe.sh -- ctest `vm_rxe` (labels vm, long): boots the VM once
# (tests/vm/run-vm: Debian's kernel under qemu, the host's files seen
# read-only at the same paths) and runs tests/vm/guest_rxe.sh in it: three
# soft-RoCE (rdma_rxe) devices on one machine (tests/vm/rxe.sh), rping
# between every pair, ib_send_lat between every pair, ib_write_bw between
# two, teardown.  Its PASS/FAIL/INFO lines and the RXE_BASELINE line (the
# perftest figures the project's RDMA transport is compared with) come out
# on stdout; the exit status is the guest script's.  If BUILD_DIR has
# tests/vm/rdma_probe, the project's RDMA link runs between the same two
# devices as ib_write_bw (its RDMA_PROBE line, and its bandwidth beside
# ib_write_bw's).
#
# Usage: test_rxe.sh BUILD_DIR [guest_rxe.sh OPTIONS]   (as root)
#   e.g. test_rxe.sh build --members 2
# With RXE_BASELINE_OUT=FILE the RXE_BASELINE line is also written to FILE
# (on the host).  RXE_TOPOLOGY, RXE_BW_ITERS, RXE_LAT_ITERS and
# RXE_PROBE_RECORDS, RXE_SKIP_PERFTEST, RXE_SKIP_GROUP, RXE_SKIP_PROBE, RXE_BENCH and
# RXE_BENCH_COUNT, RXE_SKIP_NETBENCH, RXE_GROUP_COUNT, RXE_GROUP_TIMEOUT,
# RXE_GROUP_WINDOW and RXE_GROUP_VERBOSE
# are passed on.
#
# Skips (77) if not root, if run-vm cannot run a VM here (run-vm --check),
# or if the RDMA user-space tools are missing (tests/install-deps: rdma-core,
# ibverbs-providers, ibverbs-utils, rdmacm-utils, perftest): the guest runs
# the host's binaries.
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR [guest_rxe.sh OPTIONS]}" && pwd)
shift
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (qemu; rdma and network setup inside the VM)"
  exit 77
fi
if ! checked=$("$SRC/tests/vm/run-vm" --check 2>&1); then
  echo "SKIP: $checked"
  exit 77
fi
missing=()
for c in rdma:iproute2 ibv_devices:ibverbs-utils ibv_devinfo:ibverbs-utils rping:rdmacm-utils \
  ib_write_bw:perftest ib_send_lat:perftest ss:iproute2; do
  command -v "${c%%:*}" >/dev/null || missing+=("${c%%:*} (${c#*:})")
done
if ! compgen -G '/usr/lib/*/libibverbs/librxe-rdmav*.so' >/dev/null &&
  ! compgen -G '/usr/lib/libibverbs/librxe-rdmav*.so' >/dev/null; then
  missing+=("the rxe provider librxe (ibverbs-providers)")
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "SKIP: RDMA tools missing: ${missing[*]} (tests/install-deps)"
  exit 77
fi

# A checkout under /tmp (as CI makes) is not visible in the guest unless
# shared; the baseline file goes through a share of its own.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SRC/tests/vm/lib.sh"
mapfile -t vis < <(vm_share_args "$SRC" "$BUILD" "$PWD")
envs=()
for v in RXE_TOPOLOGY RXE_BW_ITERS RXE_LAT_ITERS RXE_PROBE_RECORDS RXE_SKIP_PERFTEST RXE_SKIP_GROUP RXE_SKIP_PROBE RXE_BENCH RXE_BENCH_COUNT RXE_SKIP_NETBENCH RXE_GROUP_COUNT RXE_GROUP_TIMEOUT RXE_GROUP_WINDOW RXE_GROUP_VERBOSE; do
  if [[ -n ${!v:-} ]]; then envs+=(--env "$v=${!v}"); fi
done
out=()
if [[ -n ${RXE_BASELINE_OUT:-} ]]; then
  share=$(mktemp -d "${TMPDIR:-/tmp}/smr-vm-rxe.XXXXXX")
  trap 'rm -rf "$share"' EXIT
  out=(--baseline "$share/baseline")
  vis+=(--share "$share")
fi
# The figures move with the host's load (see guest_rxe.sh): say what it was.
echo "INFO: rxe: host load average before the boot: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$SECONDS
rc=0
"$SRC/tests/vm/run-vm" --timeout 840 "${vis[@]}" "${envs[@]}" -- \
  "$SRC/tests/vm/guest_rxe.sh" --build "$BUILD" "${out[@]}" "$@" || rc=$?
echo "INFO: rxe: run-vm took $((SECONDS - t0)) s; host load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n ${RXE_BASELINE_OUT:-} && -s $share/baseline ]]; then
  cp "$share/baseline" "$RXE_BASELINE_OUT"
fi
exit "$rc"
