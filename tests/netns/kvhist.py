#!/usr/bin/python3
"""kvhist.py -- workload generator, history recorder and linearizability
checker for the Redis-protocol KV service.

    kvhist.py run --host H --port P --clients N --duration S --out HIST.jsonl
                  [--keys K] [--prefix PFX] [--ready-file F] [--stop-file F]
                  [--seed X]
    kvhist.py check HIST.jsonl [--host H --port P] [-v]
    kvhist.py selftest

Runs under Debian's /usr/bin/python3 with python3-redis (4.3.x); stdlib and
redis only.

run
---
N worker threads, each with exactly one TCP connection (a bare
redis.Connection, so nothing in redis-py reconnects behind our back).  Before
every operation a worker checks that the connection still holds the socket it
opened, and after every operation that the socket and its local port are
unchanged.  Every exception (connection, timeout, error reply) is recorded as
a failed operation; a broken connection is replaced explicitly and recorded
as a "connect" event and counted as a reconnect.  The keyspace is K registers
(PFX r0..), K counters (PFX c0..) and K lists (PFX l0..), deleted before the
workers start.  Operations: SET reg unique-value, GET reg, INCR ctr, GET ctr,
RPUSH list unique-element, and occasionally LRANGE list 0 -1 (rarer as the
list grows, so the history stays small).  Values are "w<worker>-<counter>".
--ready-file is created once every worker has connected and completed one
operation; the run ends after --duration seconds or as soon as the
--stop-file exists, whichever comes first.

The history is JSON lines: a {"meta": ...} line, one line per operation
    {"w", "op", "key", "arg", "t0", "t1", "ok", "res"}
(t0/t1 = time.monotonic_ns() at invocation and completion; res is the reply,
or "ExceptionType: message" when ok is false), "connect" events, and a final
{"summary": ...} line.  stdout gets one JSON line: ops, errors, reconnects,
the stall per connection (the largest gap between two consecutive successful
completions on one worker's connection, counting the worker's start and exit
as completions, so an outage that lasts until the end still shows):
max_stall_ms, p50_stall_ms (median over the connections of their largest
gap), per_conn_max_stall_ms, and top_stalls (the 10 largest gaps, each with
its start as monotonic ns, seconds since the run started and wall-clock
epoch seconds, to correlate with kill times), local_ports, start_wall.
Exit 0 when there were no errors and no reconnects, 1 otherwise, 2 on bad
usage or when the keyspace could not be reset.

check
-----
Linearizability of the history, one key at a time.  Every operation touches
a single key and the objects are independent, so a history is linearizable
iff each key's sub-history is (locality, Herlihy & Wing; "P-compositionality"
in Lowe's terms).  Checking keys separately keeps every search small.

Each key's sub-history is checked with Lowe's just-in-time variant of the
Wing & Gong search, breadth-first over time.  Events (invocations and
completions) are replayed in real-time order; a configuration is the pair
(state, set of linearized operations).  WGL memoizes exactly these pairs;
here the linearized set is stored as its subset among the operations still
open (plus failed writes already applied), because every operation that
completed before the current instant is necessarily linearized -- an op must
take effect before it returns, hence before anything invoked after its
return.  That pruning is what makes the representation finite and small.
At the completion of op X every configuration is extended by linearizing
open operations (any order, memoized on the pair) until X itself is
linearized; the configurations where X is linearized form the new frontier.
Operations linearized after X are not enumerated: they are still open and
the next completion will consider them.  Reads that match a state are
applied at once, never branched on, and a read that completes in a state it
matches ends that branch (every continuation of the branch is reachable
from the shorter configuration).  An empty frontier is a violation.

Failed operations (ok=false: connection lost, timeout, error reply) have an
unknown outcome: they may or may not have taken effect.  The standard
treatment is a completion time of infinity: they may be linearized at any
point after their invocation, or never.  Failed reads therefore constrain
nothing and are dropped; a failed SET whose value nobody ever read is
dropped too (it can always be placed after everything); failed INCRs are
interchangeable, so only the earliest unused one is tried.

States: register = value or None; counter = int (GET answers None while
0, else the decimal string; INCR answers the new value); list = a
hash-consed node id (every list is interned as (parent id, last element)),
so states compare and hash in O(1), RPUSH checks the node's length and
LRANGE compares node ids.

With --host/--port the final state (GET every register and counter, LRANGE
every list) is read over a fresh connection and checked: every acknowledged
RPUSH element is in its list exactly once, no element appears that was
never pushed, every counter lies between the acknowledged INCRs and those
plus the failed ones, and then the final reads are appended to the history
as reads after everything else, so the lists' order (and the registers'
values) must be consistent with a linearization too.

Output: one line "linearizable: yes (N ops, K keys)" (N counts every
operation in the history, failed ones too; with --host/--port it goes on
"; final state consistent (K keys read)") and exit 0, or
"linearizable: NO ..." followed by the first violation: the key, the
operation that cannot be linearized, the possible states before it, and the
window of operations since the last instant the key's state was uniquely
determined (exit 1).  Exit 2: unreadable history, unreachable server, or
search limit exceeded (inconclusive).

selftest
--------
unittest cases of the checker on handcrafted histories (concurrent
histories that pass, stale reads, lost, duplicated and unknown list
elements, failed writes that did or did not take effect, counters that skip
a value, final states), and a differential test against a brute-force
search over all real-time-respecting orders on 3000 small random histories.
No server needed; well under a second.
"""

import argparse
import gc
import heapq
import json
import os
import random
import sys
import threading
import time
import unittest

INF = float("inf")
WRITE_KINDS = {"set", "incr", "rpush"}
DATA_KINDS = {"set", "get", "incr", "rpush", "lrange"}
MAX_FRONTIER = 200_000  # configurations per step; beyond it the check
                        # gives up (exit 2) rather than run unbounded


# --------------------------------------------------------------------------
# run: the workload
# --------------------------------------------------------------------------

class Recorder:
    """Serialises history lines from all workers into one buffered file."""

    def __init__(self, path):
        self.f = open(path, "w", buffering=1 << 20)
        self.lock = threading.Lock()

    def write(self, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        with self.lock:
            self.f.write(line)

    def close(self):
        self.f.close()


class Keyspace:
    def __init__(self, prefix, k):
        self.registers = [f"{prefix}r{i}" for i in range(k)]
        self.counters = [f"{prefix}c{i}" for i in range(k)]
        self.lists = [f"{prefix}l{i}" for i in range(k)]

    def all(self):
        return self.registers + self.counters + self.lists

    def as_meta(self):
        return {"register": self.registers, "counter": self.counters,
                "list": self.lists}


def new_connection(host, port):
    import redis
    # A bare Connection: one socket, no pool, no retry (retry_on_timeout
    # False gives Retry(NoBackoff(), 0)), no health checks.
    return redis.Connection(host=host, port=port, socket_timeout=30,
                            socket_connect_timeout=5, retry_on_timeout=False,
                            decode_responses=True)


def err_text(e):
    return f"{type(e).__name__}: {e}"


class Worker(threading.Thread):
    TOP = 5  # largest gaps kept per worker

    def __init__(self, wid, run):
        super().__init__(name=f"kvhist-w{wid}", daemon=True)
        self.wid = wid
        self.ctx = run
        self.rng = random.Random(f"{run.seed}-{wid}")
        self.conn = None
        self.sock = None
        self.lport = None
        self.counter = 0
        self.ops = 0
        self.errors = 0
        self.reconnects = 0
        self.connections = 0
        self.last_t1 = None
        self.max_gap = 0
        self.top = []  # min-heap of (gap_ns, from_t1_ns)
        self.list_len = {}
        self.ready = False

    # -- connection ---------------------------------------------------------

    def connect(self):
        """Open this worker's connection; True on success.  Every attempt is
        recorded; every connection after the first counts as a reconnect."""
        run = self.ctx
        t0 = time.monotonic_ns()
        conn = new_connection(run.host, run.port)
        try:
            conn.connect()
            sock = conn._sock
            lport = sock.getsockname()[1]
        except Exception as e:  # noqa: BLE001 -- everything is recorded
            self.errors += 1
            run.rec.write({"w": self.wid, "op": "connect", "t0": t0,
                           "t1": time.monotonic_ns(), "ok": False,
                           "res": err_text(e)})
            conn.disconnect()
            return False
        if self.connections:
            self.reconnects += 1
        self.connections += 1
        self.conn, self.sock, self.lport = conn, sock, lport
        run.rec.write({"w": self.wid, "op": "connect", "t0": t0,
                       "t1": time.monotonic_ns(), "ok": True,
                       "res": {"local_port": lport,
                               "reconnect": self.connections > 1}})
        return True

    def intact(self):
        s = self.conn._sock if self.conn else None
        return (s is not None and s is self.sock and s.fileno() != -1
                and s.getsockname()[1] == self.lport)

    # -- operations ---------------------------------------------------------

    def next_op(self):
        ks, rng = self.ctx.keys, self.rng
        r = rng.random()
        if r < 0.20:
            self.counter += 1
            value = f"w{self.wid}-{self.counter}"
            return "set", rng.choice(ks.registers), value
        if r < 0.40:
            return "get", rng.choice(ks.registers), None
        if r < 0.60:
            return "incr", rng.choice(ks.counters), None
        if r < 0.70:
            return "get", rng.choice(ks.counters), None
        key = rng.choice(ks.lists)
        # LRANGE returns the whole list: keep the expected number of
        # elements read per list operation bounded (about 4).
        if rng.random() < min(0.25, 4.0 / (1 + self.list_len.get(key, 0))):
            return "lrange", key, None
        self.counter += 1
        return "rpush", key, f"w{self.wid}-{self.counter}"

    def execute(self, op, key, arg):
        conn = self.conn
        if op == "set":
            conn.send_command("SET", key, arg)
        elif op == "get":
            conn.send_command("GET", key)
        elif op == "incr":
            conn.send_command("INCR", key)
        elif op == "rpush":
            conn.send_command("RPUSH", key, arg)
        else:
            conn.send_command("LRANGE", key, 0, -1)
        return conn.read_response()

    def run(self):
        run = self.ctx
        # Stalls are measured between successful completions, starting at
        # the worker's start and ending at its exit.
        self.last_t1 = time.monotonic_ns()
        backoff = 0.01
        while not run.should_stop():
            if not self.intact():
                if self.conn is not None:
                    self.conn.disconnect()
                if not self.connect():
                    # A short pause between attempts while nothing listens,
                    # short enough not to inflate the measured stall.
                    run.stop.wait(backoff)
                    backoff = min(0.1, backoff * 2)
                    continue
                backoff = 0.01
            op, key, arg = self.next_op()
            t0 = time.monotonic_ns()
            try:
                res = self.execute(op, key, arg)
                ok = True
            except Exception as e:  # noqa: BLE001 -- everything is recorded
                res, ok = err_text(e), False
            t1 = time.monotonic_ns()
            if ok and not self.intact():
                ok, res = False, f"socket changed under the operation: {res!r}"
            self.ops += 1
            if not ok:
                self.errors += 1
            elif op == "rpush":
                self.list_len[key] = res
            elif op == "lrange":
                self.list_len[key] = len(res)
            run.rec.write({"w": self.wid, "op": op, "key": key, "arg": arg,
                           "t0": t0, "t1": t1, "ok": ok, "res": res})
            if ok:
                self.note_completion(t1)
            if ok and not self.ready:
                self.ready = True
                run.worker_ready()
        self.note_completion(time.monotonic_ns())
        if self.conn is not None:
            self.conn.disconnect()

    def note_completion(self, t1):
        gap = t1 - self.last_t1
        self.max_gap = max(self.max_gap, gap)
        item = (gap, self.last_t1)
        if len(self.top) < self.TOP:
            heapq.heappush(self.top, item)
        elif item > self.top[0]:
            heapq.heapreplace(self.top, item)
        self.last_t1 = t1


class Run:
    def __init__(self, a):
        self.host, self.port = a.host, a.port
        self.seed = a.seed if a.seed is not None else random.randrange(1 << 30)
        self.keys = Keyspace(a.prefix, a.keys)
        self.ready_file, self.stop_file = a.ready_file, a.stop_file
        self.stop = threading.Event()
        self.deadline = None
        self.ready_lock = threading.Lock()
        self.n_ready = 0
        self.n_clients = a.clients
        self.rec = None

    def should_stop(self):
        return self.stop.is_set() or time.monotonic() >= self.deadline

    def worker_ready(self):
        with self.ready_lock:
            self.n_ready += 1
            if self.n_ready == self.n_clients and self.ready_file:
                with open(self.ready_file, "w") as f:
                    f.write(f"{os.getpid()}\n")


def reset_keyspace(host, port, keys):
    conn = new_connection(host, port)
    try:
        conn.connect()
        conn.send_command("DEL", *keys)
        conn.read_response()
    finally:
        conn.disconnect()


def cmd_run(a):
    if a.clients < 1 or a.keys < 1 or a.duration <= 0:
        print("kvhist run: --clients, --keys and --duration must be positive",
              file=sys.stderr)
        return 2
    run = Run(a)
    try:
        reset_keyspace(a.host, a.port, run.keys.all())
    except Exception as e:  # noqa: BLE001
        print(f"kvhist run: cannot reset the keyspace on {a.host}:{a.port}: "
              f"{err_text(e)}", file=sys.stderr)
        return 2
    run.rec = Recorder(a.out)
    mono0, wall0 = time.monotonic_ns(), time.time()
    run.rec.write({"meta": {"version": 1, "host": a.host, "port": a.port,
                            "clients": a.clients, "duration": a.duration,
                            "seed": run.seed, "prefix": a.prefix,
                            "keys": run.keys.as_meta(),
                            "mono0_ns": mono0, "wall0": wall0}})
    run.deadline = time.monotonic() + a.duration
    workers = [Worker(i, run) for i in range(a.clients)]
    for w in workers:
        w.start()
    # Watch for the stop file; a worker blocked in a read finishes within
    # the socket timeout (30 s), so the join is bounded.
    for w in workers:
        while w.is_alive():
            w.join(0.05)
            if a.stop_file and os.path.exists(a.stop_file):
                run.stop.set()
    summary = summarize(workers, mono0, wall0)
    run.rec.write({"summary": summary})
    run.rec.close()
    print(json.dumps(summary))
    return 0 if summary["errors"] == 0 and summary["reconnects"] == 0 else 1


def summarize(workers, mono0, wall0):
    def ms(ns):
        return round(ns / 1e6, 3)

    per_conn = [ms(w.max_gap) for w in workers]
    top = sorted(((gap, t, w.wid) for w in workers for gap, t in w.top),
                 reverse=True)[:10]
    srt = sorted(per_conn)
    return {
        "ops": sum(w.ops for w in workers),
        "errors": sum(w.errors for w in workers),
        "reconnects": sum(w.reconnects for w in workers),
        "max_stall_ms": max(per_conn),
        "p50_stall_ms": srt[len(srt) // 2],
        "per_conn_max_stall_ms": per_conn,
        "top_stalls": [{"w": wid, "gap_ms": ms(gap), "from_mono_ns": t,
                        "from_s": round((t - mono0) / 1e9, 6),
                        "from_wall": round(wall0 + (t - mono0) / 1e9, 6)}
                       for gap, t, wid in top],
        "local_ports": [w.lport for w in workers],
        "start_wall": wall0,
    }


# --------------------------------------------------------------------------
# check: models
# --------------------------------------------------------------------------

BAD = object()  # step() result: the op's reply is impossible in this state


class Op:
    __slots__ = ("idx", "w", "kind", "key", "arg", "t0", "t1", "ok", "res",
                 "rid")

    def __init__(self, idx, w, kind, key, arg, t0, t1, ok, res):
        self.idx, self.w, self.kind, self.key = idx, w, kind, key
        self.arg = arg
        self.t0, self.t1, self.ok, self.res = t0, t1 if ok else INF, ok, res
        self.rid = None

    def is_read(self):
        return self.kind in ("get", "lrange")


class RegisterModel:
    name = "register"
    init = None
    interchangeable_failures = False

    def prepare(self, ops):
        """Drop failed writes whose value no successful read returned: they
        can always be linearized after everything, where nothing sees them."""
        seen = {op.res for op in ops if op.ok and op.kind == "get"}
        return [op for op in ops if op.ok or op.arg in seen]

    def step(self, s, op):
        if op.kind == "set":
            return op.arg if (not op.ok or op.res == "OK") else BAD
        if op.kind == "get":
            return s if op.res == s else BAD
        return BAD

    def show(self, s):
        return repr(s)


class CounterModel:
    name = "counter"
    init = 0
    interchangeable_failures = True  # every failed INCR has the same effect

    def prepare(self, ops):
        return ops

    def step(self, s, op):
        if op.kind == "incr":
            return s + 1 if (not op.ok or op.res == s + 1) else BAD
        if op.kind == "get":
            want = None if s == 0 else str(s)
            got = op.res if op.res is None else str(op.res)
            return s if got == want else BAD
        return BAD

    def show(self, s):
        return str(s)


class ListModel:
    """Lists are hash-consed: node id 0 is the empty list, and the list
    `parent + [elem]` has the id interned under (parent, elem)."""

    name = "list"
    init = 0
    interchangeable_failures = False

    def __init__(self):
        self.nodes = {}
        self.parent = [None]
        self.elem = [None]
        self.length = [0]

    def intern(self, parent, elem):
        key = (parent, elem)
        nid = self.nodes.get(key)
        if nid is None:
            nid = len(self.length)
            self.nodes[key] = nid
            self.parent.append(parent)
            self.elem.append(elem)
            self.length.append(self.length[parent] + 1)
        return nid

    def intern_list(self, items):
        nid = 0
        for e in items:
            nid = self.intern(nid, e)
        return nid

    def prepare(self, ops):
        for op in ops:
            if op.kind == "lrange" and op.ok:
                op.rid = (self.intern_list(op.res)
                          if isinstance(op.res, list) else -1)
        return ops

    def step(self, s, op):
        if op.kind == "rpush":
            n = self.intern(s, op.arg)
            return n if (not op.ok or op.res == self.length[n]) else BAD
        if op.kind == "lrange":
            return s if op.rid == s else BAD
        return BAD

    def items(self, s):
        out = []
        while s:
            out.append(self.elem[s])
            s = self.parent[s]
        return out[::-1]

    def show(self, s):
        items = self.items(s)
        if len(items) <= 6:
            return repr(items)
        tail = ", ".join(map(repr, items[-4:]))
        return f"[{len(items)} elements ..., {tail}]"


def model_for(ops, declared=None):
    if declared == "counter" or any(op.kind == "incr" for op in ops):
        return CounterModel()
    if declared == "list" or any(op.kind in ("rpush", "lrange") for op in ops):
        return ListModel()
    return RegisterModel()


# --------------------------------------------------------------------------
# check: the search
# --------------------------------------------------------------------------

class Violation(Exception):
    def __init__(self, key, model, message, time_ns=INF, details=()):
        super().__init__(message)
        self.key, self.model, self.message = key, model, message
        self.time_ns, self.details = time_ns, list(details)


class Inconclusive(Exception):
    pass


def describe(op, t_base):
    def rel(t):
        return "inf" if t == INF else f"{(t - t_base) / 1e6:+.3f}ms"

    arg = "" if op.arg is None else f" {op.arg!r}"
    if op.ok:
        res = op.res
        if isinstance(res, list) and len(res) > 6:
            res = f"[{len(res)} elements ..., " + \
                ", ".join(map(repr, res[-4:])) + "]"
        else:
            res = repr(res)
        out = f"-> {res}"
    else:
        out = f"-> FAILED, outcome unknown ({op.res})"
    who = f"w{op.w}" if isinstance(op.w, int) else str(op.w)
    return (f"[{who} {rel(op.t0)} .. {rel(op.t1)}] "
            f"{op.kind} {op.key}{arg} {out}")


def check_key(key, ops, declared=None, t_base=0):
    """Check one key's sub-history.  Returns the number of ops checked or
    raises Violation / Inconclusive."""
    model = model_for(ops, declared)
    n_ops = len(ops)
    # Failed reads constrain nothing (standard unknown-outcome treatment).
    ops = [op for op in ops if op.ok or op.kind in WRITE_KINDS]
    ops = model.prepare(ops)
    events = [(op.t0, 0, op.idx, op) for op in ops]
    events += [(op.t1, 1, op.idx, op) for op in ops if op.ok]
    # At equal times invocations come first: equal stamps mean concurrent.
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    frontier = {(model.init, frozenset())}
    open_ops = {}    # idx -> op: invoked, acknowledged later, not completed
    failed = []      # invoked failed writes, in invocation order
    anchor = None    # (op, frontier) when the state was last unique

    for _, kind, _, target in events:
        if kind == 0:
            if target.ok:
                open_ops[target.idx] = target
            else:
                failed.append(target)
            continue
        del open_ops[target.idx]
        before = frontier
        frontier = expand(frontier, target, open_ops, failed, model)
        if not frontier:
            raise violation(key, model, target, before, anchor, ops, t_base)
        if len(frontier) > MAX_FRONTIER:
            raise Inconclusive(f"more than {MAX_FRONTIER} configurations "
                               f"at {describe(target, t_base)}")
        if len(frontier) == 1:
            anchor = (target, frontier)
    return n_ops


def expand(frontier, target, open_ops, failed, model):
    """All configurations reachable from the frontier by linearizing open
    operations (and failed writes) that end with `target` linearized."""
    step = model.step
    tid = target.idx
    target_read = target.is_read()
    out = set()
    seen = set()
    stack = []
    for cfg in frontier:
        s, lin = cfg
        if tid in lin:  # linearized earlier; it leaves the open set now
            out.add((s, lin - {tid}))
        elif cfg not in seen:
            seen.add(cfg)
            stack.append(cfg)
    reads = [op for op in open_ops.values() if op.is_read()]
    writes = [op for op in open_ops.values() if not op.is_read()]
    while stack:
        s, lin = stack.pop()
        # Open reads that match this state are linearized here and now:
        # that configuration dominates the one that postpones them.
        extra = [r.idx for r in reads if r.idx not in lin and step(s, r) is s]
        if extra:
            lin = lin.union(extra)
        s2 = step(s, target)
        if s2 is not BAD:
            out.add((s2, lin))
            if target_read:
                continue  # every longer path is reachable from (s, lin)
        cands = [op for op in writes if op.idx not in lin]
        if model.interchangeable_failures:
            for op in failed:
                if op.idx not in lin:
                    cands.append(op)
                    break
        else:
            cands += [op for op in failed if op.idx not in lin]
        for op in cands:
            s2 = step(s, op)
            if s2 is BAD:
                continue
            cfg = (s2, lin | {op.idx})
            if cfg not in seen:
                seen.add(cfg)
                stack.append(cfg)
        if len(seen) > MAX_FRONTIER:
            raise Inconclusive(f"more than {MAX_FRONTIER} configurations "
                               f"while linearizing op #{target.idx}")
    return out


def violation(key, model, target, before, anchor, ops, t_base):
    states = sorted({model.show(s) for s, _ in before})
    shown = states[:8] + ([f"... ({len(states)} in all)"]
                          if len(states) > 8 else [])
    if anchor is None:
        start_t = -INF
        details = ["state last uniquely determined: at the start (key unset)"]
    else:
        aop, afront = anchor
        (s, _), = afront
        start_t = aop.t1
        details = [f"state last uniquely determined: {model.show(s)}, when "
                   f"w{aop.w}'s {aop.kind} completed"]
        writer = [op for op in ops if op.kind == "set" and op.arg == s]
        if model.name == "register" and writer:
            details.append(f"  ({model.show(s)} was written by "
                           f"{describe(writer[0], t_base)})")
    window = [op for op in ops
              if op.t1 >= start_t and op.t0 <= target.t1]
    window.sort(key=lambda op: (op.t0, op.idx))
    details.append(f"window of {len(window)} ops that cannot be linearized "
                   f"(sorted by invocation):")
    lines = [describe(op, t_base) for op in window]
    if len(lines) > 40:
        lines = lines[:10] + [f"... {len(lines) - 30} more ..."] + lines[-20:]
    details += ["    " + ln for ln in lines]
    details.append("possible states just before the failing completion: "
                   + ", ".join(shown))
    msg = f"{describe(target, t_base)} cannot be linearized"
    return Violation(key, model.name, msg, target.t1, details)


# --------------------------------------------------------------------------
# check: final state
# --------------------------------------------------------------------------

def check_final(key, kind, ops, final, t_base):
    """Direct checks of a key's final value against its history (clear
    messages for lost or duplicated writes); raises Violation."""
    if kind == "list":
        acked = {op.arg: op for op in ops if op.kind == "rpush" and op.ok}
        pushed = {op.arg for op in ops if op.kind == "rpush"}
        items = final or []
        counts = {}
        for e in items:
            counts[e] = counts.get(e, 0) + 1
        dups = [e for e, n in counts.items() if n > 1]
        unknown = [e for e in counts if e not in pushed]
        lost = [e for e in acked if e not in counts]
        problems = []
        if lost:
            problems.append(f"{len(lost)} acknowledged RPUSH element(s) lost: "
                            + ", ".join(describe(acked[e], t_base)
                                        for e in lost[:5]))
        if dups:
            problems.append(f"{len(dups)} element(s) appear more than once: "
                            + ", ".join(f"{e!r} x{counts[e]}"
                                        for e in dups[:5]))
        if unknown:
            problems.append(f"{len(unknown)} element(s) never pushed: "
                            + ", ".join(map(repr, unknown[:5])))
        if problems:
            raise Violation(key, kind, f"final list ({len(items)} elements) "
                            "inconsistent with the history", INF, problems)
    elif kind == "counter":
        acked = sum(1 for op in ops if op.kind == "incr" and op.ok)
        unknown = sum(1 for op in ops if op.kind == "incr" and not op.ok)
        try:
            value = 0 if final is None else int(final)
        except ValueError:
            value = None
        if value is None or not acked <= value <= acked + unknown:
            raise Violation(key, kind, f"final value {final!r}, but "
                            f"{acked} INCRs were acknowledged and {unknown} "
                            f"failed (expected {acked}..{acked + unknown})")
    else:
        written = {op.arg for op in ops if op.kind == "set"}
        if final is not None and final not in written:
            raise Violation(key, kind, f"final value {final!r} was never "
                            "written")


def read_final(host, port, kinds):
    conn = new_connection(host, port)
    conn.connect()
    try:
        final = {}
        for key, kind in sorted(kinds.items()):
            if kind == "list":
                conn.send_command("LRANGE", key, 0, -1)
            else:
                conn.send_command("GET", key)
            final[key] = conn.read_response()
        return final
    finally:
        conn.disconnect()


# --------------------------------------------------------------------------
# check: driver
# --------------------------------------------------------------------------

def load_history(path):
    meta, ops = {}, []
    names = {}  # one string object per distinct key and op name
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: bad JSON: {e}") from None
            if "meta" in r:
                meta = r["meta"]
            elif r.get("op") in DATA_KINDS:
                kind = names.setdefault(r["op"], r["op"])
                key = names.setdefault(r["key"], r["key"])
                ops.append(Op(len(ops), r.get("w"), kind, key,
                              r.get("arg"), r["t0"], r["t1"], bool(r["ok"]),
                              r.get("res")))
    return meta, ops


def key_kinds(meta, ops):
    """key -> model name: from the run's metadata, else from the key's ops."""
    kinds = {}
    for kind, keys in (meta.get("keys") or {}).items():
        for k in keys:
            kinds[k] = kind
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    for key, kops in by_key.items():
        kinds.setdefault(key, model_for(kops).name)
    return kinds


def check_history(ops, kinds=None, final=None, t_base=None):
    """Check a whole history.  ops: list of Op; kinds: key -> model name;
    final: key -> final value (or None to skip the final-state check).
    Returns (n_ops, n_keys); raises the earliest Violation or Inconclusive."""
    by_key = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    kinds = dict(kinds or {})
    for key, kops in by_key.items():
        kinds.setdefault(key, model_for(kops).name)
    if t_base is None:
        t_base = min((op.t0 for op in ops), default=0)
    t_end = max([op.t0 for op in ops] +
                [op.t1 for op in ops if op.ok] + [t_base])
    violations = []
    n = 0
    for key in sorted(kinds):
        kops = list(by_key.get(key, []))
        kind = kinds[key]
        try:
            if final is not None and key in final:
                check_final(key, kind, kops, final[key], t_base)
                read = "lrange" if kind == "list" else "get"
                kops.append(Op(len(ops) + 1, "final", read, key, None,
                               t_end + 1, t_end + 2, True, final[key]))
            n += check_key(key, kops, kind, t_base)
        except Violation as v:
            violations.append(v)
        except Inconclusive as e:
            raise Inconclusive(f"key {key}: {e}") from None
    if violations:
        violations.sort(key=lambda v: (v.time_ns, v.key))
        first = violations[0]
        first.others = [v.key for v in violations[1:]]
        raise first
    return n, len(kinds)


def cmd_check(a):
    t_start = time.monotonic()
    # Millions of long-lived objects and no cycles: the collector would
    # only rescan them over and over (it costs a third of the run).
    gc.disable()
    try:
        meta, ops = load_history(a.history)
    except (OSError, ValueError, KeyError) as e:
        print(f"kvhist check: cannot read the history: {e}", file=sys.stderr)
        return 2
    t_loaded = time.monotonic()
    kinds = key_kinds(meta, ops)
    final = None
    if a.host or a.port:
        if not (a.host and a.port):
            print("kvhist check: --host and --port go together",
                  file=sys.stderr)
            return 2
        try:
            final = read_final(a.host, a.port, kinds)
        except Exception as e:  # noqa: BLE001
            print(f"kvhist check: cannot read the final state: {err_text(e)}",
                  file=sys.stderr)
            return 2
    t_base = meta.get("mono0_ns")
    try:
        n, k = check_history(ops, kinds, final, t_base)
    except Violation as v:
        print(f"linearizable: NO (key {v.key}, {v.model}): {v.message}")
        for d in v.details:
            print(f"  {d}")
        if getattr(v, "others", None):
            print(f"  other keys with violations: {', '.join(v.others)}")
        return 1
    except Inconclusive as e:
        print(f"linearizable: unknown (search limit): {e}")
        return 2
    suffix = (f"; final state consistent ({len(final)} keys read)"
              if final is not None else "")
    print(f"linearizable: yes ({n} ops, {k} keys){suffix}")
    if a.verbose:
        print(f"loaded {len(ops)} ops in {t_loaded - t_start:.2f} s, "
              f"checked in {time.monotonic() - t_loaded:.2f} s",
              file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# selftest
# --------------------------------------------------------------------------

class H:
    """Builds handcrafted histories: h.op(w, kind, key, arg, t0, t1, res)
    with ok=False when res is an Exception."""

    def __init__(self):
        self.ops = []

    def op(self, w, kind, key, arg, t0, t1, res):
        ok = not isinstance(res, Exception)
        self.ops.append(Op(len(self.ops), w, kind, key, arg, t0, t1, ok,
                           res if ok else err_text(res)))
        return self

    def check(self, final=None):
        return check_history(self.ops, None, final)


class CheckerTest(unittest.TestCase):
    def assertViolation(self, h, final=None, key=None):
        with self.assertRaises(Violation) as cm:
            h.check(final)
        if key is not None:
            self.assertEqual(cm.exception.key, key)
        return cm.exception

    # -- registers ---------------------------------------------------------

    def test_concurrent_register_history_passes(self):
        h = H()
        h.op(0, "set", "r", "a", 0, 10, "OK")
        h.op(1, "set", "r", "b", 2, 12, "OK")
        h.op(2, "get", "r", None, 3, 5, "b")     # b took effect before a
        h.op(3, "get", "r", None, 11, 14, "a")   # then a
        h.op(2, "get", "r", None, 15, 16, "a")
        h.op(0, "get", "r", None, -5, -1, None)  # never-set key
        self.assertEqual(h.check(), (6, 1))

    def test_stale_read_after_completed_write_fails(self):
        h = H()
        h.op(0, "set", "r", "a", 0, 10, "OK")
        h.op(0, "set", "r", "b", 20, 30, "OK")
        h.op(1, "get", "r", None, 31, 35, "a")
        v = self.assertViolation(h, key="r")
        self.assertIn("get r -> 'a'", v.message)
        self.assertTrue(any("'b'" in d for d in v.details))

    def test_read_of_a_later_write_fails(self):
        h = H()
        h.op(1, "get", "r", None, 0, 5, "a")
        h.op(0, "set", "r", "a", 6, 10, "OK")
        self.assertViolation(h, key="r")

    def test_failed_set_that_took_effect_is_accepted(self):
        h = H()
        h.op(0, "set", "r", "a", 0, 10, "OK")
        h.op(0, "set", "r", "b", 20, 25, ConnectionError("reset"))
        h.op(1, "get", "r", None, 100, 110, "b")
        h.op(1, "get", "r", None, 120, 130, "b")
        self.assertEqual(h.check(final={"r": "b"})[1], 1)

    def test_failed_set_that_did_not_take_effect_is_accepted(self):
        h = H()
        h.op(0, "set", "r", "a", 0, 10, "OK")
        h.op(0, "set", "r", "b", 20, 25, TimeoutError("timeout"))
        h.op(1, "get", "r", None, 100, 110, "a")
        h.check(final={"r": "a"})

    def test_failed_set_cannot_take_effect_twice(self):
        h = H()
        h.op(0, "set", "r", "b", 0, 5, ConnectionError("reset"))
        h.op(1, "get", "r", None, 10, 11, "b")
        h.op(1, "set", "r", "c", 20, 21, "OK")
        h.op(1, "get", "r", None, 30, 31, "b")
        self.assertViolation(h)

    # -- counters ----------------------------------------------------------

    def test_concurrent_counter_history_passes(self):
        h = H()
        h.op(0, "get", "c", None, 0, 1, None)
        h.op(0, "incr", "c", None, 2, 10, 2)
        h.op(1, "incr", "c", None, 3, 9, 1)
        h.op(2, "get", "c", None, 4, 5, "1")
        h.op(2, "get", "c", None, 11, 12, "2")
        h.check(final={"c": "2"})

    def test_counter_that_skipped_a_value_fails(self):
        h = H()
        h.op(0, "incr", "c", None, 0, 1, 1)
        h.op(0, "incr", "c", None, 2, 3, 3)
        v = self.assertViolation(h, key="c")
        self.assertIn("incr c -> 3", v.message)

    def test_failed_incr_explains_a_skip(self):
        h = H()
        h.op(0, "incr", "c", None, 0, 1, 1)
        h.op(1, "incr", "c", None, 1, 2, ConnectionError("reset"))
        h.op(0, "incr", "c", None, 5, 6, 3)
        h.check(final={"c": "3"})

    def test_final_counter_out_of_range_fails(self):
        h = H()
        h.op(0, "incr", "c", None, 0, 1, 1)
        h.op(1, "incr", "c", None, 1, 2, ConnectionError("reset"))
        h.check(final={"c": "2"})
        v = self.assertViolation(h, final={"c": "3"})
        self.assertIn("expected 1..2", v.message)

    def test_many_failed_incrs_stay_cheap(self):
        h = H()
        for i in range(200):  # interchangeable: no 2^200 blow-up
            h.op(1, "incr", "c", None, i, i + 1, ConnectionError("reset"))
        h.op(0, "incr", "c", None, 1000, 1001, 101)
        h.check(final={"c": "150"})

    # -- lists -------------------------------------------------------------

    def test_concurrent_list_history_passes(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 10, 2)
        h.op(1, "rpush", "l", "y", 1, 9, 1)
        h.op(2, "lrange", "l", None, 2, 8, ["y"])
        h.op(2, "lrange", "l", None, 11, 12, ["y", "x"])
        h.check(final={"l": ["y", "x"]})

    def test_lost_acknowledged_rpush_fails(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        h.op(1, "rpush", "l", "y", 2, 3, 2)
        v = self.assertViolation(h, final={"l": ["x"]}, key="l")
        self.assertIn("lost", " ".join(v.details))

    def test_lost_rpush_seen_by_lrange_fails(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        h.op(1, "rpush", "l", "y", 2, 3, 2)
        h.op(1, "lrange", "l", None, 4, 5, ["x"])
        self.assertViolation(h, key="l")

    def test_duplicated_element_fails(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        h.op(1, "rpush", "l", "y", 2, 3, 2)
        v = self.assertViolation(h, final={"l": ["x", "y", "y"]})
        self.assertIn("more than once", " ".join(v.details))
        h.op(1, "lrange", "l", None, 4, 5, ["x", "x", "y"])
        self.assertViolation(h, key="l")

    def test_unknown_element_fails(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        v = self.assertViolation(h, final={"l": ["x", "zz"]})
        self.assertIn("never pushed", " ".join(v.details))

    def test_final_list_order_must_be_linearizable(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        h.op(1, "rpush", "l", "y", 2, 3, 2)
        self.assertViolation(h, final={"l": ["y", "x"]})

    def test_failed_rpush_either_way(self):
        h = H()
        h.op(0, "rpush", "l", "x", 0, 1, 1)
        h.op(1, "rpush", "l", "f", 2, 3, ConnectionError("reset"))
        h.op(0, "rpush", "l", "y", 4, 5, 3)  # so f did take effect
        h.check(final={"l": ["x", "f", "y"]})
        self.assertViolation(h, final={"l": ["x", "y"]})

    # -- keys are independent ----------------------------------------------

    def test_violation_names_the_key(self):
        h = H()
        h.op(0, "set", "a", "1", 0, 1, "OK")
        h.op(0, "set", "b", "2", 0, 1, "OK")
        h.op(1, "get", "a", None, 2, 3, "1")
        h.op(1, "get", "b", None, 2, 3, None)
        self.assertViolation(h, key="b")

    def test_large_history_is_fast(self):
        # 20k ops, 4 writers + 2 readers overlapping on one register.
        rng = random.Random(7)
        h = H()
        t = 0
        value = None
        for i in range(20000 // 6):
            t += 10
            vals = [f"w{w}-{i}" for w in range(4)]
            order = rng.sample(range(4), 4)
            for w in range(4):
                h.op(w, "set", "r", vals[w], t, t + 8, "OK")
            h.op(4, "get", "r", None, t - 1, t, value)
            value = vals[order[-1]] if rng.random() < 0.5 else vals[3]
            h.op(5, "get", "r", None, t + 9, t + 9, value)
        t0 = time.monotonic()
        n, _ = h.check()
        self.assertEqual(n, len(h.ops))
        self.assertLess(time.monotonic() - t0, 5.0)


def brute_force_linearizable(ops, model):
    """Reference for the differential test: try every order that respects
    real time; failed writes may be placed anywhere after their invocation
    or left out."""
    model.prepare(ops)
    ops = [op for op in ops if op.ok or op.kind in WRITE_KINDS]

    def search(s, rest):
        pending = [op.t1 for op in rest if op.ok]
        if not pending:
            return True
        limit = min(pending)
        for op in rest:
            if op.t0 <= limit:
                s2 = model.step(s, op)
                if s2 is not BAD and search(s2, [o for o in rest
                                                 if o is not op]):
                    return True
        return False

    return search(model.init, ops)


def random_history(rng, kind):
    """A small history from a sequential execution at random points inside
    random intervals (failed ops applied or not), with some replies then
    corrupted, so that both outcomes are common."""
    kinds = {"register": ("set", "get"), "counter": ("incr", "get"),
             "list": ("rpush", "lrange")}[kind]
    plan = []
    for i in range(rng.randint(1, 8)):
        t0 = rng.randint(0, 15)
        t1 = t0 + rng.randint(0, 8)
        ok = rng.random() < 0.8
        at = rng.uniform(t0, t1) if ok or rng.random() < 0.5 else None
        plan.append((i, rng.choice(kinds), f"v{i}", t0, t1, ok, at))
    state = {"register": None, "counter": 0, "list": ()}[kind]
    replies = {}
    for i, k, v, _, _, _, at in sorted((p for p in plan if p[6] is not None),
                                       key=lambda p: p[6]):
        if k == "set":
            state, replies[i] = v, "OK"
        elif k == "incr":
            state += 1
            replies[i] = state
        elif k == "rpush":
            state += (v,)
            replies[i] = len(state)
        elif k == "lrange":
            replies[i] = list(state)
        else:
            replies[i] = (state if kind == "register" else
                          None if state == 0 else str(state))
    ops = []
    for i, k, v, t0, t1, ok, _ in plan:
        res = replies.get(i)
        if ok and rng.random() < 0.15:
            res = {"get": rng.choice([None, "v1", "v2", "1", "2"]),
                   "lrange": [f"v{j}" for j in range(rng.randint(0, 3))]
                   }.get(k, rng.randint(1, 4))
        arg = v if k in WRITE_KINDS and k != "incr" else None
        ops.append(Op(i, 0, k, "x", arg, t0, t1, ok, res if ok else "Err"))
    return ops


class DifferentialTest(unittest.TestCase):
    def test_search_agrees_with_brute_force(self):
        rng = random.Random(1)
        verdicts = {True: 0, False: 0}
        for _ in range(3000):
            kind = rng.choice(["register", "counter", "list"])
            ops = random_history(rng, kind)
            want = brute_force_linearizable(list(ops), model_for([], kind))
            try:
                check_key("x", ops, kind)
                got = True
            except Violation:
                got = False
            self.assertEqual(got, want, "\n".join(
                describe(op, 0) for op in ops))
            verdicts[got] += 1
        # Both outcomes well represented, or the test proves little.
        self.assertGreater(min(verdicts.values()), 500)


def cmd_selftest(a):
    load = unittest.defaultTestLoader.loadTestsFromTestCase
    suite = unittest.TestSuite([load(CheckerTest), load(DifferentialTest)])
    res = unittest.TextTestRunner(verbosity=2 if a.verbose else 1,
                                  stream=sys.stdout).run(suite)
    return 0 if res.wasSuccessful() else 1


# --------------------------------------------------------------------------

def main(argv=None):
    p = argparse.ArgumentParser(prog="kvhist.py", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate load and record a history")
    r.add_argument("--host", required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--clients", type=int, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--keys", type=int, default=8)
    r.add_argument("--prefix", default="kvh:")
    r.add_argument("--ready-file")
    r.add_argument("--stop-file")
    r.add_argument("--seed", type=int)
    c = sub.add_parser("check", help="check a recorded history")
    c.add_argument("history")
    c.add_argument("--host")
    c.add_argument("--port", type=int)
    c.add_argument("-v", "--verbose", action="store_true")
    s = sub.add_parser("selftest", help="unit tests of the checker")
    s.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    return {"run": cmd_run, "check": cmd_check, "selftest": cmd_selftest}[
        a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
