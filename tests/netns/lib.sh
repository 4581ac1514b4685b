# tests/netns/lib.sh -- hosts in network namespaces, for integration tests.
#
# Source it from a bash test script run as root.  It builds, for one test
# run, a small private network that exists only on this machine:
#
#   <P>-sw      a "switch" namespace holding the bridge br0
#   <P>-n1..nN  one namespace per member, eth0 = 10.77.0.<i>/24
#   <P>-c       the client namespace, eth0 = 10.77.0.200/24
#
# where <P> is "smr<pid>" so that runs do not collide.  All traffic stays
# inside these namespaces (and their loopbacks).  Everything is torn down
# by netns_cleanup, which netns_setup registers as an EXIT trap (together
# with killing the processes the test started with netns_spawn).
#
#   netns_setup N             create the network with N members
#   netns_exec HOST cmd...    run a command in host "n1".."nN" or "c"
#   netns_spawn HOST LOG cmd  start a background process (pid: NETNS_LAST_PID)
#   netns_cut i j             drop all traffic between members i and j
#   netns_heal i j            undo netns_cut
#   netns_link_down i         unplug member i from the switch (host death)
#   netns_wait_for SECS what cmd...   poll cmd until it succeeds or fail
#   netns_ip i                the address of member i
#   netns_write_configs DIR N [INI]   smrd configs DIR/n1.ini..nN.ini
#   netns_log_tails DIR N LINES       the last lines of DIR/log1..logN

NETNS_P="smr$$"
NETNS_N=0
NETNS_PIDS=()

netns_name() { # HOST -> namespace name
  echo "${NETNS_P}-$1"
}

netns_ip() {
  echo "10.77.0.$1"
}

netns_exec() {
  local host=$1
  shift
  ip netns exec "$(netns_name "$host")" "$@"
}

# netns_kill PID: SIGKILL and wait (bounded) until it is gone -- it need
# not be our child, so `wait` cannot do it.
netns_kill() {
  local pid=$1 n
  kill -KILL "$pid" 2>/dev/null || return 0
  for ((n = 0; n < 100; n++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    # A zombie is dead too (its reaper may be slow or absent).
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && return 0
    sleep 0.05
  done
  echo "netns_kill: $pid did not die" >&2
  return 1
}

netns_cleanup() {
  local pid
  for pid in "${NETNS_PIDS[@]}"; do
    netns_kill "$pid" || true
  done
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^${NETNS_P}-" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
}

# netns_add_host NAME ADDR: a namespace with eth0 on the switch.
netns_add_host() {
  local name=$1 addr=$2 ns
  ns=$(netns_name "$name")
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v-${NETNS_P}-${name}" type veth peer name eth0 netns "$ns"
  ip link set "v-${NETNS_P}-${name}" netns "$(netns_name sw)"
  ip -n "$(netns_name sw)" link set "v-${NETNS_P}-${name}" master br0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
}

netns_setup() {
  NETNS_N=$1
  trap netns_cleanup EXIT
  ip netns add "$(netns_name sw)"
  ip -n "$(netns_name sw)" link set lo up
  ip -n "$(netns_name sw)" link add br0 type bridge
  ip -n "$(netns_name sw)" link set br0 up
  local i
  for ((i = 1; i <= NETNS_N; i++)); do
    netns_add_host "n$i" "$(netns_ip "$i")"
  done
  netns_add_host c 10.77.0.200
}

# netns_spawn HOST LOGFILE cmd...: starts it in the background; its pid is
# left in NETNS_LAST_PID (call it directly, not in $(...): the pid must be
# recorded in this shell for netns_cleanup to stop it).
netns_spawn() {
  local host=$1 log=$2
  shift 2
  ip netns exec "$(netns_name "$host")" "$@" >>"$log" 2>&1 &
  NETNS_LAST_PID=$!
  NETNS_PIDS+=("$NETNS_LAST_PID")
}

netns_cut() { # i j: both directions, at member i's host
  netns_exec "n$1" iptables -A INPUT -s "$(netns_ip "$2")" -j DROP
  netns_exec "n$1" iptables -A OUTPUT -d "$(netns_ip "$2")" -j DROP
}

netns_heal() {
  netns_exec "n$1" iptables -D INPUT -s "$(netns_ip "$2")" -j DROP
  netns_exec "n$1" iptables -D OUTPUT -d "$(netns_ip "$2")" -j DROP
}

netns_link_down() {
  ip -n "$(netns_name sw)" link set "v-${NETNS_P}-n$1" down
}

netns_link_up() {
  ip -n "$(netns_name sw)" link set "v-${NETNS_P}-n$1" up
}

# netns_wait_for SECS WHAT cmd...: polls cmd (every 100 ms) until it
# succeeds; fails the test with WHAT after SECS seconds.
netns_wait_for() {
  local secs=$1 what=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "FAIL: timed out after ${secs}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

# netns_write_configs DIR N [INI]: smrd configurations DIR/n1.ini..nN.ini
# for a group "kv" of N members at 10.77.0.<i>:7000 with mutual TLS (the
# certificates in DIR/certs, as smr-mkcerts makes them) and data in
# DIR/d<i>.  INI (more sections, one string with newlines) is appended to
# each, with every "@i@" replaced by the member's number.
netns_write_configs() {
  local dir=$1 n=$2 extra=${3:-} i members=""
  for ((i = 1; i <= n; i++)); do
    members+="${members:+, }n$i=$(netns_ip "$i"):7000"
  done
  for ((i = 1; i <= n; i++)); do
    printf '%s\n' '[group]' 'name = kv' "members = $members" \
      '[node]' "id = n$i" "data_dir = $dir/d$i" \
      '[transport]' "tls_ca = $dir/certs/ca.pem" \
      "tls_cert = $dir/certs/n$i.pem" "tls_key = $dir/certs/n$i.key" \
      "${extra//@i@/$i}" >"$dir/n$i.ini"
  done
}

# netns_log_tails DIR N LINES: the last LINES of each member's log
# (DIR/log<i>), to stderr -- for a test that failed.
netns_log_tails() {
  local i
  for ((i = 1; i <= $2; i++)); do
    echo "--- n$i log (tail)" >&2
    # (stdout to stderr first, then tail's own errors away: the other order
    # sent the tail itself to /dev/null.)
    tail -n "$3" "$1/log$i" >&2 2>/dev/null || true
  done
}
