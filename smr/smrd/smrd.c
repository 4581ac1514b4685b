/* smrd.c -- the daemon: one member of a replicated group.
 *
 *   smrd --config FILE          run in the foreground, log to stderr
 *   smrd --check-config FILE    validate FILE and exit
 *
 * smrd reads the configuration (config.c), creates the service's state
 * machine and front end (frontend.h), opens the group member (libsmr,
 * smr.h), the admin socket (admin.c) and, with [metrics] listen, the
 * Prometheus endpoint (http.c), and runs one event loop until SIGTERM or
 * SIGINT.  Every log line is one line on stderr:
 *
 *   2026-11-22T01:55:27.123Z n1 e7 INFO view 7: 3 members, primary n1
 *
 * (time, member, epoch, level, message) so that logs of several members
 * interleave readably and grep well.
 *
 * With a [vip], smrd also runs TCP-R (tcpr/tcpr.h): before anything else
 * it attaches the ACK gate (fenced) and forks the keeper, so that a death
 * of this process, however it comes, leaves the host silent on the VIP.
 * The group's state machine is the service wrapped in the replicated
 * connection table.  The member that becomes primary adds the VIP,
 * unfences the gate, lets the front end restore every connection, and
 * announces the VIP with gratuitous ARPs; a member that stops being
 * primary fences first and gives the VIP up.  A primary that has not
 * heard from a majority for suspect_ms - 2 * heartbeat_ms fences itself
 * too (the others are about to replace it; it must be silent by then) and
 * unfences if the majority comes back while it is still primary. */
#include <arpa/inet.h>
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
#include "http.h"
#include "smr/frontend.h"
#include "smr/smr.h"
#include "tcpr.h"

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
  struct smrd_http *metrics; /* [metrics] listen, or NULL */
  uint64_t epoch;
  enum smr_role role;
  char started_at[40];
  ev_signal sigterm, sigint;
  /* TCP-R */
  struct tcpr_conntab *conns;
  const struct smr_service_ops *wrapped_ops;
  struct tcpr_gate *gate;
  struct tcpr_keeper *keeper;
  uint32_t vip;     /* network order, 0 = none */
  int vip_held;     /* the VIP is on our device and the gate open */
  int self_fenced;  /* primary, but fenced for want of a majority */
  uint64_t takeovers, fences;
  ev_timer lease_w; /* majority contact check */
  ev_timer garp_w;  /* repeated announcements after a takeover */
  int garp_fd;      /* a packet socket kept for them */
  int garps_left;
  /* Restart: libsmr handed over (on_restart); after the shutdown the
   * process re-executes itself with the same arguments. */
  int restart_exec;
  int stop_asked; /* SIGTERM or SIGINT */
  char **argv;
  /* Rejuvenation ([restart] every): the restart this primary asked for
   * and not yet seen completed. */
  ev_timer rejuv_w;
  char rejuv_id[32];
  uint64_t rejuv_inc, rejuv_at;
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

/* ------------------------------------------------------------------------
 * VIP and TCP-R
 * --------------------------------------------------------------------- */

static void vip_announce(struct smrd *d) {
  char err[200];
  int rc = d->garp_fd >= 0
               ? tcpr_garp_on(d->garp_fd, d->cfg.vip_device, d->vip, err,
                              sizeof(err))
               : tcpr_garp(d->cfg.vip_device, d->vip, err, sizeof(err));
  if (rc < 0) dlog(SMR_LOG_WARN, "%s", err);
}

static void on_garp(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd *d = w->data;
  if (!d->vip_held || d->garps_left <= 0) return;
  vip_announce(d);
  d->garps_left--;
  if (d->garps_left > 0) {
    /* 20 ms, 100 ms, 500 ms, 2.5 s after the takeover: a client whose
     * ARP cache still points at the old host follows soon. */
    w->repeat *= 5;
    ev_timer_again(d->loop, w);
  }
}

/* Takes the VIP: on the device, gate open, then announced. */
static int vip_take(struct smrd *d) {
  char err[200];
  int rc = tcpr_vip_add(d->cfg.vip_device, d->cfg.vip_address, err,
                        sizeof(err));
  if (rc < 0) {
    dlog(SMR_LOG_ERROR, "cannot take the VIP: %s", err);
    return rc;
  }
  if ((rc = tcpr_gate_fence(d->gate, 0)) < 0) {
    dlog(SMR_LOG_ERROR, "cannot open the gate: %s", strerror(-rc));
    tcpr_vip_del(d->cfg.vip_device, d->cfg.vip_address, err, sizeof(err));
    return rc;
  }
  d->vip_held = 1;
  return 0;
}

static void vip_announce_now(struct smrd *d) {
  vip_announce(d);
  d->garps_left = 4;
  d->garp_w.repeat = 0.02;
  ev_timer_again(d->loop, &d->garp_w);
}

/* Gives the VIP up: fenced first (nothing leaves with the VIP as source),
 * then off the device. */
static void vip_give_up(struct smrd *d, const char *why) {
  char err[200];
  tcpr_gate_fence(d->gate, 1);
  if (tcpr_vip_del(d->cfg.vip_device, d->cfg.vip_address, err,
                   sizeof(err)) < 0)
    dlog(SMR_LOG_WARN, "giving up the VIP: %s", err);
  if (d->vip_held) {
    d->fences++;
    dlog(SMR_LOG_INFO, "VIP %s given up: %s", d->cfg.vip_address, why);
  }
  d->vip_held = 0;
  ev_timer_stop(d->loop, &d->garp_w);
}

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void set_role(struct smrd *d) {
  int quorum_lost = 0;
  enum smr_role role = smr_role(d->group, &quorum_lost);
  /* A primary whose view changes stays primary until the change says
   * otherwise (the front end keeps serving; the core carries its
   * submissions over). */
  if (role == SMR_ROLE_WEDGED && d->role == SMR_ROLE_PRIMARY && !quorum_lost)
    return;
  if (role == d->role) return;
  enum smr_role was = d->role;
  d->role = role;
  if (d->vip != 0 && was == SMR_ROLE_PRIMARY && role != SMR_ROLE_PRIMARY)
    vip_give_up(d, quorum_lost ? "no majority" : "no longer primary");
  /* The front end first: a new primary restores every connection of the
   * group's table before the VIP arrives, so that no client segment finds
   * the VIP here without its socket (the kernel would answer RST). */
  double t0 = mono_ms();
  if (d->fe != NULL && d->fe_ops->on_role != NULL)
    d->fe_ops->on_role(d->fe, role);
  if (d->vip != 0 && role == SMR_ROLE_PRIMARY) {
    double t1 = mono_ms();
    d->self_fenced = 0;
    if (vip_take(d) == 0) d->takeovers++;
    else d->self_fenced = 1; /* the lease timer tries again */
    double t2 = mono_ms();
    /* Announced before the connections resume: a client that gets its
     * reply sends its next request at once, and it must come here, not to
     * the old host's address (that costs it a retransmission timeout). */
    if (d->vip_held) vip_announce_now(d);
    if (d->fe != NULL) d->fe_ops->resume(d->fe);
    double t3 = mono_ms();
    if (d->vip_held)
      dlog(SMR_LOG_INFO,
           "VIP %s taken over: %" PRIu64 " client connection(s) "
           "(restore %.1f ms, VIP and gate %.1f ms, announce and resume "
           "%.1f ms)",
           d->cfg.vip_address,
           d->fe ? d->fe_ops->vip_connections(d->fe) : (uint64_t)0, t1 - t0,
           t2 - t1, t3 - t2);
  }
}

/* The primary's lease: without news from a majority for a while, the
 * others may be installing a view without us; be silent before they can
 * take the VIP (they need suspect_ms plus a view change). */
static void on_lease(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd *d = w->data;
  if (d->role != SMR_ROLE_PRIMARY || d->group == NULL) return;
  uint64_t silence = smr_quorum_silence(d->group);
  uint64_t limit = d->cfg.suspect_ms > 3 * d->cfg.heartbeat_ms
                       ? d->cfg.suspect_ms - 2 * d->cfg.heartbeat_ms
                       : d->cfg.suspect_ms / 2;
  if (!d->self_fenced && silence > limit) {
    d->self_fenced = 1;
    vip_give_up(d, "no majority heard from recently (lease expired)");
  } else if (d->self_fenced && silence <= d->cfg.heartbeat_ms * 2) {
    d->self_fenced = 0;
    if (vip_take(d) == 0) {
      vip_announce_now(d);
      dlog(SMR_LOG_INFO, "VIP %s taken back: the majority is back",
           d->cfg.vip_address);
    }
  }
}

/* Before the group opens: the gate (fenced) and the keeper. */
static int tcpr_start(struct smrd *d, char *err, size_t errlen) {
  unsigned plen;
  if (tcpr_parse_cidr(d->cfg.vip_address, &d->vip, &plen) < 0) {
    snprintf(err, errlen, "[vip] address = %s: not address/prefix",
             d->cfg.vip_address);
    return -EINVAL;
  }
  static const enum tcpr_gate_kind kinds[] = {
      [SMRD_GATE_AUTO] = TCPR_GATE_AUTO, [SMRD_GATE_KMOD] = TCPR_GATE_KMOD,
      [SMRD_GATE_BPF] = TCPR_GATE_BPF, [SMRD_GATE_OFF] = TCPR_GATE_OFF};
  int rc = tcpr_gate_open(kinds[d->cfg.gate], d->cfg.vip_device, d->vip,
                          d->cfg.port, &d->gate, err, errlen);
  if (rc < 0) return rc;
  /* A previous incarnation on this host may have left the VIP behind. */
  char e2[200];
  if (tcpr_vip_del(d->cfg.vip_device, d->cfg.vip_address, e2, sizeof(e2)) < 0)
    dlog(SMR_LOG_WARN, "%s", e2);
  rc = tcpr_keeper_start(d->gate, d->cfg.vip_device, d->cfg.vip_address,
                         &d->keeper, err, errlen);
  if (rc < 0) return rc;
  d->garp_fd = tcpr_garp_socket(); /* after the fork: the keeper needs none */
  if (d->garp_fd < 0)
    dlog(SMR_LOG_WARN, "no packet socket for gratuitous ARP (%s); one per "
         "announcement instead", strerror(-d->garp_fd));
  dlog(SMR_LOG_INFO, "TCP-R: VIP %s on %s, gate %s, keeper running",
       d->cfg.vip_address, d->cfg.vip_device, tcpr_gate_kind_name(d->gate));
  return 0;
}

static void tcpr_stop(struct smrd *d) {
  if (d->vip == 0) return;
  vip_give_up(d, "stopping");
  tcpr_keeper_stop(d->keeper);
  tcpr_gate_close(d->gate);
  if (d->garp_fd >= 0) close(d->garp_fd);
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

static void on_standing(void *ctx) {
  struct smrd *d = ctx;
  if (d->group != NULL) set_role(d);
}

/* libsmr has left the group and checkpointed (or discarded its state):
 * stop as at SIGTERM, then come back as a new process (main). */
static void on_restart(void *ctx, int rebuild) {
  struct smrd *d = ctx;
  dlog(SMR_LOG_INFO, "restarting as a new process%s",
       rebuild ? " that receives the whole state from the group" : "");
  d->restart_exec = 1;
  ev_break(d->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------------------
 * Rejuvenation: [restart] every, jitter
 *
 * The primary restarts one member at a time, the one whose process is
 * oldest (a member's incarnation is at least the wall clock in ms when its
 * process started, smr/runtime/store.c), once it is older than every plus
 * a jitter that is a function of the member and its incarnation (so a new
 * primary computes the same one).  Only while every configured member is
 * in the view, up and caught up, and never below a majority; a restart it
 * asked for must be seen completed (the member back with a newer
 * incarnation) before the next.  A new primary knows nothing of its
 * predecessor's request, but the member it restarted is then missing from
 * the view or still joining, which is enough to wait.
 * --------------------------------------------------------------------- */

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t jitter_of(const char *id, uint64_t inc, uint64_t jitter) {
  if (jitter == 0) return 0;
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *c = id; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
  for (int i = 0; i < 8; i++)
    h = (h ^ (uint8_t)(inc >> (8 * i))) * 1099511628211ull;
  return h % (jitter + 1);
}

/* How far (sequence numbers) member i trails this member. */
static uint64_t lag_of(const struct smr_status *st, uint32_t i) {
  return st->delivered > st->member_delivered[i]
             ? st->delivered - st->member_delivered[i]
             : 0;
}

static void on_rejuvenate(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd *d = w->data;
  if (d->role != SMR_ROLE_PRIMARY) {
    d->rejuv_id[0] = 0;
    return;
  }
  struct smr_status st;
  smr_status(d->group, &st);
  uint64_t now = wall_ms();
  if (d->rejuv_id[0]) {
    for (uint32_t i = 0; i < st.n; i++)
      if (!strcmp(st.ids[i], d->rejuv_id) &&
          st.member_incarnation[i] > d->rejuv_inc &&
          st.member_state[i] == 0) {
        dlog(SMR_LOG_INFO, "rejuvenation: %s is back (incarnation %" PRIu64
             ")", d->rejuv_id, st.member_incarnation[i]);
        d->rejuv_id[0] = 0;
      }
    if (d->rejuv_id[0] && now - d->rejuv_at > 600000) {
      dlog(SMR_LOG_WARN, "rejuvenation: %s has not come back in 10 min",
           d->rejuv_id);
      d->rejuv_id[0] = 0;
    }
    if (d->rejuv_id[0]) return;
  }
  /* Everyone here, up and caught up; one away still leaves a majority. */
  if (st.quorum_lost || st.n != d->cfg.n_members ||
      st.n - 1 < d->cfg.n_members / 2 + 1)
    return;
  uint32_t oldest = UINT32_MAX;
  for (uint32_t i = 0; i < st.n; i++) {
    if (st.member_state[i] != 0 || lag_of(&st, i) > 10000) return;
    if (oldest == UINT32_MAX ||
        st.member_incarnation[i] < st.member_incarnation[oldest])
      oldest = i;
  }
  uint64_t inc = st.member_incarnation[oldest];
  uint64_t due = inc + d->cfg.restart_every_ms +
                 jitter_of(st.ids[oldest], inc, d->cfg.restart_jitter_ms);
  if (now < due) return;
  int rc = smr_ask_restart(d->group, st.ids[oldest], 0);
  if (rc < 0) {
    dlog(SMR_LOG_WARN, "rejuvenation: cannot restart %s: %s",
         st.ids[oldest], strerror(-rc));
    return;
  }
  dlog(SMR_LOG_INFO, "rejuvenation: restarting %s (its process is %.1f s "
       "old)", st.ids[oldest], (double)(now - inc) / 1000.0);
  snprintf(d->rejuv_id, sizeof(d->rejuv_id), "%s", st.ids[oldest]);
  d->rejuv_inc = inc;
  d->rejuv_at = now;
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
  case 3: return "leaving";
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
        members,
        json_pack("{s:s,s:i,s:s,s:s,s:I,s:I,s:I}", "id", st.ids[i], "rank",
                  (json_int_t)i, "addr", st.addrs[i], "state",
                  member_state(&st, i), "incarnation",
                  (json_int_t)st.member_incarnation[i], "delivered",
                  (json_int_t)st.member_delivered[i], "lag",
                  (json_int_t)lag_of(&st, i)));
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
  json_object_set_new(
      r, "transport",
      json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "kind", st.transport,
                "peers_up", (json_int_t)st.peers_up, "rdma_links",
                (json_int_t)st.rdma_links, "rdma_bytes_out",
                (json_int_t)st.rdma_bytes_out, "rdma_bytes_in",
                (json_int_t)st.rdma_bytes_in, "rdma_sst_out",
                (json_int_t)st.rdma_sst_out, "rdma_sst_in",
                (json_int_t)st.rdma_sst_in));
  json_object_set_new(r, "digest_position", json_integer((json_int_t)
                                                         st.digest_pos));
  /* Restart requests refused at their position (the same on every
   * member): smrctl restart tells a refusal from a slow restart by it. */
  json_object_set_new(
      r, "ordering",
      json_pack("{s:b,s:I,s:I}", "relay", d->cfg.relay, "relayed",
                (json_int_t)st.relayed, "repairs",
                (json_int_t)st.order_repairs));
  json_object_set_new(
      r, "restarts",
      json_pack("{s:I,s:I,s:s}", "seen", (json_int_t)st.restarts_seen,
                "refused", (json_int_t)st.restarts_refused, "last_refusal",
                st.last_refusal ? st.last_refusal : ""));
  if (st.xfer_rank < st.n)
    json_object_set_new(
        r, "transfer",
        json_pack("{s:s,s:s,s:I}", "to", st.ids[st.xfer_rank], "kind",
                  st.xfer_delta ? "delta" : "snapshot", "acked",
                  (json_int_t)st.xfer_acked));
  /* The VIP follows the primary (no VIP configured: null). */
  json_object_set_new(r, "vip_owner", d->cfg.vip_address[0]
                                          ? json_string(leader)
                                          : json_null());
  if (d->vip != 0) {
    json_object_set_new(r, "vip", json_string(d->cfg.vip_address));
    json_object_set_new(r, "vip_held", json_boolean(d->vip_held));
    json_object_set_new(r, "gate", json_string(tcpr_gate_kind_name(d->gate)));
    json_object_set_new(r, "vip_connections",
                        json_integer((json_int_t)d->fe_ops->vip_connections(
                            d->fe)));
    json_object_set_new(r, "takeovers", json_integer((json_int_t)d->takeovers));
  }
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

/* The Prometheus text exposition of this member's counters: a buffer from
 * malloc() of *len bytes, or NULL.  `smrctl metrics` and the HTTP endpoint
 * ([metrics] listen, http.c: ctx is the smrd) both serve it. */
static char *metrics_text(void *ctx, size_t *len) {
  struct smrd *d = ctx;
  struct smr_status st;
  smr_status(d->group, &st);
  char *t = NULL;
  FILE *f = open_memstream(&t, len);
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
  M("smr_transport_peers_up", "gauge", "Member connections up now.",
    st.peers_up);
  M("smr_rdma_links", "gauge", "RDMA links up now (kind = rdma).",
    st.rdma_links);
  M("smr_rdma_bytes_out_total", "counter", "Stream bytes sent over RDMA.",
    st.rdma_bytes_out);
  M("smr_rdma_bytes_in_total", "counter", "Stream bytes received over RDMA.",
    st.rdma_bytes_in);
  M("smr_rdma_sst_out_total", "counter",
    "Heartbeats written into peers' SST slots.", st.rdma_sst_out);
  M("smr_rdma_sst_in_total", "counter",
    "Peers' heartbeats taken from this member's SST slots.", st.rdma_sst_in);
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
  M("smr_stable_lag", "gauge",
    "Messages received but not yet stable (delivered everywhere).",
    st.stable_lag);
  M("smr_restarts_seen_total", "counter",
    "Members seen back in a view as a newer process (restarts).",
    st.restarts_seen);
  M("smr_relayed_total", "counter",
    "Ordered messages passed on along the chain (relay = chain).",
    st.relayed);
  M("smr_order_repairs_total", "counter",
    "ORDER frames sent again to a member whose receipt lagged.",
    st.order_repairs);
  M("smr_restarts_refused_total", "counter",
    "Restart requests refused at their position (too few would remain).",
    st.restarts_refused);
  M("smr_state_transfers_sent_total", "counter",
    "State transfers (delta or snapshot) this member completed as donor.",
    st.xfers_sent);
  M("smr_state_transfer_bytes_sent_total", "counter",
    "Bytes of state (log entries or snapshot) this member sent.",
    st.xfer_bytes_sent);
  M("smr_state_transfers_received_total", "counter",
    "State transfers this process received.", st.xfers_received);
  M("smr_state_transfer_bytes_received_total", "counter",
    "Bytes of state this process received.", st.xfer_bytes_received);
  M("smr_divergences_seen_total", "counter",
    "Members whose digest at a checkpoint differed from the majority's.",
    st.divergences_seen);
  M("smr_diverged_total", "counter",
    "Times this process found its own digest in the minority.",
    st.diverged);
  M("smr_gate_released_bytes_total", "counter",
    "Client bytes the ACK gate released (the group had them).",
    d->fe ? d->fe_ops->released_bytes(d->fe) : 0);
  {
    static const uint64_t bounds[SMR_LATENCY_BUCKETS] = SMR_LATENCY_BOUNDS;
    const char *h = "smr_delivery_latency_seconds";
    fprintf(f, "# HELP %s Own submissions, submit to apply.\n"
               "# TYPE %s histogram\n", h, h);
    for (int i = 0; i < SMR_LATENCY_BUCKETS; i++)
      fprintf(f, "%s_bucket{group=\"%s\",node=\"%s\",le=\"%g\"} %" PRIu64
                 "\n", h, d->cfg.group, d->cfg.id, (double)bounds[i] / 1e6,
              st.latency_le[i]);
    fprintf(f, "%s_bucket{group=\"%s\",node=\"%s\",le=\"+Inf\"} %" PRIu64
               "\n%s_sum{group=\"%s\",node=\"%s\"} %.6f\n"
               "%s_count{group=\"%s\",node=\"%s\"} %" PRIu64 "\n",
            h, d->cfg.group, d->cfg.id, st.latency_count, h, d->cfg.group,
            d->cfg.id, (double)st.latency_sum_us / 1e6, h, d->cfg.group,
            d->cfg.id, st.latency_count);
  }
  M("smr_client_connections", "gauge", "Client connections.",
    d->fe ? d->fe_ops->connections(d->fe) : 0);
  M("smr_tcpr_connections", "gauge",
    "Client connections in the group's replicated table.",
    tcpr_conntab_count(d->conns));
  if (d->vip != 0) {
    struct tcpr_gate_stats gs;
    memset(&gs, 0, sizeof(gs));
    tcpr_gate_stats(d->gate, &gs);
    M("smr_vip_held", "gauge", "1 while this member holds the VIP.",
      d->vip_held);
    M("smr_takeovers_total", "counter", "Times this member took the VIP.",
      d->takeovers);
    M("smr_vip_fences_total", "counter", "Times this member gave it up.",
      d->fences);
    M("smr_tcpr_restore_failures_total", "counter",
      "Connections that could not be restored at a takeover.",
      d->fe_ops->restore_failures(d->fe));
    M("smr_gate_clamped_total", "counter",
      "Segments whose acknowledgement the gate held back.", gs.clamped);
    M("smr_gate_sack_stripped_total", "counter",
      "Segments whose SACK blocks the gate removed.", gs.sack_stripped);
    M("smr_gate_fin_dropped_total", "counter",
      "FINs of gated connections dropped.", gs.fin_dropped);
    M("smr_gate_rst_dropped_total", "counter",
      "RSTs of gated connections dropped.", gs.rst_dropped);
    M("smr_gate_fenced_dropped_total", "counter",
      "Packets from the VIP dropped while fenced.", gs.fenced_dropped);
    M("smr_gate_acks_clamped_in_total", "counter",
      "Client acknowledgements above what this member sent, lowered (after "
      "a takeover).", gs.acks_clamped_in);
    M("smr_gate_acks_sent_total", "counter",
      "Acknowledgements the gate sent at a release (kernel module only).",
      gs.acks_sent);
  }
  if (d->metrics != NULL)
    M("smr_metrics_refused_total", "counter",
      "Connections to the metrics endpoint refused: address not in "
      "[metrics] allow.", smrd_http_refused(d->metrics));
#undef M
  if (fclose(f) != 0) {
    free(t);
    return NULL;
  }
  return t;
}

static json_t *cmd_metrics(struct smrd *d, char *err, size_t errlen) {
  size_t n;
  char *t = metrics_text(d, &n);
  if (t == NULL) {
    snprintf(err, errlen, "metrics: out of memory");
    return NULL;
  }
  json_t *r = json_pack("{s:s}", "text", t);
  free(t);
  return r;
}

/* The group's replicated connection table (the same on every member),
 * plus this member's own client count. */
static json_t *cmd_connections(struct smrd *d) {
  json_t *list = json_array();
  size_t n = tcpr_conntab_count(d->conns);
  for (size_t i = 0; i < n; i++) {
    const struct tcpr_conn *c = tcpr_conntab_at(d->conns, i);
    char client[64], id[20];
    struct in_addr a = {c->tcp.raddr};
    snprintf(client, sizeof(client), "%s:%u", inet_ntoa(a), c->tcp.rport);
    snprintf(id, sizeof(id), "%016" PRIx64, c->id);
    json_array_append_new(
        list, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:b,s:b}", "id", id,
                        "client", client, "received", (json_int_t)c->rcv_off,
                        "replied", (json_int_t)c->snd_off, "acked",
                        (json_int_t)c->acked, "unacked_bytes",
                        (json_int_t)(c->snd_off - c->acked), "client_closed",
                        c->fin, "closing", c->closing));
  }
  return json_pack("{s:I,s:I,s:o}", "connections",
                   (json_int_t)(d->fe ? d->fe_ops->connections(d->fe) : 0),
                   "replicated", (json_int_t)n, "table", list);
}

static json_t *on_admin(void *ctx, const char *cmd, json_t *req, char *err,
                        size_t errlen) {
  struct smrd *d = ctx;
  int rc;
  if (!strcmp(cmd, "status")) return cmd_status(d);
  if (!strcmp(cmd, "digest")) return cmd_digest(d, err, errlen);
  if (!strcmp(cmd, "metrics")) return cmd_metrics(d, err, errlen);
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
  if (!strcmp(cmd, "restart")) {
    const char *who = json_string_value(json_object_get(req, "node"));
    if (who == NULL) {
      snprintf(err, errlen, "restart: which member?");
      return NULL;
    }
    int rebuild = json_is_true(json_object_get(req, "rebuild"));
    if ((rc = smr_ask_restart(d->group, who,
                              rebuild ? SMR_RESTART_REBUILD : 0)) < 0) {
      snprintf(err, errlen, "restart %s: %s", who,
               rc == -ENOENT   ? "not a member of the current view"
               : rc == -EBUSY ? "not now: one more member away would leave "
                                "less than a majority, or another member "
                                "is suspected or still receiving its state "
                                "(see the log)"
                              : strerror(-rc));
      return NULL;
    }
    dlog(SMR_LOG_INFO, "restart of %s%s requested by the operator", who,
         rebuild ? " (rebuild)" : "");
    return json_pack("{s:s}", "restarting", who);
  }
  if (!strcmp(cmd, "debug-corrupt")) {
    const char *key = json_string_value(json_object_get(req, "key"));
    const char *val = json_string_value(json_object_get(req, "value"));
    if (!d->cfg.corrupt_command) {
      snprintf(err, errlen, "debug-corrupt: refused ([test] corrupt_command "
               "is off; it is for tests only)");
      return NULL;
    }
    if (key == NULL || val == NULL || d->fe_ops->debug_corrupt == NULL ||
        (rc = d->fe_ops->debug_corrupt(d->fe, key, val)) < 0) {
      snprintf(err, errlen, "debug-corrupt: needs key and value");
      return NULL;
    }
    dlog(SMR_LOG_WARN, "TEST: this member's copy of %s was changed behind "
         "the group's back", key);
    return json_pack("{s:s}", "corrupted", key);
  }
  if (!strcmp(cmd, "connections")) return cmd_connections(d);
  snprintf(err, errlen, "unknown command: %s", cmd);
  return NULL;
}

/* ------------------------------------------------------------------------
 * Main
 * --------------------------------------------------------------------- */

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)revents;
  dlog(SMR_LOG_INFO, "signal %d: shutting down", w->signum);
  ((struct smrd *)w->data)->stop_asked = 1;
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
  d.garp_fd = -1;
  d.argv = argv;
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
  /* TCP-R first: the keeper must be forked before anything opens. */
  if (d.cfg.vip_address[0] && tcpr_start(&d, err, sizeof(err)) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start TCP-R: %s", err);
    return 1;
  }
  if ((rc = tcpr_conntab_new(d.svc_ops, d.svc, &d.conns, &d.wrapped_ops)) <
      0) {
    dlog(SMR_LOG_ERROR, "cannot start: %s", strerror(-rc));
    return 1;
  }
  ev_timer_init(&d.lease_w, on_lease, 0, d.cfg.heartbeat_ms / 1000.0);
  d.lease_w.data = &d;
  ev_timer_init(&d.garp_w, on_garp, 0, 0.02);
  d.garp_w.data = &d;
  /* Rejuvenation looks at the group a few times per period, at most once
   * a second. */
  double rj = (double)d.cfg.restart_every_ms / 1000.0 / 20.0;
  ev_timer_init(&d.rejuv_w, on_rejuvenate, rj < 1.0 ? rj : 1.0,
                rj < 1.0 ? rj : 1.0);
  d.rejuv_w.data = &d;
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
      .rdma = strcmp(d.cfg.kind, "rdma") == 0,
      .rdma_fallback = d.cfg.rdma_fallback,
      .rdma_port = d.cfg.rdma_port,
      .rdma_busy_poll_us = d.cfg.rdma_busy_poll_us,
      .relay = d.cfg.relay,
      .service = d.wrapped_ops,
      .service_ctx = d.conns,
      .ctx = &d,
      .on_view = on_view,
      .on_reply = on_reply,
      .on_dropped = on_dropped,
      .on_standing = on_standing,
      .on_restart = on_restart,
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
      .conns = d.conns,
      .gate = d.gate,
      .keeper = d.keeper,
      .vip = d.vip,
      .replication_delay_ms = d.cfg.replication_delay_ms,
      .reply_delay_ms = d.cfg.reply_delay_ms,
      .takeover_acks = d.cfg.takeover_acks,
  };
  if ((rc = d.fe_ops->open(&fc, &d.fe, err, sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start the %s front end: %s", d.fe_ops->name,
         err);
    smr_close(d.group);
    return 1;
  }
  set_role(&d);
  if (d.vip != 0) ev_timer_again(d.loop, &d.lease_w);
  if (d.cfg.restart_every_ms != 0) ev_timer_start(d.loop, &d.rejuv_w);
  if ((rc = smrd_admin_open(d.loop, d.cfg.admin_socket, on_admin, &d,
                            &d.admin, err, sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start: %s", err);
    d.fe_ops->close(d.fe);
    smr_close(d.group);
    return 1;
  }
  if (d.cfg.metrics_listen[0] &&
      (rc = smrd_http_open(d.loop, d.cfg.metrics_listen, d.cfg.metrics_allow,
                           metrics_text, &d, &d.metrics, err,
                           sizeof(err))) < 0) {
    dlog(SMR_LOG_ERROR, "cannot start: [metrics] %s", err);
    smrd_admin_close(d.admin);
    d.fe_ops->close(d.fe);
    smr_close(d.group);
    return 1;
  }
  if (d.metrics != NULL)
    dlog(SMR_LOG_INFO, "metrics at http://%s/metrics (allowed: %s)",
         d.cfg.metrics_listen, d.cfg.metrics_allow);
  ev_signal_init(&d.sigterm, on_signal, SIGTERM);
  d.sigterm.data = &d;
  ev_signal_start(d.loop, &d.sigterm);
  ev_signal_init(&d.sigint, on_signal, SIGINT);
  d.sigint.data = &d;
  ev_signal_start(d.loop, &d.sigint);
  dlog(SMR_LOG_INFO, "serving %s on port %u, admin socket %s", d.fe_ops->name,
       d.cfg.port, d.cfg.admin_socket);
  ev_run(d.loop, 0);
  ev_timer_stop(d.loop, &d.lease_w);
  ev_timer_stop(d.loop, &d.rejuv_w);
  smrd_http_close(d.metrics);
  smrd_admin_close(d.admin);
  /* The front end first: it hands its connections to the keeper and the
   * gate, which tcpr_stop then closes. */
  d.fe_ops->close(d.fe);
  tcpr_stop(&d);
  smr_close(d.group);
  tcpr_conntab_free(d.conns);
  /* Restarting: the new image replaces all memory at once; freeing a
   * large state piece by piece first only delays it. */
  if (!d.restart_exec) d.fe_ops->service_destroy(d.svc);
  if (d.restart_exec) {
    /* The same program and arguments, as a fresh process image (the pid
     * stays: a service manager sees nothing).  Descriptors that are not
     * close-on-exec must not leak into it. */
    /* A SIGTERM or SIGINT that came once the loop had stopped must not
     * be lost on the new process: libev caught it (its watcher is pending,
     * never to run), or the kernel holds it.  With them blocked, check
     * both; stop instead of restarting if one came; then the default
     * actions and an empty mask for the new process, so that one coming
     * from here on ends whichever process is running. */
    sigset_t stop, pend, none;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    /* Everything else is stopped: this dispatches only a signal libev
     * caught after the loop stopped (its handler just notes it). */
    ev_run(d.loop, EVRUN_NOWAIT);
    int asked = d.stop_asked;
    ev_signal_stop(d.loop, &d.sigterm);
    ev_signal_stop(d.loop, &d.sigint);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigpending(&pend);
    if (asked || sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT)) {
      dlog(SMR_LOG_INFO, "asked to stop during the restart: stopped");
      return 0;
    }
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    dlog(SMR_LOG_INFO, "stopped; starting again");
    closefrom(3);
    execv("/proc/self/exe", argv);
    dlog(SMR_LOG_ERROR, "cannot restart: exec /proc/self/exe: %s",
         strerror(errno));
    return 1;
  }
  dlog(SMR_LOG_INFO, "stopped");
  return 0;
}
