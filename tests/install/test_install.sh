#!/usr/bin/env bash
# tests/install/test_install.sh -- `cmake --install` gives a usable tree:
# the binaries run, examples/counter.c compiles and links against the
# installed libsmr with nothing but pkg-config, and the systemd unit and
# the man pages are there (and the pages document every smrctl command).
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR   (no root needed; CC and
# EXTRA_CFLAGS: the compiler and the sanitizer flags of the build)
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
P=$(mktemp -d /tmp/smr-install-XXXXXX)
trap 'rm -rf "$P"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$BUILD" --prefix "$P" >"$P.log" 2>&1 || { cat "$P.log"; fail "cmake --install"; }
rm -f "$P.log"
for f in bin/smrd bin/smrctl bin/smr-mkcerts include/smr/smr.h include/smr/service.h \
         lib/systemd/system/smrd@.service share/man/man8/smrd.8 share/man/man8/smrctl.8 \
         share/man/man5/smr.conf.5; do
  [[ -e $P/$f ]] || fail "$f was not installed"
done
pc=$(find "$P" -name smr.pc | head -1)
[[ -n $pc ]] || fail "smr.pc was not installed"
lib=$(find "$P" -name libsmr.a | head -1)
[[ -n $lib ]] || fail "libsmr.a was not installed"
"$P/bin/smrd" --help | grep -q -- "--config" || fail "the installed smrd does not run"
"$P/bin/smrctl" --help | grep -q "restart" || fail "the installed smrctl does not run"
grep -q "ExecStart=$P/bin/smrd --config /etc/smr/%i.conf" "$P/lib/systemd/system/smrd@.service" ||
  fail "the unit does not start the installed smrd"

# A program of our users: the example, built from the installed tree only.
export PKG_CONFIG_PATH=$(dirname "$pc")
flags=$(pkg-config --cflags --libs smr) || fail "pkg-config smr"
${CC:-cc} -std=c11 -Wall -Werror ${EXTRA_CFLAGS:-} -o "$P/counter" "$SRC/examples/counter.c" $flags ||
  fail "examples/counter.c does not build against the installed libsmr ($flags)"
rc=0
"$P/counter" >/dev/null 2>"$P/counter.err" || rc=$?
grep -q "usage:" "$P/counter.err" || fail "the example does not run (exit $rc)"

# The pages: well-formed, and every smrctl command documented.
if command -v groff >/dev/null; then
  for m in "$P"/share/man/man8/*.8 "$P"/share/man/man5/*.5; do
    w=$(groff -man -Tutf8 -ww "$m" 2>&1 >/dev/null)
    [[ -z $w ]] || fail "$m: $w"
  done
fi
for c in status checkpoint digest leave connections metrics restart staggered debug\\\\-corrupt; do
  grep -q "$c" "$P/share/man/man8/smrctl.8" || fail "smrctl.8 does not document $c"
done
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$P/lib/systemd/system/smrd@.service" 2>&1 | grep -v "smrd@.service: Command .* is not executable\|not found\|Failed to" || true
fi
echo "PASS: installed tree usable ($flags)"
