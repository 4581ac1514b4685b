/* world.c -- nodes, disks, the event loop, faults, workload and phases.
 *
 * One step is one event: a frame reaching the head of its link, a node's
 * timer (smr_core_next_deadline), a scheduled fault action (a heal, one
 * step of a swizzle clog, ...), a random fault, or a workload submission.
 * Time jumps straight to the earliest event; ties break in a fixed order
 * (actions, frames by send sequence, timers by node, faults, workload).
 *
 * Feeding a core: after every input (recv, tick, submit, leave, peer_lost)
 * the node calls smr_core_flush() and drains smr_core_poll(), carrying out
 * each output at once: frames go on their links, deliveries update the
 * service and the checker, PERSIST_* records go to the node's disk, restore
 * records rebuild the service.  Because everything polled is done before
 * the next step, a PERSIST record is always durable before any frame
 * polled after it leaves (the rule core.h states).
 *
 * A node's disk holds the last persisted view, acceptor record and the
 * received entries of the view's epoch, plus the service state as of the
 * node's delivered position (taken when it crashes, which is the same as
 * checkpointing at every delivery) and its retained log.  A restart with
 * durability on hands all of it back through cfg.restore; with durability
 * off the disk is wiped and the node starts as a stranger.
 *
 * Faults follow swarm testing: each seed enables a random subset of the
 * allowed kinds with random weights and intensities.  During the safety
 * phase (the first 80% of the steps) a fault is only injected if a strict
 * majority of the latest view stays up, connected, fast and not leaving,
 * so that progress stays possible; the rare total crash (durable runs
 * only) is the exception, followed by a restart of everyone from disk.
 *
 * The liveness phase then heals every link, stops the faults and the
 * workload, restarts the crashed nodes, and requires, within a bound of
 * 60 suspicion timeouts of simulated time, that every running node is
 * NORMAL in one common view made of exactly the running nodes, and that a
 * probe submitted in that view has been delivered by all of them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

struct sim_world *sim_w;

const char *const sim_fault_name[F_NKINDS] = {
    "crash", "restart", "partition", "join", "leave", "slow", "clog", "total"};

#define ULL(x) ((unsigned long long)(x))
#define T0 SIM_T0

/* ------------------------------------------------------------------------
 * Setup
 * ---------------------------------------------------------------------- */

struct sim_world *world_new(const struct sim_opts *o) {
  struct sim_world *w = calloc(1, sizeof *w);
  if (!w) abort();
  w->opts = o;
  w->n_boot = o->members;
  w->n_nodes = o->members + SIM_SPARES;
  if (w->n_nodes > SIM_MAX_NODES) w->n_nodes = SIM_MAX_NODES;
  w->trace = calloc(SIM_TRACE_RING, sizeof *w->trace);
  if (!w->trace) abort();
  for (int i = 0; i < w->n_nodes; i++) {
    struct sim_node *n = calloc(1, sizeof *n);
    if (!n) abort();
    n->idx = i;
    snprintf(n->id, sizeof n->id, "n%d", i + 1);
    snprintf(n->addr, sizeof n->addr, "10.77.0.%d:7000", i + 1);
    n->bootstrap = i < w->n_boot;
    source_init(w, n);
    w->nodes[i] = n;
  }
  for (int i = 0; i < w->n_boot; i++) {
    memset(&w->boot[i], 0, sizeof w->boot[i]);
    memcpy(w->boot[i].id, w->nodes[i]->id, sizeof w->nodes[i]->id);
    memcpy(w->boot[i].addr, w->nodes[i]->addr, sizeof w->nodes[i]->addr);
  }
  sim_w = w;
  return w;
}

static void disk_wipe(struct sim_disk *d) {
  d->has_view = 0;
  d->has_acceptor = 0;
  d->has_accepted = 0;
  d->n_ents = 0;
  d->arena_len = 0;
  d->has_svc = 0;
}

void world_free(struct sim_world *w) {
  for (int i = 0; i < w->n_nodes; i++) {
    struct sim_node *n = w->nodes[i];
    if (n->core) smr_core_destroy(n->core);
    free(n->disk.ents);
    free(n->disk.arena);
    free(n);
  }
  net_free_all(w);
  free(w->views);
  free(w->hist);
  free(w->pay);
  free(w->rs_ents);
  free(w->trace);
  if (sim_w == w) sim_w = NULL;
  free(w);
}

static void choose_params(struct sim_world *w) {
  struct sim_params *p = &w->p;
  struct sim_rng *r = &w->r_cfg;
  const struct sim_opts *o = w->opts;
  static const uint32_t batches[] = {512, 1024, 2048, 4096};
  static const uint32_t chunks[] = {128, 256, 256, 512};
  memset(p, 0, sizeof *p);
  p->heartbeat_ms = (uint32_t)sim_range(r, 5, 15);
  p->suspect_ms = p->heartbeat_ms * (uint32_t)sim_range(r, 6, 12);
  p->join_batch_ms = (uint32_t)sim_range(r, 5, 40);
  p->max_batch = batches[sim_below(r, 4)];
  p->max_inflight = (uint32_t)sim_range(r, 4, 64);
  p->max_pending = (uint32_t)sim_range(r, 8, 128);
  p->xfer_chunk = chunks[sim_below(r, 4)];
  p->xfer_window = (uint32_t)sim_range(r, 1, 8);
  p->durable = o->durable == DUR_MIXED ? (int)sim_below(r, 2) : o->durable;
  p->net_floor_ms = (uint32_t)sim_range(r, 0, 3);
  p->net_mean_ms = (uint32_t)sim_range(r, 1, 8);

  /* Swarm: a random subset of the enabled kinds. */
  unsigned allowed = o->faults;
  if (!p->durable) allowed &= ~(1u << F_TOTAL);
  unsigned k = 0;
  for (int i = 0; i < F_NKINDS; i++)
    if ((allowed & (1u << i)) && sim_chance(r, 60)) k |= 1u << i;
  if ((k & (1u << F_CRASH)) && (allowed & (1u << F_RESTART)) &&
      sim_chance(r, 85))
    k |= 1u << F_RESTART;
  if (!k && allowed) {
    int pick;
    do pick = (int)sim_below(r, F_NKINDS);
    while (!(allowed & (1u << pick)));
    k = 1u << pick;
  }
  if (!(k & (1u << F_CRASH)) || !(k & (1u << F_RESTART)))
    k &= ~(1u << F_TOTAL);
  p->kinds = k;
  for (int i = 0; i < F_NKINDS; i++) p->weight[i] = (uint32_t)sim_range(r, 1, 10);
  p->weight[F_TOTAL] = 1;
  p->fault_mean_ms = p->suspect_ms * (uint32_t)sim_range(r, 1, 6) / 4;
  p->reactive_pct = sim_chance(r, 50) ? (uint32_t)sim_range(r, 5, 40) : 0;
  p->mid_pml = sim_chance(r, 50) ? (uint32_t)sim_range(r, 2, 30) : 0;
  p->part_min_ms = p->suspect_ms / 2;
  p->part_max_ms = p->suspect_ms * (uint32_t)sim_range(r, 2, 10);
  p->slow_extra_ms = (uint32_t)sim_range(r, p->suspect_ms / 4, p->suspect_ms * 3);
  p->work_mean_ms = (uint32_t)sim_range(r, 1, 20);
  p->burst_pct = (uint32_t)sim_range(r, 0, 20);
  p->burst_max = (uint32_t)sim_range(r, 2, 32);
  p->safety_steps = o->steps * 8 / 10;
  p->live_bound_ms = 60ull * p->suspect_ms;
  /* (Drawn last: the earlier choices of a seed stay what they were.) */
  p->relay = sim_chance(r, 50);
}

/* ------------------------------------------------------------------------
 * Scheduled actions
 * ---------------------------------------------------------------------- */

static void schedule(struct sim_world *w, uint64_t at, int kind, int a, int b) {
  if (w->n_act >= SIM_ACTIONS) return; /* full: the fault is skipped */
  struct sim_action *x = &w->act[w->n_act++];
  x->at = at;
  x->seq = ++w->act_seq;
  x->kind = kind;
  x->a = a;
  x->b = b;
}

static int has_action(const struct sim_world *w, int kind) {
  for (int i = 0; i < w->n_act; i++)
    if (w->act[i].kind == kind) return 1;
  return 0;
}

/* ------------------------------------------------------------------------
 * Disk
 * ---------------------------------------------------------------------- */

static void disk_view(struct sim_world *w, struct sim_node *n,
                      const struct smr_wire_view *v) {
  struct sim_disk *d = &n->disk;
  if (!v) {
    sim_fail(w, INV_CONTRACT, "%s: PERSIST_VIEW without a view", n->id);
    return;
  }
  sim_trace(w, T_PVIEW, n->idx, -1, 0, 0, v->epoch, v->start_pos, 0);
  chk_persisted_view(w, n, v);
  if (w->failed) return;
  if (!d->has_view || v->epoch > d->view.epoch) {
    /* A new epoch: the entries of older ones are no longer needed. */
    uint32_t k = 0;
    size_t alen = 0;
    for (uint32_t i = 0; i < d->n_ents; i++) {
      struct sim_dentry e = d->ents[i];
      if (e.epoch < v->epoch) continue;
      memmove(d->arena + alen, d->arena + e.off, e.len);
      e.off = alen;
      alen += e.len;
      d->ents[k++] = e;
    }
    d->n_ents = k;
    d->arena_len = alen;
  }
  d->view = *v;
  d->has_view = 1;
}

static void disk_acceptor(struct sim_world *w, struct sim_node *n,
                          const struct smr_event *ev) {
  struct sim_disk *d = &n->disk;
  sim_trace(w, T_PACC, n->idx, -1, ev->u.acceptor.has_accepted, 0,
            ev->u.acceptor.epoch, ev->u.acceptor.promised,
            ev->u.acceptor.accepted_ballot);
  d->has_acceptor = 1;
  d->acc_epoch = ev->u.acceptor.epoch;
  d->promised = ev->u.acceptor.promised;
  d->accepted_ballot = ev->u.acceptor.accepted_ballot;
  d->has_accepted = ev->u.acceptor.has_accepted && ev->u.acceptor.accepted;
  if (d->has_accepted)
    d->accepted = *ev->u.acceptor.accepted;
  else
    memset(&d->accepted, 0, sizeof d->accepted);
  /* The fault budget keeps an eye on views that may yet be decided. */
  n->acc_has = d->has_accepted;
  if (d->has_accepted) n->acc_next = d->accepted.next;
}

static void disk_entry(struct sim_world *w, struct sim_node *n,
                       const struct smr_event *ev) {
  struct sim_disk *d = &n->disk;
  const struct smr_persisted_entry *pe = &ev->u.entry.e;
  sim_trace(w, T_PENT, n->idx, -1, 0, pe->len, ev->u.entry.epoch, pe->seq, 0);
  if (pe->len && !pe->data) {
    sim_fail(w, INV_CONTRACT, "%s: PERSIST_ENTRY of %u bytes without data",
             n->id, pe->len);
    return;
  }
  if (d->n_ents == d->cap_ents) {
    d->cap_ents = d->cap_ents ? d->cap_ents * 2 : 256;
    d->ents = realloc(d->ents, d->cap_ents * sizeof *d->ents);
    if (!d->ents) abort();
  }
  if (d->arena_len + pe->len > d->arena_cap) {
    size_t c = d->arena_cap ? d->arena_cap : 65536;
    while (c < d->arena_len + pe->len) c *= 2;
    d->arena = realloc(d->arena, c);
    if (!d->arena) abort();
    d->arena_cap = c;
  }
  struct sim_dentry *e = &d->ents[d->n_ents++];
  e->epoch = ev->u.entry.epoch;
  e->seq = pe->seq;
  e->sender = pe->sender;
  e->sender_seq = pe->sender_seq;
  e->len = pe->len;
  e->off = d->arena_len;
  if (pe->len) memcpy(d->arena + d->arena_len, pe->data, pe->len);
  d->arena_len += pe->len;
}

/* The restore record handed to smr_core_create() after a restart. */
static void build_restore(struct sim_world *w, struct sim_node *n,
                          struct smr_core_persisted *P) {
  struct sim_disk *d = &n->disk;
  memset(P, 0, sizeof *P);
  if (d->has_view) P->view = d->view;
  P->pos = n->svc.pos;
  P->hash = n->svc.hash;
  if (d->has_acceptor && d->acc_epoch == P->view.epoch) {
    P->promised = d->promised;
    P->accepted_ballot = d->accepted_ballot;
    P->has_accepted = d->has_accepted;
    if (d->has_accepted) P->accepted = d->accepted;
  }
  if (d->n_ents > w->cap_rs) {
    w->cap_rs = d->n_ents;
    w->rs_ents = realloc(w->rs_ents, w->cap_rs * sizeof *w->rs_ents);
    if (!w->rs_ents) abort();
  }
  uint32_t k = 0;
  for (uint32_t i = 0; i < d->n_ents; i++) {
    const struct sim_dentry *e = &d->ents[i];
    if (e->epoch != P->view.epoch) continue;
    struct smr_persisted_entry x = {e->seq, e->sender, e->sender_seq, e->len,
                                    d->arena + e->off};
    /* By increasing seq; a later record of the same seq replaces one. */
    uint32_t j = k;
    while (j > 0 && w->rs_ents[j - 1].seq > x.seq) j--;
    if (j > 0 && w->rs_ents[j - 1].seq == x.seq) {
      w->rs_ents[j - 1] = x;
      continue;
    }
    memmove(&w->rs_ents[j + 1], &w->rs_ents[j], (k - j) * sizeof x);
    w->rs_ents[j] = x;
    k++;
  }
  P->entries = k ? w->rs_ents : NULL;
  P->n_entries = k;
}

/* ------------------------------------------------------------------------
 * Node life cycle
 * ---------------------------------------------------------------------- */

static void drain(struct sim_world *w, struct sim_node *n);

/* Starts node n as a new incarnation, from its disk if from_disk. */
static void node_start(struct sim_world *w, struct sim_node *n, int from_disk) {
  struct smr_core_config cfg;
  struct smr_core_persisted P;
  int restore = from_disk && n->disk.has_view;
  n->inc++;
  n->life = L_UP;
  n->cur_epoch = n->own_epoch = 0;
  n->cur_rank = 0;
  n->needs_state = 0;
  n->restoring = 0;
  n->left = 0;
  n->leave_requested = 0;
  n->quorum_lost = 0;
  n->views_seen = 0;
  n->delivers_seen = 0;
  n->sub_counter = 0;
  n->spin = 0;
  n->deadline = UINT64_MAX;
  if (restore) {
    if (n->disk.has_svc)
      n->svc = n->disk.svc;
    else {
      svc_reset(&n->svc);
      n->svc.hash = w->genesis_hash;
    }
    n->has_state = 1;
    n->amnesiac = 0;
    /* Back in its last view: it may deliver that epoch's tail. */
    n->cur_epoch = n->own_epoch = n->disk.view.epoch;
    build_restore(w, n, &P);
  } else {
    disk_wipe(&n->disk);
    svc_reset(&n->svc);
    n->svc.hash = w->genesis_hash;
    ring_reset(n);
    n->has_state = 1; /* the empty state, at pos 0 */
    n->amnesiac = 1;
  }
  memset(&cfg, 0, sizeof cfg);
  cfg.group = "sim";
  memcpy(cfg.self.id, n->id, sizeof n->id);
  memcpy(cfg.self.addr, n->addr, sizeof n->addr);
  cfg.self.incarnation = n->inc;
  cfg.first_boot = n->inc == 1;
  cfg.bootstrap = w->boot;
  cfg.n_bootstrap = (uint32_t)w->n_boot;
  cfg.heartbeat_ms = w->p.heartbeat_ms;
  cfg.suspect_ms = w->p.suspect_ms;
  cfg.join_batch_ms = w->p.join_batch_ms;
  cfg.max_batch_bytes = w->p.max_batch;
  cfg.relay = w->p.relay;
  cfg.max_inflight = w->p.max_inflight;
  cfg.max_pending = w->p.max_pending;
  cfg.xfer_chunk = w->p.xfer_chunk;
  cfg.xfer_window = w->p.xfer_window;
  cfg.durable = w->p.durable;
  cfg.source = &n->src;
  cfg.restore = restore ? &P : NULL;
  sim_trace(w, T_START, n->idx, -1, restore, 0, n->inc, n->svc.pos,
            restore ? P.view.epoch : 0);
  if (restore) chk_restarted(w, n);
  char err[256] = "";
  int rc = smr_core_create(&cfg, &n->core, err, sizeof err);
  if (rc != 0) {
    n->core = NULL;
    n->life = L_DOWN;
    sim_fail(w, INV_CONTRACT, "smr_core_create(%s.%llu%s) failed: %d %s", n->id,
             ULL(n->inc), restore ? ", from disk" : "", rc, err);
    return;
  }
  node_input_done(w, n);
}

static void node_crash(struct sim_world *w, struct sim_node *n) {
  sim_trace(w, T_CRASH, n->idx, -1, 0, 0, n->inc, 0, 0);
  if (n->core) smr_core_destroy(n->core);
  n->core = NULL;
  snaps_release(w, n->idx);
  /* The service as of the delivered position survives (the state under
   * an unfinished restore is still the old one: see RESTORE_*). */
  n->disk.has_svc = n->has_state;
  n->disk.svc = n->svc;
  n->life = L_DOWN;
  n->deadline = UINT64_MAX;
}

/* After a restart, peers whose frames to the old incarnation were lost
 * learn that their connection broke. */
static void notify_reconnect(struct sim_world *w, struct sim_node *n) {
  for (int i = 0; i < w->n_nodes; i++) w->link[n->idx][i].dropped_dead = 0;
  for (int i = 0; i < w->n_nodes && !w->failed; i++) {
    struct sim_link *l = &w->link[i][n->idx];
    if (!l->dropped_dead) continue;
    l->dropped_dead = 0;
    struct sim_node *a = w->nodes[i];
    if (a->life != L_UP) continue;
    sim_trace(w, T_PEERLOST, i, n->idx, 0, 0, 0, 0, 0);
    smr_core_peer_lost(a->core, w->now, n->id);
    node_input_done(w, a);
  }
}

static void node_restart(struct sim_world *w, struct sim_node *n) {
  node_start(w, n, w->p.durable);
  if (!w->failed) notify_reconnect(w, n);
}

/* ------------------------------------------------------------------------
 * Draining a core's outputs
 * ---------------------------------------------------------------------- */

static const struct smr_wire_view *ref_view(const struct sim_world *w);
static void reactive_crash(struct sim_world *w);
static int budget_ok(const struct sim_world *w, uint32_t extra);
static int state_survives(const struct sim_world *w, int victim);

/* Sometimes a node dies between two of its outputs: after sending a
 * proposal, a decision or a transfer chunk to some peers but not to the
 * others, or in the middle of receiving a snapshot. */
static void maybe_mid_crash(struct sim_world *w, struct sim_node *n,
                            int what) {
  if (w->liveness || !w->p.mid_pml || !(w->p.kinds & (1u << F_CRASH)))
    return;
  switch (what) {
  case SMR_MSG_PREPARE:
  case SMR_MSG_ACCEPT:
  case SMR_MSG_DECIDE:
  case SMR_MSG_XFER:
  case SMR_MSG_VIEWINFO:
  case 0: /* a restore chunk */
    break;
  default:
    return;
  }
  if (sim_below(&w->r_fault, 1000) >= w->p.mid_pml) return;
  if (!budget_ok(w, 1u << n->idx) || !state_survives(w, n->idx)) return;
  n->crash_now = 1;
}

static void drain(struct sim_world *w, struct sim_node *n) {
  struct smr_event ev;
  while (!w->failed && smr_core_poll(n->core, &ev)) {
    switch (ev.type) {
    case SMR_EV_SEND:
      if (!ev.u.send.to || !ev.u.send.data) {
        sim_fail(w, INV_CONTRACT, "%s: SEND without destination or data",
                 n->id);
        break;
      }
      net_send(w, n->idx, ev.u.send.to, ev.u.send.data, ev.u.send.len);
      if (ev.u.send.len > 3) maybe_mid_crash(w, n, ev.u.send.data[3]);
      break;
    case SMR_EV_DELIVER: {
      uint64_t id = 0;
      if (ev.u.deliver.data)
        (void)payload_parse(ev.u.deliver.data, ev.u.deliver.len, &id);
      sim_trace(w, T_DELIVER, n->idx, -1, 0, 0, ev.u.deliver.pos,
                ev.u.deliver.epoch, id);
      chk_deliver(w, n, &ev);
      break;
    }
    case SMR_EV_VIEW: {
      const struct smr_wire_view *v = ev.u.view.view;
      uint64_t mask = 0;
      if (v)
        for (uint32_t i = 0; i < v->n && i < SMR_MAX_MEMBERS; i++) {
          int k = node_by_id(w, v->m[i].id);
          if (k >= 0) mask |= 1ull << k;
        }
      sim_trace(w, T_VIEW, n->idx, -1, v ? (int)v->n : 0,
                ev.u.view.rank | (ev.u.view.needs_state ? 1u << 16 : 0),
                v ? v->epoch : 0, v ? v->start_pos : 0, mask);
      chk_view(w, n, &ev);
      break;
    }
    case SMR_EV_WEDGED: {
      struct smr_core_status st;
      smr_core_status(n->core, &st);
      sim_trace(w, T_WEDGED, n->idx, -1, 0, st.suspects, st.view->epoch, 0,
                0);
      reactive_crash(w);
      break;
    }
    case SMR_EV_QUORUM_LOST:
      sim_trace(w, T_QLOST, n->idx, -1, 0, 0, 0, 0, 0);
      n->quorum_lost = 1;
      break;
    case SMR_EV_EXCLUDED:
      sim_trace(w, T_EXCLUDED, n->idx, -1, 0, 0, 0, 0, 0);
      break;
    case SMR_EV_LEFT:
      sim_trace(w, T_LEFT, n->idx, -1, 0, 0, 0, 0, 0);
      if (!n->leave_requested)
        sim_fail(w, INV_CONTRACT, "%s: LEFT without a leave", n->id);
      n->left = 1;
      break;
    case SMR_EV_RESTORE_BEGIN:
      sim_trace(w, T_RBEGIN, n->idx, -1, 0, 0, ev.u.restore.pos, 0, 0);
      n->restoring = 1;
      n->img_got = 0;
      break;
    case SMR_EV_RESTORE_CHUNK: {
      uint64_t off = ev.u.restore.offset;
      size_t len = ev.u.restore.len;
      sim_trace(w, T_RCHUNK, n->idx, -1, 0, (uint32_t)len, off, 0, 0);
      if (!n->restoring) {
        sim_fail(w, INV_XFER, "%s: RESTORE_CHUNK outside a restore", n->id);
      } else if (off > n->img_got) {
        sim_fail(w, INV_XFER, "%s: restore chunk at offset %llu after %u bytes",
                 n->id, ULL(off), n->img_got);
      } else if (off + len > SIM_IMG_SIZE || (len && !ev.u.restore.data)) {
        sim_fail(w, INV_XFER,
                 "%s: restore chunk [%llu,+%zu) beyond the %u-byte image",
                 n->id, ULL(off), len, (unsigned)SIM_IMG_SIZE);
      } else {
        if (len) memcpy(n->img + off, ev.u.restore.data, len);
        if (off + len > n->img_got) n->img_got = (uint32_t)(off + len);
        maybe_mid_crash(w, n, 0);
      }
      break;
    }
    case SMR_EV_RESTORE_END:
      sim_trace(w, T_REND, n->idx, -1, 0, 0, ev.u.restore.pos,
                ev.u.restore.hash, 0);
      chk_restore_end(w, n, ev.u.restore.pos, ev.u.restore.hash);
      break;
    case SMR_EV_PERSIST_VIEW:
      disk_view(w, n, ev.u.view.view);
      break;
    case SMR_EV_PERSIST_ACCEPTOR:
      disk_acceptor(w, n, &ev);
      break;
    case SMR_EV_PERSIST_ENTRY:
      disk_entry(w, n, &ev);
      break;
    case SMR_EV_DROPPED: {
      /* One of its own submissions, handed back after an exclusion. */
      uint64_t id = 0;
      if (!ev.u.dropped.data ||
          payload_parse(ev.u.dropped.data, ev.u.dropped.len, &id) != 0)
        sim_fail(w, INV_CONTRACT, "%s: DROPPED without a payload of ours",
                 n->id);
      sim_trace(w, T_NOTE, n->idx, -1, 0, 0, id, 0, 0);
      break;
    }
    case SMR_EV_XFER_BEGIN: {
      /* The donor's choice.  Without arbitrary faults every member's
       * history is a prefix of the group's, never past the view's start:
       * a receiver that does not chain (or is ahead) is a broken
       * invariant, not a reason for a snapshot. */
      struct smr_core_status st;
      smr_core_status(n->core, &st);
      int to = ev.u.xfer.to ? node_by_id(w, ev.u.xfer.to->id) : -1;
      sim_trace(w, T_XFER, n->idx, to, ev.u.xfer.delta,
                (uint32_t)ev.u.xfer.why, ev.u.xfer.from, ev.u.xfer.boundary,
                0);
      if (to < 0 || ev.u.xfer.boundary != st.view->start_pos ||
          (ev.u.xfer.delta && ev.u.xfer.from > ev.u.xfer.boundary))
        sim_fail(w, INV_CONTRACT, "%s: XFER_BEGIN to %s from %llu, boundary "
                 "%llu (view starts at %llu)", n->id,
                 ev.u.xfer.to ? ev.u.xfer.to->id : "nobody",
                 ULL(ev.u.xfer.from), ULL(ev.u.xfer.boundary),
                 ULL(st.view->start_pos));
      else if (ev.u.xfer.why == SMR_XFER_WHY_DIVERGED ||
               ev.u.xfer.why == SMR_XFER_WHY_AHEAD)
        sim_fail(w, INV_XFER, "%s: %s's history at %llu %s (boundary %llu)",
                 n->id, ev.u.xfer.to->id, ULL(ev.u.xfer.from),
                 ev.u.xfer.why == SMR_XFER_WHY_AHEAD
                     ? "is past the view's start"
                     : "does not chain to the view's start",
                 ULL(ev.u.xfer.boundary));
      break;
    }
    default:
      sim_fail(w, INV_CONTRACT, "%s: unknown event type %d", n->id,
               (int)ev.type);
    }
    if (n->crash_now) break;
  }
}

void node_input_done(struct sim_world *w, struct sim_node *n) {
  if (n->life != L_UP || !n->core || w->failed) return;
  /* What the input produced is carried out before the flush: the flush
   * may already stream a snapshot whose boundary those deliveries reach. */
  drain(w, n);
  if (w->failed || n->left || n->crash_now) goto out;
  smr_core_flush(n->core, w->now);
  drain(w, n);
out:
  if (w->failed) return;
  if (n->crash_now) {
    /* Its remaining outputs die with it. */
    n->crash_now = 0;
    sim_trace(w, T_NOTE, n->idx, -1, 1, 0, 0, 0, 0);
    node_crash(w, n);
    w->faults[F_CRASH]++;
    return;
  }
  if (n->left) {
    /* A graceful leave is over: the process exits. */
    smr_core_destroy(n->core);
    n->core = NULL;
    snaps_release(w, n->idx);
    n->life = L_IDLE;
    n->deadline = UINT64_MAX;
    return;
  }
  chk_status(w, n);
  n->deadline = smr_core_next_deadline(n->core);
}

/* ------------------------------------------------------------------------
 * The fault budget
 * ---------------------------------------------------------------------- */

static const struct smr_wire_view *ref_view(const struct sim_world *w) {
  const struct chk_view *cv = chk_get_view(w, w->max_epoch);
  return cv ? &cv->v : NULL;
}

/* Would the latest view keep a strict majority up, connected, fast and not
 * leaving if the nodes in `extra` were impaired too?  The next view may
 * also take in every running non-member (joiners are added as soon as they
 * ask), so the same must hold for the latest view plus those. */
static int in_view(const struct sim_node *x) {
  struct smr_core_status st;
  smr_core_status(x->core, &st);
  return st.state == SMR_ST_NORMAL || st.state == SMR_ST_WEDGED;
}

static int view_ok(const struct sim_world *w, const struct smr_wire_view *v,
                   uint32_t bad_mask, int installed) {
  uint32_t n = 0, bad = 0, in = 0;
  if (v) {
    n = v->n;
    for (uint32_t i = 0; i < v->n; i++) {
      int k = node_by_id(w, v->m[i].id);
      const struct sim_node *x = k >= 0 ? w->nodes[k] : NULL;
      if (k >= 0) in |= 1u << k;
      if (!x || x->life != L_UP || x->inc != v->m[i].incarnation ||
          (bad_mask & (1u << k)) || x->leave_requested ||
          (installed && !in_view(x)))
        bad++;
    }
  } else {
    /* No view yet: epoch 0 is decided by the configured members' first
     * processes (a restarted one has forgotten its vote). */
    n = (uint32_t)w->n_boot;
    for (int k = 0; k < w->n_boot; k++) {
      const struct sim_node *x = w->nodes[k];
      in |= 1u << k;
      if (x->life != L_UP || x->inc != 1 || (bad_mask & (1u << k)) ||
          x->leave_requested)
        bad++;
    }
  }
  if (2 * bad >= n) return 0;
  for (int k = 0; k < w->n_nodes; k++) {
    const struct sim_node *x = w->nodes[k];
    if ((in & (1u << k)) || x->life != L_UP) continue;
    n++;
    if ((bad_mask & (1u << k)) || x->leave_requested) bad++;
  }
  return 2 * bad < n;
}

static int budget_ok(const struct sim_world *w, uint32_t extra) {
  uint32_t bad_mask = w->part_mask | w->clog_mask | w->slow_mask | extra;
  if (!view_ok(w, ref_view(w), bad_mask, 1)) return 0;
  /* Accepted proposals for later epochs may still be decided: the view
   * they name must keep its majority too. */
  for (int k = 0; k < w->n_nodes; k++) {
    const struct sim_node *x = w->nodes[k];
    if (x->acc_has && x->acc_next.epoch > w->max_epoch &&
        !view_ok(w, &x->acc_next, bad_mask, 0))
      return 0;
  }
  /* Without disks, a member still in an older view (it missed a decision)
   * catches up only from a live member that knows the decision, or through
   * its own view's consensus: that view keeps its majority too. */
  if (!w->p.durable) {
    for (int k = 0; k < w->n_nodes; k++) {
      const struct sim_node *x = w->nodes[k];
      if (x->life != L_UP || !x->core || (extra & (1u << k))) continue;
      struct smr_core_status st;
      smr_core_status(x->core, &st);
      if ((st.state == SMR_ST_NORMAL || st.state == SMR_ST_WEDGED) &&
          st.view->epoch < w->max_epoch && !view_ok(w, st.view, bad_mask, 0))
        return 0;
    }
  }
  return 1;
}

/* Without durability the service state lives only in the memory of the
 * members that hold it: never take away the last running one (losing it
 * is a total loss the group cannot survive, like a total crash). */
static int state_survives(const struct sim_world *w, int victim) {
  if (w->p.durable) return 1;
  const struct smr_wire_view *v = ref_view(w);
  uint64_t boundary = v ? v->start_pos : 0;
  for (int i = 0; i < w->n_nodes; i++) {
    const struct sim_node *x = w->nodes[i];
    if (i == victim || x->life != L_UP) continue;
    struct smr_core_status st;
    smr_core_status(x->core, &st);
    /* A state older than the latest view's boundary cannot carry on. */
    if (st.has_state && st.pos >= boundary &&
        (st.state == SMR_ST_NORMAL || st.state == SMR_ST_WEDGED))
      return 1;
  }
  return 0;
}

/* Can the latest view still make progress at all?  A strict majority of
 * its members must be running as the same process (or, with durability,
 * be able to restart from their disks), and without durability one of
 * them must still hold the state of its boundary.  A view that lost this
 * for good -- e.g. a two-member view whose second member died right after
 * the decision that built it -- must halt (primary partition): the
 * liveness requirement does not apply to it. */
static int latest_view_viable(const struct sim_world *w) {
  const struct smr_wire_view *v = ref_view(w);
  if (!v) return 1;
  uint32_t alive = 0;
  int state = w->p.durable;
  for (uint32_t i = 0; i < v->n; i++) {
    int k = node_by_id(w, v->m[i].id);
    if (k < 0) continue;
    const struct sim_node *x = w->nodes[k];
    if (x->life == L_UP && x->inc == v->m[i].incarnation) {
      alive++;
      if (x->has_state && !x->restoring && x->svc.pos >= v->start_pos)
        state = 1;
    } else if (w->p.durable && x->disk.has_view) {
      alive++;
    }
  }
  return 2 * alive > v->n && state;
}

static int leader_idx(const struct sim_world *w) {
  const struct smr_wire_view *v = ref_view(w);
  return v ? node_by_id(w, v->m[0].id) : 0;
}

/* A random node among those whose bit is set in mask; -1 if none. */
static int pick(struct sim_world *w, uint32_t mask) {
  int c = __builtin_popcount(mask);
  if (!c) return -1;
  int k = (int)sim_below(&w->r_fault, (uint64_t)c);
  for (int i = 0; i < SIM_MAX_NODES; i++)
    if (mask & (1u << i)) {
      if (k == 0) return i;
      k--;
    }
  return -1;
}

static uint32_t mask_of(const struct sim_world *w, enum sim_life life) {
  uint32_t m = 0;
  for (int i = 0; i < w->n_nodes; i++)
    if (w->nodes[i]->life == life) m |= 1u << i;
  return m;
}

static uint32_t ref_member_mask(const struct sim_world *w) {
  const struct smr_wire_view *v = ref_view(w);
  uint32_t m = 0;
  if (!v) return (1u << w->n_boot) - 1;
  for (uint32_t i = 0; i < v->n; i++) {
    int k = node_by_id(w, v->m[i].id);
    if (k >= 0) m |= 1u << k;
  }
  return m;
}

/* ------------------------------------------------------------------------
 * Faults
 * ---------------------------------------------------------------------- */

/* When a view change starts, sometimes crash the leader or another member
 * a little later: leader crashes mid-change, cascades. */
static void reactive_crash(struct sim_world *w) {
  if (w->liveness || !w->p.reactive_pct || !(w->p.kinds & (1u << F_CRASH)))
    return;
  if (has_action(w, A_CRASH) || !sim_chance(&w->r_fault, w->p.reactive_pct))
    return;
  int target = sim_chance(&w->r_fault, 50) ? leader_idx(w)
                                            : pick(w, ref_member_mask(w));
  if (target < 0) return;
  schedule(w, w->now + sim_below(&w->r_fault, w->p.suspect_ms / 2 + 1), A_CRASH,
           target, 0);
}

static void fault_crash(struct sim_world *w) {
  uint32_t up = mask_of(w, L_UP);
  int k = -1;
  if (sim_chance(&w->r_fault, 30)) {
    k = leader_idx(w);
    if (k < 0 || !(up & (1u << k))) k = -1;
  }
  if (k < 0) k = pick(w, up);
  if (k < 0 || !budget_ok(w, 1u << k) || !state_survives(w, k)) return;
  node_crash(w, w->nodes[k]);
  w->faults[F_CRASH]++;
}

static void fault_restart(struct sim_world *w) {
  int k = pick(w, mask_of(w, L_DOWN));
  if (k < 0) return;
  node_restart(w, w->nodes[k]);
  w->faults[F_RESTART]++;
}

static void fault_partition(struct sim_world *w) {
  if (w->part_active) return;
  struct sim_rng *r = &w->r_fault;
  uint32_t members = ref_member_mask(w);
  int nm = __builtin_popcount(members);
  int most = (nm - 1) / 2;
  if (most < 1) return;
  uint32_t side = 0;
  int want = (int)sim_range(r, 1, (uint64_t)most);
  if (sim_chance(r, 30)) {
    int l = leader_idx(w);
    if (l >= 0) side |= 1u << l, want--;
  }
  while (want-- > 0) {
    int k = pick(w, members & ~side);
    if (k < 0) break;
    side |= 1u << k;
  }
  for (int i = 0; i < w->n_nodes; i++)
    if (!(members & (1u << i)) && sim_chance(r, 30)) side |= 1u << i;
  if (!side || !budget_ok(w, side)) return;
  int dir = sim_chance(r, 50) ? 0 : (int)sim_range(r, 1, 2);
  net_cut(w, side, dir);
  schedule(w, w->now + sim_range(r, w->p.part_min_ms, w->p.part_max_ms), A_HEAL,
           0, 0);
  w->faults[F_PARTITION]++;
}

static void fault_join(struct sim_world *w) {
  const struct smr_wire_view *v = ref_view(w);
  uint32_t cand = mask_of(w, L_SPARE) | mask_of(w, L_IDLE);
  int k = pick(w, cand);
  if (k < 0) return;
  if (v && v->n + 1 >= SMR_MAX_MEMBERS) return;
  struct sim_node *n = w->nodes[k];
  sim_trace(w, T_JOIN, k, -1, 0, 0, n->inc + 1, 0, 0);
  node_start(w, n, 0);
  w->faults[F_JOIN]++;
}

static void fault_leave(struct sim_world *w) {
  const struct smr_wire_view *v = ref_view(w);
  if (!v || v->n < 3) return;
  uint32_t cand = 0;
  for (uint32_t i = 0; i < v->n; i++) {
    int k = node_by_id(w, v->m[i].id);
    if (k < 0) continue;
    const struct sim_node *x = w->nodes[k];
    if (x->life == L_UP && x->inc == v->m[i].incarnation && !x->leave_requested)
      cand |= 1u << k;
  }
  int k = pick(w, cand);
  if (k < 0 || !budget_ok(w, 1u << k) || !state_survives(w, k)) return;
  struct sim_node *n = w->nodes[k];
  int rc = smr_core_leave(n->core, w->now);
  sim_trace(w, T_LEAVE, k, -1, -rc, 0, 0, 0, 0);
  if (rc == 0) {
    n->leave_requested = 1;
    n->leave_inc = n->inc;
    w->faults[F_LEAVE]++;
  } else if (rc != -EAGAIN && rc != -ENOTCONN && rc != -EINPROGRESS &&
             rc != -EALREADY) {
    sim_fail(w, INV_CONTRACT, "smr_core_leave(%s) returned %d", n->id, rc);
    return;
  }
  node_input_done(w, n);
}

static void fault_slow(struct sim_world *w) {
  int k = pick(w, mask_of(w, L_UP) & ~w->slow_mask);
  if (k < 0 || !budget_ok(w, 1u << k)) return;
  w->slow_mask |= 1u << k;
  w->slow_extra[k] = sim_range(&w->r_fault, w->p.slow_extra_ms / 2,
                               w->p.slow_extra_ms);
  sim_trace(w, T_SLOW, k, -1, 0, 0, w->slow_extra[k], 0, 0);
  schedule(w, w->now + sim_range(&w->r_fault, w->p.part_min_ms, w->p.part_max_ms),
           A_UNSLOW, k, 0);
  w->faults[F_SLOW]++;
}

/* Swizzle clog (FoundationDB): clog the links of a few nodes one by one,
 * hold, then unclog them one by one in a different random order. */
static void fault_clog(struct sim_world *w) {
  if (w->clog_active) return;
  struct sim_rng *r = &w->r_fault;
  uint32_t members = ref_member_mask(w);
  int most = (__builtin_popcount(members) - 1) / 2;
  if (most < 1) return;
  uint32_t side = 0;
  int want = (int)sim_range(r, 1, (uint64_t)most);
  while (want-- > 0) {
    int k = pick(w, members & ~side);
    if (k < 0) break;
    side |= 1u << k;
  }
  if (!side || !budget_ok(w, side)) return;
  int pairs[2 * SIM_MAX_NODES * SIM_MAX_NODES][2];
  int np = 0;
  for (int i = 0; i < w->n_nodes; i++)
    for (int j = 0; j < w->n_nodes; j++)
      if (i != j && (!!(side & (1u << i)) != !!(side & (1u << j)))) {
        pairs[np][0] = i;
        pairs[np][1] = j;
        np++;
      }
  if (np == 0 || w->n_act + 2 * np > SIM_ACTIONS) return;
  uint64_t gap = sim_range(r, 1, w->p.heartbeat_ms);
  uint64_t t = w->now;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = np - 1; i > 0; i--) { /* shuffle */
      int j = (int)sim_below(r, (uint64_t)i + 1);
      int a = pairs[i][0], b = pairs[i][1];
      pairs[i][0] = pairs[j][0];
      pairs[i][1] = pairs[j][1];
      pairs[j][0] = a;
      pairs[j][1] = b;
    }
    for (int i = 0; i < np; i++) {
      t += gap;
      schedule(w, t, pass ? A_UNCLOG : A_CLOG, pairs[i][0], pairs[i][1]);
    }
    t += sim_range(r, w->p.part_min_ms, w->p.part_max_ms);
  }
  w->clog_active = 1;
  w->clog_left = np;
  w->clog_mask = side;
  w->faults[F_CLOG]++;
}

static void fault_total(struct sim_world *w) {
  if (w->total_down || w->faults[F_TOTAL] >= 2) return;
  if (!w->p.durable) return;
  /* The group can come back only from views on disk: a majority of the
   * latest view must have persisted one (epoch 0 has no persisted form). */
  const struct smr_wire_view *v = ref_view(w);
  if (!v) return;
  uint32_t on_disk = 0;
  for (uint32_t i = 0; i < v->n; i++) {
    int k = node_by_id(w, v->m[i].id);
    if (k >= 0 && w->nodes[k]->disk.has_view) on_disk++;
  }
  if (2 * on_disk <= v->n) return;
  sim_trace(w, T_TOTAL, -1, -1, 0, 0, 0, 0, 0);
  chk_total_crash(w);
  for (int i = 0; i < w->n_nodes; i++)
    if (w->nodes[i]->life == L_UP) node_crash(w, w->nodes[i]);
  w->total_down = 1;
  schedule(w,
           w->now + sim_range(&w->r_fault, w->p.suspect_ms, 5 * w->p.suspect_ms),
           A_TOTAL_RESTART, 0, 0);
  w->faults[F_TOTAL]++;
}

static void do_fault(struct sim_world *w) {
  uint32_t total = 0;
  for (int i = 0; i < F_NKINDS; i++)
    if (w->p.kinds & (1u << i)) total += w->p.weight[i];
  if (!total || w->total_down) return;
  uint64_t x = sim_below(&w->r_fault, total);
  int kind = 0;
  for (int i = 0; i < F_NKINDS; i++) {
    if (!(w->p.kinds & (1u << i))) continue;
    if (x < w->p.weight[i]) {
      kind = i;
      break;
    }
    x -= w->p.weight[i];
  }
  switch (kind) {
  case F_CRASH: fault_crash(w); break;
  case F_RESTART: fault_restart(w); break;
  case F_PARTITION: fault_partition(w); break;
  case F_JOIN: fault_join(w); break;
  case F_LEAVE: fault_leave(w); break;
  case F_SLOW: fault_slow(w); break;
  case F_CLOG: fault_clog(w); break;
  case F_TOTAL: fault_total(w); break;
  }
}

static void do_action(struct sim_world *w, const struct sim_action *a) {
  switch (a->kind) {
  case A_HEAL:
    if (w->part_active) net_heal(w);
    break;
  case A_CLOG:
    net_clog(w, a->a, a->b, 1);
    break;
  case A_UNCLOG:
    net_clog(w, a->a, a->b, 0);
    if (--w->clog_left <= 0) {
      w->clog_active = 0;
      w->clog_mask = 0;
    }
    break;
  case A_UNSLOW:
    w->slow_mask &= ~(1u << a->a);
    sim_trace(w, T_UNSLOW, a->a, -1, 0, 0, 0, 0, 0);
    break;
  case A_CRASH: {
    struct sim_node *n = w->nodes[a->a];
    if (n->life == L_UP && budget_ok(w, 1u << a->a) &&
        state_survives(w, a->a)) {
      node_crash(w, n);
      w->faults[F_CRASH]++;
    }
    break;
  }
  case A_START: {
    /* A bootstrap member's first start (unless a restart came first). */
    struct sim_node *n = w->nodes[a->a];
    if (n->life == L_DOWN && n->inc == 0) node_start(w, n, 0);
    break;
  }
  case A_TOTAL_RESTART:
    w->total_down = 0;
    for (int i = 0; i < w->n_nodes && !w->failed; i++)
      if (w->nodes[i]->life == L_DOWN) node_restart(w, w->nodes[i]);
    break;
  }
}

/* ------------------------------------------------------------------------
 * Workload
 * ---------------------------------------------------------------------- */

static int submit_one(struct sim_world *w, struct sim_node *n, int probe,
                      uint64_t *id_out) {
  uint8_t buf[SIM_PAYLOAD_MAX];
  size_t fill = probe ? 0
                      : (size_t)sim_below(&w->r_work,
                                          SIM_PAYLOAD_MAX - SIM_PAYLOAD_HDR + 1);
  uint64_t id = w->n_pay;
  size_t len = payload_build(buf, id, n->idx, n->inc, n->sub_counter, fill,
                             probe);
  int rc = smr_core_submit(n->core, w->now, buf, len);
  uint64_t pending = 0;
  if (rc) {
    struct smr_core_status st;
    smr_core_status(n->core, &st);
    pending = st.pending;
  }
  sim_trace(w, probe ? T_PROBE : T_SUBMIT, n->idx, -1, -rc, (uint32_t)len, id,
            n->cur_epoch, pending);
  if (rc == 0) {
    chk_submitted(w, id, n->idx, buf, len, probe);
    n->sub_counter++;
    w->submits++;
    if (id_out) *id_out = id;
    return 0;
  }
  w->submit_err++;
  if (rc == -EMSGSIZE && 2 * len <= w->p.max_batch)
    sim_fail(w, INV_CONTRACT,
             "%s refused a %zu-byte payload with EMSGSIZE (max_batch_bytes %u)",
             n->id, len, w->p.max_batch);
  else if (rc != -EAGAIN && rc != -ENOTCONN && rc != -EMSGSIZE)
    sim_fail(w, INV_CONTRACT, "smr_core_submit(%s) returned %d", n->id, rc);
  return rc;
}

static void do_work(struct sim_world *w) {
  int k = pick(w, mask_of(w, L_UP));
  if (k < 0) return;
  struct sim_node *n = w->nodes[k];
  uint32_t burst = sim_chance(&w->r_work, w->p.burst_pct)
                       ? (uint32_t)sim_range(&w->r_work, 2, w->p.burst_max)
                       : 1;
  for (uint32_t i = 0; i < burst && !w->failed; i++)
    if (submit_one(w, n, 0, NULL) != 0) break;
  node_input_done(w, n);
}

/* ------------------------------------------------------------------------
 * Liveness phase
 * ---------------------------------------------------------------------- */

static void restart_deferred(struct sim_world *w) {
  for (int i = 0; i < w->n_nodes && !w->failed; i++) {
    struct sim_node *n = w->nodes[i];
    if (n->life == L_DOWN) node_restart(w, n);
  }
}

static void enter_liveness(struct sim_world *w) {
  w->liveness = 1;
  w->heal_at = w->now;
  sim_trace(w, T_PHASE, -1, -1, 1, 0, w->p.live_bound_ms, 0, 0);
  /* Carry out the pending heals now; drop everything else. */
  struct sim_action pending[SIM_ACTIONS];
  int np = w->n_act;
  memcpy(pending, w->act, (size_t)np * sizeof pending[0]);
  w->n_act = 0;
  for (int i = 0; i < np && !w->failed; i++)
    if (pending[i].kind == A_UNSLOW) do_action(w, &pending[i]);
  if (w->part_active && !w->failed) net_heal(w);
  for (int i = 0; i < w->n_nodes; i++)
    for (int j = 0; j < w->n_nodes; j++)
      if (w->link[i][j].clogged) net_clog(w, i, j, 0);
  w->clog_active = w->clog_left = 0;
  w->clog_mask = w->slow_mask = 0;
  w->total_down = 0;
  restart_deferred(w);
}

static void describe_nodes(struct sim_world *w, char *buf, size_t cap) {
  size_t o = 0;
  static const char *life[] = {"spare", "up", "down", "idle"};
  buf[0] = 0;
  for (int i = 0; i < w->n_nodes && o + 96 < cap; i++) {
    struct sim_node *n = w->nodes[i];
    if (n->life != L_UP) {
      o += (size_t)snprintf(buf + o, cap - o, " %s:%s", n->id, life[n->life]);
      continue;
    }
    struct smr_core_status st;
    smr_core_status(n->core, &st);
    o += (size_t)snprintf(buf + o, cap - o, " %s.%llu:%s/e%llu/n%u/pos%llu%s",
                          n->id, ULL(n->inc), smr_core_state_name(st.state),
                          ULL(st.view ? st.view->epoch : 0),
                          st.view ? st.view->n : 0, ULL(n->svc.pos),
                          st.quorum_lost ? "/qlost" : "");
  }
}

/* Returns 1 once the group has converged. */
static int liveness_check(struct sim_world *w) {
  restart_deferred(w);
  if (w->failed) return 0;
  uint32_t up = 0;
  for (int i = 0; i < w->n_nodes; i++) {
    struct sim_node *n = w->nodes[i];
    if (n->life == L_DOWN) goto not_yet;
    if (n->life == L_UP) up |= 1u << i;
  }
  uint64_t epoch = 0;
  const struct smr_wire_view *view = NULL;
  for (int i = 0; i < w->n_nodes; i++) {
    if (!(up & (1u << i))) continue;
    struct sim_node *n = w->nodes[i];
    struct smr_core_status st;
    smr_core_status(n->core, &st);
    if (st.state != SMR_ST_NORMAL || n->leave_requested || n->restoring ||
        !n->has_state)
      goto not_yet;
    if (!view) {
      view = st.view;
      epoch = st.view->epoch;
    } else if (st.view->epoch != epoch) {
      goto not_yet;
    }
  }
  if (!view || view->n != (uint32_t)__builtin_popcount(up)) goto not_yet;
  for (uint32_t i = 0; i < view->n; i++) {
    int k = node_by_id(w, view->m[i].id);
    if (k < 0 || !(up & (1u << k)) ||
        w->nodes[k]->inc != view->m[i].incarnation)
      goto not_yet;
  }
  /* One common view of exactly the running nodes: now the probe. */
  if (!w->probe_out || w->probe_epoch != epoch) {
    struct sim_node *n = w->nodes[__builtin_ctz(up)];
    uint64_t id;
    if (submit_one(w, n, 1, &id) == 0) {
      w->probe_out = 1;
      w->probe_id = id;
      w->probe_epoch = epoch;
    }
    node_input_done(w, n);
    goto not_yet;
  }
  uint64_t ppos = chk_canonical_pos(w, w->probe_id);
  if (!ppos) goto not_yet;
  for (int i = 0; i < w->n_nodes; i++)
    if ((up & (1u << i)) && w->nodes[i]->svc.pos < ppos) goto not_yet;
  w->converged_at = w->now;
  return 1;

not_yet:
  if (!w->failed && w->now > w->heal_at + w->p.live_bound_ms) {
    char buf[400], vb[400] = "";
    if (!latest_view_viable(w)) {
      /* Not a liveness failure: the group halted as it must. */
      sim_trace(w, T_NOTE, -1, -1, 2, 0, 0, 0, 0);
      w->halted = 1;
      return 1;
    }
    describe_nodes(w, buf, sizeof buf);
    const struct smr_wire_view *lv = ref_view(w);
    if (lv) chk_describe_view(lv, vb, sizeof vb);
    sim_fail(w, INV_LIVENESS,
             "no common view with the probe delivered %llums after healing "
             "(bound %llums = 60 x suspect_ms):%s; latest view e%llu [%s]",
             ULL(w->now - w->heal_at), ULL(w->p.live_bound_ms), buf,
             ULL(lv ? lv->epoch : 0), vb);
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * The event loop
 * ---------------------------------------------------------------------- */

enum { EV_NONE, EV_ACTION, EV_FRAME, EV_TIMER, EV_FAULT, EV_WORK };

static void world_reset(struct sim_world *w, uint64_t seed) {
  for (int i = 0; i < w->n_nodes; i++) {
    struct sim_node *n = w->nodes[i];
    if (n->core) smr_core_destroy(n->core);
    n->core = NULL;
    n->life = L_SPARE;
    n->inc = 0;
    n->amnesiac = 0;
    n->leave_requested = 0;
    n->crash_now = 0;
    n->acc_has = 0;
    n->has_state = 0;
    n->cur_epoch = 0;
    n->deadline = UINT64_MAX;
    disk_wipe(&n->disk);
    ring_reset(n);
    svc_reset(&n->svc);
  }
  memset(w->snaps, 0, sizeof w->snaps);
  net_reset(w);
  chk_reset(w);
  sim_trace_reset(w);
  w->seed = seed;
  sim_rng_seed(&w->r_cfg, seed, 1);
  sim_rng_seed(&w->r_net, seed, 2);
  sim_rng_seed(&w->r_fault, seed, 3);
  sim_rng_seed(&w->r_work, seed, 4);
  choose_params(w);
  w->now = T0;
  w->step = 0;
  w->n_act = 0;
  w->act_seq = 0;
  w->liveness = 0;
  w->heal_at = w->converged_at = 0;
  w->probe_out = 0;
  w->halted = 0;
  w->probe_id = w->probe_epoch = 0;
  w->total_down = 0;
  memset(w->faults, 0, sizeof w->faults);
  w->checks = w->delivers = w->views_installed = 0;
  w->submits = w->submit_err = 0;
  w->frames_sent = w->frames_dropped = 0;
  w->snap_early = 0;
  w->failed = 0;
  w->fail_inv = 0;
  w->fail_msg[0] = 0;
  w->next_fault =
      w->p.kinds ? T0 + sim_exp(&w->r_fault, w->p.fault_mean_ms) + 1 : UINT64_MAX;
  w->next_work = T0 + sim_exp(&w->r_work, w->p.work_mean_ms);
}

int world_run(struct sim_world *w, uint64_t seed) {
  world_reset(w, seed);
  sim_w = w;
  if (w->opts->verbose) sim_print_params(w);
  /* The bootstrap members start within two heartbeats of each other. */
  for (int i = 0; i < w->n_boot; i++) {
    struct sim_node *n = w->nodes[i];
    uint64_t at = T0 + sim_below(&w->r_cfg, 2 * w->p.heartbeat_ms + 1);
    if (at == T0) {
      node_start(w, n, 0);
    } else {
      schedule(w, at, A_START, i, 0);
      n->life = L_DOWN; /* not yet started: counts as down */
      n->inc = 0;
    }
  }
  uint64_t cap = w->p.safety_steps + 2000000;
  while (!w->failed) {
    if (!w->liveness && w->step >= w->p.safety_steps) {
      enter_liveness(w);
      if (w->failed || liveness_check(w)) break;
    }
    /* Find the earliest event. */
    int kind = EV_NONE, ai = -1, fs = -1, fd = -1, tn = -1;
    uint64_t t = UINT64_MAX, aseq = UINT64_MAX;
    for (int i = 0; i < w->n_act; i++)
      if (w->act[i].at < t || (w->act[i].at == t && w->act[i].seq < aseq)) {
        t = w->act[i].at;
        aseq = w->act[i].seq;
        ai = i;
        kind = EV_ACTION;
      }
    uint64_t ft, fseq;
    if (net_next(w, &ft, &fseq, &fs, &fd) && ft < t) {
      t = ft;
      kind = EV_FRAME;
    }
    for (int i = 0; i < w->n_nodes; i++) {
      struct sim_node *n = w->nodes[i];
      if (n->life != L_UP) continue;
      uint64_t d = n->deadline < w->now ? w->now : n->deadline;
      if (d < t) {
        t = d;
        tn = i;
        kind = EV_TIMER;
      }
    }
    if (!w->liveness) {
      if (w->next_fault < t) {
        t = w->next_fault;
        kind = EV_FAULT;
      }
      if (w->next_work < t) {
        t = w->next_work;
        kind = EV_WORK;
      }
    }
    if (kind == EV_NONE) {
      if (w->liveness && !w->failed) {
        /* Quiet (e.g. a lone member has no timers): let time pass. */
        w->now += 1;
        if (liveness_check(w)) break;
        continue;
      }
      sim_fail(w, INV_LIVENESS, "nothing left to happen (every node is down)");
      break;
    }
    if (t < w->now) t = w->now;
    w->now = t;
    w->step++;

    switch (kind) {
    case EV_ACTION: {
      struct sim_action a = w->act[ai];
      w->act[ai] = w->act[--w->n_act];
      do_action(w, &a);
      break;
    }
    case EV_FRAME:
      net_deliver(w, fs, fd);
      break;
    case EV_TIMER: {
      struct sim_node *n = w->nodes[tn];
      if (n->spin_at == w->now) {
        if (++n->spin > 10000) {
          sim_fail(w, INV_LIVENESS,
                   "%s's deadline stays at %llums however often it ticks",
                   n->id, ULL(w->now));
          break;
        }
      } else {
        n->spin_at = w->now;
        n->spin = 0;
      }
      sim_trace(w, T_TICK, tn, -1, 0, 0, 0, 0, 0);
      smr_core_tick(n->core, w->now);
      node_input_done(w, n);
      break;
    }
    case EV_FAULT:
      do_fault(w);
      w->next_fault = w->now + 1 + sim_exp(&w->r_fault, w->p.fault_mean_ms);
      break;
    case EV_WORK:
      do_work(w);
      w->next_work = w->now + sim_exp(&w->r_work, w->p.work_mean_ms);
      break;
    }
    if (w->failed) break;
    if (w->liveness && liveness_check(w)) break;
    if (w->step >= cap) {
      sim_fail(w, INV_LIVENESS, "no convergence within %llu steps", ULL(cap));
      break;
    }
  }
  return w->failed ? -1 : 0;
}
