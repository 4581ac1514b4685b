/* trace.c -- the event trace: a ring of binary records and a running hash.
 *
 * Every event the simulator handles (a frame sent, received or dropped, a
 * tick, a delivery, a view, a fault, ...) becomes one fixed-size binary
 * record.  Records are cheap to make -- no formatting on the hot path --
 * and go into a ring of SIM_TRACE_RING entries; they are formatted only
 * when printed: all of them as they happen with -v, the last N after a
 * violation or a crash of the core.
 *
 * The trace hash folds in every record.  Two runs of one seed must end with
 * the same hash (--check-determinism), and the hash printed with each run
 * lets two builds be compared.
 *
 * A core that trips one of its own assertions calls abort(): the handler
 * installed here prints the seed, the step and the trace tail before the
 * process dies, so the failure can be replayed from its seed. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

/* ------------------------------------------------------------------------
 * Recording
 * ---------------------------------------------------------------------- */

static const char *const tname[T_NKINDS] = {
    [T_RECV] = "recv",       [T_DROP] = "drop",       [T_SEND] = "send",
    [T_TICK] = "tick",       [T_DELIVER] = "deliver", [T_VIEW] = "view",
    [T_WEDGED] = "wedged",   [T_QLOST] = "quorum-lost",
    [T_EXCLUDED] = "excluded", [T_LEFT] = "left",
    [T_RBEGIN] = "restore-begin", [T_RCHUNK] = "restore-chunk",
    [T_REND] = "restore-end", [T_PVIEW] = "persist-view",
    [T_PACC] = "persist-acceptor", [T_PENT] = "persist-entry",
    [T_SUBMIT] = "submit",   [T_CRASH] = "CRASH",     [T_START] = "START",
    [T_JOIN] = "JOIN",       [T_LEAVE] = "LEAVE",     [T_CUT] = "CUT",
    [T_HEAL] = "HEAL",       [T_CLOG] = "CLOG",       [T_UNCLOG] = "UNCLOG",
    [T_SLOW] = "SLOW",       [T_UNSLOW] = "UNSLOW",   [T_PEERLOST] = "peer-lost",
    [T_PHASE] = "PHASE",     [T_PROBE] = "PROBE",     [T_TOTAL] = "TOTAL-CRASH",
    [T_SNAP] = "snap-open",  [T_NOTE] = "note",       [T_XFER] = "xfer-begin"};

void sim_trace_reset(struct sim_world *w) {
  w->trace_n = 0;
  w->trace_hash = 0x736d722d73696dull; /* "smr-sim" */
}

void sim_trace(struct sim_world *w, int kind, int node, int peer, int x,
               uint32_t y, uint64_t a, uint64_t b, uint64_t c) {
  struct sim_trec *r = &w->trace[w->trace_n % SIM_TRACE_RING];
  r->t = w->now;
  r->step = w->step;
  r->kind = (uint8_t)kind;
  r->node = (uint8_t)node;
  r->peer = (uint8_t)peer;
  r->x = (uint8_t)x;
  r->y = y;
  r->a = a;
  r->b = b;
  r->c = c;
  w->trace_n++;
  uint64_t h = w->trace_hash;
  h = sim_mix64(h ^ r->t ^ ((uint64_t)r->kind << 56) ^
                ((uint64_t)r->node << 48) ^ ((uint64_t)r->peer << 40) ^
                ((uint64_t)r->x << 32) ^ r->y);
  h = sim_mix64(h ^ a);
  h = sim_mix64(h ^ b ^ (c * 0x9e3779b97f4a7c15ull));
  w->trace_hash = h;
  if (w->opts->verbose) {
    char buf[256];
    sim_trace_format(w, r, buf, sizeof buf);
    fputs(buf, stdout);
  }
}

/* ------------------------------------------------------------------------
 * Formatting
 * ---------------------------------------------------------------------- */

static const char *nid(const struct sim_world *w, int i) {
  if (i < 0 || i >= w->n_nodes || i == 255) return "-";
  return w->nodes[i]->id;
}

void sim_trace_format(const struct sim_world *w, const struct sim_trec *r,
                      char *buf, size_t cap) {
  const char *k = r->kind < T_NKINDS && tname[r->kind] ? tname[r->kind] : "?";
  int o = snprintf(buf, cap, "  [%llu t=%llu] %-4s %s", (unsigned long long)r->step,
                   (unsigned long long)r->t, nid(w, r->node), k);
  if (o < 0 || (size_t)o >= cap) return;
  char *p = buf + o;
  size_t left = cap - (size_t)o;
  unsigned long long a = r->a, b = r->b, c = r->c;
  switch (r->kind) {
  case T_RECV:
    snprintf(p, left, " %s<-%s len=%u crc=%08llx\n", smr_msg_type_name(r->x),
             nid(w, r->peer), r->y, a);
    break;
  case T_SEND:
    snprintf(p, left, " %s->%s len=%u crc=%08llx\n", smr_msg_type_name(r->x),
             nid(w, r->peer), r->y, a);
    break;
  case T_DROP:
    snprintf(p, left, " %s from %s (%s)\n", smr_msg_type_name(r->x),
             nid(w, r->peer),
             r->y == 1 ? "cut" : r->y == 2 ? "dead" : r->y == 3 ? "old incarnation"
                                                               : "?");
    break;
  case T_DELIVER:
    snprintf(p, left, " pos=%llu epoch=%llu id=%llu\n", a, b, c);
    break;
  case T_VIEW:
    snprintf(p, left, " epoch=%llu start=%llu n=%u rank=%u%s members=%llx\n", a,
             b, r->x, r->y & 0xffff, (r->y >> 16) ? " needs-state" : "", c);
    break;
  case T_RBEGIN:
  case T_PVIEW:
  case T_SNAP:
    snprintf(p, left, " pos/epoch=%llu %llu\n", a, b);
    break;
  case T_RCHUNK:
    snprintf(p, left, " off=%llu len=%u\n", a, r->y);
    break;
  case T_REND:
    snprintf(p, left, " pos=%llu hash=%016llx\n", a, b);
    break;
  case T_PACC:
    snprintf(p, left, " epoch=%llu promised=%llu accepted=%llu%s\n", a, b, c,
             r->x ? " has-value" : "");
    break;
  case T_PENT:
    snprintf(p, left, " epoch=%llu seq=%llu\n", a, b);
    break;
  case T_SUBMIT:
    snprintf(p, left, " id=%llu len=%u rc=%d%s%.0llu\n", a, r->y, -(int)r->x,
             r->x ? " pending=" : "", c);
    break;
  case T_CRASH:
  case T_JOIN:
    snprintf(p, left, " inc=%llu\n", a);
    break;
  case T_START:
    snprintf(p, left, " inc=%llu%s pos=%llu epoch=%llu\n", a,
             r->x ? " from-disk" : " fresh", b, c);
    break;
  case T_LEAVE:
    snprintf(p, left, " rc=%d\n", -(int)r->x);
    break;
  case T_CUT:
    snprintf(p, left, " side=%llx %s\n", a,
             r->x == 0 ? "both ways" : r->x == 1 ? "side->rest" : "rest->side");
    break;
  case T_CLOG:
  case T_UNCLOG:
  case T_PEERLOST:
    snprintf(p, left, " %s\n", nid(w, r->peer));
    break;
  case T_WEDGED:
    snprintf(p, left, " epoch=%llu suspects=%x\n", a, r->y);
    break;
  case T_SLOW:
    snprintf(p, left, " +%llums\n", a);
    break;
  case T_PHASE:
    snprintf(p, left, " %s bound=%llums\n", r->x ? "liveness" : "safety", a);
    break;
  case T_PROBE:
    snprintf(p, left, " id=%llu epoch=%llu rc=%d%s%.0llu\n", a, b, -(int)r->x,
             r->x ? " pending=" : "", c);
    break;
  case T_XFER:
    snprintf(p, left, " ->%s %s why=%u from=%llu boundary=%llu\n",
             nid(w, r->peer), r->x ? "delta" : "snapshot", r->y, a, b);
    break;
  case T_NOTE:
    if (r->x == 1)
      snprintf(p, left, " dies before its remaining outputs\n");
    else if (r->x == 2)
      snprintf(p, left, " the latest view lost its majority (or its state) "
                        "for good: halted, liveness not required\n");
    else if (r->x == 0xff)
      snprintf(p, left, " VIOLATION of invariant %u\n", r->y);
    else
      snprintf(p, left, " %llu %llu %llu\n", a, b, c);
    break;
  default:
    snprintf(p, left, "\n");
  }
}

/* ------------------------------------------------------------------------
 * Printing (also from a signal handler: write(2) only, no stdio buffers)
 * ---------------------------------------------------------------------- */

void sim_fdprintf(int fd, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  size_t off = 0;
  while (off < (size_t)n) {
    ssize_t k = write(fd, buf + off, (size_t)n - off);
    if (k <= 0) return;
    off += (size_t)k;
  }
}

void sim_trace_print_tail(const struct sim_world *w, int fd, int n) {
  uint64_t have = w->trace_n < SIM_TRACE_RING ? w->trace_n : SIM_TRACE_RING;
  if (n < 0) n = 0;
  if ((uint64_t)n > have) n = (int)have;
  sim_fdprintf(fd, "trace tail (last %d of %llu events):\n", n,
               (unsigned long long)w->trace_n);
  for (uint64_t i = w->trace_n - (uint64_t)n; i < w->trace_n; i++) {
    char buf[256];
    sim_trace_format(w, &w->trace[i % SIM_TRACE_RING], buf, sizeof buf);
    sim_fdprintf(fd, "%s", buf);
  }
}

static char repro[512];

void sim_set_repro(const char *line) {
  snprintf(repro, sizeof repro, "%s", line);
}

static void on_fatal(int sig) {
  struct sim_world *w = sim_w;
  fflush(stdout);
  if (w) {
    sim_fdprintf(1, "ABORT: signal %d in seed=%llu at step=%llu t=%llums "
                    "(the core tripped an assertion or crashed)\n",
                 sig, (unsigned long long)w->seed, (unsigned long long)w->step,
                 (unsigned long long)w->now);
    sim_fdprintf(1, "VIOLATION seed=%llu step=%llu t=%llums invariant=0 "
                    "(core assertion): signal %d, see the line above\n",
                 (unsigned long long)w->seed, (unsigned long long)w->step,
                 (unsigned long long)w->now, sig);
    sim_trace_print_tail(w, 1, w->opts->trace_tail);
    sim_fdprintf(1, "reproduce: %s\n", repro);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

void sim_install_signal_handlers(void) {
  signal(SIGABRT, on_fatal);
  signal(SIGSEGV, on_fatal);
  signal(SIGBUS, on_fatal);
  signal(SIGFPE, on_fatal);
  signal(SIGILL, on_fatal);
}
