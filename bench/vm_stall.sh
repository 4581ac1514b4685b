#!/usr/bin/env bash
# bench/vm_stall.sh -- the TCP-R stall with the kernel module's gate against
# the tc-BPF gate, side by side in one VM run (tests/vm/run-vm: Debian's
# kernel under qemu, where smr_tcpr.ko can be loaded; this host's kernel
# cannot load modules).
#
# In one boot: insmod smr_tcpr.ko, then bench/tcpr_stall.sh with --gate bpf
# and with --gate kmod, the same cases and kills, then rmmod.  With case b,
# also kmod with [test] takeover_acks = 3: the new primary sends three
# duplicate ACKs at the restored point on every idle restored connection,
# the experiment of whether that makes a client resend a lost request before
# its RTO.  Results: bench/results/tcpr_stall_vm_{bpf,kmod,kmod_dupacks}.json
# (the results directory is shared writable with the VM), and their tables.
#
# The VM emulates its CPUs (TCG, no KVM here): everything is several times
# slower than on the host, so the failure detector runs with heartbeat 40 ms
# and suspect 400 ms (as the VM's TCP-R test does) and the figures are only
# comparable with each other, not with the host's.
#
# Usage: bench/vm_stall.sh BUILD_DIR [--kills N] [--cases "a b"]   (as root)
# Takes about 20 s per kill and gate in the VM: ~7 min with 10 kills x 2
# cases x 2 gates.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${1:-} == --in-vm ]]; then
  shift
  BUILD=$1 KILLS=$2 CASES=$3
  insmod "$BUILD/kernel-module/kbuild/smr_tcpr.ko"
  # name gate [test] line
  for run in "bpf bpf" "kmod kmod" "kmod_dupacks kmod takeover_acks = 3"; do
    read -r name gate test <<<"$run"
    [[ $name != kmod_dupacks || " $CASES " == *" b "* ]] || continue
    "$SRC/bench/tcpr_stall.sh" "$BUILD" --gate "$gate" --kills "$KILLS" \
      --cases "$([[ $name == kmod_dupacks ]] && echo b || echo "$CASES")" \
      --heartbeat 40 --suspect 400 ${test:+--test "$test"} \
      --out "$SRC/bench/results/tcpr_stall_vm_$name.json" >/tmp/stall-$name.log 2>&1 ||
      { echo "tcpr_stall.sh --gate $gate failed:"; tail -30 /tmp/stall-$name.log; exit 1; }
    echo "== $name${test:+ ($test)}"
    grep -A12 '^TCP-R failover stall' /tmp/stall-$name.log
  done
  rmmod smr_tcpr
  exit 0
fi

BUILD=
KILLS=10
CASES="a b"
while [[ $# -gt 0 ]]; do
  case $1 in
  --kills) KILLS=$2; shift 2 ;;
  --cases) CASES=$2; shift 2 ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) echo "unknown option $1" >&2; exit 2 ;;
  *) BUILD=$1; shift ;;
  esac
done
[[ -n $BUILD ]] || { echo "usage: $0 BUILD_DIR [--kills N] [--cases \"a b\"]" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd)
[[ $(id -u) -eq 0 ]] || { echo "needs root" >&2; exit 77; }
[[ -f $BUILD/kernel-module/kbuild/smr_tcpr.ko ]] ||
  { echo "no smr_tcpr.ko under $BUILD (kernel headers missing?)" >&2; exit 1; }
T0=$SECONDS
source "$SRC/tests/vm/lib.sh"
mapfile -t vis < <(vm_share_args "$SRC" "$BUILD" "$PWD")
"$SRC/tests/vm/run-vm" --timeout 3000 --share "$SRC/bench/results" "${vis[@]}" -- \
  "$SRC/bench/vm_stall.sh" --in-vm "$BUILD" "$KILLS" "$CASES"
echo "results: $SRC/bench/results/tcpr_stall_vm_*.json (whole run $((SECONDS - T0)) s)"
