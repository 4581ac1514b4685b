/* smrctl.c -- the operator's CLI: asks a member's smrd over its admin
 * socket and prints the answer for a person, or as one JSON object.
 *
 *   smrctl [-s ADMIN_SOCKET | -c CONFIG] COMMAND [ARG] [--json]
 *
 * Exit status 0 on success; otherwise one line on stderr saying why. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "config.h"

static const char *usage =
    "usage: smrctl [-s ADMIN_SOCKET | -c CONFIG] COMMAND [ARG] [--json]\n"
    "commands:\n"
    "  status           this member's view of the group\n"
    "  checkpoint       every member checkpoints now\n"
    "  digest           every member's state digest at the last common\n"
    "                   checkpoint, and whether they agree\n"
    "  leave NODE       that member leaves the group gracefully\n"
    "  connections      client connections known to the group, with their\n"
    "                   replicated byte offsets (received, replied, acked)\n"
    "  metrics          Prometheus text exposition of this member's counters\n"
    "  restart NODE     that member leaves, checkpoints and comes back as a\n"
    "                   new process that loads its checkpoint and receives\n"
    "                   the delta; returns once it has caught up\n"
    "  restart --staggered [--pause SECONDS]\n"
    "                   every member in turn (backups first, the primary\n"
    "                   last), never more than one away\n"
    "options:\n"
    "  --timeout SECONDS  how long restart waits for each member (600)\n"
    "  --rebuild          restart: the member discards its state and\n"
    "                     receives all of it from the group\n";

static void print_status(json_t *r) {
  printf("group %s, node %s (incarnation %" JSON_INTEGER_FORMAT
         ", pid %" JSON_INTEGER_FORMAT ", started %s)\n",
         json_string_value(json_object_get(r, "group")),
         json_string_value(json_object_get(r, "node")),
         json_integer_value(json_object_get(r, "incarnation")),
         json_integer_value(json_object_get(r, "pid")),
         json_string_value(json_object_get(r, "started_at")));
  json_t *vip = json_object_get(r, "vip_owner");
  printf("epoch %" JSON_INTEGER_FORMAT ", state %s, leader %s, vip owner %s\n",
         json_integer_value(json_object_get(r, "epoch")),
         json_string_value(json_object_get(r, "role")),
         json_string_value(json_object_get(r, "leader")),
         json_is_string(vip) ? json_string_value(vip) : "-");
  printf("applied %" JSON_INTEGER_FORMAT ", stable %" JSON_INTEGER_FORMAT
         ", digest %s\n",
         json_integer_value(json_object_get(r, "applied")),
         json_integer_value(json_object_get(r, "stable")),
         json_string_value(json_object_get(r, "state_digest")));
  json_t *m = json_object_get(r, "members");
  size_t i;
  json_t *x;
  printf("members:\n");
  json_array_foreach(m, i, x) {
    printf("  %-12s rank %-2" JSON_INTEGER_FORMAT " %-24s %s\n",
           json_string_value(json_object_get(x, "id")),
           json_integer_value(json_object_get(x, "rank")),
           json_string_value(json_object_get(x, "addr")),
           json_string_value(json_object_get(x, "state")));
  }
  printf("client connections %" JSON_INTEGER_FORMAT "\n",
         json_integer_value(json_object_get(r, "connections")));
}

static void print_digest(json_t *r) {
  printf("position %" JSON_INTEGER_FORMAT ": %s\n",
         json_integer_value(json_object_get(r, "position")),
         json_is_true(json_object_get(r, "agree")) ? "all agree"
                                                   : "DIGESTS DIFFER");
  size_t i;
  json_t *x;
  json_array_foreach(json_object_get(r, "members"), i, x) {
    printf("  %-12s %s\n", json_string_value(json_object_get(x, "id")),
           json_string_value(json_object_get(x, "digest")));
  }
}

static void print_connections(json_t *r) {
  printf("this member's clients %" JSON_INTEGER_FORMAT
         "; connections on the VIP known to the group %" JSON_INTEGER_FORMAT
         "\n",
         json_integer_value(json_object_get(r, "connections")),
         json_integer_value(json_object_get(r, "replicated")));
  size_t i;
  json_t *x;
  json_t *t = json_object_get(r, "table");
  if (json_array_size(t) > 0)
    printf("  %-16s %-21s %12s %12s %12s %s\n", "id", "client", "received",
           "replied", "acked", "state");
  json_array_foreach(t, i, x) {
    const char *st = json_is_true(json_object_get(x, "client_closed"))
                         ? "client closed"
                         : json_is_true(json_object_get(x, "closing"))
                               ? "closing"
                               : "open";
    printf("  %-16s %-21s %12" JSON_INTEGER_FORMAT " %12" JSON_INTEGER_FORMAT
           " %12" JSON_INTEGER_FORMAT " %s\n",
           json_string_value(json_object_get(x, "id")),
           json_string_value(json_object_get(x, "client")),
           json_integer_value(json_object_get(x, "received")),
           json_integer_value(json_object_get(x, "replied")),
           json_integer_value(json_object_get(x, "acked")), st);
  }
}

/* ------------------------------------------------------------------------
 * Restarts: asks the group to restart a member, then follows it through
 * the status of the member we talk to (which may be the one restarting:
 * its socket goes away and comes back with the new process).
 * --------------------------------------------------------------------- */

struct restart_opts {
  const char *sock;
  double timeout_s, pause_s;
  int rebuild, as_json;
};

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* status, or NULL (err says why) if the member does not answer now. */
static json_t *get_status(const char *sock, char *err, size_t errlen) {
  json_t *req = json_pack("{s:s}", "cmd", "status");
  json_t *rep = smrd_admin_call(sock, req, 5000, err, errlen);
  json_decref(req);
  if (rep != NULL && json_is_string(json_object_get(rep, "error"))) {
    snprintf(err, errlen, "%s", json_string_value(json_object_get(rep,
                                                                  "error")));
    json_decref(rep);
    return NULL;
  }
  return rep;
}

static json_t *member_of(json_t *st, const char *id) {
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(st, "members"), i, m) {
    if (!strcmp(json_string_value(json_object_get(m, "id")), id)) return m;
  }
  return NULL;
}

/* Restart requests the group refused so far, and whether the last one
 * was of `node`. */
static json_int_t refusals(json_t *st) {
  return json_integer_value(
      json_object_get(json_object_get(st, "restarts"), "refused"));
}

static int refusal_of(json_t *st, const char *node) {
  const char *t = json_string_value(
      json_object_get(json_object_get(st, "restarts"), "last_refusal"));
  char want[64];
  snprintf(want, sizeof(want), "restart of %s at ", node);
  return t != NULL && !strncmp(t, want, strlen(want));
}

/* Every member of the view up (none joining, suspected or leaving), in a
 * settled view of `want` members (0: any number). */
static int group_whole(json_t *st, size_t want) {
  json_t *ms = json_object_get(st, "members");
  if (!json_is_array(ms) || (want && json_array_size(ms) != want)) return 0;
  if (strcmp(json_string_value(json_object_get(st, "state")), "normal"))
    return 0;
  size_t i;
  json_t *m;
  json_array_foreach(ms, i, m) {
    if (strcmp(json_string_value(json_object_get(m, "state")), "up"))
      return 0;
  }
  return 1;
}

/* Waits until the group is whole again; 0, or -1 (printed) on timeout. */
static int wait_whole(const struct restart_opts *o, size_t want) {
  double end = mono_s() + o->timeout_s;
  char err[600] = "";
  for (;;) {
    json_t *st = get_status(o->sock, err, sizeof(err));
    int ok = st != NULL && group_whole(st, want);
    json_decref(st);
    if (ok) return 0;
    if (mono_s() > end) {
      fprintf(stderr, "smrctl: restart: the group did not become whole "
              "(%zu members, all up) within %.0f s%s%s\n", want,
              o->timeout_s, err[0] ? ": " : "", err);
      return -1;
    }
    nap(0.1);
  }
}

/* Restarts one member and follows it until it has caught up.  Fills
 * `result` (for --json); 0, or -1 with the reason printed. */
static int restart_one(const struct restart_opts *o, const char *node,
                       json_t *result) {
  char err[600];
  json_t *st = get_status(o->sock, err, sizeof(err));
  if (st == NULL) {
    fprintf(stderr, "smrctl: %s\n", err);
    return -1;
  }
  json_t *m = member_of(st, node);
  if (m == NULL) {
    fprintf(stderr, "smrctl: restart %s: not a member of the current view\n",
            node);
    json_decref(st);
    return -1;
  }
  json_int_t inc0 = json_integer_value(json_object_get(m, "incarnation"));
  json_int_t refused0 = refusals(st);
  json_decref(st);
  json_t *req = json_pack("{s:s,s:s,s:b}", "cmd", "restart", "node", node,
                          "rebuild", o->rebuild);
  json_t *rep = smrd_admin_call(o->sock, req, 30000, err, sizeof(err));
  json_decref(req);
  if (rep == NULL || json_is_string(json_object_get(rep, "error"))) {
    fprintf(stderr, "smrctl: %s\n",
            rep ? json_string_value(json_object_get(rep, "error")) : err);
    json_decref(rep);
    return -1;
  }
  json_decref(rep);
  double t0 = mono_s(), end = t0 + o->timeout_s, t_away = 0, t_back = 0;
  if (!o->as_json) printf("%s: restart requested (incarnation %"
                          JSON_INTEGER_FORMAT ")\n", node, inc0);
  int phase = 0; /* 0 asked, 1 away, 2 back receiving, 3 catching up */
  json_int_t target = -1, inc = 0, last_acked = -1;
  int unreachable = 0;
  for (;;) {
    if (mono_s() > end) {
      fprintf(stderr, "smrctl: restart %s: not caught up within %.0f s\n",
              node, o->timeout_s);
      return -1;
    }
    st = get_status(o->sock, err, sizeof(err));
    if (st == NULL) { /* the member we ask is the one restarting */
      if (!unreachable && !o->as_json)
        printf("%s: waiting for the admin socket (%s)\n", node, err);
      unreachable = 1;
      nap(0.1);
      continue;
    }
    unreachable = 0;
    m = member_of(st, node);
    json_int_t epoch = json_integer_value(json_object_get(st, "epoch"));
    inc = m ? json_integer_value(json_object_get(m, "incarnation")) : 0;
    const char *state = m ? json_string_value(json_object_get(m, "state"))
                          : "";
    if (phase < 1 && m != NULL && inc == inc0 && refusals(st) > refused0 &&
        refusal_of(st, node)) {
      /* The group refused it at the request's position: say why now
       * instead of waiting out the timeout. */
      fprintf(stderr, "smrctl: %s\n", json_string_value(json_object_get(
                                           json_object_get(st, "restarts"),
                                           "last_refusal")));
      json_decref(st);
      return -1;
    }
    if (phase < 1 && (m == NULL || inc > inc0)) {
      phase = 1;
      t_away = mono_s();
      if (!o->as_json)
        printf("%s: out of the view (epoch %" JSON_INTEGER_FORMAT
               ", after %.2f s)\n", node, epoch, t_away - t0);
    }
    if (phase >= 1 && phase < 2 && m != NULL && inc > inc0) {
      phase = 2;
      t_back = mono_s();
      if (!o->as_json)
        printf("%s: back as incarnation %" JSON_INTEGER_FORMAT
               " in epoch %" JSON_INTEGER_FORMAT ", %s\n", node, inc, epoch,
               strcmp(state, "up") ? "receiving its state" : "with its state");
    }
    json_t *xf = json_object_get(st, "transfer");
    if (phase == 2 && xf != NULL && !o->as_json &&
        !strcmp(json_string_value(json_object_get(xf, "to")), node)) {
      json_int_t a = json_integer_value(json_object_get(xf, "acked"));
      if (a != last_acked)
        printf("%s:   %s transfer: %" JSON_INTEGER_FORMAT " %s acknowledged\n",
               node, json_string_value(json_object_get(xf, "kind")), a,
               strcmp(json_string_value(json_object_get(xf, "kind")), "delta")
                   ? "bytes" : "(position)");
      last_acked = a;
    }
    if (phase >= 2 && m != NULL && inc > inc0 && !strcmp(state, "up")) {
      json_int_t dl = json_integer_value(json_object_get(m, "delivered"));
      json_int_t lag = json_integer_value(json_object_get(m, "lag"));
      if (target < 0) {
        /* Caught up: as far as the others have delivered now (not the
         * member we ask: it may be the one restarting). */
        phase = 3;
        target = 0;
        size_t k;
        json_t *o2;
        json_array_foreach(json_object_get(st, "members"), k, o2) {
          json_int_t d2 = json_integer_value(json_object_get(o2, "delivered"));
          if (strcmp(json_string_value(json_object_get(o2, "id")), node) &&
              d2 > target)
            target = d2;
        }
        if (!o->as_json)
          printf("%s: has the state; catching up (lag %" JSON_INTEGER_FORMAT
                 ")\n", node, lag);
      }
      if (dl >= target || lag == 0) {
        double t1 = mono_s();
        if (!o->as_json)
          printf("%s: caught up: incarnation %" JSON_INTEGER_FORMAT
                 " -> %" JSON_INTEGER_FORMAT ", %.2f s in all (away %.2f s, "
                 "state and catch-up %.2f s)\n", node, inc0, inc, t1 - t0,
                 (t_back ? t_back : t1) - (t_away ? t_away : t0),
                 t1 - (t_back ? t_back : t1));
        json_array_append_new(
            result, json_pack("{s:s,s:I,s:I,s:f,s:f}", "id", node,
                              "incarnation_before", inc0, "incarnation", inc,
                              "seconds", t1 - t0, "away_seconds",
                              (t_back ? t_back : t1) - (t_away ? t_away : t0)));
        json_decref(st);
        return 0;
      }
    }
    json_decref(st);
    nap(0.05);
  }
}

static int cmd_restart(const struct restart_opts *o, const char *node,
                       int staggered) {
  json_t *done = json_array();
  int rc = 0;
  double t0 = mono_s();
  if (!staggered) {
    rc = restart_one(o, node, done);
  } else {
    char err[600];
    json_t *st = get_status(o->sock, err, sizeof(err));
    if (st == NULL) {
      fprintf(stderr, "smrctl: %s\n", err);
      json_decref(done);
      return 1;
    }
    /* Backups first, from the highest rank; the primary (rank 0) last. */
    json_t *ms = json_object_get(st, "members");
    size_t n = json_array_size(ms);
    char ids[16][32];
    for (size_t i = 0; i < n && i < 16; i++)
      snprintf(ids[i], sizeof(ids[i]), "%s",
               json_string_value(json_object_get(json_array_get(ms, n - 1 - i),
                                                 "id")));
    json_decref(st);
    if (!o->as_json)
      printf("staggered restart of %zu members, one at a time\n", n);
    for (size_t i = 0; i < n && i < 16 && rc == 0; i++) {
      if (wait_whole(o, n) < 0 || restart_one(o, ids[i], done) < 0) rc = -1;
      if (rc == 0 && i + 1 < n && o->pause_s > 0) nap(o->pause_s);
    }
    if (rc == 0 && !o->as_json)
      printf("all %zu members restarted in %.2f s\n", n, mono_s() - t0);
  }
  if (o->as_json) {
    json_t *r = json_pack("{s:b,s:o,s:f}", "ok", rc == 0, "restarted", done,
                          "seconds", mono_s() - t0);
    char *t = json_dumps(r, JSON_COMPACT);
    puts(t ? t : "{}");
    free(t);
    json_decref(r);
  } else {
    json_decref(done);
  }
  return rc == 0 ? 0 : 1;
}

/* Anything else: key: value lines, in the reply's order. */
static void print_generic(json_t *r) {
  const char *k;
  json_t *v;
  json_object_foreach(r, k, v) {
    if (json_is_string(v)) {
      printf("%s: %s\n", k, json_string_value(v));
    } else {
      char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      printf("%s: %s\n", k, t ? t : "?");
      free(t);
    }
  }
}

int main(int argc, char **argv) {
  const char *sock = NULL, *config = NULL, *cmd = NULL, *arg = NULL,
             *arg2 = NULL;
  int as_json = 0, staggered = 0, rebuild = 0;
  double pause_s = 0, timeout_s = 600;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "--pause") || !strcmp(argv[i], "--timeout")) &&
        i + 1 < argc) {
      char *end;
      double v = strtod(argv[i + 1], &end);
      if (*end != 0 || end == argv[i + 1] || v < 0 || v > 86400) {
        fprintf(stderr, "smrctl: %s %s: not a number of seconds\n", argv[i],
                argv[i + 1]);
        return 2;
      }
      *(argv[i][2] == 'p' ? &pause_s : &timeout_s) = v;
      i++;
    } else if (!strcmp(argv[i], "--staggered")) {
      staggered = 1;
    } else if (!strcmp(argv[i], "--rebuild")) {
      rebuild = 1;
    } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
      sock = argv[++i];
    } else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
      config = argv[++i];
    } else if (!strcmp(argv[i], "--json")) {
      as_json = 1;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      fputs(usage, stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "smrctl: unknown option %s\n%s", argv[i], usage);
      return 2;
    } else if (cmd == NULL) {
      cmd = argv[i];
    } else if (arg == NULL) {
      arg = argv[i];
    } else if (arg2 == NULL && !strcmp(cmd, "debug-corrupt")) {
      arg2 = argv[i];
    } else {
      fprintf(stderr, "smrctl: too many arguments\n%s", usage);
      return 2;
    }
  }
  if (cmd == NULL) {
    fputs(usage, stderr);
    return 2;
  }
  static const char *known[] = {"status",      "checkpoint", "digest",
                                "leave",       "connections", "metrics",
                                "restart",     "debug-corrupt", NULL};
  int ok = 0;
  for (int i = 0; known[i]; i++)
    if (!strcmp(cmd, known[i])) ok = 1;
  if (!ok) {
    fprintf(stderr, "smrctl: unknown command '%s'\n%s", cmd, usage);
    return 2;
  }
  if (!strcmp(cmd, "leave") && arg == NULL) {
    fprintf(stderr, "smrctl: leave needs the member id\n");
    return 2;
  }
  if (!strcmp(cmd, "restart") && (arg == NULL) == !staggered) {
    fprintf(stderr, "smrctl: restart needs a member id or --staggered "
            "(not both)\n");
    return 2;
  }
  if (!strcmp(cmd, "debug-corrupt") && arg2 == NULL) {
    fprintf(stderr, "smrctl: debug-corrupt needs KEY VALUE (tests only)\n");
    return 2;
  }
  struct smrd_config cfg;
  char err[600];
  if (sock == NULL && config != NULL) {
    if (smrd_config_load(config, &cfg, err, sizeof(err)) < 0) {
      fprintf(stderr, "smrctl: %s\n", err);
      return 1;
    }
    sock = cfg.admin_socket;
  }
  if (sock == NULL) {
    fprintf(stderr, "smrctl: give the admin socket (-s) or the config (-c)\n");
    return 2;
  }
  if (!strcmp(cmd, "restart")) {
    struct restart_opts o = {sock, timeout_s, pause_s, rebuild, as_json};
    return cmd_restart(&o, arg, staggered);
  }
  json_t *req = json_pack("{s:s}", "cmd", cmd);
  if (!strcmp(cmd, "debug-corrupt")) {
    json_object_set_new(req, "key", json_string(arg));
    json_object_set_new(req, "value", json_string(arg2));
  } else if (arg != NULL) {
    json_object_set_new(req, "node", json_string(arg));
  }
  json_t *rep = smrd_admin_call(sock, req, 30000, err, sizeof(err));
  json_decref(req);
  if (rep == NULL) {
    fprintf(stderr, "smrctl: %s\n", err);
    return 1;
  }
  json_t *e = json_object_get(rep, "error");
  if (json_is_string(e)) {
    fprintf(stderr, "smrctl: %s: %s\n", cmd, json_string_value(e));
    json_decref(rep);
    return 1;
  }
  if (as_json) {
    char *t = json_dumps(rep, JSON_COMPACT);
    puts(t ? t : "{}");
    free(t);
  } else if (!strcmp(cmd, "metrics")) {
    fputs(json_string_value(json_object_get(rep, "text")), stdout);
  } else if (!strcmp(cmd, "status")) {
    print_status(rep);
  } else if (!strcmp(cmd, "digest")) {
    print_digest(rep);
  } else if (!strcmp(cmd, "connections")) {
    print_connections(rep);
  } else {
    print_generic(rep);
  }
  json_decref(rep);
  return 0;
}
