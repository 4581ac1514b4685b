#!/usr/bin/env bash
# tests/vm/test_kmod.sh -- ctest `vm_kmod` (labels vm, long): boots the VM
# once (tests/vm/run-vm: Debian's kernel under qemu, the host's files seen
# read-only at the same paths) and runs tests/vm/guest_kmod.sh in it: the
# smr_tcpr module loads, gates, releases, acknowledges on release, drops the
# FIN of a killed owner, carries TCP-R scenarios 1, 3 and 5, and unloads
# cleanly.  Its PASS/FAIL lines come out on stdout; the exit status is the
# guest script's.
#
# Usage: test_kmod.sh BUILD_DIR [SCENARIOS]   (as root)
set -euo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR [SCENARIOS]}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: needs root (qemu, network namespaces inside the VM)"
  exit 77
fi
if [[ ! -f $BUILD/kernel-module/kbuild/smr_tcpr.ko ]]; then
  echo "SKIP: smr_tcpr.ko is not built (no kernel headers: apt-get install linux-headers-amd64)"
  exit 77
fi
# A checkout under /tmp (as CI makes) is not visible in the guest unless
# shared.
source "$SRC/tests/vm/lib.sh"
mapfile -t vis < <(vm_share_args "$SRC" "$BUILD" "$PWD")
exec "$SRC/tests/vm/run-vm" --timeout 1500 "${vis[@]}" -- \
  "$SRC/tests/vm/guest_kmod.sh" "$BUILD" "${2:-1 3 5}"
