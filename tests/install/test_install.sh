#!/usr/bin/env bash
# tests/install/test_install.sh -- `cmake --install` gives a usable tree:
# the binaries run; libsmr.so has its SONAME and exports exactly the
# functions the public headers declare; examples/counter.c compiles and
# links against the installed libsmr with nothing but pkg-config, once
# against libsmr.so and once statically against libsmr.a, and the two
# builds run a three-member group together (in a network namespace of
# their own, where one can be made); the systemd unit is there and sound;
# the man pages are there and document every smrd option, every smrctl
# command and option, and every config section and key -- the lists are
# taken from the sources (smr/smrd/smrd.c, smrctl.c, config.c), so a new
# one without its documentation fails here.
#
# Usage: test_install.sh BUILD_DIR SOURCE_DIR   (no root needed; CC and
# EXTRA_CFLAGS: the compiler and the sanitizer flags of the build;
# SMR_SHARED=OFF: the build has no libsmr.so)
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: $0 BUILD_DIR SOURCE_DIR}" && pwd)
P=$(mktemp -d /tmp/smr-install-XXXXXX)
trap 'rm -rf "$P"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
I=$P/prefix
mkdir "$I"

timeout 60 cmake --install "$BUILD" --prefix "$I" >"$P/install.log" 2>&1 ||
  { cat "$P/install.log"; fail "cmake --install"; }
for f in bin/smrd bin/smrctl bin/smr-mkcerts include/smr/smr.h include/smr/service.h \
         include/smr/frontend.h lib/systemd/system/smrd@.service share/man/man8/smrd.8 \
         share/man/man8/smrctl.8 share/man/man5/smr.conf.5; do
  [[ -e $I/$f ]] || fail "$f was not installed"
done
[[ -x $I/bin/smr-mkcerts ]] || fail "smr-mkcerts is not executable"
pc=$(find "$I" -name smr.pc | head -1)
[[ -n $pc ]] || fail "smr.pc was not installed"
lib=$(find "$I" -name libsmr.a | head -1)
[[ -n $lib ]] || fail "libsmr.a was not installed"
libdir=$(dirname "$lib")
"$I/bin/smrd" --help | grep -q -- "--config" || fail "the installed smrd does not run"
"$I/bin/smrctl" --help | grep -q "restart" || fail "the installed smrctl does not run"

# libsmr.so: a SONAME with the ABI version, the links to it, and the public
# functions only -- those declared (at the start of a line) in the
# installed headers, all of them.
shared=${SMR_SHARED:-ON}
if [[ $shared == ON ]]; then
  so=$(readelf -d "$libdir/libsmr.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [[ $so == libsmr.so.* ]] || fail "libsmr.so was not installed, or has no SONAME ('$so')"
  [[ -e $libdir/$so ]] || fail "$so (libsmr.so's SONAME) was not installed"
  declared=$(cat "$I"/include/smr/*.h |
             grep -oE '^[A-Za-z_][A-Za-z0-9_ ]*[ *]smr_[a-z0-9_]+\(' |
             grep -oE 'smr_[a-z0-9_]+\($' | tr -d '(' | sort -u)
  exported=$(nm -D --defined-only "$libdir/libsmr.so" | awk '{print $NF}' | sort -u)
  [[ $(wc -w <<<"$declared") -ge 10 ]] || fail "could not read the public functions from the headers"
  [[ $declared == "$exported" ]] ||
    fail "libsmr.so exports other than the public functions: $(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]' | tr '\n' ' ')"
elif [[ -e $libdir/libsmr.so ]]; then
  fail "SMR_SHARED=OFF, yet libsmr.so was installed"
fi

# A program of our users: the example, built from the installed tree only,
# linked as pkg-config says: with libsmr.so (where the build has one), and
# statically against libsmr.a (pkg-config --static, -l:libsmr.a for -lsmr).
export PKG_CONFIG_PATH=$(dirname "$pc")
unset PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for mode in shared static; do
  if [[ $mode == shared ]]; then
    flags=$(pkg-config --cflags --libs smr) || fail "pkg-config --libs smr"
  else
    flags=$(pkg-config --cflags --libs --static smr) || fail "pkg-config --static smr"
    flags=$(sed 's/\(^\| \)-lsmr\( \|$\)/\1-l:libsmr.a\2/' <<<"$flags")
  fi
  [[ $flags == *"-I$I/include"* ]] || fail "pkg-config smr ($mode) does not point at $I: $flags"
  ${CC:-cc} -std=c11 -Wall -Werror ${EXTRA_CFLAGS:-} -o "$P/counter-$mode" \
    "$SRC/examples/counter.c" $flags ||
    fail "examples/counter.c does not build against the installed libsmr ($mode: $flags)"
  needed=$(readelf -d "$P/counter-$mode" | grep -c 'NEEDED.*\[libsmr\.so' || true)
  want=0
  [[ $mode == shared && $shared == ON ]] && want=1
  [[ $needed == "$want" ]] || fail "the example ($mode) needs libsmr.so $needed times, not $want"
  rc=0
  timeout 20 "$P/counter-$mode" >/dev/null 2>"$P/counter.err" || rc=$?
  grep -q "usage:" "$P/counter.err" ||
    fail "the example ($mode) does not run (exit $rc): $(head -3 "$P/counter.err")"
done

# The two builds in one group: n1 (libsmr.so) is the primary and counts to
# ten with n2 (libsmr.a) and n3 (libsmr.so).  The example's ports are fixed
# (127.0.0.1:7201-7203), so it runs in a network namespace of its own.
group() {
  ip link set lo up || exit 3
  for n in 2 3; do
    b=$P/counter-shared
    [[ $n == 2 ]] && b=$P/counter-static
    timeout 40 "$b" n$n "$P/c$n" >"$P/n$n.out" 2>&1 &
  done
  rc=0
  timeout 30 "$P/counter-shared" n1 "$P/c1" >"$P/n1.out" 2>&1 || rc=$?
  kill $(jobs -p) 2>/dev/null
  wait
  exit $rc
}
export P
export -f group
if [[ $(id -u) == 0 ]]; then ns=(unshare -n); else ns=(unshare -rn); fi
if command -v ip >/dev/null && "${ns[@]}" true 2>/dev/null; then
  rc=0
  "${ns[@]}" bash -c group || rc=$?
  grep -qx "counter = 10" "$P/n1.out" ||
    fail "the example's group did not count to 10 (exit $rc): $(tail -5 "$P"/n*.out)"
else
  echo "note: no network namespace here (unshare -n), the example's group was not run"
fi

# The unit.
unit=$I/lib/systemd/system/smrd@.service
for l in "ExecStart=$I/bin/smrd --config /etc/smr/%i.conf" "Restart=on-failure" \
         "Type=simple" "RuntimeDirectory=smr" "StateDirectory=smr" "KillMode=control-group"; do
  grep -qxF "$l" "$unit" || fail "the unit lacks '$l'"
done
for c in CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_SYS_ADMIN; do
  grep -q "^CapabilityBoundingSet=.*$c" "$unit" || fail "the unit's bounding set lacks $c"
  grep -q "^AmbientCapabilities=.*$c" "$unit" || fail "the unit's ambient set lacks $c"
done
if command -v systemd-analyze >/dev/null; then
  # MANPATH: its Documentation= check finds the installed pages.
  rc=0
  out=$(MANPATH=$I/share/man timeout 60 systemd-analyze verify "$unit" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]]; then
    # Diagnostics about the unit fail the test; a systemd-analyze that
    # cannot run here (no manager, a container) only says so.
    if grep -q "smrd@" <<<"$out"; then fail "systemd-analyze verify: $out"; fi
    echo "note: systemd-analyze verify could not run here: $out"
  fi
else
  echo "note: no systemd-analyze, the unit was not verified"
fi

# The pages: well-formed, and complete against the sources.
if command -v groff >/dev/null; then
  for m in "$I"/share/man/man8/*.8 "$I"/share/man/man5/*.5; do
    w=$(groff -man -Tutf8 -ww "$m" 2>&1 >/dev/null)
    [[ -z $w ]] || fail "$m: $w"
  done
fi
man8=$I/share/man/man8
man5=$I/share/man/man5/smr.conf.5
# troff spells a minus \-
tm() { sed 's/-/\\-/g' <<<"$1"; }
cmds=$(sed -n '/known\[\] = {/,/};/p' "$SRC/smr/smrd/smrctl.c" | grep -o '"[a-z-]*"' | tr -d '"')
[[ $(wc -w <<<"$cmds") -ge 8 ]] || fail "could not read smrctl's commands from smrctl.c"
for c in $cmds; do
  grep -q "^\.B $(tm "$c" | sed 's/\\/\\\\/g')\b" "$man8/smrctl.8" ||
    fail "smrctl.8 has no entry for the command $c"
done
# An option: on a tag line (.B, .BR) under OPTIONS, as a whole word.
opt_documented() {
  OPT=$(tm "$2") awk '
    /^\.SH / { sec = ($0 ~ /^\.SH "?OPTIONS/) }
    sec && /^\.BR? / {
      s = $0; o = ENVIRON["OPT"]
      while ((i = index(s, o)) > 0) {
        pre = substr(s, i - 1, 1); post = substr(s, i + length(o), 1)
        if (pre != "-" && post !~ /[a-z\\-]/) found = 1
        s = substr(s, i + length(o))
      }
    }
    END { exit !found }' "$1" || fail "$(basename "$1") does not document the option $2"
}
opts() { grep -o 'argv\[i\], "-[-a-z]*"' "$1" | grep -o '"-.*"' | tr -d '"' | sort -u; }
n=0
for o in $(opts "$SRC/smr/smrd/smrctl.c"); do opt_documented "$man8/smrctl.8" "$o"; n=$((n+1)); done
[[ $n -ge 8 ]] || fail "could not read smrctl's options from smrctl.c"
n=0
for o in $(opts "$SRC/smr/smrd/smrd.c"); do opt_documented "$man8/smrd.8" "$o"; n=$((n+1)); done
[[ $n -ge 4 ]] || fail "could not read smrd's options from smrd.c"
# Every (section, key) config.c accepts, under that section's heading.
pairs=$(grep -o 'IS("[a-z_]*", "[a-z_]*")' "$SRC/smr/smrd/config.c" | sed 's/IS("\(.*\)", "\(.*\)")/\1.\2/')
[[ $(wc -w <<<"$pairs") -ge 25 ]] || fail "could not read the config keys from config.c"
for sk in $pairs; do
  s=${sk%%.*} k=${sk#*.}
  awk -v sec=".SS [$s]" -v key="$k" '
    $0 == sec { in_sec = 1; next }
    /^\.S[SH] / { in_sec = 0 }
    in_sec && /^\.BR? / && $0 ~ ("(^|[^a-z_])" key "([^a-z_]|$)") { found = 1 }
    END { exit !found }' "$man5" || fail "smr.conf.5 does not document [$s] $k"
done
echo "PASS: installed tree usable ($(pkg-config --libs smr))"
