# shellcheck shell=bash
# tests/vm/rxe.sh -- sourced INSIDE the VM (tests/vm/run-vm), as root:
# soft-RoCE (rdma_rxe) devices for N group members on one machine, so that
# RDMA code (verbs, rdma_cm, perftest) can run between them without an RDMA
# NIC.  Bash; it sets no shell options of its own.
#
#   source tests/vm/rxe.sh
#   rxe_setup 3 || ...     # members 1..3
#   ... use RXE_IP[i], RXE_DEV[i], RXE_GID[i] (also RXE_IP_i etc.) ...
#   rxe_teardown           # also safe after a failed or partial setup
#
# rxe_setup N (1 <= N <= 200) loads the modules (crc32_generic, veth,
# bridge, rdma_rxe, ib_uverbs, rdma_ucm), builds the network below, adds one
# rxe device per member, waits (bounded) for each port to be ACTIVE and to
# have its RoCE v2 GID, and prints one line per member:
#
#   RXE member=1 ip=10.99.0.1 dev=rxe_1 netdev=rxev1 gid_index=1
#
# It sets, for member i: RXE_IP[i] (the IPv4 address to bind), RXE_DEV[i]
# (the ibverbs device name), RXE_GID[i] (the GID index of its IPv4 RoCE v2
# GID: perftest -x, ibv_query_gid), RXE_NETDEV[i]; and exports RXE_N,
# RXE_IP_i, RXE_DEV_i, RXE_GID_i for child processes.  It returns non-zero
# (with a message on stderr) if anything fails; call rxe_teardown then too.
# RXE_NET (default 10.99.0) is the /24 the members' addresses are taken
# from; RXE_QUIET=1 leaves out the RXE lines; RXE_TOPOLOGY=pair (N=2 only)
# joins the two netdevs as the two ends of one veth pair, without a bridge:
# the recipe first proven here (/work/shared/vm/README.md), kept to compare
# with (same figures within noise).
#
# rxe_teardown [--kill-users] puts the `pref 0 lookup local` rule back,
# removes our rules and tables, and deletes the rxe devices and the links
# (also what a failed or partial setup left).  Stop the processes that use
# the devices first: an rxe device cannot be deleted while a process has a
# verbs context on it (perftest, rping, the project's transport: any
# process with /dev/infiniband/uverbsN of the device open).  It waits up to
# RXE_TEARDOWN_WAIT seconds (default 5) for such processes, kills them
# with --kill-users, and otherwise leaves their devices and netdevs in
# place, names the processes and returns 1 -- instead of hanging (which
# without this took 25 s and stalled every ip command meanwhile).  Returns
# 0 if everything is gone.
#
# Every command in both is bounded by `timeout` (RXE_CMD_TIMEOUT, default
# 15 s), every wait is a bounded polling loop.  Measured under TCG (qemu,
# 2 vCPUs, idle host): rxe_setup 3 ~2 s, rxe_teardown ~1 s.
#
# Design
# ------
# All members are in ONE network namespace (the VM's initial one), each
# with its own netdev and its own rxe device bound to it; the netdevs are
# the outer ends of veth pairs whose inner ends are ports of one bridge:
#
#     rxe_1   rxe_2   rxe_3
#     rxev1   rxev2   rxev3    10.99.0.1, .2, .3 (/32 each)
#       |       |       |      (veth pairs)
#     rxep1   rxep2   rxep3
#     '-------rxebr0------'    (bridge: no address, no STP, no multicast
#                               snooping, so it floods like a hub)
#
# rxe sends with a route lookup bound to its netdev (oif) from its GID's
# address; it receives RoCE v2 (UDP 4791) on one kernel socket and gives a
# packet to the rxe device of the netdev it arrived on (skb->dev).  So a
# packet from member i to member j must really leave on rxev_i and come in
# on rxev_j.  Between two addresses of one machine the kernel would never
# do that: the `local` table (rule pref 0) routes them over `lo`.  Hence
# policy routing, which puts the `local` table after our own rules:
#
#   pref 100+i  iif rxev_i lookup local   arriving on a member's netdev:
#                                         delivered locally (before the
#                                         rules below, which would forward)
#   pref 200+i  from 10.99.0.i lookup 100+i
#               table 100+i: 10.99.0.0/24 dev rxev_i src 10.99.0.i
#                            throw 10.99.0.i
#                                         sent from a member's address to
#                                         another member: out of its own
#                                         netdev, to the bridge; to itself:
#                                         on to the rules below (lo)
#   pref 300    lookup local              everything else as before
#   (pref 0 lookup local deleted)
#
# and, on every netdev: rp_filter=0 and accept_local=1 (a packet from one
# of our own addresses is otherwise a martian and dropped); arp_ignore=1
# and arp_announce=2, so that only rxev_j answers an ARP request for
# 10.99.0.j (the request reaches every member's netdev through the bridge,
# and with the default arp_ignore=0 each would answer for any address of
# the machine: ARP flux, packets for rxe_j arriving at rxe_k).  IPv6 is
# disabled on these netdevs (no link-local addresses, no MLD/RS traffic).
# Links are brought up before routes are added (a route on a down device
# is refused).
#
# Consequences for code that uses the devices:
#   - BIND TO THE MEMBER'S ADDRESS.  Only traffic *from* 10.99.0.i is routed
#     over the veths.  rdma_cm: rdma_resolve_addr with a source address
#     (rping -I, rdma_bind_addr first); a wildcard source resolves to `lo`,
#     which has no RDMA device (rping: "ADDR_ERROR"/-110).  ibverbs with a
#     GID index (perftest -x) need nothing: rxe takes the source from the
#     GID.  Unbound TCP/UDP between the addresses goes over `lo`, as usual
#     (perftest's out-of-band TCP exchange does that).
#   - rdma_cm's check of an incoming request (validate_ipv4_net_dev: a route
#     lookup bound to the receiving netdev) skips table 100+i's route (the
#     wrong device) and finds the local route on rxev_j: passes.
#   - The GID index: rxe (RoCE v2 only) has its default GID, the
#     MAC-derived fe80::, at index 0 even with IPv6 off, and the IPv4 one at
#     1 here.  rxe_setup reads it from sysfs (gids/K = ::ffff:10.99.0.i and
#     gid_attrs/types/K = "RoCE v2") instead of assuming.
#   - IP multicast (for RDMA UD multicast later): the bridge floods it to
#     every member (no snooping); whether rxe on 6.1 receives it without an
#     IP-level join was not tried.
#
# What did not work (kernel 6.1; see also /work/shared/vm/README.md)
#   - No policy routing: rping ADDR_ERROR -110, perftest hangs (the
#     packets go over lo; rxe never sees them).  (The README's probe.)
#   - A member's netdev moved into another namespace: ports ACTIVE, but all
#     traffic hangs (rxe's UDP socket lives in the initial namespace), and
#     a teardown took 100 s; `rdma system set netns exclusive` does not
#     help (an rxe device cannot be moved: "Operation not supported").
#     (The README's probe.)
#   - A mesh of veth pairs (one per pair of members) cannot give 3 members
#     one device each -- an rxe device has exactly one netdev, a veth end
#     exactly one peer -- so it was not tried; a bridge lets each member's
#     one netdev reach all the others.  The N=2 recipe's single table 100
#     (`10.99.0.2 dev vethA src 10.99.0.1` ...) does not extend either: the
#     way to a member depends on the sender, hence one table per sender.
#   - Table 100+i without the throw route: a member's traffic to ITSELF
#     went out of its veth and was lost (nobody answers ARP for it).
#     perftest's unbound out-of-band TCP connect picks the destination's
#     address as source, so it met exactly that: "Couldn't connect".
#   - One ip/rdma process per command: each process start in the guest
#     costs 0.5-0.8 s under TCG (exec and dynamic linking over 9p), so the
#     setup took 18 s and the teardown 15 s; they now use -batch (2 s, 1 s).
#     rdma's options are single letters: `rdma -batch -` means `-b atch`.
#   - Process substitution, <(...): the guest has no /dev/fd (devtmpfs, no
#     udev), so this file uses here-strings.
#   - Teardown while perftest still ran: `rdma link delete` blocked (timeout
#     killed it), then deleting the netdev blocked holding the RTNL, so the
#     rules were never restored; hence the check for users above and the
#     order rules, devices, links.
RXE_NET=${RXE_NET:-10.99.0}
RXE_BRIDGE=rxebr0
# shellcheck disable=SC2034  # (for the caller)
declare -ga RXE_IP=() RXE_DEV=() RXE_GID=() RXE_NETDEV=()
RXE_N=0

_rxe_t() { # COMMAND...: bounded
  timeout -k 2 "${RXE_CMD_TIMEOUT:-15}" "$@"
}
_rxe_err() {
  echo "rxe: $*" >&2
  return 1
}
_rxe_sysctl() { # PATH-under-/proc/sys VALUE
  [[ -e /proc/sys/$1 ]] || return 0
  echo "$2" >"/proc/sys/$1" || _rxe_err "cannot set $1=$2"
}
# Commands go to ip and rdma in batches (-batch -, one process each): under
# TCG every process start costs 0.5-0.8 s (exec and dynamic linking over
# 9p), and one command per process made a 3-member setup take 18 s and its
# teardown 15 s.  iproute2's ip, never a shell's built-in one (busybox's
# knows no veth, no rule pref): it is run through timeout.
_rxe_ip_batch() { # [-force]: the commands on stdin
  _rxe_t ip "$@" -batch -
}
_rxe_rdma_batch() { # [-f]: the commands on stdin (rdma reads "-batch" as
  # "-b atch": its options are single letters)
  _rxe_t rdma "$@" -b -
}

rxe_modules() {
  # crc32_generic: rxe computes the ICRC with the kernel's "crc32" hash,
  # and nothing loads that for it (rdma link add then fails).
  _rxe_t modprobe -a crc32_generic veth bridge rdma_rxe ib_uverbs rdma_ucm ||
    _rxe_err "modprobe failed (crc32_generic veth bridge rdma_rxe ib_uverbs rdma_ucm)"
}

_rxe_gid_index() { # DEV IP: prints the index of the IPv4 RoCE v2 GID
  local dev=$1 ip=$2 hex g k v t
  # shellcheck disable=SC2086  # (the four octets as four arguments)
  printf -v hex '0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x' ${ip//./ }
  for g in /sys/class/infiniband/"$dev"/ports/1/gids/*; do
    read -r v <"$g" 2>/dev/null || continue
    [[ $v == "$hex" ]] || continue
    k=${g##*/}
    # (an unused entry's type reads as EINVAL)
    read -r t <"/sys/class/infiniband/$dev/ports/1/gid_attrs/types/$k" 2>/dev/null || continue
    [[ $t == "RoCE v2" ]] && { echo "$k"; return 0; }
  done
  return 1
}

rxe_setup() {
  local n=${1:-2} topo=${RXE_TOPOLOGY:-bridge} i ip nd state gid t rules
  [[ $n =~ ^[1-9][0-9]*$ && $n -le 200 ]] || _rxe_err "rxe_setup: N must be 1..200, not '$n'" || return 1
  [[ $topo == bridge || ($topo == pair && $n == 2) ]] ||
    _rxe_err "rxe_setup: RXE_TOPOLOGY must be bridge, or pair with N=2" || return 1
  [[ $(id -u) -eq 0 ]] || _rxe_err "rxe_setup: needs root" || return 1
  command -v rdma >/dev/null || _rxe_err "no rdma tool (apt-get install iproute2)" || return 1
  [[ ! -e /sys/class/net/rxev1 ]] || _rxe_err "rxe_setup: rxev1 exists (run rxe_teardown first)" || return 1
  rxe_modules || return 1
  RXE_IP=() RXE_DEV=() RXE_GID=() RXE_NETDEV=()
  RXE_N=$n
  for ((i = 1; i <= n; i++)); do
    RXE_NETDEV[i]=rxev$i RXE_IP[i]=$RXE_NET.$i RXE_DEV[i]=rxe_$i
  done

  # 1. The links.
  {
    if [[ $topo == pair ]]; then
      echo "link add rxev1 type veth peer name rxev2"
    else
      echo "link add $RXE_BRIDGE type bridge stp_state 0 mcast_snooping 0"
      for ((i = 1; i <= n; i++)); do
        echo "link add rxev$i type veth peer name rxep$i"
        echo "link set rxep$i master $RXE_BRIDGE"
      done
    fi
  } | _rxe_ip_batch || _rxe_err "cannot create the links" || return 1

  # 2. Before they are up: no IPv6 on any of them (no link-local addresses
  # and GIDs, no MLD/RS noise); ARP and source checks (see above).
  # rp_filter in effect is max(all, device): all must be 0 too.
  _rxe_sysctl net/ipv4/conf/all/rp_filter 0 || return 1
  for nd in /sys/class/net/rxev* /sys/class/net/rxep* /sys/class/net/"$RXE_BRIDGE"; do
    [[ -e $nd ]] || continue
    nd=${nd##*/}
    _rxe_sysctl "net/ipv6/conf/$nd/disable_ipv6" 1 || return 1
    _rxe_sysctl "net/ipv4/conf/$nd/arp_ignore" 1 || return 1
  done
  for ((i = 1; i <= n; i++)); do
    nd=${RXE_NETDEV[i]}
    _rxe_sysctl "net/ipv4/conf/$nd/rp_filter" 0 || return 1
    _rxe_sysctl "net/ipv4/conf/$nd/accept_local" 1 || return 1
    _rxe_sysctl "net/ipv4/conf/$nd/arp_announce" 2 || return 1
  done

  # 3. Links up (a route on a down device is refused), then addresses,
  # tables, rules; the local table's rule moves from pref 0 to 300.
  rules=$(_rxe_t ip rule show) || _rxe_err "ip rule show" || return 1
  {
    if [[ $topo == bridge ]]; then echo "link set $RXE_BRIDGE up"; fi
    for ((i = 1; i <= n; i++)); do
      if [[ $topo == bridge ]]; then echo "link set rxep$i up"; fi
      echo "link set ${RXE_NETDEV[i]} up"
    done
    for ((i = 1; i <= n; i++)); do
      nd=${RXE_NETDEV[i]} ip=${RXE_IP[i]}
      echo "addr add $ip/32 dev $nd"
      echo "route add $RXE_NET.0/24 dev $nd src $ip table $((100 + i))"
      echo "route add throw $ip/32 table $((100 + i))"
      echo "rule add pref $((100 + i)) iif $nd lookup local"
      echo "rule add pref $((200 + i)) from $ip lookup $((100 + i))"
    done
    if ! grep -q '^300:.*lookup local' <<<"$rules"; then echo "rule add pref 300 lookup local"; fi
    if grep -q '^0:.*lookup local' <<<"$rules"; then echo "rule del pref 0 lookup local"; fi
  } | _rxe_ip_batch || _rxe_err "cannot configure addresses, routes and rules" || return 1

  # 4. The rxe devices.
  for ((i = 1; i <= n; i++)); do
    echo "link add ${RXE_DEV[i]} type rxe netdev ${RXE_NETDEV[i]}"
  done | _rxe_rdma_batch || _rxe_err "rdma link add failed" || return 1

  # 5. The port goes ACTIVE and the GIDs appear asynchronously (netdev
  # events, a work queue): poll, bounded.
  for ((i = 1; i <= n; i++)); do
    gid='' state=''
    for ((t = 0; t < 100; t++)); do
      read -r state <"/sys/class/infiniband/${RXE_DEV[i]}/ports/1/state" 2>/dev/null
      if [[ $state == *ACTIVE* ]] && gid=$(_rxe_gid_index "${RXE_DEV[i]}" "${RXE_IP[i]}"); then
        break
      fi
      gid=
      sleep 0.1
    done
    [[ -n $gid ]] ||
      _rxe_err "${RXE_DEV[i]}: no ACTIVE port with a RoCE v2 GID for ${RXE_IP[i]} after 10 s (state: ${state:-none})" ||
      return 1
    RXE_GID[i]=$gid
    export "RXE_IP_$i=${RXE_IP[i]}" "RXE_DEV_$i=${RXE_DEV[i]}" "RXE_GID_$i=$gid"
    [[ ${RXE_QUIET:-0} == 1 ]] ||
      echo "RXE member=$i ip=${RXE_IP[i]} dev=${RXE_DEV[i]} netdev=${RXE_NETDEV[i]} gid_index=$gid"
  done
  export RXE_N
}

# _rxe_users: one line "DEVICE PID COMMAND" per process that has an rxe_*
# device's uverbs file open (ibverbs: a context, hence QPs, CQs, MRs).
_rxe_users() {
  local f dev n pid comm
  local -A ibdev=()
  for f in /sys/class/infiniband_verbs/uverbs*/ibdev; do
    [[ -e $f ]] || continue
    read -r dev <"$f" || continue
    n=${f%/ibdev}
    ibdev[${n##*/}]=$dev
  done
  [[ ${#ibdev[@]} -gt 0 ]] || return 0
  _rxe_t find /proc -mindepth 3 -maxdepth 3 -path '/proc/[0-9]*/fd/*' \
    -lname '/dev/infiniband/uverbs*' -printf '%h %l\n' 2>/dev/null |
    while read -r f n; do
      pid=${f#/proc/}
      pid=${pid%/fd}
      dev=${ibdev[${n##*/}]:-}
      [[ $dev == rxe_* ]] || continue
      read -r comm <"/proc/$pid/comm" 2>/dev/null || comm='?'
      echo "$dev $pid $comm"
    done | sort -u
}

rxe_teardown() { # [--kill-users]
  local d nd rc=0 t sig out rules routes users line kill=0 deadline
  local held=" " held_nd=" " left=0
  [[ ${1:-} == --kill-users ]] && kill=1
  # Deleting an rxe device waits until every process that has it open (a
  # verbs context) has closed it: rxe cannot revoke a context.  That blocks
  # `rdma link delete` and, worse, deleting its netdev (with the RTNL held,
  # which stalls every other ip command).  So: wait a little for such
  # processes to end (or end them with --kill-users: TERM, then KILL), then
  # leave their devices and netdevs alone and say so.  (rdma_cm users hold
  # a context too -- librdmacm opens the device -- though they would let
  # go on their own: a deleted device gives them a DEVICE_REMOVAL event.)
  users=$(_rxe_users)
  deadline=$((SECONDS + ${RXE_TEARDOWN_WAIT:-5}))
  for ((t = 0; SECONDS < deadline && ${#users} > 0; t++)); do
    if [[ $kill == 1 ]]; then
      sig=TERM
      ((t < 2)) || sig=KILL
      # shellcheck disable=SC2046  # (the PIDs)
      kill -s "$sig" $(cut -d' ' -f2 <<<"$users" | sort -u) 2>/dev/null
    fi
    sleep 1
    users=$(_rxe_users)
  done
  if [[ -n $users ]]; then
    echo "rxe: devices still in use, left in place (stop these first):" >&2
    while read -r line; do echo "rxe:   $line" >&2; done <<<"$users"
    rc=1
    while read -r d _; do
      [[ $held == *" $d "* ]] || held+="$d "
    done <<<"$users"
    # Their netdevs: "link rxe_1/1 state ACTIVE ... netdev rxev1".  (No
    # process substitution in this file: the guest has no /dev/fd.)
    out=$(_rxe_t rdma link show 2>/dev/null)
    while read -r line; do
      if [[ $line =~ ^link\ ([^/]+)/[0-9]+\ .*netdev\ ([^ ]+) && $held == *" ${BASH_REMATCH[1]} "* ]]; then
        held_nd+="${BASH_REMATCH[2]} "
      fi
    done <<<"$out"
  fi

  # Rules first (restoring `pref 0 lookup local` is what matters most to
  # the rest of the machine), then the devices and links.
  rules=$(_rxe_t ip rule show) || rc=1
  routes=$(_rxe_t ip route show table all) || rc=1
  {
    if ! grep -q '^0:.*lookup local' <<<"$rules"; then echo "rule add pref 0 lookup local"; fi
    sed -n 's/^\([0-9]*\):.*/\1/p' <<<"$rules" | while read -r t; do
      if ((t >= 101 && t <= 300)); then echo "rule del pref $t"; fi
    done
    sed -n 's/.* table \([0-9][0-9]*\).*/\1/p' <<<"$routes" | sort -u | while read -r t; do
      if ((t >= 101 && t <= 300)); then echo "route flush table $t"; fi
    done
  } | _rxe_ip_batch -force >/dev/null 2>&1
  # The rxe devices (also ones a failed setup left behind) ...
  for d in /sys/class/infiniband/rxe_*; do
    d=${d##*/}
    if [[ -e /sys/class/infiniband/$d && $held != *" $d "* ]]; then echo "link delete $d"; fi
  done | _rxe_rdma_batch -f || { echo "rxe: rdma link delete failed" >&2; rc=1; }
  # ... then the links (a veth's peer goes with it), but not a held
  # device's netdev.
  for d in /sys/class/net/rxev* /sys/class/net/"$RXE_BRIDGE"; do
    nd=${d##*/}
    if [[ -e $d && $held_nd != *" $nd "* ]]; then echo "link delete $nd"; fi
  done | _rxe_ip_batch -force >/dev/null 2>&1

  # Check the result (an rxe device also goes with its netdev: bounded
  # wait).
  for ((t = 0; t < 50; t++)); do
    left=0
    for d in /sys/class/infiniband/rxe_*; do
      d=${d##*/}
      if [[ -e /sys/class/infiniband/$d && $held != *" $d "* ]]; then left=$((left + 1)); fi
    done
    ((left == 0)) && break
    sleep 0.1
  done
  if ((left > 0)); then
    echo "rxe: rxe devices still there after teardown: $(ls /sys/class/infiniband)" >&2
    rc=1
  fi
  for d in /sys/class/net/rxev* /sys/class/net/"$RXE_BRIDGE"; do
    nd=${d##*/}
    if [[ -e $d && $held_nd != *" $nd "* ]]; then
      echo "rxe: link $nd still there after teardown" >&2
      rc=1
    fi
  done
  out=$(_rxe_t ip rule show) || rc=1
  if ! grep -q '^0:.*lookup local' <<<"$out" || grep -qE '^(10[1-9]|1[1-9][0-9]|2[0-9][0-9]|300):' <<<"$out"; then
    echo "rxe: rules not restored: $out" >&2
    rc=1
  fi
  # shellcheck disable=SC2034  # (for the caller)
  RXE_IP=() RXE_DEV=() RXE_GID=() RXE_NETDEV=() RXE_N=0
  return $rc
}
