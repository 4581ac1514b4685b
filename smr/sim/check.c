/* check.c -- the invariant checker (ARCHITECTURE.md, invariants 1-7).
 *
 * The checker watches the outputs of every core and keeps three canonical
 * tables, each defined by whoever gets there first and then enforced on
 * everyone else:
 *
 *   views[epoch]  the membership (ids and incarnations, in order) and the
 *                 start position and hash of every view ever installed;
 *   hist[pos]     the chain hash, payload id and service digest after the
 *                 message at each position of the group's history;
 *   pay[id]       every payload ever accepted by smr_core_submit(): its
 *                 length, checksum and the position it was delivered at.
 *
 * Cheap checks run on every event (a delivery, a view, the end of a
 * restore, the status of the core that just took an input); the only
 * expensive one, recomputing a service digest from scratch, is sampled.
 *
 *   1 view sequence   one membership per epoch (installed or persisted:
 *                     a persisted view is a decided one); a node's epochs
 *                     increase; a node only installs views that contain
 *                     it, at the rank it is told; no epoch is skipped.
 *   2 virtual sync.   a node that installs a view with its state has
 *                     delivered exactly up to the view's start (pos and
 *                     hash); deliveries of epoch e are those of the view
 *                     the node installed last.
 *   3 total order     positions are consecutive per node; the chain hash
 *                     is smr_chain_hash() of the previous one and the
 *                     payload; everyone agrees on every position; no
 *                     payload at two positions; only submitted payloads.
 *   4 uniform dur.    a view starts at or after everything delivered in
 *                     earlier epochs; nothing is delivered in epoch e past
 *                     the start of a later view; a restart from disk
 *                     resumes on the canonical history; after a total
 *                     crash nothing delivered before is lost.
 *   5 state transfer  a restored image is complete and consistent, and its
 *                     digest equals the canonical digest at its position;
 *                     every node's digest at a position is the same.
 *   6 primary part.   at most one membership per epoch, and every view has
 *                     a strict majority of the previous view's members (by
 *                     id; members that asked to leave count as agreeing).
 *   7 liveness        checked by world.c at the end of the run.
 *
 * The first violation ends the run; world.c prints it with the trace. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define UNDEF UINT64_MAX
#define GENESIS (UINT64_MAX - 1)

/* ------------------------------------------------------------------------
 * Failure reporting
 * ---------------------------------------------------------------------- */

const char *sim_inv_name(int inv) {
  switch (inv) {
  case INV_CONTRACT: return "core.h contract";
  case INV_VIEWS: return "same view sequence";
  case INV_VSYNC: return "virtual synchrony";
  case INV_ORDER: return "total order";
  case INV_DURABLE: return "uniform durability";
  case INV_XFER: return "state transfer";
  case INV_PRIMARY: return "primary partition";
  case INV_LIVENESS: return "liveness";
  case INV_DETERMINISM: return "determinism";
  }
  return "?";
}

void sim_fail(struct sim_world *w, int inv, const char *fmt, ...) {
  if (w->failed) return;
  w->failed = 1;
  w->fail_inv = inv;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->fail_msg, sizeof w->fail_msg, fmt, ap);
  va_end(ap);
  sim_trace(w, T_NOTE, -1, -1, 0xff, (uint32_t)inv, 0, 0, 0);
}

/* ------------------------------------------------------------------------
 * Tables
 * ---------------------------------------------------------------------- */

static void *grow(void *p, uint64_t *cap, uint64_t need, size_t elem) {
  uint64_t nc = *cap ? *cap : 256;
  while (nc <= need) nc *= 2;
  p = realloc(p, nc * elem);
  if (!p) abort();
  *cap = nc;
  return p;
}

static struct chk_view *view_slot(struct sim_world *w, uint64_t e) {
  if (e >= w->cap_views) {
    uint64_t old = w->cap_views;
    w->views = grow(w->views, &w->cap_views, e, sizeof *w->views);
    memset(w->views + old, 0, (w->cap_views - old) * sizeof *w->views);
  }
  return &w->views[e];
}

const struct chk_view *chk_get_view(const struct sim_world *w, uint64_t e) {
  if (e >= w->cap_views || !w->views[e].defined) return NULL;
  return &w->views[e];
}

static struct chk_pos *hist_slot(struct sim_world *w, uint64_t pos) {
  if (pos >= w->cap_hist) {
    uint64_t old = w->cap_hist;
    w->hist = grow(w->hist, &w->cap_hist, pos, sizeof *w->hist);
    for (uint64_t i = old; i < w->cap_hist; i++) w->hist[i].id = UNDEF;
  }
  return &w->hist[pos];
}

static const struct chk_pos *hist_get(const struct sim_world *w, uint64_t pos) {
  if (pos >= w->cap_hist || w->hist[pos].id == UNDEF) return NULL;
  return &w->hist[pos];
}

uint64_t chk_canonical_pos(const struct sim_world *w, uint64_t id) {
  return id < w->n_pay ? w->pay[id].pos : 0;
}

void chk_reset(struct sim_world *w) {
  for (uint64_t e = 0; e < w->cap_views && e <= w->max_epoch; e++)
    memset(&w->views[e], 0, sizeof w->views[e]);
  for (uint64_t p = 0; p < w->cap_hist && p <= w->hist_max + 1; p++)
    w->hist[p].id = UNDEF;
  w->max_epoch = 0;
  w->hist_max = 0;
  w->n_pay = 0;
  w->genesis_known = 0;
  w->genesis_hash = 0;
  w->tc_pending = 0;
  w->tc_epoch = w->tc_pos = 0;
  struct chk_pos *g = hist_slot(w, 0);
  struct sim_service empty;
  svc_reset(&empty);
  g->id = GENESIS;
  g->hash = 0;
  g->digest = svc_digest(&empty);
}

static uint64_t pay_chk(const uint8_t *d, size_t len) {
  return sim_hash(d, len, 0x9a71);
}

void chk_submitted(struct sim_world *w, uint64_t id, int node, const uint8_t *d,
                   size_t len, int probe) {
  if (id >= w->cap_pay)
    w->pay = grow(w->pay, &w->cap_pay, id, sizeof *w->pay);
  struct chk_payload *p = &w->pay[id];
  p->chk = pay_chk(d, len);
  p->pos = 0;
  p->len = (uint32_t)len;
  p->node = (uint16_t)node;
  p->probe = (uint16_t)probe;
  w->n_pay = id + 1;
}

/* ------------------------------------------------------------------------
 * Deliveries
 * ---------------------------------------------------------------------- */

#define ULL(x) ((unsigned long long)(x))

void chk_deliver(struct sim_world *w, struct sim_node *n,
                 const struct smr_event *ev) {
  const uint8_t *data = ev->u.deliver.data;
  size_t len = ev->u.deliver.len;
  uint64_t pos = ev->u.deliver.pos, hash = ev->u.deliver.hash;
  uint64_t epoch = ev->u.deliver.epoch;
  uint64_t id = UNDEF;
  w->checks++;

  if (!data || payload_parse(data, len, &id) != 0 || id >= w->n_pay ||
      w->pay[id].len != len || w->pay[id].chk != pay_chk(data, len)) {
    sim_fail(w, INV_ORDER,
             "%s delivered at pos %llu (epoch %llu) a %zu-byte message that "
             "nobody submitted (id %lld)",
             n->id, ULL(pos), ULL(epoch), len,
             id == UNDEF ? -1LL : (long long)id);
    return;
  }
  if (n->restoring) {
    sim_fail(w, INV_XFER, "%s delivered pos %llu in the middle of a restore",
             n->id, ULL(pos));
    return;
  }
  if (!n->has_state) {
    sim_fail(w, INV_VSYNC, "%s delivered pos %llu (epoch %llu) without state",
             n->id, ULL(pos), ULL(epoch));
    return;
  }
  if (pos != n->svc.pos + 1) {
    sim_fail(w, INV_ORDER,
             "%s delivered pos %llu (id %llu, epoch %llu) right after pos %llu",
             n->id, ULL(pos), ULL(id), ULL(epoch), ULL(n->svc.pos));
    return;
  }
  uint64_t expect = smr_chain_hash(n->svc.hash, pos, data, len);
  if (hash != expect) {
    sim_fail(w, INV_ORDER,
             "%s delivered pos %llu with chain hash %016llx, expected %016llx",
             n->id, ULL(pos), ULL(hash), ULL(expect));
    return;
  }

  /* The canonical history. */
  struct chk_pos *h = hist_slot(w, pos);
  int first = h->id == UNDEF;
  if (!first) {
    if (h->id != id || h->hash != hash) {
      sim_fail(w, INV_ORDER,
               "%s delivered id %llu (from %s) at pos %llu, but the history has "
               "id %llu (from %s) there",
               n->id, ULL(id), w->nodes[w->pay[id].node]->id, ULL(pos),
               ULL(h->id),
               h->id < w->n_pay ? w->nodes[w->pay[h->id].node]->id : "?");
      return;
    }
  } else {
    if (w->pay[id].pos) {
      sim_fail(w, INV_ORDER,
               "%s delivered id %llu at pos %llu, but it was already delivered "
               "at pos %llu (duplicate)",
               n->id, ULL(id), ULL(pos), ULL(w->pay[id].pos));
      return;
    }
    h->id = id;
    h->hash = hash;
    w->pay[id].pos = pos;
    if (pos > w->hist_max) w->hist_max = pos;
  }

  /* The epoch it was delivered in. */
  if (epoch != 0) {
    if (epoch != n->cur_epoch && epoch != n->own_epoch) {
      sim_fail(w, INV_VSYNC,
               "%s delivered pos %llu in epoch %llu, but its last view is %llu",
               n->id, ULL(pos), ULL(epoch), ULL(n->cur_epoch));
      return;
    }
    struct chk_view *cv = view_slot(w, epoch);
    if (cv->defined && pos <= cv->v.start_pos) {
      sim_fail(w, INV_VSYNC,
               "%s delivered pos %llu in epoch %llu, which starts at %llu",
               n->id, ULL(pos), ULL(epoch), ULL(cv->v.start_pos));
      return;
    }
    if (!cv->has_max || pos > cv->max_pos) {
      cv->has_max = 1;
      cv->max_pos = pos;
    }
    for (uint64_t e = epoch + 1; e <= w->max_epoch; e++) {
      const struct chk_view *nx = chk_get_view(w, e);
      if (!nx) continue;
      if (pos > nx->v.start_pos) {
        sim_fail(w, INV_DURABLE,
                 "%s delivered pos %llu in epoch %llu, past the start %llu of "
                 "the later view %llu",
                 n->id, ULL(pos), ULL(epoch), ULL(nx->v.start_pos), ULL(e));
        return;
      }
      break;
    }
    const char *sender = ev->u.deliver.sender;
    if (sender && node_by_id(w, sender) != (int)w->pay[id].node) {
      sim_fail(w, INV_ORDER, "%s delivered id %llu as sent by %s, but %s sent it",
               n->id, ULL(id), sender, w->nodes[w->pay[id].node]->id);
      return;
    }
  }

  /* Apply, and compare the state with whoever got here first. */
  svc_apply(&n->svc, data, len);
  n->svc.pos = pos;
  n->svc.hash = hash;
  uint64_t dg = svc_digest(&n->svc);
  if (first) {
    h->digest = dg;
  } else if (h->digest != dg) {
    sim_fail(w, INV_XFER,
             "%s's service digest at pos %llu is %016llx, but %016llx for the "
             "first node there (its state diverged earlier)",
             n->id, ULL(pos), ULL(dg), ULL(h->digest));
    return;
  }
  if ((w->delivers & 255) == 0 && svc_digest_full(&n->svc) != dg) {
    sim_fail(w, INV_CONTRACT, "simulator bug: incremental digest of %s is off",
             n->id);
    return;
  }
  ring_put(n, pos, hash, data, len);
  snaps_capture(w, n);
  n->delivers_seen++;
  w->delivers++;
}

/* ------------------------------------------------------------------------
 * Views
 * ---------------------------------------------------------------------- */

static int same_membership(const struct smr_wire_view *a,
                           const struct smr_wire_view *b) {
  if (a->n != b->n) return 0;
  for (uint32_t i = 0; i < a->n; i++)
    if (strcmp(a->m[i].id, b->m[i].id) ||
        a->m[i].incarnation != b->m[i].incarnation)
      return 0;
  return 1;
}

static int view_has_id(const struct smr_wire_view *v, const char *id) {
  for (uint32_t i = 0; i < v->n; i++)
    if (!strcmp(v->m[i].id, id)) return 1;
  return 0;
}

void chk_describe_view(const struct smr_wire_view *v, char *buf, size_t cap) {
  size_t o = 0;
  buf[0] = 0;
  for (uint32_t i = 0; i < v->n && o + 24 < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%s.%llu", i ? "," : "",
                          v->m[i].id, ULL(v->m[i].incarnation));
}

/* A new epoch: the first installer defines it.  Checks it against the
 * views and the deliveries before it (invariants 1, 4 and 6). */
static void define_view(struct sim_world *w, struct sim_node *n,
                        const struct smr_wire_view *v) {
  uint64_t e = v->epoch;
  char a[400], b[400];
  uint64_t prev = e - 1;
  while (prev > 0 && !chk_get_view(w, prev)) prev--;
  if (e > 1 && prev != e - 1) {
    sim_fail(w, INV_VIEWS, "%s installed epoch %llu, but epoch %llu was never "
                           "installed (the last one is %llu)",
             n->id, ULL(e), ULL(e - 1), ULL(prev));
    return;
  }
  /* Majority of the previous view (the bootstrap list before epoch 1). */
  struct smr_wire_view boot;
  const struct smr_wire_view *ref;
  if (prev == 0) {
    memset(&boot, 0, sizeof boot);
    boot.n = (uint32_t)w->n_boot;
    for (int i = 0; i < w->n_boot; i++)
      memcpy(boot.m[i].id, w->boot[i].id, SMR_ID_MAX);
    ref = &boot;
  } else {
    ref = &chk_get_view(w, prev)->v;
  }
  uint32_t kept = 0, leavers = 0;
  for (uint32_t i = 0; i < ref->n; i++) {
    if (view_has_id(v, ref->m[i].id)) {
      kept++;
    } else {
      int k = node_by_id(w, ref->m[i].id);
      /* The process in the view asked to leave (it may have restarted
       * since: the others honoured its request all the same). */
      if (k >= 0 && w->nodes[k]->leave_inc == ref->m[i].incarnation)
        leavers++;
    }
  }
  if (2 * (kept + leavers) <= ref->n) {
    chk_describe_view(v, a, sizeof a);
    chk_describe_view(ref, b, sizeof b);
    sim_fail(w, INV_PRIMARY,
             "%s installed epoch %llu [%s], which has only %u of the %u members "
             "of epoch %llu [%s] (%u left gracefully): a minority view",
             n->id, ULL(e), a, kept, ref->n, ULL(prev), b, leavers);
    return;
  }
  /* Uniform durability: nothing delivered before is cut off. */
  for (uint64_t x = 1; x < e && x < w->cap_views; x++) {
    const struct chk_view *cv = &w->views[x];
    if (cv->has_max && cv->max_pos > v->start_pos) {
      sim_fail(w, INV_DURABLE,
               "epoch %llu starts at pos %llu, but pos %llu was already "
               "delivered in epoch %llu",
               ULL(e), ULL(v->start_pos), ULL(cv->max_pos), ULL(x));
      return;
    }
  }
  if (prev > 0 && v->start_pos < ref->start_pos) {
    sim_fail(w, INV_DURABLE, "epoch %llu starts at pos %llu, before epoch %llu "
                             "(pos %llu)",
             ULL(e), ULL(v->start_pos), ULL(prev), ULL(ref->start_pos));
    return;
  }
  const struct chk_pos *h = hist_get(w, v->start_pos);
  if (h && (v->start_pos > 0 || w->genesis_known) && h->hash != v->start_hash) {
    sim_fail(w, INV_DURABLE,
             "epoch %llu starts at pos %llu with hash %016llx, but the history "
             "has %016llx there",
             ULL(e), ULL(v->start_pos), ULL(v->start_hash), ULL(h->hash));
    return;
  }
  if (w->tc_pending && e > w->tc_epoch) {
    w->tc_pending = 0;
    if (v->start_pos < w->tc_pos) {
      sim_fail(w, INV_DURABLE,
               "after the total crash the group restarted at epoch %llu from pos "
               "%llu, but pos %llu had been delivered before the crash",
               ULL(e), ULL(v->start_pos), ULL(w->tc_pos));
      return;
    }
  }
  struct chk_view *cv = view_slot(w, e);
  cv->defined = 1;
  cv->v = *v;
  if (e > w->max_epoch) w->max_epoch = e;
  w->views_installed++;
}

void chk_view(struct sim_world *w, struct sim_node *n,
              const struct smr_event *ev) {
  const struct smr_wire_view *v = ev->u.view.view;
  uint32_t rank = ev->u.view.rank;
  int needs = ev->u.view.needs_state;
  w->checks++;
  if (!v || v->n == 0 || v->n > SMR_MAX_MEMBERS || rank >= v->n) {
    sim_fail(w, INV_VIEWS, "%s installed a malformed view (n=%u rank=%u)",
             n->id, v ? v->n : 0, rank);
    return;
  }
  if (strcmp(v->m[rank].id, n->id) || v->m[rank].incarnation != n->inc) {
    sim_fail(w, INV_VIEWS,
             "%s.%llu installed epoch %llu at rank %u, which is %s.%llu",
             n->id, ULL(n->inc), ULL(v->epoch), rank, v->m[rank].id,
             ULL(v->m[rank].incarnation));
    return;
  }
  for (uint32_t i = 0; i < v->n; i++)
    for (uint32_t j = i + 1; j < v->n; j++)
      if (!strcmp(v->m[i].id, v->m[j].id)) {
        sim_fail(w, INV_VIEWS, "epoch %llu lists %s twice", ULL(v->epoch),
                 v->m[i].id);
        return;
      }
  if (v->epoch == 0 || v->epoch <= n->cur_epoch) {
    sim_fail(w, INV_VIEWS, "%s installed epoch %llu after epoch %llu", n->id,
             ULL(v->epoch), ULL(n->cur_epoch));
    return;
  }
  struct chk_view *cv = view_slot(w, v->epoch);
  if (cv->defined) {
    char a[400], b[400];
    if (!same_membership(&cv->v, v)) {
      chk_describe_view(v, a, sizeof a);
      chk_describe_view(&cv->v, b, sizeof b);
      sim_fail(w, INV_PRIMARY,
               "two memberships for epoch %llu: %s installed [%s], but it was "
               "[%s]",
               ULL(v->epoch), n->id, a, b);
      return;
    }
    if (cv->v.start_pos != v->start_pos || cv->v.start_hash != v->start_hash) {
      sim_fail(w, INV_VIEWS,
               "%s installed epoch %llu starting at pos %llu hash %016llx, but "
               "it starts at pos %llu hash %016llx",
               n->id, ULL(v->epoch), ULL(v->start_pos), ULL(v->start_hash),
               ULL(cv->v.start_pos), ULL(cv->v.start_hash));
      return;
    }
  } else {
    define_view(w, n, v);
    if (w->failed) return;
  }
  if (!needs) {
    if (!n->has_state || n->restoring) {
      sim_fail(w, INV_VSYNC,
               "%s installed epoch %llu without needs_state, but has no state",
               n->id, ULL(v->epoch));
      return;
    }
    if (v->start_pos == 0 && n->svc.pos == 0) {
      /* The hash of the empty history is the core's choice. */
      if (!w->genesis_known) {
        w->genesis_known = 1;
        w->genesis_hash = v->start_hash;
        w->hist[0].hash = v->start_hash;
      }
      n->svc.hash = w->genesis_hash;
    }
    if (n->svc.pos != v->start_pos || n->svc.hash != v->start_hash) {
      sim_fail(w, INV_VSYNC,
               "%s installed epoch %llu (start pos %llu hash %016llx) having "
               "delivered up to pos %llu hash %016llx",
               n->id, ULL(v->epoch), ULL(v->start_pos), ULL(v->start_hash),
               ULL(n->svc.pos), ULL(n->svc.hash));
      return;
    }
  }
  n->cur_epoch = v->epoch;
  n->cur_rank = rank;
  n->needs_state = needs;
  n->amnesiac = 0;
  n->views_seen++;
}

/* A view a node persists is a decided view, installed or not (a restarted
 * member may adopt a decided view its dead predecessor never installed, and
 * recover in it): it takes part in the one-membership-per-epoch check and
 * defines the epoch if nobody has installed it yet. */
void chk_persisted_view(struct sim_world *w, struct sim_node *n,
                        const struct smr_wire_view *v) {
  w->checks++;
  if (v->n == 0 || v->n > SMR_MAX_MEMBERS || !view_has_id(v, n->id)) {
    sim_fail(w, INV_VIEWS, "%s persisted a malformed view (epoch %llu, n=%u)",
             n->id, ULL(v->epoch), v->n);
    return;
  }
  /* Epoch 0 is the configured member list, persisted by a durable member
   * before the group forms so that its votes survive a restart. */
  if (v->epoch == 0) return;
  if (v->epoch > n->own_epoch) n->own_epoch = v->epoch;
  const struct chk_view *cv = chk_get_view(w, v->epoch);
  if (!cv) {
    define_view(w, n, v);
    return;
  }
  if (!same_membership(&cv->v, v) || cv->v.start_pos != v->start_pos ||
      cv->v.start_hash != v->start_hash) {
    char a[400], b[400];
    chk_describe_view(v, a, sizeof a);
    chk_describe_view(&cv->v, b, sizeof b);
    sim_fail(w, INV_PRIMARY,
             "two views for epoch %llu: %s persisted [%s] from pos %llu, but it "
             "was [%s] from pos %llu",
             ULL(v->epoch), n->id, a, ULL(v->start_pos), b,
             ULL(cv->v.start_pos));
  }
}

/* ------------------------------------------------------------------------
 * State transfer and restarts
 * ---------------------------------------------------------------------- */

void chk_restore_end(struct sim_world *w, struct sim_node *n, uint64_t pos,
                     uint64_t hash) {
  w->checks++;
  if (n->restoring) {
    struct sim_service s;
    if (svc_from_image(&s, n->img, n->img_got) != 0) {
      sim_fail(w, INV_XFER,
               "%s's restore to pos %llu ended with a bad image (%u of %u "
               "bytes received)",
               n->id, ULL(pos), n->img_got, (unsigned)SIM_IMG_SIZE);
      return;
    }
    if (s.pos != pos || s.count != pos) {
      sim_fail(w, INV_XFER,
               "%s's restore ended at pos %llu with an image of pos %llu", n->id,
               ULL(pos), ULL(s.pos));
      return;
    }
    s.hash = hash;
    n->svc = s;
    ring_reset(n);
  } else if (!n->has_state || n->svc.pos != pos || n->svc.hash != hash) {
    sim_fail(w, INV_XFER,
             "%s's restore ended (no image) at pos %llu hash %016llx, but its "
             "service is at pos %llu hash %016llx",
             n->id, ULL(pos), ULL(hash), ULL(n->svc.pos), ULL(n->svc.hash));
    return;
  }
  n->restoring = 0;
  n->has_state = 1;
  const struct chk_pos *h = hist_get(w, pos);
  if (!h) {
    sim_fail(w, INV_XFER,
             "%s restored to pos %llu, which nobody delivered (history ends at "
             "%llu)",
             n->id, ULL(pos), ULL(w->hist_max));
    return;
  }
  if ((pos > 0 || w->genesis_known) && h->hash != hash) {
    sim_fail(w, INV_XFER,
             "%s restored to pos %llu with hash %016llx, but the history has "
             "%016llx",
             n->id, ULL(pos), ULL(hash), ULL(h->hash));
    return;
  }
  uint64_t dg = svc_digest(&n->svc);
  if (h->digest != dg) {
    sim_fail(w, INV_XFER,
             "%s's state after restore to pos %llu has digest %016llx, but the "
             "members' digest there is %016llx",
             n->id, ULL(pos), ULL(dg), ULL(h->digest));
    return;
  }
  snaps_capture(w, n);
}

void chk_restarted(struct sim_world *w, struct sim_node *n) {
  w->checks++;
  if (!n->has_state || n->svc.pos == 0) return;
  const struct chk_pos *h = hist_get(w, n->svc.pos);
  if (!h || h->hash != n->svc.hash || h->digest != svc_digest(&n->svc))
    sim_fail(w, INV_DURABLE,
             "%s restarted from disk at pos %llu, off the canonical history",
             n->id, ULL(n->svc.pos));
}

void chk_total_crash(struct sim_world *w) {
  w->tc_pending = 1;
  w->tc_epoch = w->max_epoch;
  w->tc_pos = w->hist_max;
}

/* ------------------------------------------------------------------------
 * The core's own view of itself
 * ---------------------------------------------------------------------- */

void chk_status(struct sim_world *w, struct sim_node *n) {
  struct smr_core_status st;
  w->checks++;
  smr_core_status(n->core, &st);
  if (st.state < SMR_ST_RECOVERING || st.state > SMR_ST_LEFT || !st.view) {
    sim_fail(w, INV_CONTRACT, "%s reports state %d%s", n->id, (int)st.state,
             st.view ? "" : " and no view");
    return;
  }
  if (n->views_seen && st.view->epoch != n->cur_epoch) {
    sim_fail(w, INV_CONTRACT, "%s reports epoch %llu, but its last VIEW was %llu",
             n->id, ULL(st.view->epoch), ULL(n->cur_epoch));
    return;
  }
  if (st.state == SMR_ST_NORMAL || st.state == SMR_ST_WEDGED) {
    if (st.view->epoch == 0 || st.rank >= st.view->n ||
        strcmp(st.view->m[st.rank].id, n->id)) {
      sim_fail(w, INV_CONTRACT, "%s is %s in epoch %llu at rank %u, not its own",
               n->id, smr_core_state_name(st.state), ULL(st.view->epoch),
               st.rank);
      return;
    }
  }
  if (st.has_state && n->has_state && !n->restoring &&
      (st.pos != n->svc.pos || st.hash != n->svc.hash)) {
    sim_fail(w, INV_CONTRACT,
             "%s reports pos %llu hash %016llx, but delivered up to pos %llu "
             "hash %016llx",
             n->id, ULL(st.pos), ULL(st.hash), ULL(n->svc.pos),
             ULL(n->svc.hash));
    return;
  }
  if (st.state == SMR_ST_LEFT && !n->left) {
    sim_fail(w, INV_CONTRACT, "%s reports LEFT without a LEFT event", n->id);
    return;
  }
}
