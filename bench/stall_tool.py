#!/usr/bin/python3
"""stall_tool.py -- client and analysis for the failover stall benchmarks
(bench/tcpr_stall.sh, bench/keepalived_failover.sh).

    stall_tool.py client --host H --port P --conns N --status F --out F
                         --stop-file F [--interval-ms X] [--check]
                         [--io-timeout S] [--threshold-ms X]
    stall_tool.py analyze --client OUT.json --kills KILLS.tsv --case NAME
                          [--goal-ms X] [--goal-what TEXT] [--knob TEXT]
                          [--goal-on all|replicated] [--tables PREFIX]
    stall_tool.py report RESULTS.json            (a table)
    stall_tool.py compare TCPR.json KEEPALIVED.json

Runs under Debian's /usr/bin/python3, stdlib only.

client
------
N threads, each with one TCP connection, issuing INCR <own key>
sequentially (the next request is sent as soon as the reply is in, or
--interval-ms after it).  Every reply is timestamped with
time.monotonic(); reported times are wall-clock (CLOCK_REALTIME, via a
fixed offset taken at start) so that they line up with the kill times the
driver records with $EPOCHREALTIME.  A gap is the time between two
consecutive replies on one connection; every gap above --threshold-ms is
recorded with its start, its end and the send time of the request that
ended it.  A connection that fails (EOF, reset, error reply, no reply
within --io-timeout) is recorded as broken and replaced by a new one
(connect attempts every 20 ms, 250 ms connect timeout), and the time the
replacement got its first reply is recorded: a broken connection never
goes unnoticed and the measurement goes on.  With --check each reply must
be the previous one plus 1 (every INCR applied exactly once, none lost;
for a single replicated service only).  --status is rewritten every 50 ms:
one line per connection "w replies last_reply_wall breaks connected".  The
run ends when --stop-file exists; then --out gets the JSON record.

analyze
-------
KILLS.tsv: one line per kill "k old new t_kill t_end status [t_vip]"
(wall seconds; t_vip: when the driver saw the new owner hold the VIP).
For every kill and connection, the stall is the largest gap open at some
instant in [t_kill, t_vip] (a gap that starts after the new primary was
seen holding the VIP is ordinary service; the largest gap overlapping
[t_kill, t_end] is reported as window_stall_ms); the baseline is the
largest gap that ends in [t_kill - 1 s, t_kill) (the same connection just
before the kill).
With --tables, PREFIX.K is the new primary's connection table (smrctl
connections --json) read right after kill K's takeover: a sample whose
stall's request (the one that ended its largest gap) ends at or below the
table's received offset for its connection was replicated before the kill,
otherwise not yet (reported apart; --goal-on replicated puts the goal on
the former).
Prints the case summary as one JSON object.
"""

import argparse
import json
import os
import socket
import sys
import threading
import time


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# --------------------------------------------------------------------------
# client
# --------------------------------------------------------------------------

class Conn(threading.Thread):
    def __init__(self, wid, ctx):
        super().__init__(name=f"stall-w{wid}", daemon=True)
        self.wid = wid
        self.ctx = ctx
        self.key = f"{ctx.prefix}:{wid}".encode()
        self.cmd = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(self.key),
                                                          self.key)
        self.sock = None
        self.replies = 0
        self.last_mono = None
        # [start_wall, end_wall, gap_ms, send_wall, local_port, req_end]:
        # req_end is where the request that ended the gap ends in the
        # connection's byte stream (bytes sent on it so far).
        self.gaps = []
        self.breaks = []      # [wall, error text]
        self.reconnects = []  # [wall broken, wall first reply again]
        self.anomalies = []   # [wall, expected, got]
        self.errors = 0
        self.expect = None
        self.connected = False
        self.local_ports = []

    def wall(self, mono):
        return mono + self.ctx.offset

    def open(self, timeout):
        s = socket.create_connection((self.ctx.host, self.ctx.port),
                                     timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.ctx.io_timeout)
        self.local_ports.append(s.getsockname()[1])
        self.port = s.getsockname()[1]
        self.sent = 0
        self.sock = s
        self.connected = True
        self.buf = b""

    def close(self):
        self.connected = False
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None

    def request(self):
        """One INCR; returns the integer reply (raises on anything else)."""
        self.sock.sendall(self.cmd)
        self.sent += len(self.cmd)
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("EOF (the server closed the connection)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        if line[:1] != b":":
            self.errors += 1
            raise ValueError(f"unexpected reply {line[:80]!r}")
        return int(line[1:])

    def run(self):
        ctx = self.ctx
        try:
            self.open(5.0)
        except OSError as e:
            self.breaks.append([self.wall(time.monotonic()),
                                f"initial connect: {type(e).__name__}: {e}"])
        self.last_mono = time.monotonic()
        broken_at = None
        while not ctx.stop.is_set():
            if self.sock is None:
                try:
                    self.open(0.25)
                except OSError:
                    ctx.stop.wait(0.02)
                    continue
            t_send = time.monotonic()
            try:
                v = self.request()
            except (OSError, ValueError, ConnectionError) as e:
                now = time.monotonic()
                if broken_at is None:
                    broken_at = now
                    self.breaks.append([self.wall(now),
                                        f"{type(e).__name__}: {e}"])
                self.close()
                self.expect = None
                ctx.stop.wait(0.02)
                continue
            t = time.monotonic()
            if broken_at is not None:
                self.reconnects.append([self.wall(broken_at), self.wall(t)])
                broken_at = None
            if ctx.check and self.expect is not None and v != self.expect:
                self.anomalies.append([self.wall(t), self.expect, v])
            self.expect = v + 1
            gap = t - self.last_mono
            if gap * 1000 > ctx.threshold_ms:
                self.gaps.append([round(self.wall(self.last_mono), 6),
                                  round(self.wall(t), 6), round(gap * 1000, 3),
                                  round(self.wall(t_send), 6), self.port,
                                  self.sent])
            self.last_mono = t
            self.replies += 1
            if ctx.interval > 0:
                time.sleep(ctx.interval)
        # Close the last gap at the end of the run, so that a connection
        # that never got a reply again still shows its whole stall.
        t = time.monotonic()
        if (t - self.last_mono) * 1000 > ctx.threshold_ms:
            self.gaps.append([round(self.wall(self.last_mono), 6),
                              round(self.wall(t), 6),
                              round((t - self.last_mono) * 1000, 3),
                              round(self.wall(self.last_mono), 6), None,
                              None])
        self.close()


class ClientCtx:
    def __init__(self, a):
        self.host, self.port = a.host, a.port
        self.check = a.check
        self.io_timeout = a.io_timeout
        self.threshold_ms = a.threshold_ms
        self.interval = a.interval_ms / 1000.0
        self.prefix = f"stall:{os.getpid()}:{int(time.time())}"
        self.stop = threading.Event()
        self.offset = time.time() - time.monotonic()


def write_status(path, conns, ctx):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for c in conns:
            last = c.wall(c.last_mono) if c.last_mono else 0
            f.write(f"{c.wid} {c.replies} {last:.6f} {len(c.breaks)} "
                    f"{1 if c.connected else 0}\n")
    os.replace(tmp, path)


def cmd_client(a):
    ctx = ClientCtx(a)
    conns = [Conn(i, ctx) for i in range(a.conns)]
    start = time.time()
    for c in conns:
        c.start()
    while not os.path.exists(a.stop_file):
        write_status(a.status, conns, ctx)
        time.sleep(0.05)
    ctx.stop.set()
    for c in conns:
        c.join(a.io_timeout + 1)
    write_status(a.status, conns, ctx)
    out = {
        "host": a.host, "port": a.port, "conns": a.conns,
        "interval_ms": a.interval_ms, "threshold_ms": a.threshold_ms,
        "start_wall": start, "end_wall": time.time(),
        "per_conn": [{
            "w": c.wid, "replies": c.replies, "errors": c.errors,
            "local_ports": c.local_ports, "gaps": c.gaps,
            "breaks": c.breaks, "reconnects": c.reconnects,
            "anomalies": c.anomalies,
        } for c in conns],
    }
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


# --------------------------------------------------------------------------
# analyze
# --------------------------------------------------------------------------

def read_kills(path):
    kills = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if not p or p[0].startswith("#"):
                continue
            kills.append({"k": int(p[0]), "old": p[1], "new": p[2],
                          "t_kill": float(p[3]), "t_end": float(p[4]),
                          "status": p[5] if len(p) > 5 else "ok",
                          "t_vip": float(p[6]) if len(p) > 6 else None})
    return kills


def stats(values):
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(values), "p50": round(pct(values, 50), 1),
            "p99": round(pct(values, 99), 1), "max": round(max(values), 1)}


def read_table(prefix, k):
    """The new primary's connection table right after kill k (smrctl
    connections --json, written by the driver to PREFIX.K), as
    {client port: replicated request bytes}, or None."""
    if not prefix:
        return None
    try:
        with open(f"{prefix}.{k}") as f:
            t = json.load(f)
        return {int(e["client"].rsplit(":", 1)[1]): e["received"]
                for e in t["table"]}
    except (OSError, ValueError, KeyError, IndexError):
        return None


def cmd_analyze(a):
    cl = json.load(open(a.client))
    kills = read_kills(a.kills)
    thr = cl["threshold_ms"]
    samples, baseline, spanning, per_kill = [], [], [], []
    broken_total = 0
    for kl in kills:
        tk, te = kl["t_kill"], kl["t_end"]
        row = {"k": kl["k"], "old": kl["old"], "new": kl["new"],
               "status": kl["status"], "conns": []}
        if kl["t_vip"] is not None:
            row["vip_seen_ms"] = round((kl["t_vip"] - tk) * 1000, 1)
        table = read_table(a.tables, kl["k"])
        # The failover's gaps: those open at some instant between the kill
        # and the moment the driver saw the new primary hold the VIP.  A
        # gap that starts later is the new primary's ordinary service
        # (with fsync, pauses of tens of ms happen without any failover:
        # see base), counted only in window_stall_ms.
        tv = kl["t_vip"] if kl["t_vip"] is not None else te
        for pc in cl["per_conn"]:
            over = [g for g in pc["gaps"] if g[1] > tk and g[0] < tv]
            stall = max((g[2] for g in over), default=thr)
            worst = max(over, key=lambda g: g[2]) if over else None
            wover = [g for g in pc["gaps"] if g[1] > tk and g[0] < te]
            wstall = max((g[2] for g in wover), default=thr)
            span = [g for g in pc["gaps"] if g[0] <= tk < g[1]]
            # Age of the request in flight at the kill (ms), or None when
            # the connection was between requests (sent after the kill).
            age = None
            if span and span[0][3] <= tk:
                age = round((tk - span[0][3]) * 1000, 2)
            # Was the stall's request (the one that ended the largest gap:
            # the one in flight at the kill, or one sent just after it) replicated
            # before the kill?  The new primary's table, read right after
            # the takeover (before the client's first retransmission, >= 200
            # ms after its send), holds its end if and only if the old
            # primary got it through the group.  None: no gap, or no table.
            repl = None
            if (worst is not None and table is not None
                    and len(worst) >= 6 and worst[4] in table):
                repl = table[worst[4]] >= worst[5]
            # The gap that spans the kill: the completion of the request in
            # flight at the kill (or idle); later gaps in the window belong
            # to requests sent after the kill.
            first = span[0][2] if span else thr
            base = max((g[2] for g in pc["gaps"] if tk - 1.0 <= g[1] < tk),
                       default=thr)
            broke = [b for b in pc["breaks"] if tk - 0.5 <= b[0] <= te]
            back = [r for r in pc["reconnects"] if tk - 0.5 <= r[0] <= te]
            row["conns"].append({
                "w": pc["w"], "stall_ms": stall, "window_stall_ms": wstall,
                "spanning_gap_ms": first,
                "baseline_ms": base,
                "inflight_age_ms": age, "stall_request_replicated": repl,
                "broken": len(broke),
                "served_again_ms": [round((r[1] - tk) * 1000, 1) for r in back],
                "errors": [b[1] for b in broke]})
            samples.append(stall)
            spanning.append(first)
            baseline.append(base)
            broken_total += len(broke)
        row["stall_ms"] = max(c["stall_ms"] for c in row["conns"])
        per_kill.append(row)
    samples_all = [c for r in per_kill for c in r["conns"]]

    def stall_where(pred, what):
        return dict(stats([c["stall_ms"] for c in samples_all if pred(c)]),
                    what=what)

    anomalies = sum(len(pc["anomalies"]) for pc in cl["per_conn"])
    breaks_all = sum(len(pc["breaks"]) for pc in cl["per_conn"])
    st = stats(samples)
    res = {
        "case": a.case,
        "knob": a.knob,
        "kills": len(kills),
        "takeovers_missed": sum(1 for k in kills if k["status"] != "ok"),
        "conns": cl["conns"],
        "samples": "one per kill and connection: the largest reply gap "
                   "open at some instant between the kill and the new "
                   "primary seen holding the VIP",
        "stall_ms": st,
        "window_stall_ms": dict(stats(
            [c["window_stall_ms"] for c in samples_all]),
            what="the largest gap overlapping [kill, end of the kill's "
                 "window] (0.5 s of load after everyone was served again): "
                 "also the new primary's ordinary pauses"),
        "worst_conn_per_kill_ms": stats([r["stall_ms"] for r in per_kill]),
        "spanning_gap_ms": dict(stats(spanning), what="the gap that spans "
                                "the kill only (the reply to the request in "
                                "flight at the kill)"),
        "baseline_ms": dict(stats(baseline), what="largest gap per "
                            "connection in the second before each kill"),
        "stall_ms_inflight_ge5ms": stall_where(
            lambda c: c["inflight_age_ms"] is not None
            and c["inflight_age_ms"] >= 5,
            "only the samples whose request in flight at the kill had been "
            "sent at least 5 ms before it (surely received; with "
            "reply_delay_ms also surely replicated)"),
        "stall_ms_replicated": stall_where(
            lambda c: c["stall_request_replicated"] is True,
            "only the samples whose stall's request (the one that ended the "
            "largest gap) was replicated before the kill (the new primary's "
            "table right after the takeover holds its end)"),
        "stall_ms_not_replicated": stall_where(
            lambda c: c["stall_request_replicated"] is False,
            "only the samples whose stall's request was not yet replicated "
            "at the kill"),
        "idle_at_kill": sum(1 for c in samples_all
                            if c["inflight_age_ms"] is None),
        "inflight_age_lt5ms": sum(1 for c in samples_all
                                  if c["inflight_age_ms"] is not None
                                  and c["inflight_age_ms"] < 5),
        "broken_connections": broken_total,
        "broken_connections_whole_run": breaks_all,
        "incr_anomalies": anomalies,
        "replies": sum(pc["replies"] for pc in cl["per_conn"]),
        "run_s": round(cl["end_wall"] - cl["start_wall"], 1),
        "per_kill": per_kill,
    }
    served = [s for r in per_kill for c in r["conns"]
              for s in c["served_again_ms"]]
    if served:
        res["served_again_ms"] = dict(stats(served), what="kill -> first "
                                      "reply on a replacement connection")
    if a.goal_ms is not None:
        # The goal's samples: all, or those whose in-flight request was
        # replicated before the kill (--goal-on replicated).
        gs = res["stall_ms_replicated"] if a.goal_on == "replicated" else st
        res["goal"] = {"p99_max_ms": a.goal_ms, "what": a.goal_what,
                       "on": a.goal_on}
        ok = (gs["p99"] is not None and gs["p99"] <= a.goal_ms
              and broken_total == 0 and breaks_all == 0)
        res["goal"]["met"] = ok
    else:
        res["goal"] = {"what": a.goal_what, "p99_max_ms": None,
                       "met": broken_total == 0 and breaks_all == 0}
    json.dump(res, sys.stdout)
    print()
    return 0


# --------------------------------------------------------------------------
# report / compare
# --------------------------------------------------------------------------

def fmt(v):
    return "-" if v is None else f"{v:g}"


def cmd_report(a):
    d = json.load(open(a.results))
    print(f"TCP-R failover stall ({d.get('when', '')}; {d.get('note', '')})")
    hdr = (f"{'case':<34} {'kills':>5} {'samples':>7} {'p50':>7} {'p99':>7} "
           f"{'max':>7} {'span p99':>8} {'win p99':>8} {'base p50':>8} "
           f"{'base max':>8} "
           f"{'broken':>6} "
           f"{'goal':>8}  verdict")
    print(hdr)
    for c in d["cases"]:
        s, b, g = c["stall_ms"], c["baseline_ms"], c["goal"]
        goal = fmt(g.get("p99_max_ms")) if g.get("p99_max_ms") else "-"
        verdict = "MET" if g["met"] else "NOT MET"
        if c["takeovers_missed"]:
            verdict += f" ({c['takeovers_missed']} kills without takeover)"
        if c["incr_anomalies"]:
            verdict += f" ({c['incr_anomalies']} INCR anomalies)"
        print(f"{c['case']:<34} {c['kills']:>5} {s['n']:>7} {fmt(s['p50']):>7} "
              f"{fmt(s['p99']):>7} {fmt(s['max']):>7} "
              f"{fmt(c['spanning_gap_ms']['p99']):>8} "
              f"{fmt(c.get('window_stall_ms', {}).get('p99')):>8} "
              f"{fmt(b['p50']):>8} "
              f"{fmt(b['max']):>8} "
              f"{c['broken_connections_whole_run']:>6} {goal:>8}  {verdict}")
        for key, label in (("stall_ms_replicated", "  (request replicated)"),
                           ("stall_ms_not_replicated", "  (not yet replicated)")):
            y = c.get(key)
            if y and y["n"]:
                print(f"{label:<34} {'':>5} "
                      f"{y['n']:>7} {fmt(y['p50']):>7} {fmt(y['p99']):>7} "
                      f"{fmt(y['max']):>7}")
    print("stall = largest gap between two replies on one connection open "
          "between the kill and the new primary seen holding the VIP, in ms, "
          "one sample per kill and connection; it includes the knob's own "
          "delay (base = the same connection's largest gap in the second "
          "before the kill; span = only the gap that spans the kill, i.e. "
          "the in-flight request's reply; win = the largest gap up to 0.5 s "
          "after everyone was served again, ordinary pauses included).  "
          "broken = connection failures over the whole run (goal 0).")
    return 0


def cmd_compare(a):
    k = json.load(open(a.keepalived))
    t = None
    if a.tcpr and os.path.exists(a.tcpr):
        t = json.load(open(a.tcpr))
    rows = []
    if t:
        for c in t["cases"]:
            rows.append((f"TCP-R: {c['case']}", c["kills"],
                         c["conns"] * c["kills"],
                         c["broken_connections_whole_run"], c["stall_ms"]))
    for c in k["cases"]:
        rows.append((f"keepalived: {c['case']}", c["kills"],
                     c["conns"] * c["kills"], c["broken_connections"],
                     c.get("served_again_ms") or c["stall_ms"]))
    print(f"{'failover':<52} {'kills':>5} {'conns':>6} {'broken':>6} "
          f"{'p50':>7} {'p99':>7} {'max':>7}")
    for name, kills, conns, broken, s in rows:
        print(f"{name:<52} {kills:>5} {conns:>6} {broken:>6} {fmt(s['p50']):>7} "
              f"{fmt(s['p99']):>7} {fmt(s['max']):>7}")
    print("ms: TCP-R = largest reply gap on the same connection; keepalived "
          "= kill -> first reply on a replacement connection (the old one "
          "is broken).  conns = connections established at a kill, summed "
          "over the kills.")
    if not t:
        print(f"(no TCP-R results at {a.tcpr}: run bench/tcpr_stall.sh first)")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("client")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, default=6379)
    c.add_argument("--conns", type=int, default=4)
    c.add_argument("--status", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--stop-file", required=True)
    c.add_argument("--interval-ms", type=float, default=0.0)
    c.add_argument("--threshold-ms", type=float, default=1.0)
    c.add_argument("--io-timeout", type=float, default=10.0)
    c.add_argument("--check", action="store_true")
    z = sub.add_parser("analyze")
    z.add_argument("--client", required=True)
    z.add_argument("--kills", required=True)
    z.add_argument("--case", required=True)
    z.add_argument("--knob", default="")
    z.add_argument("--goal-ms", type=float)
    z.add_argument("--goal-what", default="")
    z.add_argument("--goal-on", choices=("all", "replicated"), default="all")
    z.add_argument("--tables", default="",
                   help="prefix of the new primary's tables: PREFIX.K")
    r = sub.add_parser("report")
    r.add_argument("results")
    m = sub.add_parser("compare")
    m.add_argument("tcpr")
    m.add_argument("keepalived")
    a = ap.parse_args()
    return {"client": cmd_client, "analyze": cmd_analyze,
            "report": cmd_report, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
