# tests/netns/load.sh -- stock clients on the VIP, on connections opened
# before a fault, and the check that none of them noticed it.  Source
# lib.sh first; the caller sets WORK, PY (python3), KVHIST (kvhist.py) and
# VIP, and defines pass and fail.
#
#   load_start NAME CLIENTS   kvhist workers + redis-benchmark + redis-cli
#   load_stop NAME WHAT       stops them; PASS or FAIL lines for WHAT
#   wait_bounded PID SECS     waits for a child, killing it after SECS

# load_start NAME CLIENTS: kvhist workers + redis-benchmark + a redis-cli
# session, all on connections to the VIP opened now; returns once every
# worker completed an operation.
load_start() {
  local name=$1 clients=$2
  rm -f "$WORK/$name.ready" "$WORK/$name.stop"
  ip netns exec "$(netns_name c)" $PY "$KVHIST" run --host $VIP --port 6379 --clients "$clients" \
    --duration "${LOAD_SECONDS:-120}" --prefix "$name:" --out "$WORK/$name.hist" \
    --ready-file "$WORK/$name.ready" --stop-file "$WORK/$name.stop" \
    >"$WORK/$name.summary" 2>"$WORK/$name.err" &
  HIST_PID=$!
  # redis-benchmark: long enough to span the fault; -e shows error replies;
  # any broken connection makes it print an error and exit non-zero.
  # (ip netns exec execs timeout, which passes our SIGINT on.)
  ip netns exec "$(netns_name c)" timeout -s INT "$((${LOAD_SECONDS:-120} + 30))" redis-benchmark -h $VIP \
    -p 6379 -c 10 -P 4 -n 100000000 -t set,get,incr,lpush -q \
    >"$WORK/$name.bench" 2>&1 &
  BENCH_PID=$!
  # redis-cli: one interactive session fed from a pipe, INCR every 20 ms.
  mkfifo "$WORK/$name.cli.in"
  (
    for ((k = 1; ; k++)); do
      [[ -e $WORK/$name.stop ]] && break
      echo "INCR $name:cli"
      sleep 0.02
    done
  ) >"$WORK/$name.cli.in" &
  CLIFEED_PID=$!
  ip netns exec "$(netns_name c)" redis-cli -h $VIP -p 6379 \
    <"$WORK/$name.cli.in" >"$WORK/$name.cli.out" 2>&1 &
  CLI_PID=$!
  netns_wait_for 30 "the $name clients running" test -e "$WORK/$name.ready"
}

# load_stop NAME WHAT: stops the load after the fault and checks that no
# client saw an error and the history is linearizable with every
# acknowledged write present exactly once.
# wait_bounded PID SECS: 0 if PID (our child) exits within SECS; else it
# is killed and 1.
wait_bounded() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
  return 0
}

load_stop() {
  local name=$1 what=$2 ok=1
  touch "$WORK/$name.stop"
  # The feeder stops at the stop file, unless redis-cli stopped reading
  # from it (a reply that never came: the pipe filled and the feeder
  # blocks); redis-cli ends at the feeder's EOF once its last reply is in.
  # Bounded either way: a stuck session is a failure, not a hung test.
  if ! wait_bounded "$CLIFEED_PID" 10 || ! wait_bounded "$CLI_PID" 20; then
    ok=0
    fail "$what: the redis-cli session stopped getting replies (last: $(tail -1 "$WORK/$name.cli.out"))"
  fi
  CLIFEED_PID= CLI_PID= # (cleanup must not kill a recycled pid)
  kill -INT "$BENCH_PID" 2>/dev/null || true
  wait "$BENCH_PID" 2>/dev/null || true
  BENCH_PID=
  local hist_rc=0
  wait "$HIST_PID" || hist_rc=$?
  HIST_PID=
  if [[ $hist_rc -ne 0 ]]; then
    ok=0
    fail "$what: the Python clients saw errors or reconnects: $(cat "$WORK/$name.summary") $(tail -3 "$WORK/$name.err")"
  fi
  if grep -qiE "error|closed the connection|reset" "$WORK/$name.bench"; then
    ok=0
    fail "$what: redis-benchmark saw an error: $(grep -iE 'error|closed|reset' "$WORK/$name.bench" | head -2)"
  fi
  # The redis-cli session: every reply an increasing integer, no error.
  if grep -qvE '^[0-9]+$' "$WORK/$name.cli.out" ||
     ! sort -n -c "$WORK/$name.cli.out" 2>/dev/null; then
    ok=0
    fail "$what: the redis-cli session saw: $(grep -vE '^[0-9]+$' "$WORK/$name.cli.out" | head -2)"
  fi
  local check
  if ! check=$(netns_exec c $PY "$KVHIST" check "$WORK/$name.hist" --host $VIP --port 6379 2>&1); then
    ok=0
    fail "$what: history check: $check"
  fi
  if [[ $ok -eq 1 ]]; then
    local stall
    stall=$($PY -c "import json,sys; d=json.load(open('$WORK/$name.summary')); print(d.get('max_stall_ms'))" 2>/dev/null || echo "?")
    pass "$what: no client error or reconnect ($(grep -c . "$WORK/$name.cli.out") redis-cli replies, largest stall ${stall} ms); $check"
  fi
}

