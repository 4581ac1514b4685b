/* net.c -- the simulated network: directed FIFO links between nodes.
 *
 * Every ordered pair of nodes has one link, a FIFO queue of frames.  A
 * frame sent at time t is ready at max(t + delay, ready time of the frame
 * before it on that link), so a link never reorders, while frames on
 * different links interleave by (ready time, global send sequence) -- a
 * total, deterministic order.  The delay is a per-seed floor plus an
 * exponential draw, plus a large extra while either end is "slow".
 *
 * In the liveness phase the network turns healthy (1-2 ms, no faults).
 *
 * Faults act at delivery time, as in TigerBeetle's packet simulator:
 *   - a frame whose destination is down, or came back as a new
 *     incarnation since the frame was sent, is dropped (the connection it
 *     travelled on is gone); frames already sent by a node that then
 *     crashes are still delivered (kernel buffers drain);
 *   - a frame on a cut link is dropped; when the cut heals, both ends of
 *     every link that dropped something get smr_core_peer_lost(), as a
 *     transport that reconnects after losing bytes would report;
 *   - a clogged link holds its frames (delay, not loss) until unclogged.
 *
 * Frames come from per-size-class free lists, so steady-state sending does
 * not call malloc. */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ------------------------------------------------------------------------
 * Frame pool
 * ---------------------------------------------------------------------- */

#define POOL_CLASSES 26 /* 64 B .. 2 GB */

static struct sim_frame *pool[POOL_CLASSES];

static struct sim_frame *frame_alloc(size_t len) {
  int cls = 0;
  while (((size_t)64 << cls) < len) cls++;
  if (cls >= POOL_CLASSES) abort();
  struct sim_frame *f = pool[cls];
  if (f) {
    pool[cls] = f->next;
  } else {
    f = malloc(sizeof *f + ((size_t)64 << cls));
    if (!f) abort();
  }
  f->cls = (uint8_t)cls;
  f->next = NULL;
  return f;
}

static void frame_free(struct sim_frame *f) {
  f->next = pool[f->cls];
  pool[f->cls] = f;
}

/* ------------------------------------------------------------------------
 * Links
 * ---------------------------------------------------------------------- */

int node_by_id(const struct sim_world *w, const char *id) {
  if (id[0] != 'n' || id[1] < '1' || id[1] > '9') return -1;
  int k = id[1] - '0';
  if (id[2]) {
    if (id[2] < '0' || id[2] > '9' || id[3]) return -1;
    k = k * 10 + (id[2] - '0');
  }
  if (k < 1 || k > w->n_nodes) return -1;
  return k - 1;
}

void net_free_all(struct sim_world *w) {
  for (int i = 0; i < SIM_MAX_NODES; i++)
    for (int j = 0; j < SIM_MAX_NODES; j++) {
      struct sim_link *l = &w->link[i][j];
      while (l->head) {
        struct sim_frame *f = l->head;
        l->head = f->next;
        frame_free(f);
      }
      l->tail = NULL;
      l->qlen = 0;
    }
}

void net_reset(struct sim_world *w) {
  net_free_all(w);
  memset(w->link, 0, sizeof w->link);
  w->frame_seq = 0;
  w->part_mask = w->clog_mask = w->slow_mask = 0;
  w->part_active = w->clog_active = w->clog_left = 0;
  memset(w->slow_extra, 0, sizeof w->slow_extra);
}

static uint32_t frame_crc(const uint8_t *d, size_t len) {
  if (len < 12) return 0;
  return (uint32_t)d[8] | (uint32_t)d[9] << 8 | (uint32_t)d[10] << 16 |
         (uint32_t)d[11] << 24;
}

void net_send(struct sim_world *w, int src, const struct smr_member *to,
              const uint8_t *data, size_t len) {
  int dst = node_by_id(w, to->id);
  int type = len > 3 ? data[3] : 0;
  if (dst < 0 || dst == src) {
    sim_fail(w, INV_CONTRACT, "%s sent a %s frame to %s '%s'",
             w->nodes[src]->id, smr_msg_type_name(type),
             dst < 0 ? "unknown member" : "itself", to->id);
    return;
  }
  if (len < 12 || len > (size_t)SMR_FRAME_MAX + SMR_WIRE_HDR_FIXED + SMR_ID_MAX) {
    sim_fail(w, INV_CONTRACT, "%s sent a frame of %zu bytes",
             w->nodes[src]->id, len);
    return;
  }
  w->frames_sent++;
  sim_trace(w, T_SEND, src, dst, type, (uint32_t)len, frame_crc(data, len), 0,
            0);
  struct sim_link *l = &w->link[src][dst];
  struct sim_node *d = w->nodes[dst];
  if (d->life != L_UP) {
    /* No process there: the connection attempt fails. */
    l->dropped_dead = 1;
    w->frames_dropped++;
    return;
  }
  uint64_t delay;
  if (w->liveness) {
    /* A healthy network: the liveness phase judges the protocol, not the
     * tail of the delay distribution. */
    delay = 1 + sim_below(&w->r_net, 2);
  } else {
    delay = w->p.net_floor_ms + sim_exp(&w->r_net, w->p.net_mean_ms);
    if (w->slow_mask & (1u << src)) delay += w->slow_extra[src];
    if (w->slow_mask & (1u << dst)) delay += w->slow_extra[dst];
  }
  uint64_t ready = w->now + delay;
  if (ready < l->last_ready) ready = l->last_ready;
  l->last_ready = ready;

  struct sim_frame *f = frame_alloc(len);
  f->ready = ready;
  f->seq = ++w->frame_seq;
  f->dst_inc = d->inc;
  f->len = (uint32_t)len;
  memcpy(f->data, data, len);
  if (l->tail)
    l->tail->next = f;
  else
    l->head = f;
  l->tail = f;
  l->qlen++;
}

int net_next(struct sim_world *w, uint64_t *at, uint64_t *seq, int *src,
             int *dst) {
  int found = 0;
  uint64_t bt = UINT64_MAX, bs = UINT64_MAX;
  int n = w->n_nodes;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      const struct sim_link *l = &w->link[i][j];
      const struct sim_frame *f = l->head;
      if (!f || l->clogged) continue;
      if (f->ready < bt || (f->ready == bt && f->seq < bs)) {
        bt = f->ready;
        bs = f->seq;
        *src = i;
        *dst = j;
        found = 1;
      }
    }
  if (found) {
    *at = bt < w->now ? w->now : bt;
    *seq = bs;
  }
  return found;
}

void net_deliver(struct sim_world *w, int src, int dst) {
  struct sim_link *l = &w->link[src][dst];
  struct sim_frame *f = l->head;
  l->head = f->next;
  if (!l->head) l->tail = NULL;
  l->qlen--;
  struct sim_node *d = w->nodes[dst];
  int type = f->len > 3 ? f->data[3] : 0;
  if (l->cut) {
    l->dropped_cut = 1;
    w->frames_dropped++;
    sim_trace(w, T_DROP, dst, src, type, 1, 0, 0, 0);
  } else if (d->life != L_UP || d->inc != f->dst_inc) {
    l->dropped_dead = 1;
    w->frames_dropped++;
    sim_trace(w, T_DROP, dst, src, type, d->life != L_UP ? 2 : 3, 0, 0, 0);
  } else {
    sim_trace(w, T_RECV, dst, src, type, f->len, frame_crc(f->data, f->len), 0,
              0);
    int rc = smr_core_recv(d->core, w->now, f->data, f->len);
    if (rc != 0)
      sim_fail(w, INV_CONTRACT,
               "%s refused a %s frame from %s (%u bytes): error %d", d->id,
               smr_msg_type_name(type), w->nodes[src]->id, f->len, rc);
    else
      node_input_done(w, d);
  }
  frame_free(f);
}

/* ------------------------------------------------------------------------
 * Partitions and clogs
 * ---------------------------------------------------------------------- */

/* Cuts the links between `side` and the rest: dir 0 both ways, 1 only
 * side->rest, 2 only rest->side. */
void net_cut(struct sim_world *w, uint32_t side, int dir) {
  int n = w->n_nodes;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      int si = !!(side & (1u << i)), sj = !!(side & (1u << j));
      if (si == sj) continue;
      if (dir == 0 || (dir == 1 && si) || (dir == 2 && sj))
        w->link[i][j].cut = 1;
    }
  w->part_mask = side;
  w->part_active = 1;
  sim_trace(w, T_CUT, -1, -1, dir, 0, side, 0, 0);
}

void net_heal(struct sim_world *w) {
  int n = w->n_nodes;
  uint32_t notify[SIM_MAX_NODES] = {0};
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      struct sim_link *l = &w->link[i][j];
      l->cut = 0;
      if (l->dropped_cut) {
        notify[i] |= 1u << j;
        notify[j] |= 1u << i;
        l->dropped_cut = 0;
      }
    }
  w->part_mask = 0;
  w->part_active = 0;
  sim_trace(w, T_HEAL, -1, -1, 0, 0, 0, 0, 0);
  for (int i = 0; i < n && !w->failed; i++) {
    struct sim_node *a = w->nodes[i];
    for (int j = 0; j < n && !w->failed; j++) {
      if (!(notify[i] & (1u << j)) || a->life != L_UP) continue;
      sim_trace(w, T_PEERLOST, i, j, 0, 0, 0, 0, 0);
      smr_core_peer_lost(a->core, w->now, w->nodes[j]->id);
      node_input_done(w, a);
    }
  }
}

void net_clog(struct sim_world *w, int src, int dst, int on) {
  w->link[src][dst].clogged = (uint8_t)on;
  sim_trace(w, on ? T_CLOG : T_UNCLOG, src, dst, 0, 0, 0, 0, 0);
}
