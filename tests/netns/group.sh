# tests/netns/group.sh -- helpers for a group of smrd members in the
# namespaces of lib.sh (source lib.sh first).  The caller sets WORK (the
# test's directory: WORK/n<i>.ini, WORK/d<i>/, WORK/log<i>), SMRD and
# SMRCTL.  Members are numbers 1..3.
#
#   spawn HOST LOG cmd...   netns_spawn, without the shell's job report
#                    ("Killed ...") when the test kills it
#   start i          start member i's smrd (pid in PID[i])
#   kill9 i          SIGKILL it and wait until it is gone
#   alive i          its smrd is running
#   ctl i args...    smrctl against member i's admin socket
#   in_view_of i n   member i is primary or backup in a view of n members
#   all_in_view      all three are, in a view of 3
#   holds_vip i      member i holds the VIP (gate open)
#   primary          the member holding the VIP now, or nothing
#   have_primary     some member does
#   others_of i      the two other member numbers
#   new_primary_after i   waits (20 s at most) for another member to hold
#                         the VIP and prints it; fails otherwise

declare -A PID

spawn() {
  netns_spawn "$@"
  disown "$NETNS_LAST_PID"
}
start() {
  spawn "n$1" "$WORK/log$1" "$SMRD" --config "$WORK/n$1.ini"
  PID[$1]=$NETNS_LAST_PID
}
kill9() { netns_kill "${PID[$1]}"; }
alive() { kill -0 "${PID[$1]:-0}" 2>/dev/null; }
ctl() {
  local i=$1
  shift
  "$SMRCTL" -s "$WORK/d$i/admin.sock" "$@"
}
in_view_of() {
  local s
  s=$(ctl "$1" status --json 2>/dev/null) || return 1
  grep -q '"role":"\(primary\|backup\)"' <<<"$s" &&
    [[ $(grep -o '"rank"' <<<"$s" | wc -l) -eq $2 ]]
}
all_in_view() { in_view_of 1 3 && in_view_of 2 3 && in_view_of 3 3; }
holds_vip() {
  local s
  s=$(ctl "$1" status --json 2>/dev/null) || return 1
  grep -q '"vip_held":true' <<<"$s"
}
primary() {
  local i
  for i in 1 2 3; do
    if alive "$i" && holds_vip "$i"; then
      echo "$i"
      return 0
    fi
  done
}
have_primary() { [[ -n $(primary) ]]; }
others_of() {
  local i
  for i in 1 2 3; do
    if [[ $i -ne $1 ]]; then echo "$i"; fi
  done
}
new_primary_after() {
  local old=$1 deadline=$((SECONDS + 20)) p
  while ((SECONDS < deadline)); do
    for p in 1 2 3; do
      [[ $p -ne $old ]] || continue
      if alive "$p" && holds_vip "$p"; then
        echo "$p"
        return 0
      fi
    done
    sleep 0.02
  done
  return 1
}
