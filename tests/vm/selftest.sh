#!/usr/bin/env bash
# tests/vm/selftest.sh -- checks the VM harness (tests/vm/run-vm) with ONE
# boot: this script runs itself inside the VM (--guest) and checks there
#
#   kernel     uname -r is the Debian kernel run-vm chose (not the host's)
#   host-fs    the host's files are visible at the same path (this script,
#              and BUILD_DIR/CMakeCache.txt if given: same SHA-256), a host
#              program runs (python3), and / is read-only
#   share      a file written into a --share directory (also read back)
#   netns      modprobe veth, ip netns add, a veth pair into the namespace,
#              addresses, and ARP answered across it
#   tc         a clsact qdisc on the veth (sch_ingress, as the BPF gate uses)
#   netfilter  an iptables (nf_tables) DROP rule in OUTPUT stops a UDP
#              datagram and counts it, with nf_conntrack never loaded
#   bpffs      /sys/fs/bpf is a bpf filesystem
#
# then exits with status 3 if all passed (1 otherwise).  On the host it
# checks that run-vm returned exactly 3 (`exit-status`) and that the file
# written into the share is there after the VM is gone (`share-host`).
# One PASS/FAIL line per check; exit 0 if all passed, 1 if not, 77 if a VM
# cannot run here (not root, or a package missing: see run-vm --check).
#
#   tests/vm/selftest.sh [BUILD_DIR]
#
# The g_* checks are called through check(), in a condition: errexit is off
# there, so each step says `|| return 1`.
# shellcheck disable=SC2317  # (they are called indirectly)
set -euo pipefail

SELF=$(realpath "$0")
HERE=$(dirname "$SELF")
GUEST_OK=3 # the guest's status when all its checks passed

# ---------------------------------------------------------------------------
# Inside the VM:  selftest.sh --guest KERNEL SHARE NONCE SELF_SHA [BUILD_DIR BUILD_SHA]

pass=0
fail=0
check() { # NAME FUNCTION: one PASS/FAIL line, with the check's time
  local name=$1 msg t0 t
  t0=$EPOCHREALTIME
  if msg=$("$2" 2>&1); then
    t=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
    echo "PASS: $name${msg:+ ($msg)} [$t s]"
    pass=$((pass + 1))
  else
    echo "FAIL: $name: ${msg:-failed}"
    fail=$((fail + 1))
  fi
}

g_kernel() {
  local r
  r=$(uname -r)
  [[ $r == "$KERNEL" ]] || { echo "uname -r is $r, expected $KERNEL"; return 1; }
  grep -q Debian /proc/version || { echo "not a Debian kernel: $(cat /proc/version)"; return 1; }
  [[ ${SMR_VM:-} == 1 ]] || { echo "SMR_VM is not set"; return 1; }
  echo "$r"
}

g_host_fs() {
  local sha out
  sha=$(sha256sum "$SELF" | cut -d' ' -f1)
  [[ $sha == "$SELF_SHA" ]] || { echo "$SELF differs from the host's"; return 1; }
  if [[ -n $BUILD_DIR ]]; then
    sha=$(sha256sum "$BUILD_DIR/CMakeCache.txt" | cut -d' ' -f1) || return 1
    [[ $sha == "$BUILD_SHA" ]] || { echo "$BUILD_DIR/CMakeCache.txt differs"; return 1; }
  fi
  out=$(python3 -c 'import json; print(json.dumps({"ok": 1}))') || return 1
  [[ $out == '{"ok": 1}' ]] || { echo "python3 printed: $out"; return 1; }
  if touch /usr/.smr-vm-selftest 2>/dev/null; then
    rm -f /usr/.smr-vm-selftest
    echo "the host's / is writable from the guest"
    return 1
  fi
  echo x >/tmp/.smr-vm-selftest || { echo "/tmp is not writable"; return 1; }
  echo "$SELF${BUILD_DIR:+, $BUILD_DIR/CMakeCache.txt}, python3; / read-only"
}

g_share() {
  printf '{"nonce": "%s"}\n' "$NONCE" >"$SHARE/result.json" || return 1
  [[ $(cat "$SHARE/result.json") == "{\"nonce\": \"$NONCE\"}" ]] ||
    { echo "read back something else"; return 1; }
  echo "$SHARE/result.json"
}

g_netns() {
  modprobe veth || return 1
  ip netns add smrvm || return 1
  ip link add smrA type veth peer name smrB netns smrvm || return 1
  ip addr add 10.99.7.1/24 dev smrA || return 1
  ip link set smrA up || return 1
  ip -n smrvm addr add 10.99.7.2/24 dev smrB || return 1
  ip -n smrvm link set smrB up || return 1
  ip -n smrvm link set lo up || return 1
  # A datagram to the namespace's address makes the kernel ARP for it; the
  # namespace's answer shows traffic crossing the veth both ways.
  local i
  for ((i = 0; i < 50; i++)); do
    echo x 2>/dev/null >/dev/udp/10.99.7.2/9
    ip neigh show 10.99.7.2 dev smrA | grep -q lladdr && {
      echo "veth smrA <-> smrB in netns smrvm, ARP answered"
      return 0
    }
    sleep 0.1
  done
  echo "no ARP answer from the namespace: $(ip neigh show dev smrA)"
  return 1
}

g_tc() {
  tc qdisc add dev smrA clsact || return 1
  tc qdisc show dev smrA | grep -q clsact || { echo "no clsact qdisc"; return 1; }
  echo "clsact on smrA"
}

g_netfilter() {
  local n
  iptables -w -A OUTPUT -p udp -d 127.0.0.9 --dport 9 -j DROP || return 1
  if echo x 2>/dev/null >/dev/udp/127.0.0.9/9; then
    echo "the datagram was not dropped"
    return 1
  fi
  n=$(iptables -w -L OUTPUT -n -v -x | awk '$3 == "DROP" && /127\.0\.0\.9/ { print $1 }')
  [[ $n == 1 ]] || { echo "rule counted ${n:-nothing}, expected 1 packet"; return 1; }
  if grep -q '^nf_conntrack ' /proc/modules; then
    echo "nf_conntrack got loaded"
    return 1
  fi
  echo "$(iptables -V), 1 packet dropped, no nf_conntrack"
}

g_bpffs() {
  local t
  t=$(stat -f -c %T /sys/fs/bpf) || return 1
  [[ $t == bpf_fs ]] || { echo "/sys/fs/bpf is $t"; return 1; }
  echo "/sys/fs/bpf"
}

if [[ ${1:-} == --guest ]]; then
  KERNEL=$2 SHARE=$3 NONCE=$4 SELF_SHA=$5 BUILD_DIR=${6:-} BUILD_SHA=${7:-}
  echo "INFO: command started at guest uptime $(cut -d' ' -f1 /proc/uptime) s"
  check kernel g_kernel
  check host-fs g_host_fs
  check share g_share
  check netns g_netns
  check tc g_tc
  check netfilter g_netfilter
  check bpffs g_bpffs
  echo "INFO: guest checks done at uptime $(cut -d' ' -f1 /proc/uptime) s"
  [[ $fail -eq 0 ]] && exit "$GUEST_OK"
  exit 1
fi

# ---------------------------------------------------------------------------
# On the host.

BUILD_DIR=
if [[ $# -gt 0 ]]; then
  BUILD_DIR=$(realpath "$1")
  [[ -f $BUILD_DIR/CMakeCache.txt ]] || BUILD_DIR=
fi
if [[ $EUID -ne 0 ]]; then
  echo "SKIP: needs root (run-vm reads the kernel image and exports /)"
  exit 77
fi
if ! checked=$("$HERE/run-vm" --check 2>&1); then
  echo "SKIP: $checked"
  exit 77
fi
kernel=$(sed -n 's/.*(kernel \(.*\))$/\1/p' <<<"$checked")

share=$(mktemp -d "${TMPDIR:-/tmp}/smr-vm-selftest.XXXXXX")
trap 'rm -rf "$share"' EXIT
nonce=$$-$RANDOM$RANDOM
self_sha=$(sha256sum "$SELF" | cut -d' ' -f1)
args=("$kernel" "$share" "$nonce" "$self_sha")
if [[ -n $BUILD_DIR ]]; then
  args+=("$BUILD_DIR" "$(sha256sum "$BUILD_DIR/CMakeCache.txt" | cut -d' ' -f1)")
fi

cd "$HERE"
# A checkout under /tmp (as CI makes) is not visible in the guest unless
# shared.
source "$HERE/lib.sh"
mapfile -t vis < <(vm_share_args "$HERE" ${BUILD_DIR:+"$BUILD_DIR"})
t0=$(date +%s.%N)
rc=0
"$HERE/run-vm" --timeout 300 --share "$share" "${vis[@]}" --log "$share/console.log" \
  -- "$SELF" --guest "${args[@]}" || rc=$?
t1=$(date +%s.%N)
# The guest's PASS/FAIL lines came through run-vm's stdout; count them too.

if [[ $rc -eq $GUEST_OK ]]; then
  echo "PASS: exit-status (run-vm returned the command's $GUEST_OK)"
  pass=$((pass + 1))
else
  echo "FAIL: exit-status: run-vm returned $rc, expected $GUEST_OK (1: a guest check failed; 125: the VM failed)"
  fail=$((fail + 1))
  if [[ $rc -ne 1 && -s $share/console.log ]]; then
    echo "--- console log ---"
    tail -n 40 "$share/console.log"
  fi
fi
if [[ $(cat "$share/result.json" 2>/dev/null) == "{\"nonce\": \"$nonce\"}" ]]; then
  echo "PASS: share-host (the host sees $share/result.json)"
  pass=$((pass + 1))
else
  echo "FAIL: share-host: $share/result.json is missing or wrong on the host"
  fail=$((fail + 1))
fi
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "INFO: run-vm took %.1f s (one boot)\n", b - a }'
# The guest's checks all passed iff rc was 3; the two host checks above.
if [[ $rc -eq $GUEST_OK && $fail -eq 0 ]]; then
  echo "selftest: all checks passed"
  exit 0
fi
echo "selftest: FAILED"
exit 1
