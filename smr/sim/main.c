/* main.c -- smr-sim: the command line of the deterministic simulator.
 *
 *   smr-sim [--seed S | --seeds A-B] [--members N] [--steps K]
 *           [--faults LIST] [--durable on|off|mixed] [-v] [--trace-tail N]
 *           [--check-determinism] [--stop-after V]
 *
 * LIST is a comma list of crash, restart, partition, join, leave, slow,
 * clog, total (or `all`, or `none`).  Each seed prints one line; a seed
 * that breaks an invariant prints the violation, the trace tail and the
 * command that replays it, and the exit status is non-zero once all seeds
 * have run (or once V seeds have failed, with --stop-after).  The wall
 * clock is read only to report the speed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define ULL(x) ((unsigned long long)(x))

static void usage(FILE *f) {
  fprintf(f,
          "usage: smr-sim [--seed S | --seeds A-B] [--members N] [--steps K]\n"
          "               [--faults LIST] [--durable on|off|mixed] [-v]\n"
          "               [--trace-tail N] [--check-determinism] [--stop-after V]\n"
          "  LIST: comma list of crash,restart,partition,join,leave,slow,clog,"
          "total\n"
          "        or all (default) or none\n"
          "  defaults: --seed 1 --members 5 --steps 5000 --durable mixed "
          "--trace-tail 60\n");
}

static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || *s == '-') return -1;
  *out = v;
  return 0;
}

static int parse_faults(const char *s, unsigned *out) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  unsigned m = 0;
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    if (!strcmp(tok, "all")) {
      m |= F_ALL;
      continue;
    }
    if (!strcmp(tok, "none")) continue;
    int found = 0;
    for (int i = 0; i < F_NKINDS; i++)
      if (!strcmp(tok, sim_fault_name[i])) {
        m |= 1u << i;
        found = 1;
      }
    if (!found) return -1;
  }
  *out = m;
  return 0;
}

static void faults_str(unsigned m, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = 0;
  if (m == F_ALL) {
    snprintf(buf, cap, "all");
    return;
  }
  for (int i = 0; i < F_NKINDS; i++)
    if (m & (1u << i))
      o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? "," : "",
                            sim_fault_name[i]);
  if (!o) snprintf(buf, cap, "none");
}

static const char *durable_str(int d) {
  return d == DUR_ON ? "on" : d == DUR_OFF ? "off" : "mixed";
}

void sim_print_params(const struct sim_world *w) {
  const struct sim_params *p = &w->p;
  char kinds[128];
  faults_str(p->kinds, kinds, sizeof kinds);
  printf("params: members=%d spares=%d durable=%s relay=%s heartbeat=%ums "
         "suspect=%ums "
         "join_batch=%ums max_batch=%u inflight=%u pending=%u xfer=%ux%u "
         "net=%u+exp(%u)ms faults=%s every~%ums reactive=%u%% mid=%u/1000 "
         "work=exp(%u)ms burst=%u%%x%u safety_steps=%llu bound=%llums\n",
         w->n_boot, w->n_nodes - w->n_boot, p->durable ? "on" : "off",
         p->relay ? "chain" : "off",
         p->heartbeat_ms, p->suspect_ms, p->join_batch_ms, p->max_batch,
         p->max_inflight, p->max_pending, p->xfer_chunk, p->xfer_window,
         p->net_floor_ms, p->net_mean_ms, kinds, p->fault_mean_ms,
         p->reactive_pct, p->mid_pml, p->work_mean_ms, p->burst_pct, p->burst_max,
         ULL(p->safety_steps), ULL(p->live_bound_ms));
}

static void run_line(const struct sim_world *w) {
  char f[256];
  size_t o = 0;
  for (int i = 0; i < F_NKINDS; i++)
    o += (size_t)snprintf(f + o, sizeof f - o, "%s%s:%llu", i ? "," : "",
                          sim_fault_name[i], ULL(w->faults[i]));
  printf("seed=%llu steps=%llu views=%llu delivered=%llu faults=%s checks=%llu "
         "simtime=%llums converged=%s%llums/%llums trace=%016llx%s\n",
         ULL(w->seed), ULL(w->step), ULL(w->views_installed), ULL(w->hist_max),
         f, ULL(w->checks), ULL(w->now - SIM_T0),
         w->halted ? "halted:" : "", ULL(w->converged_at ? w->converged_at - w->heal_at : 0),
         ULL(w->p.live_bound_ms),
         ULL(w->trace_hash), w->failed ? " FAILED" : "");
}

static double wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  static struct sim_opts o;
  o.seed_lo = o.seed_hi = 1;
  o.members = 5;
  o.steps = 5000;
  o.faults = F_ALL;
  o.durable = DUR_MIXED;
  o.trace_tail = 60;
  uint64_t stop_after = 0; /* 0: run every seed */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    uint64_t x;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "-v")) {
      o.verbose = 1;
    } else if (!strcmp(a, "--check-determinism")) {
      o.check_determinism = 1;
    } else if (!strcmp(a, "--seed") && v) {
      if (parse_u64(v, &o.seed_lo)) goto bad;
      o.seed_hi = o.seed_lo;
      i++;
    } else if (!strcmp(a, "--seeds") && v) {
      char buf[64];
      snprintf(buf, sizeof buf, "%s", v);
      char *dash = strchr(buf, '-');
      if (dash) {
        *dash = 0;
        if (parse_u64(buf, &o.seed_lo) || parse_u64(dash + 1, &o.seed_hi) ||
            o.seed_hi < o.seed_lo)
          goto bad;
      } else {
        if (parse_u64(buf, &o.seed_lo)) goto bad;
        o.seed_hi = o.seed_lo;
      }
      i++;
    } else if (!strcmp(a, "--members") && v) {
      if (parse_u64(v, &x) || x < 1 || x > SIM_MAX_NODES - SIM_SPARES) goto bad;
      o.members = (int)x;
      i++;
    } else if (!strcmp(a, "--steps") && v) {
      if (parse_u64(v, &x) || x < 10) goto bad;
      o.steps = x;
      i++;
    } else if (!strcmp(a, "--faults") && v) {
      if (parse_faults(v, &o.faults)) goto bad;
      i++;
    } else if (!strcmp(a, "--durable") && v) {
      if (!strcmp(v, "on"))
        o.durable = DUR_ON;
      else if (!strcmp(v, "off"))
        o.durable = DUR_OFF;
      else if (!strcmp(v, "mixed"))
        o.durable = DUR_MIXED;
      else
        goto bad;
      i++;
    } else if (!strcmp(a, "--stop-after") && v) {
      if (parse_u64(v, &x) || x < 1) goto bad;
      stop_after = x;
      i++;
    } else if (!strcmp(a, "--trace-tail") && v) {
      if (parse_u64(v, &x) || x > SIM_TRACE_RING) goto bad;
      o.trace_tail = (int)x;
      i++;
    } else {
      goto bad;
    }
    continue;
  bad:
    fprintf(stderr, "smr-sim: bad argument '%s'%s%s\n", a, v ? " " : "",
            v ? v : "");
    usage(stderr);
    return 2;
  }

  setvbuf(stdout, NULL, _IOLBF, 0);
  sim_install_signal_handlers();
  struct sim_world *w = world_new(&o);
  char flist[128];
  faults_str(o.faults, flist, sizeof flist);
  uint64_t runs = 0, violations = 0, steps = 0, halted = 0;
  double t0 = wall();

  for (uint64_t seed = o.seed_lo;; seed++) {
    char repro[512];
    snprintf(repro, sizeof repro,
             "%s --seed %llu --members %d --steps %llu --faults %s --durable %s "
             "-v",
             argv[0], ULL(seed), o.members, ULL(o.steps), flist,
             durable_str(o.durable));
    sim_set_repro(repro);
    if (o.verbose) printf("=== seed %llu\n", ULL(seed));
    world_run(w, seed); /* with -v it prints the seed's params first */
    runs++;
    halted += (uint64_t)w->halted;
    steps += w->step;
    run_line(w);
    int bad = 0;
    if (w->failed) {
      bad = 1;
      printf("VIOLATION seed=%llu step=%llu t=%llums invariant=%d (%s): %s\n",
             ULL(seed), ULL(w->step), ULL(w->now), w->fail_inv,
             sim_inv_name(w->fail_inv), w->fail_msg);
      sim_print_params(w);
      fflush(stdout);
      sim_trace_print_tail(w, 1, o.trace_tail);
      printf("reproduce: %s\n", repro);
    }
    if (o.check_determinism) {
      uint64_t h1 = w->trace_hash, s1 = w->step;
      int f1 = w->failed;
      int verbose = o.verbose;
      o.verbose = 0;
      world_run(w, seed);
      o.verbose = verbose;
      steps += w->step;
      if (w->trace_hash != h1 || w->step != s1 || w->failed != f1) {
        if (!bad)
          printf("VIOLATION seed=%llu step=%llu t=%llums invariant=%d (%s): "
                 "two runs differ: trace %016llx after %llu steps, then "
                 "%016llx after %llu steps\n",
                 ULL(seed), ULL(w->step), ULL(w->now), INV_DETERMINISM,
                 sim_inv_name(INV_DETERMINISM), ULL(h1), ULL(s1),
                 ULL(w->trace_hash), ULL(w->step));
        bad = 1;
      }
    }
    violations += (uint64_t)bad;
    if (seed == o.seed_hi || (stop_after && violations >= stop_after)) break;
  }

  double dt = wall() - t0;
  if (dt <= 0) dt = 1e-9;
  printf("runs=%llu violations=%llu\n", ULL(runs), ULL(violations));
  if (halted)
    printf("halted=%llu (runs whose latest view lost its majority or state "
           "for good: liveness not required)\n",
           ULL(halted));
  printf("steps/s=%.0f seeds/hour=%.0f (%llu steps in %.2fs)\n",
         (double)steps / dt, (double)runs * 3600.0 / dt, ULL(steps), dt);
  world_free(w);
  return violations ? 1 : 0;
}
