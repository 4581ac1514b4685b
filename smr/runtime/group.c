/* group.c -- libsmr: one member of a group, on an event loop.
 *
 * DESIGN
 * ======
 * The protocol lives in the sans-IO core (smr/core/core.c); this file gives
 * it a clock, a transport, a disk and a service, and carries out its
 * outputs in order:
 *
 *   inputs   frames from the transport (on_frame), lost links
 *            (on_peer_lost), timers (one ev_timer at the core's next
 *            deadline), and smr_submit();
 *   batching every input is fed to the core at once, but the core's batch
 *            is closed (smr_core_flush) once per loop iteration, in an
 *            ev_prepare watcher just before the loop blocks: everything
 *            that arrived in one iteration is ordered in one ORDER and
 *            acknowledged in one heartbeat;
 *   outputs  drained after every input.  PERSIST_* records go to the
 *            store's buffer; before the first SEND that follows records of
 *            the batch, the store is synced (one fdatasync for the batch:
 *            group commit), so nothing is acknowledged before it is
 *            durable.  DELIVER applies the request to the service, logs it
 *            (for restarts and deltas) and, for our own submissions, hands
 *            the reply to on_reply in submission order.  VIEW, QUORUM_LOST
 *            and DROPPED become upcalls; RESTORE_* feed the service.
 *
 * Our own submissions are delivered (or dropped) in the order they were
 * submitted, so their cookies wait in a FIFO.
 *
 * Every multicast carries a one-byte envelope: 'S' for a service request,
 * 'C' for a control message of libsmr itself.  Control messages use the
 * total order to make members act at the same position:
 *   CHECKPOINT  every member checkpoints when it applies it (smrctl
 *               checkpoint), exactly as at the positions that are
 *               multiples of checkpoint_every;
 *   DIGEST      after each such checkpoint a member multicasts the
 *               service digest it had there, so every member holds a
 *               table position -> member -> digest and can tell whether
 *               the copies agree (divergence detection, smrctl digest).
 *
 * Checkpoints are also taken right after a state transfer (whose history
 * our log lacks).  A checkpoint is written by a child process (fork(): a
 * copy-on-write image of the state exactly at its position), which also
 * digests the state; the loop goes on meanwhile, and the digest goes out
 * when the child is done (DIGEST names its position).  Only a restart's
 * own checkpoint, taken once the member is out of the group, is written
 * in this process.
 *
 *   RESTART     [flags][id]: that member restarts (smrctl restart, the
 *               rejuvenation schedule, or a member whose digest was found
 *               in the minority asking for its own rebuild).  Every member
 *               decides at the request's position, from the view and the
 *               table of restarts accepted before it whose members are
 *               still in the view (`going`), whether one more may go: the
 *               same answer everywhere, so two requests in a row never
 *               take two members away where one is all a majority can
 *               spare.  The named member may still refuse for what only it
 *               sees (a suspected member, one still receiving its state):
 *   CANCEL      [id]\0[reason]: it says so, and every member drops it from
 *               the table.
 *
 * A restart goes: leave the group; once out, checkpoint where we stopped
 * (or, to be rebuilt, discard log and checkpoint); hand over to the
 * program (on_restart), which starts again as a new process: a new
 * incarnation that loads the checkpoint and rejoins with the delta. */
#include "smr/smr.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "assert.h"
#include "core.h"
#include "net.h"
#include "store.h"

/* Our submissions in flight: the program's cookie and when it was
 * submitted (for the delivery latency histogram). */
struct pending_cookie {
  void *cookie;
  uint64_t t_us;
};

struct cookieq {
  struct pending_cookie *v;
  size_t head, n, cap;
};

#define ENV_SERVICE 'S'
#define ENV_CONTROL 'C'
#define CTL_CHECKPOINT 1
#define CTL_DIGEST 2
#define CTL_LEAVE 3
#define CTL_RESTART 4 /* [flags][id]: that member restarts */
#define CTL_RESTART_CANCEL 5 /* [id]\0[reason]: it could not after all */
#define DIGEST_ROWS 8
#define CK_JOBS 2 /* checkpoints being written at once, at most (each
                     child may come to hold a copy of the state) */
#define SNAP_DEADLINE_S 300.0 /* a snapshot child still writing after this
                                 is taken for hung and killed */

struct smr;
/* A checkpoint being written by a child process (store.c). */
struct ck_job {
  ev_io w; /* its pipe: readable when it is done */
  struct smr *g;
  struct smr_store_ckjob job;
  uint64_t hash, t0;
  int used;
};

/* Digests reported for one checkpoint position. */
struct digest_row {
  uint64_t pos;
  int ours; /* this process checkpointed there (not history it replayed) */
  uint32_t n;
  char ids[SMR_MAX_MEMBERS][SMR_ID_MAX];
  uint8_t d[SMR_MAX_MEMBERS][SMR_DIGEST_LEN];
};

struct smr {
  struct smr_config cfg;
  struct ev_loop *loop;
  struct smr_core *core;
  struct smr_store *store;
  struct smr_net *net;
  ev_timer timer;
  ev_prepare prepare;
  ev_idle kick;      /* one more loop iteration before sleeping */
  int sent;          /* frames handed to the transport in this drain */
  struct smr_core_source src;
  struct cookieq cookies;
  struct smr_buf reply;
  uint64_t incarnation;
  uint64_t applied, hash;       /* service state position */
  int checkpoint_due;
  int unsynced;                 /* records written since the last sync */
  int had_state;                /* the core had the service state */
  int closing;
  /* The current view, for upcalls and status. */
  struct smr_wire_view view;
  uint32_t rank;
  int needs_state;
  const char *ids[SMR_MAX_MEMBERS], *addrs[SMR_MAX_MEMBERS];
  uint64_t send_dropped;
  /* Their addresses mark our control messages: the digest reports, the
   * cancels and our rebuild requests have their own, so that one dropped
   * (we were excluded before it was ordered) is sent again. */
  int control_cookie, digest_cookie, cancel_cookie, rebuild_cookie;
  uint8_t *env;       /* envelope buffer */
  size_t env_cap;
  struct digest_row digests[DIGEST_ROWS];
  int leave_due;          /* leave once this batch of outputs is done */
  /* A restart under way (asked, or a divergence of our own): we leave,
   * and once out, checkpoint (or discard with rebuild) and hand over. */
  int restart_due, restart_rebuild, restart_handed, restart_excluded;
  int restart_state_ok; /* we had the state when the restart began */
  uint64_t divergences_seen, diverged;
  /* Restarts the total order accepted, of members not yet out of the
   * view: every member that saw the requests holds the same table, and a
   * request is refused at its position if the ones under way would leave
   * too few (two requests in a row must not take two members away). */
  struct {
    char id[SMR_ID_MAX];
    uint64_t inc;
  } going[SMR_MAX_MEMBERS];
  uint32_t n_going;
  uint64_t restarts_refused;
  char last_refusal[256];
  char cancel_why[160]; /* our refusal, still to be multicast */
  int cancel_unsent;
  /* Our state diverged: the rebuild is asked for through the total order
   * like any restart (so it too waits for the others under way), and
   * asked again later if it is refused. */
  int rebuild_wanted, rebuild_asked;
  uint64_t rebuild_next;
  uint64_t diverged_checked; /* the last digest position compared */
  /* Our own divergence found at diverge_pos: we leave once our report of
   * that position has been delivered, so that the others see it too. */
  uint64_t diverge_pos, own_digest_delivered;
  /* Restarts of members seen in views: the newest incarnation of each. */
  struct {
    char id[SMR_ID_MAX];
    uint64_t inc;
  } incs[2 * SMR_MAX_MEMBERS];
  uint64_t restarts_seen;
  uint64_t lat_le[SMR_LATENCY_BUCKETS], lat_count, lat_sum_us;
  /* Our service digest at digest_pos (the last checkpoint, or the state
   * recovered at start): status reports it instead of digesting the whole
   * state on every call. */
  uint8_t digest[SMR_DIGEST_LEN];
  uint64_t digest_pos;
  int digest_unsent;
  int ck_deferred; /* a checkpoint waits for a free child slot */
  int history; /* delivering history replayed by a delta (epoch 0) */
  struct ck_job ck[CK_JOBS];
  int replaying;          /* recovery is replaying the log */
  /* Copies of the configuration's strings. */
  struct smr_member *boot;
  char *group, *self_id, *self_addr, *data_dir;
};

/* ------------------------------------------------------------------------
 * Helpers
 * --------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void glog(struct smr *g, int level, const char *fmt, ...) {
  if (g->cfg.log == NULL) return;
  char line[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  g->cfg.log(g->cfg.ctx, level, line);
}

/* The member's role may have changed outside a view change. */
static void standing_changed(struct smr *g) {
  if (g->cfg.on_standing != NULL) g->cfg.on_standing(g->cfg.ctx);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cookie_push(struct cookieq *q, void *c) {
  if (q->head + q->n == q->cap) {
    if (q->head > 0) {
      memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
      q->head = 0;
    }
    if (q->n == q->cap) {
      size_t nc = q->cap ? q->cap * 2 : 256;
      struct pending_cookie *nv = realloc(q->v, nc * sizeof(*nv));
      if (nv == NULL) return -ENOMEM;
      q->v = nv;
      q->cap = nc;
    }
  }
  q->v[q->head + q->n++] = (struct pending_cookie){c, now_us()};
  return 0;
}

static void *cookie_pop(struct cookieq *q, uint64_t *t_us) {
  if (!ALWAYS(q->n > 0)) return NULL;
  struct pending_cookie pc = q->v[q->head++];
  if (--q->n == 0) q->head = 0;
  if (t_us != NULL) *t_us = pc.t_us;
  return pc.cookie;
}

/* One of our submissions was applied `us` microseconds after it was
 * submitted. */
static void latency_record(struct smr *g, uint64_t us) {
  static const uint64_t bounds[SMR_LATENCY_BUCKETS] = SMR_LATENCY_BOUNDS;
  for (int i = 0; i < SMR_LATENCY_BUCKETS; i++)
    if (us <= bounds[i]) g->lat_le[i]++;
  g->lat_count++;
  g->lat_sum_us += us;
}

/* ------------------------------------------------------------------------
 * Carrying out the core's outputs
 * --------------------------------------------------------------------- */

static void sync_store(struct smr *g) {
  if (!g->unsynced) return;
  int rc = smr_store_sync(g->store);
  if (rc < 0) {
    /* A disk that cannot sync cannot keep our promises: stop here rather
     * than acknowledge what is not durable. */
    glog(g, SMR_LOG_ERROR, "log sync failed: %s; stopping", strerror(-rc));
    abort();
  }
  g->unsynced = 0;
}

/* A member of a new view with a newer incarnation than we saw before was
 * restarted (or replaced) meanwhile. */
static void count_restarts(struct smr *g) {
  for (uint32_t i = 0; i < g->view.n; i++) {
    const struct smr_wire_member *m = &g->view.m[i];
    size_t k, n = sizeof(g->incs) / sizeof(g->incs[0]), free_k = n;
    for (k = 0; k < n; k++) {
      if (g->incs[k].id[0] == 0 && free_k == n) free_k = k;
      if (!strcmp(g->incs[k].id, m->id)) break;
    }
    if (k == n) {
      if (free_k == n) continue; /* table full: not counted */
      k = free_k;
      memcpy(g->incs[k].id, m->id, sizeof(g->incs[k].id));
      g->incs[k].id[sizeof(g->incs[k].id) - 1] = 0;
    } else if (m->incarnation > g->incs[k].inc && g->incs[k].inc != 0) {
      g->restarts_seen++;
    }
    if (m->incarnation > g->incs[k].inc) g->incs[k].inc = m->incarnation;
  }
}

/* The restarts under way, in the going table. */
static int going_find(const struct smr *g, const char *id) {
  for (uint32_t i = 0; i < g->n_going; i++)
    if (!strcmp(g->going[i].id, id)) return (int)i;
  return -1;
}

static void going_remove(struct smr *g, uint32_t i) {
  if (!ALWAYS(i < g->n_going)) return;
  g->going[i] = g->going[--g->n_going];
}

/* A new view: a member restarting is done with it once it is out of the
 * view, or back in it as another process. */
static void going_prune(struct smr *g) {
  for (uint32_t i = 0; i < g->n_going;) {
    int still = 0;
    for (uint32_t k = 0; k < g->view.n; k++)
      if (!strcmp(g->view.m[k].id, g->going[i].id) &&
          g->view.m[k].incarnation == g->going[i].inc)
        still = 1;
    if (still) i++;
    else going_remove(g, i);
  }
}

/* A view change begins: say why, as far as this member knows (the members
 * it suspects and those leaving; otherwise joiners, or another member's
 * reason). */
static void log_wedged(struct smr *g) {
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  char why[256] = "";
  size_t off = 0;
  const char *sep = "";
  for (int pass = 0; pass < 2; pass++) {
    uint32_t mask = pass == 0 ? cs.suspects : cs.leaving_mask;
    if (mask == 0) continue;
    int k = snprintf(why + off, sizeof(why) - off, "%s%s", sep,
                     pass == 0 ? "suspected:" : "leaving:");
    if (k < 0 || (size_t)k >= sizeof(why) - off) break;
    off += (size_t)k;
    for (uint32_t r = 0; r < cs.view->n && r < 32; r++) {
      if (!(mask & (1u << r))) continue;
      k = snprintf(why + off, sizeof(why) - off, " %s", cs.view->m[r].id);
      if (k < 0 || (size_t)k >= sizeof(why) - off) break;
      off += (size_t)k;
    }
    sep = "; ";
  }
  glog(g, SMR_LOG_INFO, "view %" PRIu64 ": change under way%s%s%s",
       g->view.epoch, off ? " (" : "", why, off ? ")" : "");
}

/* As the donor: which kind of transfer a member gets, and why it is not a
 * delta when it is not (the operator's first question after a slow
 * rejoin). */
static void log_xfer_begin(struct smr *g, const struct smr_event *ev) {
  static const char *const why[] = {
      [SMR_XFER_WHY_DELTA] = "",
      [SMR_XFER_WHY_NO_STATE] = "it has no state",
      [SMR_XFER_WHY_AHEAD] = "its position is past the boundary",
      [SMR_XFER_WHY_NOT_IN_LOG] = "our log no longer holds its position",
      [SMR_XFER_WHY_DIVERGED] = "its history does not lead to ours",
  };
  unsigned w = (unsigned)ev->u.xfer.why;
  if (ev->u.xfer.delta)
    glog(g, SMR_LOG_INFO, "sending %s a delta: %" PRIu64 " entr%s after "
         "position %" PRIu64, ev->u.xfer.to->id,
         ev->u.xfer.boundary - ev->u.xfer.from,
         ev->u.xfer.boundary - ev->u.xfer.from == 1 ? "y" : "ies",
         ev->u.xfer.from);
  else if (w == SMR_XFER_WHY_NO_STATE)
    glog(g, SMR_LOG_INFO, "sending %s the state at position %" PRIu64
         " (a snapshot: it has no state)", ev->u.xfer.to->id,
         ev->u.xfer.boundary);
  else
    glog(g, SMR_LOG_INFO, "sending %s the state at position %" PRIu64
         " (a snapshot: it is at %" PRIu64 " and %s)", ev->u.xfer.to->id,
         ev->u.xfer.boundary, ev->u.xfer.from,
         w < sizeof(why) / sizeof(why[0]) ? why[w] : "?");
}

static void on_view_event(struct smr *g, const struct smr_event *ev) {
  g->view = *ev->u.view.view;
  going_prune(g);
  count_restarts(g);
  g->rank = ev->u.view.rank;
  g->needs_state = ev->u.view.needs_state;
  for (uint32_t i = 0; i < g->view.n; i++) {
    g->ids[i] = g->view.m[i].id;
    g->addrs[i] = g->view.m[i].addr;
  }
  char list[SMR_MAX_MEMBERS * SMR_ID_MAX + 1];
  size_t off = 0;
  list[0] = 0;
  for (uint32_t i = 0; i < g->view.n && off < sizeof(list); i++)
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s",
                            i ? "," : "", g->view.m[i].id);
  glog(g, SMR_LOG_INFO,
       "view %" PRIu64 ": %u members, primary %s, rank %u%s; members %s",
       g->view.epoch, g->view.n, g->view.m[0].id, g->rank,
       g->needs_state ? " (receiving state)" : "", list);
  if (g->cfg.on_view != NULL) {
    struct smr_view_info vi = {g->view.epoch, g->view.n, g->ids, g->addrs,
                               g->rank, g->needs_state};
    g->cfg.on_view(g->cfg.ctx, &vi);
  }
}

static int multicast(struct smr *g, uint8_t env, const void *data,
                     size_t len, void *cookie);

static int is_control_cookie(const struct smr *g, const void *cookie) {
  return cookie == &g->control_cookie || cookie == &g->digest_cookie ||
         cookie == &g->cancel_cookie || cookie == &g->rebuild_cookie;
}
static void record_digest(struct smr *g, uint64_t pos, const char *id,
                          const uint8_t *d, int ours);

/* Our digest at a checkpoint: kept for status, and told to the group
 * (the copies are compared position by position). */
static void report_digest(struct smr *g, uint64_t pos,
                          const uint8_t d[SMR_DIGEST_LEN]) {
  if (pos >= g->digest_pos) { /* (a checkpoint collected late may be older) */
    if (d != g->digest) memcpy(g->digest, d, SMR_DIGEST_LEN);
    g->digest_pos = pos;
  }
  uint8_t m[1 + 8 + SMR_ID_MAX - 1 + SMR_DIGEST_LEN];
  memset(m, 0, sizeof(m));
  m[0] = CTL_DIGEST;
  for (int i = 0; i < 8; i++) m[1 + i] = (uint8_t)(pos >> (8 * i));
  memcpy(m + 9, g->self_id, strlen(g->self_id));
  memcpy(m + 9 + SMR_ID_MAX - 1, d, SMR_DIGEST_LEN);
  record_digest(g, pos, g->self_id, d, 1);
  /* Not in a running view now (e.g. excluded while the child wrote):
   * it goes out once we are back (drain). */
  g->digest_unsent =
      multicast(g, ENV_CONTROL, m, sizeof(m), &g->digest_cookie) < 0;
}

static void drain(struct smr *g);

/* A checkpoint's child is done: install it, report the digest. */
static void ck_collect(struct smr *g, struct ck_job *j) {
  ev_io_stop(g->loop, &j->w);
  j->used = 0;
  uint8_t d[SMR_DIGEST_LEN];
  uint64_t t1 = now_ms();
  int rc = smr_store_checkpoint_finish(g->store, &j->job, d);
  uint64_t t2 = now_ms();
  if (rc == -ESTALE) {
    /* A later one was installed first: this one is not kept, but its
     * digest still goes to the comparison at its position. */
    report_digest(g, j->job.pos, d);
    return;
  }
  if (rc < 0) {
    glog(g, SMR_LOG_ERROR, "checkpoint at %" PRIu64 " failed: %s",
         j->job.pos, strerror(-rc));
    return;
  }
  glog(g, SMR_LOG_INFO, "checkpoint at %" PRIu64 " took %" PRIu64
       " ms (written by process %d; installed here in %" PRIu64 " ms)",
       j->job.pos, t2 - j->t0, j->job.pid, t2 - t1);
  report_digest(g, j->job.pos, d);
}

static void on_ck_done(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  struct ck_job *j = w->data;
  ck_collect(j->g, j);
  drain(j->g); /* a divergence found may have us leave */
}

/* Waits for every checkpoint still being written (before a checkpoint of
 * our own in this process, at a restart). */
static void ck_wait_all(struct smr *g) {
  for (int i = 0; i < CK_JOBS; i++)
    if (g->ck[i].used) ck_collect(g, &g->ck[i]);
}

/* Checkpoints at the current position, exactly here in the order of
 * deliveries: a child process writes it (and digests the state) while we
 * go on; the digest is reported when it is done.  If no child can be
 * made, it is done here, blocking. */
static void take_checkpoint(struct smr *g) {
  g->checkpoint_due = 0;
  struct ck_job *j = NULL;
  for (int i = 0; i < CK_JOBS && j == NULL; i++)
    if (!g->ck[i].used) j = &g->ck[i];
  if (j == NULL) {
    /* Taken later, at the first position after a child is done: a
     * checkpoint after a state transfer must not be lost (the log lacks
     * the history before it). */
    if (!g->ck_deferred)
      glog(g, SMR_LOG_WARN, "checkpoint at %" PRIu64 " deferred: %d are "
           "still being written", g->applied, CK_JOBS);
    g->ck_deferred = 1;
    g->checkpoint_due = 1;
    return;
  }
  g->ck_deferred = 0;
  uint64_t t0 = now_ms();
  int rc = smr_store_checkpoint_fork(g->store, g->applied, g->hash, 1,
                                     &j->job);
  if (rc == 0) {
    j->used = 1;
    j->g = g;
    j->t0 = t0;
    ev_io_init(&j->w, on_ck_done, j->job.fd, EV_READ);
    j->w.data = j;
    ev_io_start(g->loop, &j->w);
    return;
  }
  glog(g, SMR_LOG_WARN, "checkpoint at %" PRIu64 ": no child process (%s); "
       "writing it here", g->applied, strerror(-rc));
  ck_wait_all(g);
  rc = smr_store_checkpoint(g->store, g->applied, g->hash);
  if (rc < 0) {
    glog(g, SMR_LOG_ERROR, "checkpoint at %" PRIu64 " failed: %s", g->applied,
         strerror(-rc));
    return;
  }
  glog(g, SMR_LOG_INFO, "checkpoint at %" PRIu64 " took %" PRIu64 " ms",
       g->applied, now_ms() - t0);
  uint8_t d[SMR_DIGEST_LEN];
  g->cfg.service->digest(g->cfg.service_ctx, d);
  report_digest(g, g->applied, d);
}

/* Members of the view other than `who` that are on their way out: their
 * restart was accepted in the total order, or they said they are leaving. */
static uint32_t away_except(struct smr *g, const char *who,
                            const struct smr_core_status *cs) {
  uint32_t n = 0;
  for (uint32_t r = 0; r < g->view.n && r < 32; r++)
    if (strcmp(g->view.m[r].id, who) != 0 &&
        (going_find(g, g->view.m[r].id) >= 0 ||
         (cs->leaving_mask & (1u << r))))
      n++;
  return n;
}

/* Whether one member may go away for a restart now: the rest of the view,
 * without the members already on their way out, is still a majority of
 * the configured group, and every other member holds the state and is not
 * suspected.  0 or a negative errno with the reason in why. */
static int restart_allowed(struct smr *g, const char *who, char *why,
                           size_t n) {
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  uint32_t need = (uint32_t)g->cfg.n_members / 2 + 1;
  uint32_t away = away_except(g, who, &cs);
  if (g->view.n < need + 1 + away) {
    snprintf(why, n, "the view has %u members%s%.0u%s; without %s it would "
             "have fewer than a majority (%u) of the %zu configured",
             g->view.n, away ? ", " : "", away,
             away ? " of them on their way out" : "", who, need,
             g->cfg.n_members);
    return -EBUSY;
  }
  for (uint32_t r = 0; r < g->view.n && r < 32; r++)
    if (strcmp(g->view.m[r].id, who) != 0 &&
        ((cs.lacks_state | cs.suspects) & (1u << r))) {
      snprintf(why, n, "%s is %s", g->view.m[r].id,
               (cs.suspects & (1u << r)) ? "suspected" : "still receiving "
                                                         "its state");
      return -EBUSY;
    }
  return 0;
}

/* A refused restart, counted and kept for status (every member sees the
 * same refusals: the ones at a request's position are decided from the
 * view and the going table alone, the named member's own ones arrive as
 * CTL_RESTART_CANCEL). */
static void note_refusal(struct smr *g, const char *id, uint64_t pos,
                         const char *why) {
  g->restarts_refused++;
  snprintf(g->last_refusal, sizeof(g->last_refusal), "restart of %s at "
           "position %" PRIu64 " refused: %s", id, pos, why);
}

/* Tells the group that the restart it accepted for us will not happen. */
static void send_cancel(struct smr *g) {
  uint8_t m[1 + SMR_ID_MAX + sizeof(g->cancel_why)];
  size_t il = strlen(g->self_id), wl = strlen(g->cancel_why);
  m[0] = CTL_RESTART_CANCEL;
  memcpy(m + 1, g->self_id, il + 1);
  memcpy(m + 2 + il, g->cancel_why, wl);
  g->cancel_unsent =
      multicast(g, ENV_CONTROL, m, 2 + il + wl, &g->cancel_cookie) < 0;
}

/* Starts a restart of this member: it leaves first (the group goes on
 * without it at once instead of after suspect_ms), and the rest happens
 * once it is out (restart_finish). */
static int restart_begin(struct smr *g, int rebuild, const char *why) {
  if (g->restart_due) {
    g->restart_rebuild |= rebuild;
    return 0;
  }
  if (g->cfg.on_restart == NULL) {
    glog(g, SMR_LOG_WARN, "%s, but this program cannot restart: %s", why,
         rebuild ? "leaving the group" : "ignored");
    if (!rebuild) return -ENOTSUP;
    g->leave_due = 1;
    return 0;
  }
  glog(g, SMR_LOG_INFO, "%s: leaving the group, then restarting %s", why,
       rebuild ? "with the state discarded (it is rebuilt from the group)"
               : "from a checkpoint");
  g->restart_due = 1;
  g->restart_rebuild = rebuild;
  g->restart_state_ok = !g->needs_state;
  g->leave_due = 1;
  return 0;
}

/* Our state diverged: rebuild it from the group, through a restart
 * request of our own in the total order (try_rebuild). */
static void want_rebuild(struct smr *g) {
  if (g->restart_due) { /* already on the way out: discard, not keep */
    g->restart_rebuild = 1;
    return;
  }
  if (g->cfg.on_restart == NULL) { /* cannot restart: at least leave */
    restart_begin(g, 1, "our state diverged");
    return;
  }
  if (!g->rebuild_wanted)
    glog(g, SMR_LOG_INFO, "our state diverged: asking the group to let us "
         "rebuild it");
  g->rebuild_wanted = 1;
}

static void try_rebuild(struct smr *g) {
  if (!g->rebuild_wanted || g->rebuild_asked || g->restart_due) return;
  uint64_t now = now_ms();
  if (now < g->rebuild_next) return;
  g->rebuild_next = now + 1000;
  char why[200];
  if (restart_allowed(g, g->self_id, why, sizeof(why)) < 0) return;
  uint8_t m[SMR_ID_MAX + 1];
  size_t n = strlen(g->self_id);
  m[0] = CTL_RESTART;
  m[1] = SMR_RESTART_REBUILD;
  memcpy(m + 2, g->self_id, n);
  if (multicast(g, ENV_CONTROL, m, n + 2, &g->rebuild_cookie) == 0)
    g->rebuild_asked = 1;
}

/* CTL_RESTART at position pos, seen by every member. */
static void restart_requested(struct smr *g, uint64_t pos, const char *from,
                              const char *id, unsigned flags) {
  int self = !strcmp(id, g->self_id);
  if (self) g->rebuild_asked = 0;
  uint32_t r = UINT32_MAX;
  for (uint32_t k = 0; k < g->view.n; k++)
    if (!strcmp(g->view.m[k].id, id)) r = k;
  if (r == UINT32_MAX) return; /* out of the view already */
  if (going_find(g, id) >= 0) {
    if (self)
      glog(g, SMR_LOG_INFO, "asked to restart again (by %s): already under "
           "way", from);
    return;
  }
  /* Decided here from the view and the table alone, the same on every
   * member: the others under way count as gone. */
  char why[200];
  uint32_t need = (uint32_t)g->cfg.n_members / 2 + 1, away = g->n_going;
  if (g->view.n < need + 1 + away) {
    snprintf(why, sizeof(why), "%u of the view's %u members are restarting "
             "already; one more would leave fewer than a majority (%u) of "
             "the %zu configured", away, g->view.n, need, g->cfg.n_members);
    note_refusal(g, id, pos, why);
    if (self)
      glog(g, SMR_LOG_WARN, "asked to restart (by %s), refused: %s", from,
           why);
    return;
  }
  smr_assert(g->n_going < SMR_MAX_MEMBERS);
  memcpy(g->going[g->n_going].id, g->view.m[r].id, SMR_ID_MAX);
  g->going[g->n_going].inc = g->view.m[r].incarnation;
  g->n_going++;
  if (!self) return;
  /* The named member looks at what only it can see (suspicions, members
   * still receiving their state) and may refuse after all; it says so
   * through the group, which drops it from the table. */
  int rebuild = (flags & SMR_RESTART_REBUILD) != 0 || g->rebuild_wanted;
  char what[200];
  snprintf(what, sizeof(what), "asked to restart (by %s)",
           strcmp(from, g->self_id) ? from : "ourselves");
  if (restart_allowed(g, g->self_id, why, sizeof(why)) == 0 &&
      restart_begin(g, rebuild, what) == 0) {
    g->rebuild_wanted = 0;
    return;
  }
  if (g->cfg.on_restart == NULL)
    snprintf(why, sizeof(why), "this program cannot restart");
  glog(g, SMR_LOG_WARN, "%s, refused: %s", what, why);
  snprintf(g->cancel_why, sizeof(g->cancel_why), "%.*s",
           (int)sizeof(g->cancel_why) - 1, why);
  send_cancel(g);
}

/* Out of the group (or it could not leave): the checkpoint of where it
 * stopped, or with rebuild the files discarded, then the program. */
static void restart_finish(struct smr *g) {
  g->restart_handed = 1;
  int rc;
  uint64_t t0 = now_ms();
  /* The checkpoints still being written are collected first: the
   * comparison of their digests may find our state diverged, and then it
   * is discarded, not checkpointed. */
  if (!g->restart_rebuild && g->restart_state_ok && g->applied > 0)
    ck_wait_all(g);
  if (g->restart_rebuild) {
    for (int i = 0; i < CK_JOBS; i++)
      if (g->ck[i].used) {
        ev_io_stop(g->loop, &g->ck[i].w);
        smr_store_checkpoint_abort(g->store, &g->ck[i].job);
        g->ck[i].used = 0;
      }
    if ((rc = smr_store_discard(g->store)) < 0)
      glog(g, SMR_LOG_ERROR, "discarding the state failed: %s",
           strerror(-rc));
    else
      glog(g, SMR_LOG_INFO, "log and checkpoint discarded");
  } else if (g->restart_state_ok && g->applied > 0) {
    /* (Not g->needs_state: having left, the core no longer claims the
     * state, but the service still holds it at g->applied.) */
    g->unsynced = 1;
    sync_store(g);
    /* A recent checkpoint and a short log after it: the next process
     * replays that log, which costs less than writing the whole state
     * again now. */
    struct smr_store_stats ss;
    smr_store_stats(g->store, &ss);
    if (ss.checkpoint_pos > 0 && ss.log_bytes * 4 < ss.checkpoint_bytes) {
      glog(g, SMR_LOG_INFO, "restarting from the checkpoint at %" PRIu64
           " (%" PRIu64 " bytes) and the log after it (%" PRIu64 " bytes, "
           "up to %" PRIu64 ")", ss.checkpoint_pos, ss.checkpoint_bytes,
           ss.log_bytes, g->applied);
      g->cfg.on_restart(g->cfg.ctx, 0);
      return;
    }
    if ((rc = smr_store_checkpoint(g->store, g->applied, g->hash)) < 0)
      glog(g, SMR_LOG_ERROR, "checkpoint at %" PRIu64 " failed: %s",
           g->applied, strerror(-rc));
    else
      glog(g, SMR_LOG_INFO, "checkpoint at %" PRIu64 " for the restart "
           "took %" PRIu64 " ms", g->applied, now_ms() - t0);
  }
  g->cfg.on_restart(g->cfg.ctx, g->restart_rebuild);
}

/* A digest row that every member of the view has reported. */
static int row_complete(const struct smr *g, const struct digest_row *row) {
  if (g->view.n == 0 || row->n == 0) return 0;
  for (uint32_t k = 0; k < g->view.n; k++) {
    int found = 0;
    for (uint32_t j = 0; j < row->n; j++)
      if (!strcmp(row->ids[j], g->view.m[k].id)) found = 1;
    if (!found) return 0;
  }
  return 1;
}

/* Divergence detection: the copies' digests at one position, compared
 * once every member reported.  A member whose digest is not the
 * majority's rebuilds itself from the group; the others count it. */
static void check_divergence(struct smr *g, const struct digest_row *row) {
  /* Only positions where this process checkpointed: a joiner replays
   * history that holds the reports of earlier processes, its own id's
   * included (a copy rebuilt after a divergence would find "its" bad
   * digest there again and again). */
  if (g->replaying || !row->ours || row->pos <= g->diverged_checked ||
      !row_complete(g, row))
    return;
  g->diverged_checked = row->pos;
  uint32_t best = 0, best_n = 0;
  for (uint32_t i = 0; i < row->n; i++) {
    uint32_t k = 0;
    for (uint32_t j = 0; j < row->n; j++)
      if (!memcmp(row->d[i], row->d[j], SMR_DIGEST_LEN)) k++;
    if (k > best_n) {
      best_n = k;
      best = i;
    }
  }
  if (best_n == row->n) return; /* all agree */
  if (2 * best_n <= row->n) {
    g->divergences_seen++;
    glog(g, SMR_LOG_ERROR, "the copies disagree at position %" PRIu64
         " and no digest has a majority (%u of %u at most); nothing is "
         "rebuilt", row->pos, best_n, row->n);
    return;
  }
  for (uint32_t i = 0; i < row->n; i++) {
    if (!memcmp(row->d[i], row->d[best], SMR_DIGEST_LEN)) continue;
    if (!strcmp(row->ids[i], g->self_id)) {
      g->diverged++;
      glog(g, SMR_LOG_ERROR, "our state diverged: digest at position %" PRIu64
           " differs from the majority's (%u of %u)", row->pos, best_n,
           row->n);
      g->diverge_pos = row->pos;
      if (g->own_digest_delivered >= row->pos) want_rebuild(g);
      /* else: once our report is delivered (control()) */
    } else {
      g->divergences_seen++;
      glog(g, SMR_LOG_WARN, "member %s diverged: its digest at position "
           "%" PRIu64 " differs from the majority's (%u of %u); it "
           "rebuilds itself from the group", row->ids[i], row->pos, best_n,
           row->n);
    }
  }
}

static void record_digest(struct smr *g, uint64_t pos, const char *id,
                          const uint8_t *d, int ours) {
  struct digest_row *row = NULL;
  for (int i = 0; i < DIGEST_ROWS; i++)
    if (g->digests[i].pos == pos) row = &g->digests[i];
  if (row == NULL) { /* replace the oldest */
    row = &g->digests[0];
    for (int i = 1; i < DIGEST_ROWS; i++)
      if (g->digests[i].pos < row->pos) row = &g->digests[i];
    if (row->pos > pos) return;
    memset(row, 0, sizeof(*row));
    row->pos = pos;
  }
  for (uint32_t i = 0; i < row->n; i++)
    if (!strcmp(row->ids[i], id)) {
      /* Our own digest first came to us as history (a delta replayed the
       * report of an earlier process of ours): this process's replaces it. */
      if (ours && !row->ours) {
        memcpy(row->d[i], d, SMR_DIGEST_LEN);
        row->ours = 1;
        check_divergence(g, row);
      }
      return;
    }
  if (row->n == SMR_MAX_MEMBERS) return;
  snprintf(row->ids[row->n], SMR_ID_MAX, "%s", id);
  memcpy(row->d[row->n], d, SMR_DIGEST_LEN);
  row->n++;
  row->ours |= ours;
  check_divergence(g, row);
}

/* A control message, at position pos, from member `from`. */
static void control(struct smr *g, uint64_t pos, const char *from,
                    const uint8_t *m, size_t len) {
  /* (A checkpoint it asks for is taken at this very position.) */
  if (len >= 2 && len <= SMR_ID_MAX && m[0] == CTL_LEAVE) {
    /* Asked through the group to leave: the named member goes. */
    if (len - 1 == strlen(g->self_id) &&
        !memcmp(m + 1, g->self_id, len - 1) && g->replaying == 0 &&
        !g->history) {
      glog(g, SMR_LOG_INFO, "asked to leave the group (by %s)", from);
      g->leave_due = 1;
    }
  } else if (len >= 3 && len <= SMR_ID_MAX + 1 && m[0] == CTL_RESTART) {
    /* (Not history a delta replays: a member rebuilt from nothing would
     * act again on the request that rebuilt its predecessor.) */
    if (g->replaying || g->history) return;
    char id[SMR_ID_MAX];
    memcpy(id, m + 2, len - 2);
    id[len - 2] = 0;
    if (strlen(id) != len - 2) return; /* not an id */
    restart_requested(g, pos, from, id, m[1]);
  } else if (len >= 3 && m[0] == CTL_RESTART_CANCEL) {
    if (g->replaying || g->history) return;
    const uint8_t *nul = memchr(m + 1, 0, len - 1 < SMR_ID_MAX ? len - 1
                                                                : SMR_ID_MAX);
    if (nul == NULL || nul == m + 1) return;
    char id[SMR_ID_MAX], why[160];
    memcpy(id, m + 1, (size_t)(nul - m));
    size_t wl = len - (size_t)(nul + 1 - m);
    if (wl >= sizeof(why)) wl = sizeof(why) - 1;
    memcpy(why, nul + 1, wl);
    why[wl] = 0;
    int i = going_find(g, id);
    if (i >= 0) going_remove(g, (uint32_t)i);
    note_refusal(g, id, pos, why);
  } else if (len >= 1 && m[0] == CTL_CHECKPOINT) {
    g->checkpoint_due = 1;
  } else if (len == 1 + 8 + (SMR_ID_MAX - 1) + SMR_DIGEST_LEN &&
             m[0] == CTL_DIGEST) {
    uint64_t at = 0;
    for (int i = 0; i < 8; i++) at |= (uint64_t)m[1 + i] << (8 * i);
    char id[SMR_ID_MAX];
    memcpy(id, m + 9, SMR_ID_MAX - 1);
    id[SMR_ID_MAX - 1] = 0;
    record_digest(g, at, id, m + 9 + SMR_ID_MAX - 1, 0);
    if (!strcmp(id, g->self_id) && !g->replaying) {
      if (at > g->own_digest_delivered) g->own_digest_delivered = at;
      /* The others have our report now: a divergence of ours found
       * before it got here can be acted on. */
      if (g->diverge_pos != 0 && at >= g->diverge_pos) want_rebuild(g);
    }
  }
}

static void deliver(struct smr *g, const struct smr_event *ev) {
  const struct smr_service_ops *svc = g->cfg.service;
  uint64_t pos = ev->u.deliver.pos;
  const uint8_t *d = ev->u.deliver.data;
  size_t len = ev->u.deliver.len;
  int rc;
  /* A message of a view (not history replayed by a delta, epoch 0) is
   * delivered only to a member that holds the state: a checkpoint it asks
   * for is taken here, at its position, even if the transfer completed in
   * this same batch of outputs (needs_state is refreshed only at its end;
   * a joiner asked to checkpoint then did so at another position, and the
   * digests never met). */
  if (ev->u.deliver.epoch != 0) g->needs_state = 0;
  g->history = ev->u.deliver.epoch == 0;
  smr_buf_reset(&g->reply);
  if (len >= 1 && d[0] == ENV_SERVICE) {
    rc = svc->apply(g->cfg.service_ctx, pos, d + 1, len - 1, &g->reply);
    if (rc < 0)
      glog(g, SMR_LOG_WARN, "service refused the request at %" PRIu64 ": %s",
           pos, strerror(-rc));
  } else if (len >= 1 && d[0] == ENV_CONTROL) {
    control(g, pos, ev->u.deliver.sender, d + 1, len - 1);
  } else {
    glog(g, SMR_LOG_WARN, "message at %" PRIu64 " has no envelope", pos);
  }
  rc = smr_store_delivered(g->store, pos, ev->u.deliver.hash, d, len);
  if (rc < 0) glog(g, SMR_LOG_ERROR, "log: %s", strerror(-rc));
  g->applied = pos;
  g->hash = ev->u.deliver.hash;
  if (g->cfg.checkpoint_every && pos % g->cfg.checkpoint_every == 0)
    g->checkpoint_due = 1;
  if (ev->u.deliver.own) {
    uint64_t t0 = 0;
    void *cookie = cookie_pop(&g->cookies, &t0);
    if (!is_control_cookie(g, cookie)) {
      uint64_t t1 = now_us();
      latency_record(g, t1 > t0 ? t1 - t0 : 0);
      if (g->cfg.on_reply != NULL)
        g->cfg.on_reply(g->cfg.ctx, cookie, g->reply.data, g->reply.len);
    }
  }
  /* Checkpoints happen exactly at their position, before the next
   * delivery changes the state. */
  if (g->checkpoint_due && !g->needs_state) take_checkpoint(g);
}

static void drain(struct smr *g) {
  const struct smr_service_ops *svc = g->cfg.service;
  struct smr_event ev;
  int rc;
  /* Handed over to the program for a restart: we are out of the group,
   * and nothing more is carried out (the state is what was checkpointed
   * or discarded). */
  if (g->restart_handed) return;
  while (smr_core_poll(g->core, &ev)) {
    switch (ev.type) {
    case SMR_EV_SEND:
      sync_store(g);
      rc = smr_net_send(g->net, ev.u.send.to->id, ev.u.send.to->addr,
                        ev.u.send.data, ev.u.send.len);
      if (rc < 0) { /* the core repairs lost frames */
        g->send_dropped++;
        smr_core_send_dropped(g->core, ev.u.send.to->id);
      }
      g->sent = 1;
      break;
    case SMR_EV_DELIVER:
      deliver(g, &ev);
      break;
    case SMR_EV_VIEW:
      on_view_event(g, &ev);
      break;
    case SMR_EV_WEDGED:
      log_wedged(g);
      break;
    case SMR_EV_QUORUM_LOST:
      glog(g, SMR_LOG_WARN, "view %" PRIu64 ": no majority reachable; "
           "not serving", g->view.epoch);
      standing_changed(g);
      break;
    case SMR_EV_EXCLUDED:
      if (g->restart_due) g->restart_excluded = 1; /* out anyway */
      else glog(g, SMR_LOG_WARN, "the group went on without us; rejoining");
      standing_changed(g);
      break;
    case SMR_EV_LEFT:
      glog(g, SMR_LOG_INFO, "left the group");
      standing_changed(g);
      break;
    case SMR_EV_RESTORE_BEGIN:
      glog(g, SMR_LOG_INFO, "receiving the state at position %" PRIu64,
           ev.u.restore.pos);
      svc->restore_begin(g->cfg.service_ctx);
      break;
    case SMR_EV_RESTORE_CHUNK:
      svc->restore_chunk(g->cfg.service_ctx, ev.u.restore.offset,
                         ev.u.restore.data, ev.u.restore.len);
      break;
    case SMR_EV_RESTORE_END:
      if (svc->restore_end(g->cfg.service_ctx) < 0)
        glog(g, SMR_LOG_ERROR, "the service refused the transferred state");
      g->applied = ev.u.restore.pos;
      g->hash = ev.u.restore.hash;
      smr_store_restored(g->store, g->applied, g->hash);
      g->unsynced = 1;
      g->checkpoint_due = 1; /* our log lacks the history before it */
      g->needs_state = 0;
      glog(g, SMR_LOG_INFO, "state received up to position %" PRIu64,
           g->applied);
      break;
    case SMR_EV_PERSIST_VIEW:
      if (g->cfg.durable) {
        smr_store_view(g->store, ev.u.view.view);
        g->unsynced = 1;
      }
      break;
    case SMR_EV_PERSIST_ACCEPTOR:
      if (g->cfg.durable) {
        smr_store_acceptor(g->store, ev.u.acceptor.epoch,
                           ev.u.acceptor.promised,
                           ev.u.acceptor.accepted_ballot,
                           ev.u.acceptor.has_accepted, ev.u.acceptor.accepted);
        g->unsynced = 1;
      }
      break;
    case SMR_EV_PERSIST_ENTRY:
      smr_store_entry(g->store, ev.u.entry.epoch, &ev.u.entry.e);
      g->unsynced = 1;
      break;
    case SMR_EV_XFER_BEGIN:
      log_xfer_begin(g, &ev);
      break;
    case SMR_EV_DROPPED: {
      void *cookie = cookie_pop(&g->cookies, NULL);
      if (cookie == &g->digest_cookie) g->digest_unsent = 1;
      else if (cookie == &g->cancel_cookie) g->cancel_unsent = 1;
      else if (cookie == &g->rebuild_cookie) g->rebuild_asked = 0;
      else if (!is_control_cookie(g, cookie) && g->cfg.on_dropped != NULL)
        g->cfg.on_dropped(g->cfg.ctx, cookie);
      break;
    }
    }
  }
  sync_store(g);
  /* A state transfer (snapshot or delta) may have just completed. */
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  g->needs_state = !cs.has_state;
  if (g->checkpoint_due && !g->needs_state) take_checkpoint(g);
  if (g->leave_due) {
    g->leave_due = 0;
    int lrc = smr_core_leave(g->core, now_ms());
    if (lrc == 0) {
      drain(g);
      return;
    }
    if (g->restart_due && !g->restart_handed) {
      /* Not in a view (recovering, joining): nothing to leave. */
      glog(g, SMR_LOG_INFO, "not in a view to leave (%s): restarting now",
           strerror(-lrc));
      restart_finish(g);
      return;
    }
  }
  if (g->restart_due && !g->restart_handed) {
    smr_core_status(g->core, &cs);
    if (cs.state == SMR_ST_LEFT || g->restart_excluded) {
      restart_finish(g);
      return;
    }
  }
  if (g->digest_unsent && !g->needs_state) {
    smr_core_status(g->core, &cs);
    if (cs.state == SMR_ST_NORMAL) report_digest(g, g->digest_pos, g->digest);
  }
  if (g->cancel_unsent) send_cancel(g);
  if (g->rebuild_wanted && !g->needs_state) {
    smr_core_status(g->core, &cs);
    if (cs.state == SMR_ST_NORMAL) try_rebuild(g);
  }
  /* The next timer. */
  uint64_t d = smr_core_next_deadline(g->core), now = now_ms();
  double after = d == UINT64_MAX ? 3600.0
                                 : (d > now ? (double)(d - now) / 1000.0 : 0);
  ev_timer_stop(g->loop, &g->timer);
  ev_timer_set(&g->timer, after, 0.);
  ev_timer_start(g->loop, &g->timer);
  /* Caught up (a state transfer or a replayed delta completed): the
   * member may serve now, so the program looks at its role again. */
  smr_core_status(g->core, &cs);
  if (cs.has_state && !g->had_state) {
    g->had_state = 1;
    standing_changed(g);
  }
  g->had_state = cs.has_state;
}

/* ------------------------------------------------------------------------
 * Inputs
 * --------------------------------------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smr *g = w->data;
  smr_core_tick(g->core, now_ms());
  drain(g);
}

static void on_kick(struct ev_loop *loop, ev_idle *w, int revents) {
  (void)revents;
  ev_idle_stop(loop, w);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
  (void)revents;
  struct smr *g = w->data;
  g->sent = 0;
  smr_core_flush(g->core, now_ms());
  drain(g);
  /* Frames queued now are written by the transport's own prepare watcher,
   * which may only have started during this phase: go round once more
   * instead of sleeping until the next timer. */
  if (g->sent) ev_idle_start(loop, &g->kick);
}

static void net_frame(void *ctx, const char *peer, const uint8_t *frame,
                      size_t len) {
  struct smr *g = ctx;
  (void)peer; /* the transport checked the frame names its peer */
  int rc = smr_core_recv(g->core, now_ms(), frame, len);
  if (rc < 0 && rc != -EPERM)
    glog(g, SMR_LOG_WARN, "refused a frame from %s: %s", peer, strerror(-rc));
  drain(g);
}

/* The core's question before it repairs a member: are frames for it
 * still waiting in our queue?  (None before the transport is open.) */
static size_t net_unsent(void *ctx, const char *id) {
  struct smr *g = ctx;
  return g->net != NULL ? smr_net_queued(g->net, id) : 0;
}

static void net_lost(void *ctx, const char *peer) {
  struct smr *g = ctx;
  smr_core_peer_lost(g->core, now_ms(), peer);
  drain(g);
}

static void net_log(void *ctx, const char *line) {
  /* Connections coming up are news; everything else is worth a warning. */
  int level = strncmp(line, "up ", 3) == 0 ? SMR_LOG_INFO : SMR_LOG_WARN;
  glog(ctx, level, "transport: %s", line);
}

static void store_log(void *ctx, int level, const char *line) {
  glog(ctx, level, "%s", line);
}

/* Recovery replays our log through the same envelope dispatch as live
 * deliveries (the replies go nowhere: their clients are gone). */
static void store_replay(void *ctx, uint64_t pos, const uint8_t *data,
                         size_t len) {
  struct smr *g = ctx;
  g->replaying = 1;
  if (len >= 1 && data[0] == ENV_SERVICE) {
    smr_buf_reset(&g->reply);
    g->cfg.service->apply(g->cfg.service_ctx, pos, data + 1, len - 1,
                          &g->reply);
  } else if (len >= 1 && data[0] == ENV_CONTROL) {
    control(g, pos, "", data + 1, len - 1);
    g->checkpoint_due = 0; /* that checkpoint was taken then */
  }
  g->replaying = 0;
}

/* The core's state-transfer source: our log and our service. */
static int src_log_read(void *ctx, uint64_t pos, struct smr_log_entry *e) {
  struct smr *g = ctx;
  return smr_store_log_read(g->store, pos, e);
}

/* The snapshot a donor sends is captured at the view boundary by a child
 * process (fork(): copy-on-write, so capturing costs the fork, not a
 * serialization of the whole state on the loop), which writes it into an
 * unnamed file in data_dir; the transfer waits (-EAGAIN) until the child
 * is done, then reads the file.  Without a child, the service's own
 * snapshot in this process, as before. */
struct fsnap {
  struct smr *g;
  int fd, pipe, pid;
  int done, failed;
  ev_io w;
  ev_timer deadline; /* a child that hangs is killed: the view changes and
                        the next boundary is captured anew (core.c) */
  void *mem; /* fallback: the service's snapshot handle */
};

static void on_fsnap_done(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct fsnap *f = w->data;
  ev_io_stop(loop, w);
  ev_timer_stop(loop, &f->deadline);
  uint8_t st[8];
  ssize_t n;
  do {
    n = read(f->pipe, st, sizeof(st));
  } while (n < 0 && errno == EINTR);
  close(f->pipe);
  f->pipe = -1;
  while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  f->pid = -1;
  f->done = 1;
  f->failed = n != (ssize_t)sizeof(st) || st[0] != 0;
  if (f->failed)
    glog(f->g, SMR_LOG_ERROR, "the snapshot for a state transfer could not "
         "be written (%s)", n == (ssize_t)sizeof(st) ? strerror(st[1])
                                                     : "its process died");
}

static void on_fsnap_deadline(struct ev_loop *loop, ev_timer *w,
                              int revents) {
  (void)loop;
  (void)revents;
  struct fsnap *f = w->data;
  glog(f->g, SMR_LOG_ERROR, "the snapshot for a state transfer is still "
       "being written after %.0f s: its process %d is killed", SNAP_DEADLINE_S,
       f->pid);
  if (f->pid > 0) kill(f->pid, SIGKILL); /* its pipe closes: on_fsnap_done */
}

static int src_snap_open(void *ctx, uint64_t pos, void **snap) {
  struct smr *g = ctx;
  const struct smr_service_ops *svc = g->cfg.service;
  if (!ALWAYS(pos == g->applied)) return -ESTALE;
  struct fsnap *f = calloc(1, sizeof(*f));
  if (f == NULL) return -ENOMEM;
  f->g = g;
  f->pid = f->pipe = -1;
  int p[2] = {-1, -1};
  f->fd = open(g->data_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (f->fd >= 0 && pipe2(p, O_CLOEXEC) == 0) {
    fflush(NULL);
    pid_t parent = getpid();
    f->pid = fork();
    if (f->pid == 0) {
      smr_store_child_init(parent, f->fd, p[1]);
      uint8_t st[8] = {0};
      void *h = NULL;
      int rc = svc->snapshot_open(g->cfg.service_ctx, &h);
      static uint8_t chunk[1 << 20];
      for (uint64_t off = 0; rc == 0;) {
        long n = svc->snapshot_read(g->cfg.service_ctx, h, off, chunk,
                                    sizeof(chunk));
        if (n <= 0) {
          rc = (int)n;
          break;
        }
        for (long w = 0; w < n && rc == 0;) {
          ssize_t k = write(f->fd, chunk + w, (size_t)(n - w));
          if (k < 0 && errno != EINTR) rc = -errno;
          if (k > 0) w += k;
        }
        off += (uint64_t)n;
        /* (Not written back as it goes, unlike a checkpoint: the file is
         * unnamed and read back at once; it need never reach the disk.) */
      }
      st[0] = rc < 0;
      st[1] = (uint8_t)(rc < 0 ? -rc : 0);
      (void)!write(p[1], st, sizeof(st));
      _exit(0);
    }
  }
  if (f->pid > 0) {
    close(p[1]);
    f->pipe = p[0];
    ev_io_init(&f->w, on_fsnap_done, f->pipe, EV_READ);
    f->w.data = f;
    ev_io_start(g->loop, &f->w);
    ev_timer_init(&f->deadline, on_fsnap_deadline, SNAP_DEADLINE_S, 0.);
    f->deadline.data = f;
    ev_timer_start(g->loop, &f->deadline);
    *snap = f;
    return 0;
  }
  /* No unnamed file, pipe or child: the service's own snapshot. */
  glog(g, SMR_LOG_WARN, "snapshot for a state transfer taken in-process "
       "(%s)", strerror(errno));
  if (p[0] >= 0) close(p[0]);
  if (p[1] >= 0) close(p[1]);
  if (f->fd >= 0) close(f->fd);
  f->fd = -1;
  int rc = svc->snapshot_open(g->cfg.service_ctx, &f->mem);
  if (rc < 0) {
    free(f);
    return rc;
  }
  *snap = f;
  return 0;
}

static long src_snap_read(void *ctx, void *snap, uint64_t off, void *buf,
                          size_t len) {
  struct smr *g = ctx;
  struct fsnap *f = snap;
  if (f->mem != NULL)
    return g->cfg.service->snapshot_read(g->cfg.service_ctx, f->mem, off,
                                         buf, len);
  if (!f->done) return -EAGAIN;
  if (f->failed) return -EIO;
  ssize_t n;
  do {
    n = pread(f->fd, buf, len, (off_t)off);
  } while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : (long)n;
}

static void src_snap_close(void *ctx, void *snap) {
  struct smr *g = ctx;
  struct fsnap *f = snap;
  if (f->mem != NULL) g->cfg.service->snapshot_close(g->cfg.service_ctx,
                                                     f->mem);
  if (f->pid > 0) {
    ev_io_stop(g->loop, &f->w);
    ev_timer_stop(g->loop, &f->deadline);
    kill(f->pid, SIGKILL);
    while (waitpid(f->pid, NULL, 0) < 0 && errno == EINTR) {
    }
  }
  if (f->pipe >= 0) close(f->pipe);
  if (f->fd >= 0) close(f->fd);
  free(f);
}

/* ------------------------------------------------------------------------
 * The public API
 * --------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static int open_error(char *err, size_t errlen, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

int smr_open(const struct smr_config *cfg, struct smr **out, char *err,
             size_t errlen) {
  *out = NULL;
  if (cfg->loop == NULL || cfg->service == NULL || cfg->group == NULL ||
      cfg->self_id == NULL || cfg->self_addr == NULL || cfg->data_dir == NULL)
    return open_error(err, errlen,
                      "loop, service, group, self id and address, and "
                      "data_dir are required");
  if (cfg->n_members == 0 || cfg->n_members > SMR_MAX_MEMBERS)
    return open_error(err, errlen, "need 1..%d members", SMR_MAX_MEMBERS);
  struct smr *g = calloc(1, sizeof(*g));
  if (g == NULL) return -ENOMEM;
  g->cfg = *cfg;
  g->loop = cfg->loop;
  if (g->cfg.checkpoint_every == 0) g->cfg.checkpoint_every = 100000;
  if (g->cfg.heartbeat_ms == 0) g->cfg.heartbeat_ms = 20;
  if (g->cfg.suspect_ms == 0) g->cfg.suspect_ms = 200;
  g->group = strdup(cfg->group);
  g->self_id = strdup(cfg->self_id);
  g->self_addr = strdup(cfg->self_addr);
  g->data_dir = strdup(cfg->data_dir);
  g->boot = calloc(cfg->n_members, sizeof(*g->boot));
  if (!g->group || !g->self_id || !g->self_addr || !g->data_dir || !g->boot) {
    smr_close(g);
    return -ENOMEM;
  }
  for (size_t i = 0; i < cfg->n_members; i++) {
    snprintf(g->boot[i].id, sizeof(g->boot[i].id), "%s", cfg->members[i].id);
    snprintf(g->boot[i].addr, sizeof(g->boot[i].addr), "%s",
             cfg->members[i].addr);
  }

  /* The disk first: it tells which process we are and what we had. */
  struct smr_store_config sc = {
      .dir = g->data_dir,
      .group = g->group,
      .durable = cfg->durable,
      /* Deltas for members that were away briefly; longer absences get
       * the snapshot.  Bounded, because compaction copies them. */
      .retain = 1000000,
      .retain_bytes = 64u << 20,
      .svc = cfg->service,
      .svc_ctx = cfg->service_ctx,
      .replay = store_replay,
      .ctx = g,
      .log = store_log,
  };
  struct smr_store_recovered rec;
  int rc = smr_store_open(&sc, &g->store, &rec, err, errlen);
  if (rc < 0) {
    smr_close(g);
    return rc;
  }
  g->incarnation = rec.incarnation;
  g->applied = rec.pos;
  g->hash = rec.hash;

  g->src = (struct smr_core_source){g, src_log_read, src_snap_open,
                                    src_snap_read, src_snap_close};
  struct smr_core_config cc;
  memset(&cc, 0, sizeof(cc));
  cc.group = g->group;
  snprintf(cc.self.id, sizeof(cc.self.id), "%s", g->self_id);
  snprintf(cc.self.addr, sizeof(cc.self.addr), "%s", g->self_addr);
  cc.self.incarnation = g->incarnation;
  cc.first_boot = rec.first_boot;
  cc.bootstrap = g->boot;
  cc.n_bootstrap = (uint32_t)cfg->n_members;
  cc.heartbeat_ms = g->cfg.heartbeat_ms;
  cc.suspect_ms = g->cfg.suspect_ms;
  cc.join_batch_ms = g->cfg.heartbeat_ms * 2;
  cc.max_batch_bytes = SMR_MAX_REQUEST;
  cc.relay = cfg->relay;
  cc.max_inflight = 100000;
  cc.max_pending = 100000;
  cc.max_pending_bytes = 32u << 20;
  cc.xfer_chunk = 256u << 10;
  cc.xfer_window = 8;
  cc.durable = cfg->durable;
  cc.source = &g->src;
  cc.unsent = net_unsent;
  cc.unsent_ctx = g;
  /* With durability, a restart carries on from its view; without, the
   * process rejoins with its checkpointed state and asks for the delta. */
  if (cfg->durable && rec.has_view) {
    cc.restore = &rec.p;
  } else {
    cc.state_pos = rec.pos;
    cc.state_hash = rec.hash;
  }
  rc = smr_core_create(&cc, &g->core, err, errlen);
  if (rc == -EINVAL && cc.restore != NULL) {
    /* The records do not fit together: like a corrupt file, they are not
     * trusted, and the member recovers from the group instead. */
    glog(g, SMR_LOG_ERROR, "%s/log.smr: %s: refused; rejoining the group",
         g->data_dir, err);
    /* The service state itself (checkpoint and replay) was checked: the
     * member asks for what follows it. */
    cc.restore = NULL;
    cc.state_pos = g->applied;
    cc.state_hash = g->hash;
    rc = smr_core_create(&cc, &g->core, err, errlen);
  }
  if (rc < 0) {
    smr_close(g);
    return rc;
  }

  struct smr_net_config nc = {
      .loop = g->loop,
      .self_id = g->self_id,
      .listen_addr = g->self_addr,
      .tls_ca = cfg->tls_ca,
      .tls_cert = cfg->tls_cert,
      .tls_key = cfg->tls_key,
      .insecure = cfg->insecure,
      .rdma = cfg->rdma,
      .rdma_fallback = cfg->rdma_fallback,
      .rdma_port = cfg->rdma_port,
      .rdma_busy_poll_us = cfg->rdma_busy_poll_us,
      .max_queue_bytes = 64u << 20,
      .reconnect_ms = 50,
      .ctx = g,
      .on_frame = net_frame,
      .on_peer_lost = net_lost,
      .on_writable = NULL,
      .log = net_log,
  };
  rc = smr_net_open(&nc, &g->net, err, errlen);
  if (rc < 0) {
    smr_close(g);
    return rc;
  }
  glog(g, SMR_LOG_INFO,
       "member %s of group %s, incarnation %" PRIu64 ", state at %" PRIu64
       "%s%s",
       g->self_id, g->group, g->incarnation, g->applied,
       rec.has_view ? ", recovering its view" : "",
       rec.corrupt ? " (local files were refused)" : "");

  /* After a refused file, what survived is written down at once. */
  if (rec.corrupt && g->applied > 0 &&
      (rc = smr_store_checkpoint(g->store, g->applied, g->hash)) < 0)
    glog(g, SMR_LOG_ERROR, "checkpoint at %" PRIu64 " failed: %s", g->applied,
         strerror(-rc));

  ev_timer_init(&g->timer, on_timer, 0., 0.);
  g->timer.data = g;
  ev_prepare_init(&g->prepare, on_prepare);
  g->prepare.data = g;
  /* Before the transport's own prepare watcher, which writes out what was
   * queued: the batch we close here must leave in this iteration. */
  ev_set_priority(&g->prepare, EV_MAXPRI);
  ev_idle_init(&g->kick, on_kick);
  g->kick.data = g;
  ev_prepare_start(g->loop, &g->prepare);
  smr_core_tick(g->core, now_ms());
  drain(g);
  *out = g;
  return 0;
}

void smr_close(struct smr *g) {
  if (g == NULL) return;
  if (g->loop != NULL) {
    ev_timer_stop(g->loop, &g->timer);
    ev_prepare_stop(g->loop, &g->prepare);
    ev_idle_stop(g->loop, &g->kick);
    for (int i = 0; i < CK_JOBS; i++)
      if (g->ck[i].used) {
        ev_io_stop(g->loop, &g->ck[i].w);
        smr_store_checkpoint_abort(g->store, &g->ck[i].job);
      }
  }
  smr_net_close(g->net);
  smr_core_destroy(g->core);
  smr_store_close(g->store);
  smr_buf_free(&g->reply);
  free(g->cookies.v);
  free(g->env);
  free(g->boot);
  free(g->group);
  free(g->self_id);
  free(g->self_addr);
  free(g->data_dir);
  free(g);
}

static int multicast(struct smr *g, uint8_t env, const void *data,
                     size_t len, void *cookie) {
  if (len + 1 > g->env_cap) {
    size_t c = g->env_cap ? g->env_cap : 4096;
    while (c < len + 1) c *= 2;
    uint8_t *nb = realloc(g->env, c);
    if (nb == NULL) return -ENOMEM;
    g->env = nb;
    g->env_cap = c;
  }
  g->env[0] = env;
  if (len) memcpy(g->env + 1, data, len);
  int rc = smr_core_submit(g->core, now_ms(), g->env, len + 1);
  if (rc < 0) return rc;
  if (cookie_push(&g->cookies, cookie) < 0) abort(); /* out of memory */
  return 0;
}

int smr_submit(struct smr *g, const void *req, size_t len, void *cookie) {
  return multicast(g, ENV_SERVICE, req, len, cookie);
}

int smr_checkpoint(struct smr *g) {
  uint8_t m = CTL_CHECKPOINT;
  return multicast(g, ENV_CONTROL, &m, 1, &g->control_cookie);
}

int smr_digests(struct smr *g, struct smr_digests *out) {
  memset(out, 0, sizeof(*out));
  /* The latest position that every member of the view reported. */
  const struct digest_row *best = NULL;
  for (int i = 0; i < DIGEST_ROWS; i++) {
    const struct digest_row *row = &g->digests[i];
    if (row->n == 0 || (best != NULL && row->pos <= best->pos)) continue;
    int all = g->view.n > 0;
    for (uint32_t k = 0; k < g->view.n && all; k++) {
      int found = 0;
      for (uint32_t j = 0; j < row->n; j++)
        if (!strcmp(row->ids[j], g->view.m[k].id)) found = 1;
      all = found;
    }
    if (all) best = row;
  }
  if (best == NULL) return -ENOENT;
  out->position = best->pos;
  out->n = best->n;
  out->agree = 1;
  for (uint32_t j = 0; j < best->n; j++) {
    snprintf(out->ids[j], sizeof(out->ids[j]), "%s", best->ids[j]);
    memcpy(out->digests[j], best->d[j], SMR_DIGEST_LEN);
    if (memcmp(best->d[j], best->d[0], SMR_DIGEST_LEN) != 0) out->agree = 0;
  }
  return 0;
}

int smr_ask_leave(struct smr *g, const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= SMR_ID_MAX) return -EINVAL;
  int in = 0;
  for (uint32_t i = 0; i < g->view.n; i++)
    if (!strcmp(g->view.m[i].id, id)) in = 1;
  if (!in) return -ENOENT;
  uint8_t m[SMR_ID_MAX];
  m[0] = CTL_LEAVE;
  memcpy(m + 1, id, n);
  return multicast(g, ENV_CONTROL, m, n + 1, &g->control_cookie);
}

int smr_ask_restart(struct smr *g, const char *id, unsigned flags) {
  size_t n = strlen(id);
  if (n == 0 || n >= SMR_ID_MAX || (flags & ~SMR_RESTART_REBUILD) != 0)
    return -EINVAL;
  int in = 0;
  for (uint32_t i = 0; i < g->view.n; i++)
    if (!strcmp(g->view.m[i].id, id)) in = 1;
  if (!in) return -ENOENT;
  char why[200];
  int rc = restart_allowed(g, id, why, sizeof(why));
  if (rc < 0) {
    glog(g, SMR_LOG_WARN, "restart of %s refused: %s", id, why);
    return rc;
  }
  uint8_t m[SMR_ID_MAX + 1];
  m[0] = CTL_RESTART;
  m[1] = (uint8_t)flags;
  memcpy(m + 2, id, n);
  return multicast(g, ENV_CONTROL, m, n + 2, &g->control_cookie);
}

int smr_leave(struct smr *g) {
  int rc = smr_core_leave(g->core, now_ms());
  if (rc == 0) drain(g);
  return rc;
}

uint64_t smr_epoch(struct smr *g) {
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  return cs.view->epoch;
}

enum smr_role smr_role(struct smr *g, int *quorum_lost) {
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  if (quorum_lost != NULL) *quorum_lost = cs.quorum_lost;
  /* A member still receiving its state does not serve, whatever its
   * rank: its service (and TCP-R's connection table) is not there yet. */
  if (!cs.has_state) return SMR_ROLE_NONE;
  if (cs.state == SMR_ST_NORMAL)
    return cs.rank == 0 ? SMR_ROLE_PRIMARY : SMR_ROLE_BACKUP;
  if (cs.state == SMR_ST_WEDGED) return SMR_ROLE_WEDGED;
  return SMR_ROLE_NONE;
}

uint64_t smr_quorum_silence(struct smr *g) {
  uint64_t heard = smr_core_quorum_heard(g->core), now = now_ms();
  if (heard == 0) return UINT64_MAX;
  return now > heard ? now - heard : 0;
}

void smr_status(struct smr *g, struct smr_status *st) {
  memset(st, 0, sizeof(*st));
  struct smr_core_status cs;
  smr_core_status(g->core, &cs);
  st->state = smr_core_state_name(cs.state);
  st->epoch = cs.view->epoch;
  st->quorum_lost = cs.quorum_lost;
  st->role = smr_role(g, NULL); /* none while the state is still coming */
  st->n = cs.view->n;
  st->rank = cs.rank;
  for (uint32_t i = 0; i < cs.view->n && i < 16; i++) {
    st->ids[i] = cs.view->m[i].id;
    st->addrs[i] = cs.view->m[i].addr;
    if (cs.suspects & (1u << i))
      st->member_state[i] = 2;
    else if ((cs.leaving_mask & (1u << i)) ||
             going_find(g, cs.view->m[i].id) >= 0)
      st->member_state[i] = 3;
    else if (cs.lacks_state & (1u << i)) /* not the view's flag: that one
                                           stays set after the transfer */
      st->member_state[i] = 1;
    st->member_incarnation[i] = cs.view->m[i].incarnation;
    st->member_delivered[i] = cs.m_delivered[i];
  }
  st->delivered = cs.delivered;
  st->xfer_rank = cs.xfer_rank;
  st->xfer_delta = cs.xfer_delta;
  st->xfer_acked = cs.xfer_acked;
  st->xfers_sent = cs.xfers_out;
  st->xfer_bytes_sent = cs.xfer_bytes_out;
  st->xfers_received = cs.xfers_in;
  st->xfer_bytes_received = cs.xfer_bytes_in;
  st->divergences_seen = g->divergences_seen;
  st->restarts_seen = g->restarts_seen;
  st->stable_lag = cs.received > cs.stable ? cs.received - cs.stable : 0;
  st->diverged = g->diverged;
  st->restarts_refused = g->restarts_refused;
  st->relayed = cs.relayed;
  st->order_repairs = cs.repairs;
  st->last_refusal = g->last_refusal;
  memcpy(st->latency_le, g->lat_le, sizeof(st->latency_le));
  st->latency_count = g->lat_count;
  st->latency_sum_us = g->lat_sum_us;
  st->incarnation = g->incarnation;
  st->applied = g->applied;
  st->stable = cs.stable;
  st->pending = cs.pending;
  st->views_installed = cs.views_installed;
  st->delivered_total = cs.delivered_total;
  st->suspicions = cs.suspicions;
  st->refused_frames = cs.refused;
  memcpy(st->digest, g->digest, SMR_DIGEST_LEN);
  st->digest_pos = g->digest_pos;
  struct smr_store_stats ss;
  smr_store_stats(g->store, &ss);
  st->checkpoint_pos = ss.checkpoint_pos;
  st->log_bytes = ss.log_bytes;
  st->fsyncs = ss.fsyncs;
  struct smr_net_stats ns;
  smr_net_stats(g->net, &ns);
  st->transport = g->cfg.rdma ? "rdma" : "tcp";
  st->peers_up = ns.peers_up;
  st->rdma_links = ns.rdma_links;
  st->rdma_bytes_out = ns.rdma_bytes_out;
  st->rdma_bytes_in = ns.rdma_bytes_in;
  st->rdma_sst_out = ns.rdma_sst_out;
  st->rdma_sst_in = ns.rdma_sst_in;
}
