/* smrd.c -- the daemon: one member of a replicated group.
 *
 *   smrd --config FILE          run in the foreground, log to stderr
 *   smrd --check-config FILE    validate FILE and exit
 *
 * smrd reads the configuration (config.c), creates the service's state
 * machine and front end (frontend.h), opens the group member (libsmr,
 * smr.h) and the admin socket (admin.c), and runs one event loop until
 * SIGTERM or SIGINT.  Every log line is one line on stderr:
 *
 *   2026-11-22T01:55:27.123Z n1 e7 INFO view 7: 3 members, primary n1
 *
 * (time, member, epoch, level, message) so that logs of several members
 * interleave readably and grep well. */
#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "smr/frontend.h"
#include "smr/smr.h"

extern const struct smrd_frontend_ops smrd_kv_frontend;

struct smrd {
  struct smrd_config cfg;
  struct ev_loop *loop;
  struct smr *group;
  const struct smrd_frontend_ops *fe_ops;
  struct smrd_frontend *fe;
  void *svc;
  const struct smr_service_ops *svc_ops;
  struct smrd_admin *admin;
  uint64_t epoch;
  enum smr_role role;
  char started_at[40];
  ev_signal sigterm, sigint;
};

/* ------------------------------------------------------------------------
 * Logging
 * --------------------------------------------------------------------- */

static struct smrd *the; /* for the log prefix only */

static void log_line(int level, const char *msg) {
  static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "%s.%03ldZ %s e%" PRIu64 " %s %s\n", when,
          ts.tv_nsec / 1000000, the ? the->cfg.id : "-",
          the ? the->epoch : 0, names[level < 0 || level > 3 ? 2 : level],
          msg);
  fflush(stderr);
}

static void on_log(void *ctx, int level, const char *line) {
  (void)ctx;
  log_line(level, line);
}

__attribute__((format(printf, 2, 3)))
static void dlog(int level, const char *fmt, ...) {
  char msg[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  log_line(level, msg);
}

/* ------------------------------------------------------------------------
 * libsmr upcalls
 * --------------------------------------------------------------------- */

static void set_role(struct smrd *d) {
  struct smr_status st;
  smr_status(d->group, &st);
  if (st.role != d->role) {
    d->role = st.role;
    if (d->fe != NULL && d->fe_ops->on_role != NULL)
      d->fe_ops->on_role(d->fe, st.role);
  }
}

static void on_view(void *ctx, const struct smr_view_info *v) {
  struct smrd *d = ctx;
  d->epoch = v->epoch;
  if (d->group != NULL) set_role(d);
}

static void on_reply(void *ctx, void *cookie, const uint8_t *reply,
                     size_t len) {
  struct smrd *d = ctx;
  if (d->fe != NULL) d->fe_ops->on_reply(d->fe, cookie, reply, len);
}

static void on_dropped(void *ctx, void *cookie) {
  struct smrd *d = ctx;
  if (d->fe != NULL) d->fe_ops->on_dropped(d->fe, cookie);
}

static void on_quorum_lost(void *ctx) {
  struct smrd *d = ctx;
  if (d->group != NULL) set_role(d);
}

/* ------------------------------------------------------------------------
 * Admin commands
 * --------------------------------------------------------------------- */

static void hex(const uint8_t *d, size_t n, char *out) {
  static const char x[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = x[d[i] >> 4];
    out[2 * i + 1] = x[d[i] & 15];
  }
  out[2 * n] = 0;
}

static const char *member_state(const struct smr_status *st, uint32_t i) {
  switch (st->member_state[i]) {
  case 1: return "joining";
  case 2: return "suspected";
  default: return "up";
  }
}

static json_t *cmd_status(struct smrd *d) {
  struct smr_status st;
  smr_status(d->group, &st);
  char dig[2 * SMR_DIGEST_LEN + 1];
  hex(st.digest, SMR_DIGEST_LEN, dig);
  json_t *members = json_array();
  for (uint32_t i = 0; i < st.n; i++)
    json_array_append_new(
        members, json_pack("{s:s,s:i,s:s,s:s}", "id", st.ids[i], "rank",
                           (json_int_t)i, "addr", st.addrs[i], "state",
                           member_state(&st, i)));
  const char *leader = st.n > 0 ? st.ids[0] : "";
  static const char *roles[] = {"none", "primary", "backup", "wedged"};
  json_t *r = json_pack(
      "{s:s,s:s,s:I,s:o,s:s,s:s,s:I,s:I,s:s,s:I,s:I,s:I,s:s,s:s,s:b,s:I}",
      "group", d->cfg.group, "node", d->cfg.id, "epoch", (json_int_t)st.epoch,
      "members", members, "leader", leader, "role", roles[st.role], "applied",
      (json_int_t)st.applied, "stable", (json_int_t)st.stable, "state_digest",
      dig, "connections",
      (json_int_t)(d->fe ? d->fe_ops->connections(d->fe) : 0), "pid",
      (json_int_t)getpid(), "incarnation", (json_int_t)st.incarnation,
      "started_at", d->started_at, "state", st.state, "quorum_lost",
      st.quorum_lost, "pending", (json_int_t)st.pending);
  /* The VIP follows the primary (no VIP configured: null). */
  json_object_set_new(r, "vip_owner", d->cfg.vip_address[0]
                                          ? json_string(leader)
                                          : json_null());
  return r;
}

static json_t *cmd_digest(struct smrd *d, char *err, size_t errlen) {
  struct smr_digests dg;
  if (smr_digests(d->group, &dg) != 0) {
    snprintf(err, errlen,
             "no checkpoint reported by every member yet (smrctl checkpoint "
             "makes one)");
    return NULL;
  }
  json_t *members = json_array();
  for (uint32_t i = 0; i < dg.n; i++) {
    char h[2 * SMR_DIGEST_LEN + 1];
    hex(dg.digests[i], SMR_DIGEST_LEN, h);
    json_array_append_new(members,
                          json_pack("{s:s,s:s}", "id", dg.ids[i], "digest", h));
  }
  return json_pack("{s:I,s:b,s:o}", "position", (json_int_t)dg.position,
                   "agree", dg.agree, "members", members);
}

static json_t *cmd_metrics(struct smrd *d) {
  struct smr_status st;
  smr_status(d->group, &st);
  char *t = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&t, &n);
  if (f == NULL) return NULL;
#define M(name, type, help, value)                                         \
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s{group=\"%s\",node=\"%s\"} %" \
             PRIu64 "\n",                                                  \
          name, help, name, type, name, d->cfg.group, d->cfg.id,           \
          (uint64_t)(value))
  M("smr_epoch", "gauge", "Epoch of the current view.", st.epoch);
  M("smr_role", "gauge", "0 none, 1 primary, 2 backup, 3 view change.",
    st.role);
  M("smr_members", "gauge", "Members of the current view.", st.n);
  M("smr_quorum_lost", "gauge", "1 while no majority is reachable.",
    st.quorum_lost);
  M("smr_views_installed_total", "counter", "Views installed.",
    st.views_installed);
  M("smr_delivered_total", "counter", "Messages delivered in total order.",
    st.delivered_total);
  M("smr_suspicions_total", "counter", "Members suspected of failure.",
    st.suspicions);
  M("smr_refused_frames_total", "counter",
    "Well-formed frames from members that made no sense.", st.refused_frames);
  M("smr_applied_position", "gauge", "Position of the last applied request.",
    st.applied);
  M("smr_stable_sequence", "gauge", "Sequence number stable in the view.",
    st.stable);
  M("smr_pending_submissions", "gauge", "Own submissions not yet applied.",
    st.pending);
  M("smr_checkpoint_position", "gauge", "Position of the last checkpoint.",
    st.checkpoint_pos);
  M("smr_log_bytes", "gauge", "Bytes in the member's log.", st.log_bytes);
  M("smr_fsyncs_total", "counter", "Log syncs (one per group commit).",
    st.fsyncs);
  M("smr_incarnation", "gauge", "This process's incarnation.",
    st.incarnation);
  M("smr_client_connections", "gauge", "Client connections.",
    d->fe ? d->fe_ops->connections(d->fe) : 0);
#undef M
  fclose(f);
  json_t *r = json_pack("{s:s}", "text", t);
  free(t);
  return r;
}

static json_t *on_admin(void *ctx, const char *cmd, json_t *req, char *err,
                        size_t errlen) {
  struct smrd *d = ctx;
  int rc;
  if (!strcmp(cmd, "status")) return cmd_status(d);
  if (!strcmp(cmd, "digest")) return cmd_digest(d, err, errlen);
  if (!strcmp(cmd, "metrics")) return cmd_metrics(d);
  if (!strcmp(cmd, "checkpoint")) {
    if ((rc = smr_checkpoint(d->group)) < 0) {
      snprintf(err, errlen, "checkpoint: %s", strerror(-rc));
      return NULL;
    }
    return json_pack("{s:b}", "requested", 1);
  }
  if (!strcmp(cmd, "leave")) {
    const char *who = json_string_value(json_object_get(req, "node"));
    if (who == NULL) {
      snprintf(err, errlen, "leave: which member?");
      return NULL;
    }
    if ((rc = smr_ask_leave(d->group, who)) < 0) {
      snprintf(err, errlen, "leave %s: %s", who, strerror(-rc));
      return NULL;
    }
    return json_pack("{s:s}", "leaving", who);
  }
  if (!strcmp(cmd, "connections"))
    return json_pack("{s:I}", "connections",
                     (json_int_t)(d->fe ? d->fe_ops->connections(d->fe) : 0));
  snprintf(err, errlen, "unknown command: %s", cmd);
  return NULL;
}

/* ------------------------------------------------------------------------
 * Main
 * --------------------------------------------------------------------- */

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)revents;
  dlog(SMR_LOG_INFO, "signal %d: shutting down", w->signum);
  ev_break(loop, EVBREAK_ALL);
}

static const char *usage =
    "usage: smrd --config FILE | --check-config FILE | --help\n";

int main(int argc, char **argv) {
  const char *file = NULL;
  int check = 0;
  for (int i = 1; i < argc; i++) {
    if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c")) &&
        i + 1 < argc) {
      file = argv[++i];
    } else if (!strcmp(argv[i], "--check-config") && i + 1 < argc) {
      file = argv[++i];
      check = 1;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, stdout);
      return 0;
    } else {
      fprintf(stderr, "smrd: unknown argument %s\n%s", argv[i], usage);
      return 2;
    }
  }
  if (file == NULL) {
    fputs(usage, stderr);
    return 2;
  }
  static struct smrd d;
  char err[800];
  if (smrd_config_load(file, &d.cfg, err, sizeof(err)) < 0) {
    fprintf(stderr, "smrd: %s\n", err);
    return 1;
  }
  if (check) {
    printf("%s: ok (group %s, member %s of %zu)\n", file, d.cfg.group,
           d.cfg.id, d.cfg.n_members);
    return 0;
  }
  the = &d;
  signal(SIGPIPE, SIG_IGN);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  strftime(d.started_at, sizeof(d.started_at), "%Y-%m-%dT%H:%M:%SZ", &tm);

  d.loop = EV_DEFAULT;
  d.fe_ops = &smrd_kv_frontend;
  int rc = d.fe_ops->service_create(&d.svc, &d.svc_ops);
  if (rc < 0) {
    fprintf(stderr, "smrd: service: %s\n", strerror(-rc));
    return 1;
  }
  struct smr_member_cfg members[SMRD_MAX_MEMBERS];
  for (size_t i = 0; i < d.cfg.n_members; i++) {
    members[i].id = d.cfg.members[i].id;
    members[i].addr = d.cfg.members[i].addr;
  }
  struct smr_config gc = {
      .loop = d.loop,
      .group = d.cfg.group,
      .self_id = d.cfg.id,
      .self_addr = d.cfg.addr,
      .members = members,
      .n_members = d.cfg.n_members,
      .data_dir = d.cfg.data_dir,
      .durable = d.cfg.durable,
      .checkpoint_every = d.cfg.checkpoint_every,
      .heartbeat_ms = d.cfg.heartbeat_ms,
      .suspect_ms = d.cfg.suspect_ms,
      .tls_ca = d.cfg.tls_ca[0] ? d.cfg.tls_ca : NULL,
      .tls_cert = d.cfg.tls_cert[0] ? d.cfg.tls_cert : NULL,
      .tls_key = d.cfg.tls_key[0] ? d.cfg.tls_key : NULL,
      .insecure = d.cfg.insecure,
      .service = d.svc_ops,
      .service_ctx = d.svc,
      .ctx = &d,
      .on_view = on_view,
      .on_reply = on_reply,
      .on_dropped = on_dropped,
      .on_quorum_lost = on_quorum_lost,
      .log = on_log,
  };
  if ((rc = smr_open(&gc, &d.group, err, sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start: %s", err[0] ? err : strerror(-rc));
    return 1;
  }
  struct smrd_frontend_config fc = {
      .loop = d.loop,
      .bind = d.cfg.service_bind,
      .port = d.cfg.port,
      .group = d.group,
      .svc = d.svc,
      .ops = d.svc_ops,
      .log = on_log,
  };
  if ((rc = d.fe_ops->open(&fc, &d.fe, err, sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start the %s front end: %s", d.fe_ops->name,
         err);
    smr_close(d.group);
    return 1;
  }
  set_role(&d);
  if ((rc = smrd_admin_open(d.loop, d.cfg.admin_socket, on_admin, &d,
                            &d.admin, err, sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start: %s", err);
    d.fe_ops->close(d.fe);
    smr_close(d.group);
    return 1;
  }
  ev_signal_init(&d.sigterm, on_signal, SIGTERM);
  ev_signal_start(d.loop, &d.sigterm);
  ev_signal_init(&d.sigint, on_signal, SIGINT);
  ev_signal_start(d.loop, &d.sigint);
  dlog(SMR_LOG_INFO, "serving %s on port %u, admin socket %s", d.fe_ops->name,
       d.cfg.port, d.cfg.admin_socket);
  ev_run(d.loop, 0);
  smrd_admin_close(d.admin);
  d.fe_ops->close(d.fe);
  smr_close(d.group);
  d.fe_ops->service_destroy(d.svc);
  dlog(SMR_LOG_INFO, "stopped");
  return 0;
}
