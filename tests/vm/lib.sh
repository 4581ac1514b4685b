# tests/vm/lib.sh -- sourced by the scripts that call run-vm.
#
# vm_share_args DIR...: prints the --share options that make each DIR
# visible in the guest.  The guest sees the host's / read-only, except
# /tmp, /run, /var/tmp, /var/log and /root, which are fresh there; a DIR
# below one of those (a checkout in /tmp, as CI makes) is shared whole from
# its top directory there (e.g. /tmp/ci-clone), once.  One per line, so:
#   mapfile -t shares < <(vm_share_args "$SRC" "$BUILD")
#   run-vm "${shares[@]}" -- ...
vm_share_args() {
  local d h top seen=" "
  for d in "$@"; do
    d=$(realpath -e -- "$d") || continue
    for h in /tmp /run /var/tmp /var/log /root; do
      if [[ $d == "$h"/* ]]; then
        top=${d#"$h"/}
        top=$h/${top%%/*}
        if [[ $seen != *" $top "* ]]; then
          printf '%s\n%s\n' --share "$top"
          seen+="$top "
        fi
      fi
    done
  done
}
