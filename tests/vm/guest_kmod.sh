#!/usr/bin/env bash
# tests/vm/guest_kmod.sh -- runs INSIDE the VM (tests/vm/run-vm): the
# smr_tcpr kernel module's life and the TCP-R scenarios on its gate.
#
#   0. the tc-BPF gate's probe on the VM's kernel (Debian 12's 6.1: an older
#      verifier than most hosts');
#   1. insmod smr_tcpr.ko: the module and its generic netlink family are
#      there;
#   2. the gate probe (tests/netns/test_tcpr_gate.sh) with
#      SMR_GATE_KIND=kmod: fenced on open, acknowledgements held until
#      released (also bytes that arrive before accept), window edge kept,
#      D-SACK stripped, FIN of a killed owner and RST dropped until allowed,
#      a forked child fences, 12 MB of checked traffic;
#   3. ACK_NOW: a release with nothing to send acknowledges at once
#      (acks_sent moves; the client's unacknowledged bytes drop without a
#      reply) -- tcpr_gate_probe's kmod-only step;
#   4. the TCP-R scenarios 1, 3 and 5 (tests/netns/test_tcpr.sh) with
#      gate = kmod;
#   5. no object of the module is left once the test namespaces are gone
#      (live_objects, its allocation count); rmmod: it unloads (no user
#      left), the kernel log has no warning, oops or leak report.
#
# Prints one PASS/FAIL line per step and exits non-zero if any failed.
#
# Usage (in the guest, as root): guest_kmod.sh BUILD_DIR [SCENARIOS]
set -uo pipefail

BUILD=$(cd "${1:?usage: $0 BUILD_DIR [SCENARIOS]}" && pwd)
SCEN=${2:-"1 3 5"}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
KO=$BUILD/kernel-module/kbuild/smr_tcpr.ko
PROBE=$BUILD/tests/netns/tcpr_gate_probe
failures=0
pass() { echo "PASS: vm: $*"; }
fail() { echo "FAIL: vm: $*"; failures=$((failures + 1)); }
t0=$SECONDS

[[ -f $KO ]] || { fail "no module at $KO (build the smr_tcpr_kmod target)"; exit 1; }
dmesg -C 2>/dev/null || true

# ---- 0. the tc-BPF gate on this (Debian 12's) kernel ----------------------------
# Its verifier is older than the host's: a program the host accepts can be
# refused here (it was: "Argument list too long").
if timeout 300 "$SRC/tests/netns/test_tcpr_gate.sh" "$PROBE" >/tmp/bpf-gate.log 2>&1; then
  pass "the tc-BPF gate loads and passes its probe on $(uname -r) ($(grep -c '^PASS' /tmp/bpf-gate.log) checks)"
else
  fail "the tc-BPF gate on $(uname -r) (log follows)"
  grep -E '^(PASS|FAIL)' /tmp/bpf-gate.log | tail -5
fi

# ---- 1. load ---------------------------------------------------------------
if insmod "$KO"; then
  if [[ -d /sys/module/smr_tcpr ]]; then
    pass "insmod: /sys/module/smr_tcpr present ($(uname -r))"
  else
    fail "insmod succeeded but /sys/module/smr_tcpr is missing"
  fi
else
  fail "insmod $KO"
  exit 1
fi

# ---- 2 + 3. the gate probe --------------------------------------------------
if SMR_GATE_KIND=kmod timeout 300 "$SRC/tests/netns/test_tcpr_gate.sh" "$PROBE" \
  >/tmp/kmod-gate.log 2>&1; then
  pass "gate probe: $(grep -c '^PASS' /tmp/kmod-gate.log) checks passed"
else
  fail "gate probe (log follows)"
  tail -40 /tmp/kmod-gate.log
fi
grep -E '^(PASS|FAIL)' /tmp/kmod-gate.log | sed 's/^/  /'

# ---- 4. the TCP-R scenarios ---------------------------------------------------
if SMR_GATE_KIND=kmod SMR_SUSPECT_MS=${SMR_SUSPECT_MS:-400} SMR_HEARTBEAT_MS=${SMR_HEARTBEAT_MS:-40} \
  timeout 900 "$SRC/tests/netns/test_tcpr.sh" "$BUILD" $SCEN >/tmp/kmod-tcpr.log 2>&1; then
  pass "TCP-R scenarios $SCEN with gate = kmod"
else
  fail "TCP-R scenarios $SCEN with gate = kmod (log follows)"
  tail -60 /tmp/kmod-tcpr.log
fi
grep -E '^(PASS|FAIL)' /tmp/kmod-tcpr.log | sed 's/^/  /'

# ---- 5. unload ----------------------------------------------------------------
# Every namespace that used the gate is gone (the tests removed them; the
# kernel tears them down in the background): nothing of ours may be left.
live=?
for ((i = 0; i < 100; i++)); do
  live=$(cat /sys/module/smr_tcpr/parameters/live_objects 2>/dev/null || echo "?")
  [[ $live == 0 ]] && break
  sleep 0.1
done
if [[ $live == 0 ]]; then
  pass "no object left after the namespaces went (live_objects 0)"
else
  fail "live_objects is $live after the test namespaces went: a leak"
fi
refs=$(cat /sys/module/smr_tcpr/refcnt 2>/dev/null || echo "?")
if rmmod smr_tcpr; then
  if [[ -d /sys/module/smr_tcpr ]]; then
    fail "rmmod returned but the module is still there"
  else
    pass "rmmod: unloaded (refcount before: $refs)"
  fi
else
  fail "rmmod smr_tcpr (refcount $refs)"
fi
if dmesg | grep -E -i 'smr_tcpr.*(warn|bug|leak)|WARNING:|BUG:|Oops|kmemleak' >/tmp/kmod-dmesg.bad; then
  fail "the kernel log has warnings:"
  cat /tmp/kmod-dmesg.bad
else
  pass "kernel log clean ($(dmesg | grep -c smr_tcpr) lines from smr_tcpr)"
fi
if [[ -w /sys/kernel/debug/kmemleak ]]; then
  echo scan >/sys/kernel/debug/kmemleak
  if grep -q . /sys/kernel/debug/kmemleak; then
    fail "kmemleak reports:"
    head -40 /sys/kernel/debug/kmemleak
  else
    pass "kmemleak: nothing"
  fi
fi

echo "kmod: $((SECONDS - t0)) s, $failures failure(s)"
[[ $failures -eq 0 ]]
