/* core.c -- one group member's virtual-synchrony protocol, sans IO.
 *
 * DESIGN
 * ======
 * A group moves through a sequence of views (epochs).  Within a view the
 * member at rank 0 is the leader and sequencer; every change of membership
 * is a new view, agreed on by a single-decree consensus among the members
 * of the old view.
 *
 * 1. Ordering.  A member multicasts by queueing the payload locally; at the
 *    end of a batch (smr_core_flush) a non-leader sends its queued payloads
 *    to the leader in one SUBMIT frame, and the leader assigns consecutive
 *    sequence numbers to everything queued and sends one ORDER frame to all.
 *    Batching is therefore natural: one ORDER carries as many payloads as
 *    arrived since the last flush (up to max_batch_bytes).
 *    With relay on and three or more members, the ORDERs travel a chain
 *    instead (after RDMC, Behrens et al., DSN 2018): the leader sends each
 *    to rank 1 only, and every member forwards the entries new to it to the
 *    next rank, so the leader's link carries the stream once, not once per
 *    member.  Unlike RDMC, the unit is the ORDER batch (large requests are
 *    not cut into blocks; consecutive batches pipeline along the chain),
 *    and there is no binomial schedule.  Only the path changes: receipt is
 *    still acknowledged to everyone, the leader repairs a lagging member
 *    directly, and a member accepts ORDERs from the leader or its
 *    predecessor only, so each link stays FIFO.
 *
 * 2. Stability (uniform delivery).  Every member tells every other member
 *    how far it has received (HEARTBEAT frames double as acknowledgements;
 *    an ORDER implicitly acknowledges the leader's own receipt).  A member
 *    delivers sequence number k only when every member of the view has
 *    advertised received >= k.  With durability on, a member persists an
 *    entry (PERSIST_ENTRY is polled before the HEARTBEAT that advertises it)
 *    so "everyone has it" also means "everyone has it on disk".
 *
 * 3. Failure suspicion.  Silence for suspect_ms, a link reported lost, a
 *    gap in a sequence, or a newer incarnation of a member makes a member
 *    suspect it.  Suspicions are gossiped in heartbeats (a member ignores
 *    the gossip of members it suspects itself), and never revert within a
 *    view.
 *
 * 4. View change = Paxos on the next view.  When a member has a reason to
 *    change the view (suspicion, a join, a leave, a restarted member) it
 *    *wedges*: it stops ordering, submitting and advertising receipt.  The
 *    lowest-ranked member that it does not suspect and that holds the
 *    service state acts as proposer with ballot (round << 8 | rank):
 *      PREPARE(b)  -> every member of the view; an acceptor promises b and
 *                     reports how far it received, whether it has state,
 *                     its suspicions, and any value it accepted before;
 *      ACCEPT(b,v) -> once a majority promised.  If any promise carried an
 *                     accepted value, v is the one with the highest ballot
 *                     (a new leader adopts its predecessor's proposal,
 *                     cf. Derecho #126); otherwise v is computed fresh:
 *                     continuing members = promisers minus suspects (unless
 *                     that leaves no majority) minus leavers; trim = the
 *                     minimum received over the continuing members;
 *                     joiners appended in arrival order;
 *      DECIDE(v)   -> once a majority accepted.  Every continuing member
 *                     delivers exactly up to the trim and installs v.
 *    Why the trim is safe: a member advertises receipt only before it
 *    wedges, and reports at least as much in its promise, so any message
 *    that anyone delivered (it needed every member's advertisement) is at
 *    or below every continuing member's report, hence at or below the
 *    minimum.  Messages above the trim are dropped; their senders still
 *    hold them as pending and submit them again in the next view.
 *    Several failures at once, a leader failing mid-change (the next rank's
 *    ballot is higher and Paxos makes it adopt), and joins batched over
 *    join_batch_ms all go through this one path.
 *
 * 5. Primary partition.  The consensus quorum is a majority of the old
 *    view, and the next view must contain a majority of the old view's
 *    members that are not leaving gracefully.  A member that cannot reach
 *    such a majority reports SMR_EV_QUORUM_LOST and stays wedged.
 *
 * 6. Joining and state transfer.  A joiner sends JOIN (with the position
 *    and chain hash of any state it holds, e.g. a local checkpoint) to the
 *    members; the leader includes pending joiners in its next proposal.
 *    Members that need state are flagged in the view.  The donor (the
 *    highest-ranked member that has state) captures a snapshot at the view
 *    boundary, and on the joiner's request streams either the delta (the
 *    delivered messages after the joiner's position, if its log still has
 *    them and they chain to the boundary hash) or the snapshot in chunks,
 *    windowed by XFER_ACK.  The group keeps running meanwhile: the joiner
 *    receives and acknowledges the new view's messages and delivers them
 *    once its state has arrived.
 *
 * 7. Restart.  A member that restarts from its disk comes back RECOVERING
 *    in its last installed view, with its acceptor state and received
 *    entries.  If the group is alive it is treated as a failure of its old
 *    incarnation and re-enters through the next view change; if the whole
 *    group restarted, the members run the same consensus among themselves
 *    (a majority of the last view must answer) and resume at the minimum
 *    received position of the continuing members.  A fresh group is the
 *    special case of epoch 0, whose "view" is the configured member list.
 *
 * REFERENCES AND DEVIATIONS
 *   K. Birman, T. Joseph: Exploiting virtual synchrony in distributed
 *     systems, SOSP 1987 (views, flush).
 *   S. Jha et al.: Derecho: Fast state machine replication for cloud
 *     services, ACM TOCS 36(2), 2019 (wedge, trim = min received, ragged
 *     edge cleanup).  We deviate: (a) ordering is by a sequencer rather
 *     than round-robin over senders, which suits TCP and avoids null
 *     messages; (b) the view change is a Paxos instance (L. Lamport, The
 *     part-time parliament, TOCS 1998) rather than Derecho's SST counters,
 *     so adoption of a failed leader's proposal and a single trim per view
 *     follow from Paxos's safety argument instead of special barriers
 *     (Derecho issues #92, #126); (c) the next view is built from members
 *     that *answered* the proposer, with gossiped suspicions used only
 *     while a majority remains, which keeps the group live after
 *     asymmetric partitions (cf. Corosync #760).
 *   Y. Amir et al.: The Totem single-ring ordering and membership
 *     protocol, TOCS 13(4), 1995 (the token ring we did not choose).
 */
#include "core.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

#define NO_RANK UINT32_MAX
#define HB_NO_STATE 0x04u /* heartbeat flag: this member lacks state */

/* ------------------------------------------------------------------------
 * Blobs, queues and the output list
 * --------------------------------------------------------------------- */

/* A reference-counted byte buffer: payloads are shared between the pending
 * list, the leader's order queue, the receive buffer and output events. */
struct blob {
  uint32_t refs;
  uint32_t len;
  uint8_t data[];
};

static struct blob *blob_new(const void *data, size_t len) {
  struct blob *b = malloc(sizeof(*b) + (len ? len : 1));
  if (b == NULL) abort(); /* out of memory: nothing sane to do */
  b->refs = 1;
  b->len = (uint32_t)len;
  if (len) memcpy(b->data, data, len);
  return b;
}

static struct blob *blob_ref(struct blob *b) {
  b->refs++;
  return b;
}

static void blob_unref(struct blob *b) {
  if (b == NULL) return;
  smr_assert(b->refs > 0);
  if (--b->refs == 0) free(b);
}

/* An entry of the total order (or waiting to be ordered). */
struct ent {
  uint8_t sender;      /* rank in the view */
  uint8_t mine;        /* one of this process's pending payloads */
  uint64_t sender_seq; /* per sender, per view, from 1 */
  struct blob *b;
};

/* A FIFO of entries, stored in a growable array. */
struct entq {
  struct ent *v;
  size_t head, n, cap;
  uint64_t bytes; /* payload bytes of the entries in it */
};

static void entq_push(struct entq *q, struct ent e) {
  if (q->head + q->n == q->cap) {
    if (q->head > 0) {
      memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
      q->head = 0;
    }
    if (q->n == q->cap) {
      q->cap = q->cap ? q->cap * 2 : 64;
      q->v = realloc(q->v, q->cap * sizeof(*q->v));
      if (q->v == NULL) abort();
    }
  }
  q->v[q->head + q->n++] = e;
  q->bytes += e.b->len;
}

static struct ent *entq_at(struct entq *q, size_t i) {
  smr_assert(i < q->n);
  return &q->v[q->head + i];
}

static struct ent entq_pop(struct entq *q) {
  smr_assert(q->n > 0);
  struct ent e = q->v[q->head++];
  q->n--;
  smr_assert(q->bytes >= e.b->len);
  q->bytes -= e.b->len;
  if (q->n == 0) q->head = 0;
  return e;
}

static void entq_clear(struct entq *q) {
  while (q->n) blob_unref(entq_pop(q).b);
}

static void entq_free(struct entq *q) {
  entq_clear(q);
  free(q->v);
  q->v = NULL;
  q->cap = 0;
}

/* One output event and what it points to. */
struct outev {
  struct smr_event ev;
  struct smr_member to;
  char sender[SMR_ID_MAX];
  struct blob *b;   /* frame, payload, view or proposal */
  uint64_t capture; /* VIEW: take the donor's image (at this position) */
  int has_capture;
};

/* ------------------------------------------------------------------------
 * The member
 * --------------------------------------------------------------------- */

struct peer {
  struct smr_member m;
  uint64_t last_heard;
  uint64_t last_sent;
  uint64_t received;  /* advertised */
  uint64_t delivered; /* advertised */
  uint64_t last_help; /* last time we answered it as a straggler */
  uint32_t suspects;  /* its gossip */
  uint8_t flags;      /* its last heartbeat flags */
  int leaving;
  uint64_t exp_sseq;  /* leader: next SUBMIT sequence expected */
  uint64_t inc_seen;  /* newest incarnation heard from */
  uint64_t acked_at;  /* leader: when its receipt last advanced */
  uint64_t behind_since; /* leader: when it was first seen behind (0: not) */
  uint64_t retx_at;   /* leader: when we last sent it entries again */
  int dropped;        /* the transport dropped a frame for it (a full
                         queue) since we last repaired it */
};

struct promise {
  int have;
  uint64_t incarnation;
  uint64_t received;
  uint32_t suspects;
  uint8_t flags;
  uint64_t pos, hash;
  uint64_t accepted_ballot;
  int has_value;
  struct smr_wire_proposal value;
};

struct joinreq {
  struct smr_member m;
  int has_state;
  uint64_t pos, hash;
  uint64_t at; /* when it last asked (a joiner asks every suspect_ms/2) */
};

struct xfer {
  int active;
  uint32_t rank;     /* receiving member */
  int delta;         /* 1: log entries, 0: snapshot */
  uint64_t next;     /* next position (delta) or byte offset (snapshot) */
  uint64_t acked;    /* the receiver has everything before this */
  int ended;
  /* Delta or snapshot is decided once our log holds everything up to the
   * boundary (see xfer_start): the request waits here until then. */
  int undecided;
  int req_has_state;
  uint64_t req_pos, req_hash;
};

#define XFER_DONE UINT64_MAX /* acknowledgement of the END frame */

struct smr_core {
  /* Configuration. */
  char group[64];
  uint64_t group_hash;
  struct smr_member self;
  struct smr_member boot[SMR_MAX_MEMBERS];
  uint32_t n_boot;
  uint32_t heartbeat_ms, suspect_ms, join_batch_ms;
  uint32_t max_batch_bytes, max_inflight, max_pending;
  uint64_t max_pending_bytes;
  size_t (*unsent)(void *ctx, const char *id); /* see core.h */
  void *unsent_ctx;
  int relay; /* ORDERs along the chain of ranks (see 1. above) */
  uint32_t xfer_chunk, xfer_window;
  int durable;
  const struct smr_core_source *src;

  uint64_t now;
  int started;     /* first input seen: timers are based on it */
  int from_disk;   /* created from our own persisted records */
  enum smr_core_state st;
  int acceptor_ok; /* may act as acceptor of view.epoch */
  uint64_t alive_at; /* RECOVERING: last heard a running member */
  int quorum_lost, quorum_reported;
  int leaving;
  uint64_t wedged_at;
  uint64_t created_at;
  uint64_t installed_at;

  /* Current (installed or recovering) view. */
  struct smr_wire_view view;
  uint32_t rank;
  struct peer peers[SMR_MAX_MEMBERS];
  uint32_t suspects;

  /* Service state. */
  int svc_valid;   /* pos/hash describe the service state */
  int caught_up;   /* service state is at this view's delivery point */
  uint64_t pos, hash;

  /* Data plane of the view. */
  uint64_t next_seq;  /* leader: next sequence number to assign */
  uint64_t received;  /* contiguous prefix received */
  uint64_t acked;     /* received as advertised to the others */
  uint64_t stable;
  uint64_t delivered;
  struct entq rbuf;   /* received, not delivered: seq delivered+1.. */
  struct entq orderq; /* leader: waiting for a sequence number */
  struct entq pend;   /* own payloads not yet delivered */
  uint64_t pend_first_sseq;
  size_t pend_sent;
  uint64_t own_ordered; /* next sender_seq of ours expected in an ORDER */

  /* Acceptor state for view.epoch. */
  uint64_t promised;
  uint64_t acc_ballot;
  int has_acc;
  struct smr_wire_proposal acc;

  /* Proposer state. */
  int phase;        /* 0 idle, 1 preparing, 2 accepting */
  uint64_t ballot;
  uint64_t round;
  uint64_t phase_start;
  uint64_t lower_activity; /* a lower rank proposed recently */
  struct promise prom[SMR_MAX_MEMBERS];
  uint32_t accepted_by;
  struct smr_wire_proposal value;

  /* Last decision, to help stragglers of the previous view. */
  int has_last;
  struct smr_wire_proposal last;
  struct smr_wire_view prev; /* the view before this one */

  /* Joins. */
  struct joinreq joins[SMR_MAX_MEMBERS];
  uint32_t n_joins;
  uint64_t first_join_at;
  struct smr_wire_view target; /* JOINING: the view we ask to enter */
  uint64_t last_join_sent;
  uint64_t last_hello;
  uint64_t last_advert; /* leader: last VIEWINFO to outside bootstrap members */
  uint64_t last_relay;  /* joining: last DECIDE relayed to the old view */
  uint64_t last_nudge;  /* last HELLO to a member ahead of us */
  uint64_t submitted_at; /* member: when we last sent a SUBMIT */

  /* State transfer. */
  void *snap;               /* donor: image at the boundary */
  int snap_failed;          /* donor: the source could not capture it */
  struct xfer xf[SMR_MAX_MEMBERS];
  int restoring;            /* receiving: restore begun */
  uint64_t restored;        /* receiving: snapshot bytes so far */
  uint64_t xfer_heard;      /* receiving: last XFER frame */
  uint64_t last_xfer_req;
  uint64_t xfer_early;      /* receiving: newest epoch whose XFER frames
                               came before we installed it (dropped) */

  /* Counters. */
  uint64_t views_installed, delivered_total, suspicions;
  uint64_t refused; /* well-formed frames whose content made no sense */
  uint64_t xfers_out, xfer_bytes_out, xfers_in, xfer_bytes_in;
  uint64_t relayed, repairs; /* see smr_core_status */
  int capture_pending; /* a VIEW event with a capture not yet polled */
  uint64_t stalls;  /* times we were not driven for suspect_ms / 2 */

  /* Outputs. */
  struct outev *out;
  size_t out_n, out_head, out_cap;

  uint8_t *scratch;
  size_t scratch_cap;
};

static int majority(uint32_t n) {
#ifdef SMR_PLANTED_BUG_PARTITION
  return (int)(n / 2); /* planted: half (or a minority) suffices */
#else
  return (int)(n / 2 + 1);
#endif
}

static int popcount32(uint32_t x) { return __builtin_popcount(x); }

/* ------------------------------------------------------------------------
 * Output helpers
 * --------------------------------------------------------------------- */

static void out_reset(struct smr_core *c) {
  for (size_t i = 0; i < c->out_n; i++) blob_unref(c->out[i].b);
  c->out_n = c->out_head = 0;
  c->capture_pending = 0; /* every VIEW event has been polled */
}

/* Called at the top of every input: events already polled are released. */
static void out_begin(struct smr_core *c) {
  if (c->out_head == c->out_n) out_reset(c);
}

/* Moves the clock.  The first input starts every timer: a core may be
 * created long before it is first driven. */
static void advance(struct smr_core *c, uint64_t now) {
  /* We were not driven for a long while (the process was paused or its
   * loop blocked on a slow disk): the silence we would now hold against
   * the others is our own.  Give every peer a fresh window instead of
   * suspecting them all at once. */
  if (c->started && now > c->now + c->suspect_ms / 2) {
    for (uint32_t r = 0; r < c->view.n; r++)
      if (c->peers[r].last_heard < now) c->peers[r].last_heard = now;
    c->stalls++;
  }
  if (now > c->now) c->now = now;
  if (c->started) return;
  c->started = 1;
  c->created_at = c->now;
  for (uint32_t r = 0; r < c->view.n; r++) c->peers[r].last_heard = c->now;
  c->xfer_heard = c->now;
}

static struct outev *out_push(struct smr_core *c, enum smr_event_type t) {
  if (c->out_n == c->out_cap) {
    c->out_cap = c->out_cap ? c->out_cap * 2 : 64;
    c->out = realloc(c->out, c->out_cap * sizeof(*c->out));
    if (c->out == NULL) abort();
  }
  struct outev *o = &c->out[c->out_n++];
  memset(o, 0, sizeof(*o));
  o->ev.type = t;
  return o;
}

static void xfer_pump(struct smr_core *c);

int smr_core_poll(struct smr_core *c, struct smr_event *ev) {
  if (c->out_head == c->out_n) {
    out_reset(c);
    return 0;
  }
  struct outev *o = &c->out[c->out_head++];
  if (o->has_capture && o->capture == c->view.start_pos)
    c->capture_pending = 0; /* (not an earlier view's, queued before) */
  /* Every event before this one has been carried out, none after it: the
   * service state is exactly at the view's boundary. */
  if (o->has_capture && c->snap == NULL && !c->snap_failed &&
      c->view.start_pos == o->capture && c->src != NULL &&
      c->src->snap_open != NULL) {
    if (c->src->snap_open(c->src->ctx, o->capture, &c->snap) < 0) {
      c->snap = NULL;
      c->snap_failed = 1;
    } else {
      xfer_pump(c); /* the first chunks go out after this event */
      o = &c->out[c->out_head - 1];
    }
  }
  *ev = o->ev;
  switch (ev->type) {
  case SMR_EV_SEND:
    ev->u.send.to = &o->to;
    ev->u.send.data = o->b->data;
    ev->u.send.len = o->b->len;
    break;
  case SMR_EV_DELIVER:
    ev->u.deliver.sender = o->sender;
    ev->u.deliver.data = o->b->data;
    ev->u.deliver.len = o->b->len;
    break;
  case SMR_EV_VIEW:
  case SMR_EV_PERSIST_VIEW:
    ev->u.view.view = (const struct smr_wire_view *)(void *)o->b->data;
    break;
  case SMR_EV_RESTORE_CHUNK:
    ev->u.restore.data = o->b->data;
    ev->u.restore.len = o->b->len;
    break;
  case SMR_EV_PERSIST_ACCEPTOR:
    ev->u.acceptor.accepted =
        o->b ? (const struct smr_wire_proposal *)(void *)o->b->data : NULL;
    break;
  case SMR_EV_PERSIST_ENTRY:
    ev->u.entry.e.data = o->b->data;
    ev->u.entry.e.len = o->b->len;
    break;
  case SMR_EV_DROPPED:
    ev->u.dropped.data = o->b->data;
    ev->u.dropped.len = o->b->len;
    break;
  case SMR_EV_XFER_BEGIN:
    ev->u.xfer.to = &o->to;
    break;
  default:
    break;
  }
  return 1;
}

/* Encodes a frame of type t into a new blob. */
static struct blob *frame(struct smr_core *c, uint8_t type, uint64_t epoch,
                          struct smr_wire_msg *m) {
  struct smr_wire_hdr h;
  memset(&h, 0, sizeof(h));
  h.type = type;
  h.group = c->group_hash;
  h.epoch = epoch;
  h.incarnation = c->self.incarnation;
  memcpy(h.from, c->self.id, sizeof(h.from));
  size_t need = smr_wire_size(&h, m);
  smr_assert(need > 0);
  struct blob *b = malloc(sizeof(*b) + need);
  if (b == NULL) abort();
  b->refs = 1;
  size_t n = smr_wire_encode(b->data, need, &h, m);
  smr_assert(n == need);
  b->len = (uint32_t)n;
  return b;
}

static void send_blob(struct smr_core *c, const struct smr_member *to,
                      struct blob *b) {
  struct outev *o = out_push(c, SMR_EV_SEND);
  o->to = *to;
  o->b = blob_ref(b);
}

static struct peer *peer_of(struct smr_core *c, uint32_t r) {
  smr_assert(r < c->view.n);
  return &c->peers[r];
}

static void send_to_rank(struct smr_core *c, uint32_t r, struct blob *b) {
  if (r == c->rank) return;
  struct peer *p = peer_of(c, r);
  p->last_sent = c->now;
  send_blob(c, &p->m, b);
}

static void send_to_all(struct smr_core *c, struct blob *b) {
  for (uint32_t r = 0; r < c->view.n; r++) send_to_rank(c, r, b);
}

/* ------------------------------------------------------------------------
 * Hashing and small helpers
 * --------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

uint64_t smr_chain_hash(uint64_t prev, uint64_t pos, const void *data,
                        size_t len) {
  uint32_t crc = smr_crc32c(0, data, len);
  return mix64(prev ^ mix64(pos + 0x9e3779b97f4a7c15ull) ^
               (((uint64_t)len << 32) | crc));
}

static uint32_t rank_of(const struct smr_wire_view *v, const char *id) {
  for (uint32_t i = 0; i < v->n; i++)
    if (strcmp(v->m[i].id, id) == 0) return i;
  return NO_RANK;
}

static void member_from_wire(struct smr_member *m,
                             const struct smr_wire_member *w) {
  memset(m, 0, sizeof(*m));
  memcpy(m->id, w->id, sizeof(m->id));
  memcpy(m->addr, w->addr, sizeof(m->addr));
  m->incarnation = w->incarnation;
}

/* Does the view's record of a member match this process of it?  Epoch 0's
 * placeholder view records incarnation 0, which matches any process. */
static int same_process(const struct smr_wire_member *w, uint64_t inc) {
  return w->incarnation == 0 || w->incarnation == inc;
}

/* A view from a peer: a real epoch, 1..SMR_MAX_MEMBERS distinct members,
 * each a real process. */
static int view_valid(const struct smr_wire_view *v) {
  if (v->epoch == 0 || v->n == 0 || v->n > SMR_MAX_MEMBERS) return 0;
  for (uint32_t i = 0; i < v->n; i++) {
    if (v->m[i].incarnation == 0) return 0;
    for (uint32_t j = i + 1; j < v->n; j++)
      if (strcmp(v->m[i].id, v->m[j].id) == 0) return 0;
  }
  return 1;
}

static int proposal_valid(const struct smr_wire_proposal *p) {
  return view_valid(&p->next);
}

/* ------------------------------------------------------------------------
 * Persistence records
 * --------------------------------------------------------------------- */

static void persist_acceptor(struct smr_core *c) {
  struct outev *o = out_push(c, SMR_EV_PERSIST_ACCEPTOR);
  o->ev.u.acceptor.epoch = c->view.epoch;
  o->ev.u.acceptor.promised = c->promised;
  o->ev.u.acceptor.accepted_ballot = c->acc_ballot;
  o->ev.u.acceptor.has_accepted = c->has_acc;
  if (c->has_acc) o->b = blob_new(&c->acc, sizeof(c->acc));
}

static void persist_entry(struct smr_core *c, uint64_t seq,
                          const struct ent *e) {
  if (!c->durable) return;
  struct outev *o = out_push(c, SMR_EV_PERSIST_ENTRY);
  o->ev.u.entry.epoch = c->view.epoch;
  o->ev.u.entry.e.seq = seq;
  o->ev.u.entry.e.sender = e->sender;
  o->ev.u.entry.e.sender_seq = e->sender_seq;
  o->b = blob_ref(e->b);
}

/* ------------------------------------------------------------------------
 * Invariants of the member's state, checked after every input
 * --------------------------------------------------------------------- */

static int others_have_state(const struct smr_core *c);

#ifndef SMR_NDEBUG
static void core_check(const struct smr_core *c) {
  smr_assert(c->view.n <= SMR_MAX_MEMBERS);
  smr_assert(c->pend_sent <= c->pend.n);
  smr_assert(c->n_joins <= SMR_MAX_MEMBERS);
  smr_assert(c->out_head <= c->out_n);
  /* Acceptor: never accepted above what it promised; values are for the
   * next epoch only. */
  smr_assert(c->acc_ballot <= c->promised);
  smr_assert(!c->has_acc || c->acc.next.epoch == c->view.epoch + 1);
  smr_assert(!c->has_acc || c->acc_ballot > 0);
  if (c->st == SMR_ST_JOINING || c->st == SMR_ST_LEFT) {
    smr_assert(c->rank == NO_RANK);
    smr_assert(!c->caught_up);
    return;
  }
  if (c->rank != NO_RANK) {
    smr_assert(c->rank < c->view.n);
    smr_assert(strcmp(c->view.m[c->rank].id, c->self.id) == 0);
  }
  /* The data plane: delivered <= stable <= acked <= received, and the
   * buffer holds exactly the received but undelivered entries. */
  smr_assert(c->acked <= c->received);
  smr_assert(c->rbuf.n == c->received - c->delivered);
  if (c->caught_up && c->st != SMR_ST_RECOVERING) {
    smr_assert(c->delivered <= c->stable);
    smr_assert(c->stable <= c->acked);
    smr_assert(c->svc_valid);
    smr_assert(c->pos == c->view.start_pos + c->delivered);
  }
  if (!c->caught_up) smr_assert(c->delivered == 0);
  if (c->st == SMR_ST_NORMAL) {
    /* Any reason to change the view wedges at once. */
    smr_assert(c->suspects == 0);
    /* Leaving waits in NORMAL only while nobody else has the state. */
    smr_assert(!c->leaving || !others_have_state(c));
    smr_assert(c->phase == 0);
    smr_assert(c->promised == 0);
    smr_assert(!c->quorum_lost);
    if (c->rank == 0) smr_assert(c->next_seq == c->received + 1);
  }
  if (c->st == SMR_ST_NORMAL || c->st == SMR_ST_WEDGED) {
    smr_assert(c->rank != NO_RANK);
    smr_assert(c->view.epoch > 0);
    smr_assert(!(c->suspects & (1u << c->rank)));
    smr_assert(c->acceptor_ok);
  }
  if (c->phase != 0) {
    smr_assert((c->ballot & 0xff) == c->rank);
    smr_assert(c->ballot <= c->promised || c->phase == 1);
    smr_assert(c->caught_up);
  }
}
#define CORE_CHECK(c) core_check(c)
#else
#define CORE_CHECK(c) ((void)0)
#endif

/* ------------------------------------------------------------------------
 * Delivery
 * --------------------------------------------------------------------- */

static void deliver_ent(struct smr_core *c, uint64_t seq, struct ent *e) {
  smr_assert(c->caught_up && c->svc_valid);
  smr_assert(seq == c->delivered + 1);
  c->delivered = seq;
  c->pos++;
  c->hash = smr_chain_hash(c->hash, c->pos, e->b->data, e->b->len);
  c->delivered_total++;
  struct outev *o = out_push(c, SMR_EV_DELIVER);
  o->ev.u.deliver.pos = c->pos;
  o->ev.u.deliver.hash = c->hash;
  o->ev.u.deliver.epoch = c->view.epoch;
  o->ev.u.deliver.seq = seq;
  smr_assert(e->sender < c->view.n);
  memcpy(o->sender, c->view.m[e->sender].id, SMR_ID_MAX);
  o->b = blob_ref(e->b);
  o->ev.u.deliver.own = e->mine;
  /* Our own payload: it is no longer pending.  (Entries restored from
   * the disk of an earlier process of ours are not "mine".) */
  if (e->mine && ALWAYS(c->pend.n > 0) &&
      ALWAYS(e->sender_seq == c->pend_first_sseq)) {
    blob_unref(entq_pop(&c->pend).b);
    c->pend_first_sseq++;
    if (ALWAYS(c->pend_sent > 0)) c->pend_sent--;
  }
}

/* Delivers buffered entries up to seq upto (or as far as we have them). */
static void deliver_upto(struct smr_core *c, uint64_t upto) {
  if (!c->caught_up) return;
#ifdef SMR_PLANTED_BUG_ORDER
  /* Planted: odd ranks deliver two adjacent messages of different senders
   * in swapped order. */
  if ((c->rank & 1) && c->rbuf.n >= 2 && upto >= c->delivered + 2) {
    struct ent *a = entq_at(&c->rbuf, 0), *b = entq_at(&c->rbuf, 1);
    if (a->sender != b->sender) {
      struct ent t = *a;
      *a = *b;
      *b = t;
    }
  }
#endif
  while (c->delivered < upto && c->rbuf.n > 0) {
    struct ent e = entq_pop(&c->rbuf);
    deliver_ent(c, c->delivered + 1, &e);
    blob_unref(e.b);
  }
}

static void update_stable(struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  uint64_t s = c->acked;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (r != c->rank && c->peers[r].received < s) s = c->peers[r].received;
  if (s > c->stable) c->stable = s;
  smr_assert(c->stable <= c->received);
  deliver_upto(c, c->stable);
}

/* ------------------------------------------------------------------------
 * Suspicion and wedging
 * --------------------------------------------------------------------- */

static void send_heartbeat_all(struct smr_core *c);

static void wedge(struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL) return;
  c->st = SMR_ST_WEDGED;
  c->wedged_at = c->now;
  out_push(c, SMR_EV_WEDGED);
  send_heartbeat_all(c);
}

static void suspect(struct smr_core *c, uint32_t r) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  if (r == NO_RANK || r == c->rank || r >= c->view.n) return;
  if (c->suspects & (1u << r)) return;
  c->suspects |= 1u << r;
  c->suspicions++;
  wedge(c);
}

/* Members (by rank) that are leaving, as far as we know -- except when the
 * leavers hold the only copies of the state: they stay until another
 * member has it. */
static uint32_t leavers(const struct smr_core *c) {
  uint32_t m = 0, stateful = 0;
  for (uint32_t r = 0; r < c->view.n; r++) {
    if (c->peers[r].leaving) m |= 1u << r;
    if (r != c->rank && !(c->peers[r].flags & HB_NO_STATE)) stateful |= 1u << r;
  }
  if (c->rank != NO_RANK) {
    if (c->leaving) m |= 1u << c->rank;
    if (c->caught_up) stateful |= 1u << c->rank;
  }
  if ((stateful & ~m) == 0) return 0;
  return m;
}

static void check_quorum(struct smr_core *c) {
  if (c->st != SMR_ST_WEDGED) return;
  uint32_t all = c->view.n >= 32 ? ~0u : ((1u << c->view.n) - 1);
  uint32_t stay = all & ~leavers(c);
  int reachable = popcount32(stay & ~c->suspects);
  int lost = reachable < majority((uint32_t)popcount32(stay));
  if (!lost && c->now >= c->wedged_at + 6ull * c->suspect_ms)
    lost = 1;
  if (lost && !c->quorum_reported) {
    c->quorum_lost = 1;
    c->quorum_reported = 1;
    out_push(c, SMR_EV_QUORUM_LOST);
  }
}

/* ------------------------------------------------------------------------
 * Heartbeats and straggler help
 * --------------------------------------------------------------------- */

static struct blob *heartbeat_frame(struct smr_core *c) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.hb.received = c->acked;
  m.u.hb.delivered = c->delivered;
  m.u.hb.suspects = c->suspects;
  uint8_t f = 0;
  if (c->st == SMR_ST_WEDGED) f |= SMR_HB_WEDGED;
  if (c->leaving) f |= SMR_HB_LEAVING;
  if (!c->caught_up) f |= HB_NO_STATE;
  m.u.hb.flags = f;
  return frame(c, SMR_MSG_HEARTBEAT, c->view.epoch, &m);
}

static void send_heartbeat_all(struct smr_core *c) {
  if (c->rank == NO_RANK) return;
  struct blob *b = heartbeat_frame(c);
  send_to_all(c, b);
  blob_unref(b);
}

static void send_viewinfo(struct smr_core *c, const struct smr_member *to) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.viewinfo.view = c->view;
  struct blob *b = frame(c, SMR_MSG_VIEWINFO, c->view.epoch, &m);
  send_blob(c, to, b);
  blob_unref(b);
}

static void send_decide(struct smr_core *c, const struct smr_member *to,
                        const struct smr_wire_proposal *v) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.decide.value = *v;
  struct blob *b = frame(c, SMR_MSG_DECIDE, v->next.epoch - 1, &m);
  send_blob(c, to, b);
  blob_unref(b);
}

/* Whom to answer: a member named in a frame, with the best address we
 * know for it (current, last decided, previous view, bootstrap list). */
static void member_for(const struct smr_core *c, const struct smr_wire_hdr *h,
                       struct smr_member *to) {
  memset(to, 0, sizeof(*to));
  memcpy(to->id, h->from, sizeof(to->id));
  to->incarnation = h->incarnation;
  const struct smr_wire_view *vs[3] = {&c->view, &c->last.next, &c->prev};
  for (int i = 0; i < 3; i++) {
    uint32_t r = rank_of(vs[i], h->from);
    if (r != NO_RANK) {
      memcpy(to->addr, vs[i]->m[r].addr, sizeof(to->addr));
      return;
    }
  }
  for (uint32_t i = 0; i < c->n_boot; i++)
    if (strcmp(c->boot[i].id, h->from) == 0) {
      memcpy(to->addr, c->boot[i].addr, sizeof(to->addr));
      return;
    }
}

/* A member of an older epoch wrote to us: tell it what it missed (the
 * decision out of its epoch, or our view), at most once per heartbeat
 * interval per member. */
static void help_straggler(struct smr_core *c, const struct smr_wire_hdr *h) {
  /* A recovering member's view was decided too (it installed or adopted
   * it), so it can tell: after a crash it may be the only one who knows. */
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED &&
      !(c->st == SMR_ST_RECOVERING && c->view.epoch > 0))
    return;
  uint32_t r = rank_of(&c->view, h->from);
  /* A member of our view that has not installed it yet is alive, only
   * late: for a while that counts as hearing from it, so that one slow
   * link does not turn every view change into the next one. */
  if (r != NO_RANK && h->epoch + 1 == c->view.epoch &&
      h->incarnation == c->view.m[r].incarnation &&
      c->now < c->installed_at + 3ull * c->suspect_ms)
    c->peers[r].last_heard = c->now;
  if (r != NO_RANK) {
    if (c->peers[r].last_help != 0 &&
        c->now < c->peers[r].last_help + c->heartbeat_ms)
      return;
    c->peers[r].last_help = c->now;
  }
  struct smr_member to;
  member_for(c, h, &to);
  if (c->has_last && h->epoch + 1 == c->view.epoch)
    send_decide(c, &to, &c->last);
  else
    send_viewinfo(c, &to);
}

/* ------------------------------------------------------------------------
 * Installing a view
 * --------------------------------------------------------------------- */

static void xfer_reset(struct smr_core *c) {
  if (c->snap != NULL && c->src && c->src->snap_close)
    c->src->snap_close(c->src->ctx, c->snap);
  c->snap = NULL;
  c->snap_failed = 0;
  memset(c->xf, 0, sizeof(c->xf));
}

/* The member that hands state to the members that need it: the
 * highest-ranked member that does not need state itself. */
static uint32_t donor_of(const struct smr_wire_view *v) {
  for (uint32_t i = v->n; i-- > 0;)
    if (!(v->m[i].flags & SMR_MEMBER_NEEDS_STATE)) return i;
  return NO_RANK;
}

static void reset_view_state(struct smr_core *c) {
  c->suspects = 0;
  c->next_seq = 1;
  c->received = c->acked = c->stable = c->delivered = 0;
  entq_clear(&c->rbuf);
  entq_clear(&c->orderq);
  c->pend_first_sseq = 1;
  c->pend_sent = 0;
  c->own_ordered = 1;
  c->promised = c->acc_ballot = 0;
  c->has_acc = 0;
  c->phase = 0;
  c->round = 0;
  c->ballot = 0;
  c->accepted_by = 0;
  memset(c->prom, 0, sizeof(c->prom));
  c->quorum_lost = c->quorum_reported = 0;
  c->alive_at = 0;
  c->lower_activity = 0;
  c->restoring = 0;
  xfer_reset(c);
}

static void set_view(struct smr_core *c, const struct smr_wire_view *v,
                     uint32_t rank) {
  c->view = *v;
  c->rank = rank;
  memset(c->peers, 0, sizeof(c->peers));
  for (uint32_t r = 0; r < v->n; r++) {
    member_from_wire(&c->peers[r].m, &v->m[r]);
    c->peers[r].last_heard = c->now;
    c->peers[r].exp_sseq = 1;
    c->peers[r].inc_seen = v->m[r].incarnation;
    if (v->m[r].flags & SMR_MEMBER_NEEDS_STATE) c->peers[r].flags = HB_NO_STATE;
    /* Known from the start of the view, not from its first heartbeat:
     * otherwise two leavers kept for their state each took the other
     * for a member that stays and changed the view at once, forever
     * (the simulator: seed 16329, 5 members, durable mixed). */
    if ((v->m[r].flags & SMR_MEMBER_LEAVING) && r != rank)
      c->peers[r].leaving = 1;
  }
}

/* Drops pending joins that the view now contains. */
/* A request not repeated for 2 x suspect_ms is stale: its process gave up
 * (left, or joined elsewhere) or died.  Added anyway, it made members of
 * the next view that never answer, and the view could lose its majority
 * to them for good (the simulator: seed 25230, two spares that had left
 * were added as joiners long after, 2 of 4 members alive). */
static int join_stale(const struct smr_core *c, const struct joinreq *j) {
  return c->now > j->at + 2ull * c->suspect_ms;
}

static void prune_joins(struct smr_core *c) {
  uint32_t k = 0;
  for (uint32_t i = 0; i < c->n_joins; i++) {
    uint32_t r = rank_of(&c->view, c->joins[i].m.id);
    if (r != NO_RANK &&
        c->view.m[r].incarnation >= c->joins[i].m.incarnation)
      continue;
    if (join_stale(c, &c->joins[i])) continue;
    c->joins[k++] = c->joins[i];
  }
  c->n_joins = k;
  if (k == 0) c->first_join_at = 0;
}

static void start_joining(struct smr_core *c,
                          const struct smr_wire_view *target);

/* Does a member of the view other than us, and not leaving itself, hold
 * the service state?  (Two leavers that hold the only copies must not
 * each wait for the other: each would change the view at once, the
 * change would keep both, and the view would churn forever.) */
static int others_have_state(const struct smr_core *c) {
  for (uint32_t r = 0; r < c->view.n; r++)
    if (r != c->rank && !c->peers[r].leaving &&
        !(c->peers[r].flags & HB_NO_STATE))
      return 1;
  return 0;
}

/* Our payloads that were sent but whose fate we cannot know any more: each
 * is handed back with SMR_EV_DROPPED.  Those never sent stay pending. */
static void drop_sent(struct smr_core *c) {
  for (size_t i = 0; i < c->pend_sent; i++) {
    struct ent e = entq_pop(&c->pend);
    struct outev *o = out_push(c, SMR_EV_DROPPED);
    o->b = e.b; /* the reference moves to the event */
    c->pend_first_sseq++;
  }
  c->pend_sent = 0;
}

static void xfer_start(struct smr_core *c, uint32_t r, int has_state,
                       uint64_t pos, uint64_t hash);
static void request_state(struct smr_core *c);

static void install(struct smr_core *c, const struct smr_wire_proposal *v,
                    uint32_t myrank) {
  const struct smr_wire_view *nv = &v->next;
  int needs = (nv->m[myrank].flags & SMR_MEMBER_NEEDS_STATE) != 0;
  smr_assert(nv->epoch > c->view.epoch || c->st == SMR_ST_JOINING);
  if (c->st == SMR_ST_JOINING) {
    /* A joiner whose state is already the boundary's needs nothing. */
    if (!c->svc_valid || c->pos != nv->start_pos ||
        c->hash != nv->start_hash)
      needs = 1;
  } else if (c->caught_up && v->trim <= c->received) {
    /* Continuing with state: deliver exactly up to the trim.  (A member
     * flagged as needing state may have caught up since it promised.) */
    deliver_upto(c, v->trim);
#ifndef SMR_PLANTED_BUG_TRIM
    smr_assert(needs || c->delivered == v->trim);
#endif
    if (c->pos == nv->start_pos && c->hash == nv->start_hash)
      needs = 0;
    else if (NEVER(!needs))
      needs = 1;
  } else if (NEVER(!needs)) {
    /* Cannot happen: the proposal was built from our own report and
     * checked by decision_plausible().  Be safe in release builds: fetch
     * the state instead. */
    needs = 1;
  }
  /* Without state we delivered nothing, but the group delivered up to the
   * trim: our payloads among those are done. */
  if (!c->caught_up && c->st != SMR_ST_JOINING && c->rank != NO_RANK) {
    uint64_t seq = c->delivered;
    for (size_t i = 0; i < c->rbuf.n && seq < v->trim; i++) {
      seq++;
      if (!entq_at(&c->rbuf, i)->mine) continue;
      if (ALWAYS(c->pend.n > 0 && c->pend_sent > 0)) {
        blob_unref(entq_pop(&c->pend).b);
        c->pend_first_sseq++;
        c->pend_sent--;
      }
    }
  }
  /* Those the group ordered past what we received, up to the trim, we
   * cannot tell from those it never ordered: rather than submit them again
   * (which orders a delivered one twice), they are handed back as
   * dropped, as when we are excluded.  (A member without state re-added
   * as a joiner in the same change, e.g. after it was suspected.) */
  if (c->st != SMR_ST_JOINING && c->rank != NO_RANK && c->received < v->trim)
    drop_sent(c);
  /* Our own undelivered payloads are submitted again in the new view. */
  struct entq keep = c->pend;
  memset(&c->pend, 0, sizeof(c->pend));
  if (c->st != SMR_ST_JOINING) c->prev = c->view;
  reset_view_state(c);
  c->pend = keep;
  set_view(c, nv, myrank);
  c->has_last = 1;
  c->last = *v;
  c->caught_up = !needs;
  c->st = SMR_ST_NORMAL;
  c->acceptor_ok = 1;
  c->views_installed++;
  c->installed_at = c->now;
  c->xfer_heard = c->now;
  c->last_xfer_req = 0;

  struct outev *o = out_push(c, SMR_EV_PERSIST_VIEW);
  o->b = blob_new(nv, sizeof(*nv));
  o->ev.u.view.rank = myrank;
  o->ev.u.view.needs_state = needs;
  o = out_push(c, SMR_EV_VIEW);
  o->b = blob_new(nv, sizeof(*nv));
  o->ev.u.view.rank = myrank;
  o->ev.u.view.needs_state = needs;

  /* Donor: the boundary image is captured when this VIEW event is polled
   * (before any delivery of the new view reaches the service); sending
   * starts now to every member that needs state: a delta to a joiner
   * whose request told us its position, the snapshot otherwise. */
  if (!needs && donor_of(nv) == myrank && c->src != NULL) {
    int any = 0;
    for (uint32_t r = 0; r < nv->n; r++)
      if (nv->m[r].flags & SMR_MEMBER_NEEDS_STATE) any = 1;
    if (any) {
      o->has_capture = 1;
      o->capture = c->pos;
      c->capture_pending = 1;
    }
    for (uint32_t r = 0; any && r < nv->n; r++) {
      if (!(nv->m[r].flags & SMR_MEMBER_NEEDS_STATE)) continue;
      const struct joinreq *j = NULL;
      for (uint32_t i = 0; i < c->n_joins; i++)
        if (strcmp(c->joins[i].m.id, nv->m[r].id) == 0 &&
            c->joins[i].m.incarnation == nv->m[r].incarnation)
          j = &c->joins[i];
      if (j != NULL)
        xfer_start(c, r, j->has_state, j->pos, j->hash);
      else
        xfer_start(c, r, 0, 0, 0);
    }
  }
  prune_joins(c);
  send_heartbeat_all(c);
  /* The donor starts sending at its own install, and its first frames may
   * have overtaken the decision on their way to us (another connection):
   * they were dropped as of an epoch ahead of ours.  Ask at once rather
   * than wait suspect_ms for the transfer to go quiet. */
  if (needs && c->xfer_early == nv->epoch) request_state(c);
  /* Still leaving (the view was decided before our request counted, or we
   * held the only copy of the state): go once another member has it. */
  if (c->leaving && others_have_state(c)) wedge(c);
}

/* Could this decision have come out of our epoch?  A continuing member
 * that keeps its state must hold every message up to the trim, and they
 * must lead exactly to the boundary.  A correct peer never sends anything
 * else; a frame that fails this is refused rather than trusted. */
/* Do our state and buffer lead, through the trim, to the boundary? */
static int trim_reaches(const struct smr_core *c,
                        const struct smr_wire_proposal *v) {
  if (!c->caught_up || c->st == SMR_ST_JOINING) return 0;
  if (v->trim < c->delivered || v->trim > c->received) return 0;
  uint64_t pos = c->pos, hash = c->hash, seq = c->delivered;
  for (size_t i = 0; i < c->rbuf.n && seq < v->trim; i++) {
    const struct ent *e = &c->rbuf.v[c->rbuf.head + i];
    seq++;
    pos++;
    hash = smr_chain_hash(hash, pos, e->b->data, e->b->len);
  }
  return pos == v->next.start_pos && hash == v->next.start_hash;
}

static __attribute__((unused)) int decision_plausible(const struct smr_core *c,
                              const struct smr_wire_proposal *v,
                              uint32_t r) {
  if (c->st == SMR_ST_JOINING || r == NO_RANK ||
      (v->next.m[r].flags & SMR_MEMBER_NEEDS_STATE))
    return 1;
  if (!c->caught_up) return 0; /* it would have been flagged */
  return trim_reaches(c, v);
}

static int can_adopt(const struct smr_core *c, const struct smr_wire_view *v,
                     uint32_t r);
static void adopt_view(struct smr_core *c, const struct smr_wire_view *v,
                       uint32_t r);

/* Learns the decision of the view change out of our epoch. */
static void learn(struct smr_core *c, const struct smr_wire_proposal *v) {
  if (c->st == SMR_ST_JOINING ? v->next.epoch <= c->view.epoch
                              : v->next.epoch != c->view.epoch + 1)
    return;
  /* The next view starts where the trim ends the old one. */
  if (c->st != SMR_ST_JOINING &&
      v->next.start_pos != c->view.start_pos + v->trim) {
    c->refused++;
    return;
  }
  uint32_t r = rank_of(&v->next, c->self.id);
  if (r != NO_RANK && v->next.m[r].incarnation != c->self.incarnation) {
    /* The view has an earlier process of ours, which died before it
     * could install it (a crash during the change, or all of the group
     * went down).  With our disk we carry on in its place: deliver what
     * the group delivered, then recover in that view. */
    if (can_adopt(c, &v->next, r)) {
      if (trim_reaches(c, v)) deliver_upto(c, v->trim);
      adopt_view(c, &v->next, r);
      return;
    }
    r = NO_RANK;
  }
#ifndef SMR_PLANTED_BUG_TRIM
  if (!decision_plausible(c, v, r)) {
    c->refused++;
    return;
  }
#endif
  if (c->st == SMR_ST_JOINING) {
    if (r == NO_RANK) return;
    install(c, v, r);
    return;
  }
  if (r != NO_RANK) {
    install(c, v, r);
    return;
  }
  /* Not in the next view: deliver what the group delivered, then go. */
  if (c->caught_up && (c->st == SMR_ST_NORMAL || c->st == SMR_ST_WEDGED) &&
      v->trim <= c->received)
    deliver_upto(c, v->trim);
  if (c->leaving) {
    c->pend_sent = c->pend.n;
    drop_sent(c);
    reset_view_state(c);
    c->st = SMR_ST_LEFT;
    c->rank = NO_RANK;
    c->caught_up = 0;
    out_push(c, SMR_EV_LEFT);
    return;
  }
  /* Keep the decision: members of the old view that missed it may learn
   * it from us (we may be the only one left who knows it). */
  c->has_last = 1;
  c->last = *v;
  out_push(c, SMR_EV_EXCLUDED);
  start_joining(c, &v->next);
}

/* ------------------------------------------------------------------------
 * Joining
 * --------------------------------------------------------------------- */

static void send_join(struct smr_core *c, const struct smr_member *to,
                      uint64_t epoch) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  memcpy(m.u.join.addr, c->self.addr, sizeof(m.u.join.addr));
  m.u.join.flags = c->svc_valid ? SMR_JOIN_HAS_STATE : 0;
  m.u.join.pos = c->pos;
  m.u.join.hash = c->hash;
  struct blob *b = frame(c, SMR_MSG_JOIN, epoch, &m);
  send_blob(c, to, b);
  blob_unref(b);
}

static void join_broadcast(struct smr_core *c) {
  c->last_join_sent = c->now;
  for (uint32_t i = 0; i < c->target.n; i++) {
    if (strcmp(c->target.m[i].id, c->self.id) == 0) continue;
    struct smr_member m;
    member_from_wire(&m, &c->target.m[i]);
    send_join(c, &m, c->target.epoch);
  }
}

static void start_joining(struct smr_core *c,
                          const struct smr_wire_view *target) {
  /* The group treats us as failed: what we sent and did not see delivered
   * may or may not have been delivered, so it is dropped (its senders'
   * clients retry); what we never sent is kept for the next view. */
  drop_sent(c);
  struct entq keep = c->pend;
  memset(&c->pend, 0, sizeof(c->pend));
  reset_view_state(c);
  c->pend = keep;
  c->st = SMR_ST_JOINING;
  c->caught_up = 0;
  c->rank = NO_RANK;
  c->acceptor_ok = 0;
  c->target = *target;
  join_broadcast(c);
}

/* A JOIN frame: a request to be added (from a joiner, a restarted or an
 * excluded member), or, from a member of our view that needs state and has
 * installed it, a request for its state transfer. */
static void on_join(struct smr_core *c, const struct smr_wire_hdr *h,
                    const struct smr_wire_msg *m) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED &&
      c->st != SMR_ST_RECOVERING)
    return;
  int running = c->st != SMR_ST_RECOVERING;
  uint32_t r = rank_of(&c->view, h->from);
  if (r != NO_RANK && running && c->view.m[r].incarnation != 0) {
    uint64_t vinc = c->view.m[r].incarnation;
    if (h->incarnation == vinc) {
      if (h->epoch == c->view.epoch) {
        if ((c->view.m[r].flags & SMR_MEMBER_NEEDS_STATE) &&
            c->rank == donor_of(&c->view) && c->caught_up)
          xfer_start(c, r, (m->u.join.flags & SMR_JOIN_HAS_STATE) != 0,
                     m->u.join.pos, m->u.join.hash);
        return;
      }
      /* It is in our view but missed the decision that added it. */
      struct smr_member to;
      member_for(c, h, &to);
      send_viewinfo(c, &to);
      return;
    }
    if (h->incarnation < vinc) return; /* an older process's leftovers */
    suspect(c, r); /* restarted: its old process is gone */
  }
  if ((running && h->epoch != c->view.epoch) ||
      (!running && h->epoch < c->view.epoch && c->view.epoch > 0)) {
    struct smr_member to;
    member_for(c, h, &to);
    memcpy(to.addr, m->u.join.addr, sizeof(to.addr));
    send_viewinfo(c, &to);
  }
  /* Record (or refresh) the request. */
  uint32_t i;
  for (i = 0; i < c->n_joins; i++)
    if (strcmp(c->joins[i].m.id, h->from) == 0) break;
  if (i == c->n_joins) {
    if (c->n_joins == SMR_MAX_MEMBERS) return;
    c->n_joins++;
    if (c->first_join_at == 0) c->first_join_at = c->now;
  } else if (c->joins[i].m.incarnation > h->incarnation) {
    return;
  }
  struct joinreq *j = &c->joins[i];
  memset(j, 0, sizeof(*j));
  memcpy(j->m.id, h->from, sizeof(j->m.id));
  memcpy(j->m.addr, m->u.join.addr, sizeof(j->m.addr));
  j->m.incarnation = h->incarnation;
  j->at = c->now;
  j->has_state = (m->u.join.flags & SMR_JOIN_HAS_STATE) != 0;
  j->pos = m->u.join.pos;
  j->hash = m->u.join.hash;
}

/* ------------------------------------------------------------------------
 * View change: proposer
 * --------------------------------------------------------------------- */

static int need_change(const struct smr_core *c) {
  if (c->st == SMR_ST_RECOVERING) return 1;
  if (c->st == SMR_ST_WEDGED) return 1;
  if (c->suspects || leavers(c)) return 1;
  if (c->n_joins && c->rank == 0 &&
      c->now >= c->first_join_at + c->join_batch_ms)
    return 1;
  return 0;
}

/* Are we the member that should run the change? */
/* Could rank r run a view change, as far as we know? */
static int could_lead(const struct smr_core *c, uint32_t r) {
  return !(c->suspects & (1u << r)) && !(c->peers[r].flags & HB_NO_STATE) &&
         !c->peers[r].leaving;
}

/* Are we the member that should run the change?  The lowest-ranked one
 * that could; a member that is leaving only if nobody else could. */
static int am_proposer(const struct smr_core *c) {
  if (c->rank == NO_RANK || !c->caught_up) return 0;
  if (c->st == SMR_ST_RECOVERING) {
    if (!c->acceptor_ok) return 0;
    if (c->alive_at != 0 && c->now < c->alive_at + c->suspect_ms) return 0;
  }
  uint32_t upto = c->leaving ? c->view.n : c->rank;
  for (uint32_t r = 0; r < upto; r++)
    if (r != c->rank && could_lead(c, r)) return 0;
  return 1;
}

static void send_prepare(struct smr_core *c) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.prepare.ballot = c->ballot;
  struct blob *b = frame(c, SMR_MSG_PREPARE, c->view.epoch, &m);
  send_to_all(c, b);
  blob_unref(b);
}

static void on_prepare(struct smr_core *c, uint32_t from, uint64_t ballot);
static void on_promise_rec(struct smr_core *c, uint32_t from,
                           const struct promise *p, uint64_t ballot);

static void start_ballot(struct smr_core *c) {
  uint64_t top = c->promised >> 8;
  if (c->round < top) c->round = top;
  c->round++;
  c->ballot = (c->round << 8) | c->rank;
  c->phase = 1;
  c->phase_start = c->now;
  c->accepted_by = 0;
  memset(c->prom, 0, sizeof(c->prom));
  if (c->st == SMR_ST_NORMAL) wedge(c);
  send_prepare(c);
  on_prepare(c, c->rank, c->ballot); /* our own acceptor */
}

static void maybe_start_change(struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED &&
      c->st != SMR_ST_RECOVERING)
    return;
  if (!need_change(c) || !am_proposer(c)) return;
  if (c->phase != 0) return;
  if (c->st == SMR_ST_RECOVERING) {
    /* Total restart: wait a little so that more members answer. */
    if (c->now < c->created_at + c->suspect_ms) return;
  }
  if (c->lower_activity && c->now < c->lower_activity + 2ull * c->suspect_ms)
    return;
  start_ballot(c);
}

/* Builds a fresh proposal from the promises; 0 if none can be made yet. */
static int build_value(struct smr_core *c, struct smr_wire_proposal *v) {
  uint32_t promised = 0;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (c->prom[r].have) promised |= 1u << r;
  uint32_t leaving = 0, stateless = 0;
  for (uint32_t r = 0; r < c->view.n; r++) {
    if (!c->prom[r].have) continue;
    if (c->prom[r].flags & SMR_PROMISE_LEAVING) leaving |= 1u << r;
    if (!(c->prom[r].flags & SMR_PROMISE_HAS_STATE)) stateless |= 1u << r;
  }
  leaving |= leavers(c) & promised;
  /* Exclusions: our suspicions and those of promisers we trust. */
  uint32_t excl = c->suspects;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (c->prom[r].have && !(excl & (1u << r))) excl |= c->prom[r].suspects;
  excl &= ~(1u << c->rank);
  uint32_t all = (c->view.n >= 32) ? ~0u : ((1u << c->view.n) - 1);
  uint32_t stay_base = all & ~leaving;
  int need = majority((uint32_t)popcount32(stay_base));
  uint32_t cont = promised & ~leaving & ~excl;
  if (popcount32(cont) < need) cont = promised & ~leaving;
  if (popcount32(cont) < need) {
    /* Too few would stay without the leavers (a member leaving while
     * another failed): rather than wait for the failed one forever, the
     * leavers that promised stay in this view, which then needs a
     * majority of the whole old view; they go in the change after it. */
    cont = promised & ~excl;
    if (popcount32(cont) < majority(popcount32(all))) return 0;
  }
  /* A leaving member that is the last to hold the state stays until
   * another member has it. */
  if ((cont & ~stateless) == 0) cont |= promised & leaving & ~stateless;
  if ((cont & ~stateless) == 0) return 0;
  /* We are in it, unless we are leaving (then nobody else could lead). */
  if (NEVER(!(cont & (1u << c->rank)) && !c->leaving)) return 0;

  memset(v, 0, sizeof(*v));
  /* Our own report bounds the trim as well, so that our buffer reaches
   * it (a leaving proposer is not among the continuing members). */
  uint64_t trim = c->received;
#ifdef SMR_PLANTED_BUG_TRIM
  trim = 0; /* planted: the maximum instead of the minimum */
  (void)c->received;
  for (uint32_t r = 0; r < c->view.n; r++)
    if ((cont & (1u << r)) && c->prom[r].received > trim)
      trim = c->prom[r].received;
#else
  for (uint32_t r = 0; r < c->view.n; r++)
    if ((cont & (1u << r)) && c->prom[r].received < trim)
      trim = c->prom[r].received;
#endif
  v->trim = trim;
  /* The boundary, from our own state and buffer. */
  uint64_t pos = c->pos, hash = c->hash;
  {
#ifndef SMR_PLANTED_BUG_TRIM
    smr_assert(c->delivered <= trim);
#endif
    uint64_t seq = c->delivered;
    for (size_t i = 0; i < c->rbuf.n && seq < trim; i++) {
      struct ent *e = entq_at(&c->rbuf, i);
      seq++;
      pos++;
      hash = smr_chain_hash(hash, pos, e->b->data, e->b->len);
    }
#ifndef SMR_PLANTED_BUG_TRIM
    smr_assert(seq == trim);
#endif
  }
  struct smr_wire_view *nv = &v->next;
  nv->epoch = c->view.epoch + 1;
  nv->start_pos = pos;
  nv->start_hash = hash;
  for (uint32_t r = 0; r < c->view.n; r++) {
    if (!(cont & (1u << r))) continue;
    struct smr_wire_member *w = &nv->m[nv->n++];
    *w = c->view.m[r];
    w->incarnation = c->prom[r].incarnation;
    w->flags = (stateless & (1u << r)) ? SMR_MEMBER_NEEDS_STATE : 0;
    if (leaving & (1u << r)) w->flags |= SMR_MEMBER_LEAVING;
  }
  for (uint32_t i = 0; i < c->n_joins && nv->n < SMR_MAX_MEMBERS; i++) {
    const struct joinreq *j = &c->joins[i];
    if (rank_of(nv, j->m.id) != NO_RANK || join_stale(c, j)) continue;
    struct smr_wire_member *w = &nv->m[nv->n++];
    memset(w, 0, sizeof(*w));
    memcpy(w->id, j->m.id, sizeof(w->id));
    memcpy(w->addr, j->m.addr, sizeof(w->addr));
    w->incarnation = j->m.incarnation;
    int current = j->has_state && j->pos == pos && j->hash == hash;
    w->flags = current ? 0 : SMR_MEMBER_NEEDS_STATE;
  }
  return 1;
}

static void send_accept(struct smr_core *c) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.accept.ballot = c->ballot;
  m.u.accept.value = c->value;
  struct blob *b = frame(c, SMR_MSG_ACCEPT, c->view.epoch, &m);
  send_to_all(c, b);
  blob_unref(b);
}

static void on_accept(struct smr_core *c, uint32_t from, uint64_t ballot,
                      const struct smr_wire_proposal *v);

/* Phase 1 done?  Move to phase 2 when every member we do not suspect has
 * promised (and that is a majority), or when the wait ran out. */
static void proposer_progress(struct smr_core *c) {
  if (c->phase != 1) return;
  if (!am_proposer(c)) { /* e.g. asked to leave: the next rank proposes */
    c->phase = 0;
    return;
  }
  uint32_t promised = 0;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (c->prom[r].have) promised |= 1u << r;
  if (popcount32(promised) < majority(c->view.n)) return;
  uint32_t all = (c->view.n >= 32) ? ~0u : ((1u << c->view.n) - 1);
  uint32_t waiting = all & ~promised & ~c->suspects;
  if (waiting && c->now < c->phase_start + c->suspect_ms) return;
  /* Adopt the highest accepted value, if any. */
  const struct promise *best = NULL;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (c->prom[r].have && c->prom[r].has_value &&
        (best == NULL || c->prom[r].accepted_ballot > best->accepted_ballot))
      best = &c->prom[r];
  if (best != NULL) {
    c->value = best->value;
  } else if (!build_value(c, &c->value)) {
    return; /* wait for more promises or a retry */
  }
  c->phase = 2;
  c->accepted_by = 0;
  send_accept(c);
  on_accept(c, c->rank, c->ballot, &c->value);
}

static void decide(struct smr_core *c) {
  struct smr_wire_proposal v = c->value;
  /* Tell the old view and the joiners. */
  for (uint32_t r = 0; r < c->view.n; r++)
    if (r != c->rank) send_decide(c, &c->peers[r].m, &v);
  for (uint32_t i = 0; i < v.next.n; i++) {
    if (rank_of(&c->view, v.next.m[i].id) != NO_RANK) continue;
    struct smr_member m;
    member_from_wire(&m, &v.next.m[i]);
    send_decide(c, &m, &v);
  }
  learn(c, &v);
}

static void on_accepted(struct smr_core *c, uint32_t from, uint64_t ballot) {
  if (c->phase != 2 || ballot != c->ballot) return;
  c->accepted_by |= 1u << from;
  if (popcount32(c->accepted_by) >= majority(c->view.n)) {
    c->phase = 0;
    decide(c);
  }
}

/* ------------------------------------------------------------------------
 * View change: acceptor
 * --------------------------------------------------------------------- */

static void send_nack(struct smr_core *c, uint32_t to, uint64_t ballot) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.nack.ballot = ballot;
  m.u.nack.promised = c->promised;
  struct blob *b = frame(c, SMR_MSG_NACK, c->view.epoch, &m);
  send_to_rank(c, to, b);
  blob_unref(b);
}

/* A ballot a member could have made: its own rank in the low byte and a
 * round of at least 1 (start_ballot() never makes round 0, and the
 * acceptor's state relies on a ballot above 0 once it accepted). */
static int ballot_of(uint64_t ballot, uint32_t from) {
  return (ballot & 0xff) == from && (ballot >> 8) != 0;
}

static void on_prepare(struct smr_core *c, uint32_t from, uint64_t ballot) {
  if (!c->acceptor_ok) return;
  if (ballot < c->promised) {
    send_nack(c, from, ballot);
    return;
  }
  if (!ballot_of(ballot, from)) return; /* forged or confused ballot */
  if (from < c->rank && from != c->rank) c->lower_activity = c->now;
  if (ballot > c->promised) {
    c->promised = ballot;
    persist_acceptor(c);
  }
  wedge(c);
  if (c->phase != 0 && ballot > c->ballot) c->phase = 0; /* outbid */
  struct promise p;
  memset(&p, 0, sizeof(p));
  p.have = 1;
  p.incarnation = c->self.incarnation;
  p.received = c->received;
  p.suspects = c->suspects;
  p.flags = (c->caught_up ? SMR_PROMISE_HAS_STATE : 0) |
            (c->leaving ? SMR_PROMISE_LEAVING : 0);
  p.pos = c->pos;
  p.hash = c->hash;
  p.accepted_ballot = c->acc_ballot;
  p.has_value = c->has_acc;
  if (c->has_acc) p.value = c->acc;
  if (from == c->rank) {
    on_promise_rec(c, from, &p, ballot);
    return;
  }
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.promise.ballot = ballot;
  m.u.promise.received = p.received;
  m.u.promise.suspects = p.suspects;
  m.u.promise.flags = p.flags;
  m.u.promise.pos = p.pos;
  m.u.promise.hash = p.hash;
  m.u.promise.accepted_ballot = p.accepted_ballot;
  m.u.promise.has_value = (uint8_t)p.has_value;
  if (p.has_value) m.u.promise.value = p.value;
  struct blob *b = frame(c, SMR_MSG_PROMISE, c->view.epoch, &m);
  send_to_rank(c, from, b);
  blob_unref(b);
}

static void on_promise_rec(struct smr_core *c, uint32_t from,
                           const struct promise *p, uint64_t ballot) {
  if (c->phase != 1 || ballot != c->ballot) return;
  c->prom[from] = *p;
  proposer_progress(c);
}

static void on_accept(struct smr_core *c, uint32_t from, uint64_t ballot,
                      const struct smr_wire_proposal *v) {
  if (!c->acceptor_ok) return;
  if (ballot < c->promised) {
    send_nack(c, from, ballot);
    return;
  }
  if (!ballot_of(ballot, from)) return;
  if (v->next.epoch != c->view.epoch + 1 || !proposal_valid(v)) return;
  c->promised = ballot;
  c->acc_ballot = ballot;
  c->has_acc = 1;
  c->acc = *v;
  persist_acceptor(c);
  wedge(c);
  if (from == c->rank) {
    on_accepted(c, from, ballot);
    return;
  }
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.accepted.ballot = ballot;
  struct blob *b = frame(c, SMR_MSG_ACCEPTED, c->view.epoch, &m);
  send_to_rank(c, from, b);
  blob_unref(b);
}

/* ------------------------------------------------------------------------
 * Data plane
 * --------------------------------------------------------------------- */

static void on_submit(struct smr_core *c, uint32_t from,
                      const struct smr_wire_msg *m) {
  if (c->st != SMR_ST_NORMAL || c->rank != 0) return;
  struct peer *p = peer_of(c, from);
  struct smr_wire_entries it = m->u.submit.it;
  struct smr_wire_entry e;
  while (smr_wire_entries_next(&it, &e)) {
    if (e.sender_seq < p->exp_sseq) continue; /* duplicate */
    /* Frames were lost (or arrived before we installed the view): the
     * sender submits them again when it sees they were not ordered. */
    if (e.sender_seq > p->exp_sseq) return;
    p->exp_sseq++;
    struct ent q = {.sender = (uint8_t)from, .sender_seq = e.sender_seq,
                    .b = blob_new(e.data, e.len)};
    entq_push(&c->orderq, q);
  }
}

/* ORDERs go along the chain of ranks (relay on, three or more members). */
static int relaying(const struct smr_core *c) {
  return c->relay && c->view.n >= 3;
}

static void send_order(struct smr_core *c, int to, uint64_t first,
                       const struct smr_wire_entry *we, size_t cnt);

static void on_order(struct smr_core *c, uint32_t from,
                     const struct smr_wire_msg *m) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  /* Only the leader orders; with the chain, our predecessor passes its
   * ORDERs on. */
  if (from != 0 && !(relaying(c) && from + 1 == c->rank)) return;
  uint64_t seq = m->u.order.first_seq;
  struct smr_wire_entries it = m->u.order.it;
  struct smr_wire_entry e;
  /* The entries new to us, for the next rank in the chain -- only while
   * not wedged: passing them on tells the next rank that we (and every
   * rank before us) have them, which is an advertisement of receipt, and
   * a member advertises receipt only before it wedges (the trim's safety,
   * 4. above; the simulator found a delivery above the trim without
   * this). */
  int forward = relaying(c) && c->rank + 1 < c->view.n &&
                c->st == SMR_ST_NORMAL && m->u.order.count > 0;
  struct smr_wire_entry *fw =
      forward ? calloc(m->u.order.count, sizeof(*fw)) : NULL;
  if (forward && fw == NULL) abort(); /* out of memory */
  size_t n_fw = 0;
  uint64_t first_new = 0;
  /* Frames were lost, or came before we installed the view: the leader
   * sends them again when our acknowledgement does not move. */
  if (seq > c->received + 1) {
    free(fw);
    return;
  }
  while (smr_wire_entries_next(&it, &e)) {
    if (seq <= c->received) {
      seq++;
      continue;
    }
    if (e.sender >= c->view.n) { /* malformed: a failure of the leader */
      c->refused++;
      suspect(c, from);
      free(fw);
      return;
    }
    if (e.sender == c->rank) {
      /* Ours must come back in the order we sent them, and only those. */
      if (e.sender_seq != c->own_ordered ||
          e.sender_seq >= c->pend_first_sseq + c->pend_sent) {
        c->refused++;
        suspect(c, from);
        free(fw);
        return;
      }
      c->own_ordered++;
    }
    if (fw != NULL) {
      if (n_fw == 0) first_new = seq;
      smr_assert(n_fw < m->u.order.count);
      fw[n_fw++] = e;
    }
    struct ent q = {.sender = e.sender,
                    .mine = e.sender == c->rank,
                    .sender_seq = e.sender_seq,
                    .b = blob_new(e.data, e.len)};
    entq_push(&c->rbuf, q);
    c->received = seq;
    persist_entry(c, seq, &q);
    seq++;
  }
  /* An ORDER tells us the leader has what it ordered, and one passed on
   * that our predecessor has it (it persisted it first, and passes on only
   * while not wedged).  Not the ranks between: the leader may have
   * repaired our predecessor directly, past one of them that lacks it (the
   * simulator found the delivery above the trim that inferring it gave). */
  struct peer *p = peer_of(c, from);
  if (seq - 1 > p->received) p->received = seq - 1;
  p = peer_of(c, 0);
  if (seq - 1 > p->received) p->received = seq - 1;
  if (n_fw > 0) {
    send_order(c, (int)c->rank + 1, first_new, fw, n_fw);
    c->relayed += n_fw;
  }
  free(fw);
}

/* Leader: assigns sequence numbers to queued entries, one ORDER per batch. */
static void leader_order(struct smr_core *c) {
  /* Our own payloads join the queue. */
  while (c->pend_sent < c->pend.n) {
    struct ent *pe = entq_at(&c->pend, c->pend_sent);
    struct ent q = {.sender = (uint8_t)c->rank,
                    .mine = 1,
                    .sender_seq = c->pend_first_sseq + c->pend_sent,
                    .b = blob_ref(pe->b)};
    entq_push(&c->orderq, q);
    c->pend_sent++;
  }
  while (c->orderq.n > 0 && c->next_seq - 1 - c->stable < c->max_inflight) {
    size_t cnt = 0, bytes = 0;
    size_t room = c->max_inflight - (size_t)(c->next_seq - 1 - c->stable);
    while (cnt < c->orderq.n && cnt < room) {
      size_t l = entq_at(&c->orderq, cnt)->b->len;
      if (cnt > 0 && bytes + l > c->max_batch_bytes) break;
      bytes += l;
      cnt++;
    }
    struct smr_wire_entry *we = calloc(cnt, sizeof(*we));
    if (we == NULL) abort();
    uint64_t first = c->next_seq;
    for (size_t i = 0; i < cnt; i++) {
      struct ent q = entq_pop(&c->orderq);
      we[i].sender = q.sender;
      we[i].sender_seq = q.sender_seq;
      we[i].len = q.b->len;
      we[i].data = q.b->data;
      uint64_t seq = c->next_seq++;
      entq_push(&c->rbuf, q); /* the queue's reference moves here */
      c->received = seq;
      persist_entry(c, seq, &q);
    }
    send_order(c, -1, first, we, cnt);
    free(we);
  }
}

/* Non-leader: sends unsent own payloads to the leader. */
static void member_submit(struct smr_core *c) {
  while (c->pend_sent < c->pend.n) {
    size_t cnt = 0, bytes = 0;
    while (c->pend_sent + cnt < c->pend.n) {
      size_t l = entq_at(&c->pend, c->pend_sent + cnt)->b->len;
      if (cnt > 0 && bytes + l > c->max_batch_bytes) break;
      bytes += l;
      cnt++;
    }
    struct smr_wire_entry *we = calloc(cnt, sizeof(*we));
    if (we == NULL) abort();
    for (size_t i = 0; i < cnt; i++) {
      struct ent *pe = entq_at(&c->pend, c->pend_sent + i);
      we[i].sender_seq = c->pend_first_sseq + c->pend_sent + i;
      we[i].len = pe->b->len;
      we[i].data = pe->b->data;
    }
    struct smr_wire_msg m;
    memset(&m, 0, sizeof(m));
    m.u.submit.entries = we;
    m.u.submit.count = (uint32_t)cnt;
    struct blob *b = frame(c, SMR_MSG_SUBMIT, c->view.epoch, &m);
    free(we);
    send_to_rank(c, 0, b);
    blob_unref(b);
    c->pend_sent += cnt;
    c->submitted_at = c->now;
  }
}

/* ------------------------------------------------------------------------
 * Repair: sending again what a peer evidently did not get
 *
 * Links are FIFO, but a reconnect loses frames, and a member that installs
 * a view late drops the frames of that view that came first.  Rather than
 * turn every such gap into a view change, the leader sends the entries a
 * member has not acknowledged again (it still holds all of them: nothing
 * past the slowest member's receipt is delivered), and a member submits
 * again what the leader has not ordered.  Duplicates are dropped by
 * sequence number on both sides.
 * --------------------------------------------------------------------- */

static void send_order(struct smr_core *c, int to, uint64_t first,
                       const struct smr_wire_entry *we, size_t cnt) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.order.first_seq = first;
  m.u.order.entries = we;
  m.u.order.count = (uint32_t)cnt;
  struct blob *b = frame(c, SMR_MSG_ORDER, c->view.epoch, &m);
  if (to >= 0)
    send_to_rank(c, (uint32_t)to, b);
  else if (relaying(c))
    send_to_rank(c, 1, b); /* and on along the chain */
  else
    send_to_all(c, b);
  blob_unref(b);
}

/* Sends peer r the entries it lacks of those we hold (the leader holds
 * everything not yet delivered; so does every member, since nothing is
 * delivered before every member has it), once r has been quiet for
 * `quiet` ms since it fell behind -- not since its last acknowledgement:
 * after an idle spell that one is old, and the first tick of the next
 * burst sent the member the whole burst again (measured along the chain:
 * 4-7 MB of repairs for 6.9 MB of workload). */
static void repair_peer(struct smr_core *c, uint32_t r, uint64_t quiet) {
  struct peer *p = &c->peers[r];
  if (r == c->rank) return;
  if (p->received >= c->received) {
    p->behind_since = 0;
    return;
  }
  /* Frames for it still in our transport's queue: not lost (yet), only
   * not written.  Its quiet counts from when the queue has drained (the
   * helper found whole backlogs queued twice without this: 70 repair
   * batches of up to 1 MiB for a workload of 34, over TLS). */
  if (c->unsent != NULL && c->unsent(c->unsent_ctx, p->m.id) > 0) {
    p->behind_since = c->now;
    return;
  }
  if (p->behind_since == 0) p->behind_since = c->now;
  uint64_t since = p->acked_at > p->behind_since ? p->acked_at
                                                 : p->behind_since;
  /* A reliable transport (one that tells us its queue) loses frames only
   * where it says so: without a drop, a lagging member is slow, not
   * missing anything, and resending would only add to its backlog (under
   * TCG a member took longer than 3 heartbeats to take in a 1 MiB batch,
   * and was sent every batch twice).  Still, after suspect_ms/2. */
  if (c->unsent != NULL && !p->dropped && quiet < c->suspect_ms / 2)
    quiet = c->suspect_ms / 2;
  if (c->now < since + quiet || c->now < p->retx_at + quiet) return;
  if (NEVER(p->received < c->delivered)) return;
  p->retx_at = c->now;
  p->dropped = 0;
  /* Entries p->received+1 .. received are rbuf[p->received-delivered..]. */
  size_t i = (size_t)(p->received - c->delivered);
  uint64_t seq = p->received + 1;
  while (i < c->rbuf.n) {
    size_t cnt = 0, bytes = 0;
    while (i + cnt < c->rbuf.n) {
      size_t l = entq_at(&c->rbuf, i + cnt)->b->len;
      if (cnt > 0 && bytes + l > c->max_batch_bytes) break;
      bytes += l;
      cnt++;
    }
    struct smr_wire_entry *we = calloc(cnt, sizeof(*we));
    if (we == NULL) abort();
    for (size_t k = 0; k < cnt; k++) {
      const struct ent *e = entq_at(&c->rbuf, i + k);
      we[k].sender = e->sender;
      we[k].sender_seq = e->sender_seq;
      we[k].len = e->b->len;
      we[k].data = e->b->data;
    }
    send_order(c, (int)r, seq, we, cnt);
    c->repairs++;
    free(we);
    i += cnt;
    seq += cnt;
  }
}

static void leader_repair(struct smr_core *c) {
  for (uint32_t r = 0; r < c->view.n; r++) {
    /* Along the chain a member is a hop or more behind by design, and its
     * predecessor repairs it (chain_repair): the leader steps in only for
     * one quiet for half the suspicion time (its predecessor may have
     * failed). */
    uint64_t quiet = 3ull * c->heartbeat_ms;
    if (relaying(c) && r >= 2) {
      if (quiet < c->suspect_ms / 2) quiet = c->suspect_ms / 2;
      /* Its predecessor lacks entries too: the lag is the chain's
       * pipeline (under TCG, a relay's backlog took longer than
       * suspect_ms/2 to pass on, and the leader resent 33 batches).
       * The quiet counts once the predecessor has everything. */
      if (c->peers[r - 1].received < c->received &&
          c->peers[r].received < c->received) {
        c->peers[r].behind_since = c->now;
        continue;
      }
    }
    repair_peer(c, r, quiet);
  }
}

/* Along the chain, each member repairs its successor: an ORDER it passed
 * on can be lost (a queue full under a burst, a reconnect), and the
 * successor then ignores everything after the gap. */
static void chain_repair(struct smr_core *c) {
  if (!relaying(c) || c->rank == 0 || c->rank + 1 >= c->view.n) return;
  repair_peer(c, c->rank + 1, 3ull * c->heartbeat_ms);
}

static void member_repair(struct smr_core *c) {
  uint64_t first_unordered = c->own_ordered;
  uint64_t end = c->pend_first_sseq + c->pend_sent;
  if (first_unordered >= end) return;
  if (c->now < c->submitted_at + 4ull * c->heartbeat_ms) return;
  if (NEVER(first_unordered < c->pend_first_sseq)) return;
  /* Send the unordered ones again, as if they had never been sent. */
  c->pend_sent = (size_t)(first_unordered - c->pend_first_sseq);
  member_submit(c);
}

/* ------------------------------------------------------------------------
 * State transfer
 * --------------------------------------------------------------------- */

/* Donor side.  A session sends either the delivered messages after the
 * receiver's position (a delta: only if our log still has all of them and
 * they chain from the receiver's hash to the boundary hash), or the
 * boundary snapshot in chunks; then END with the boundary hash.  At most
 * xfer_window frames are unacknowledged. */
static void xfer_decide(struct smr_core *c, struct xfer *x);

/* The boundary's image could not be made (or read): the receivers of this
 * view would wait for it in vain, so the view is changed, which sets a
 * new boundary and captures it again.  Not sooner than 2 suspect_ms after
 * the install, so that a source that always fails cannot keep the group
 * changing views back to back. */
static void snap_lost(struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL) return;
  if (c->now < c->installed_at + 2ull * c->suspect_ms)
    return; /* the receiver asks again (request_state) and we come back */
  wedge(c);
}

/* A transfer is requested at the install of a view, while the deliveries
 * up to its boundary are still output events the program has not carried
 * out: its log does not hold them yet, and a delta checked now would fail
 * for want of the last entries.  So the choice waits until the VIEW event
 * that captures the boundary has been polled (capture_pending clear). */
static void xfer_start(struct smr_core *c, uint32_t r, int has_state,
                       uint64_t pos, uint64_t hash) {
  struct xfer *x = &c->xf[r];
  memset(x, 0, sizeof(*x));
  x->rank = r;
  x->active = 1;
  x->undecided = 1;
  x->req_has_state = has_state;
  x->req_pos = pos;
  x->req_hash = hash;
  if (!c->capture_pending) xfer_decide(c, x);
}

static void xfer_decide(struct smr_core *c, struct xfer *x) {
  smr_assert(!c->capture_pending);
  int has_state = x->req_has_state;
  uint64_t pos = x->req_pos, hash = x->req_hash;
  x->undecided = 0;
  x->active = 0;
  uint64_t B = c->view.start_pos;
  enum smr_xfer_why why = !has_state ? SMR_XFER_WHY_NO_STATE
                          : pos > B  ? SMR_XFER_WHY_AHEAD
                                     : SMR_XFER_WHY_NOT_IN_LOG;
  if (has_state && pos <= B && c->src != NULL && c->src->log_read != NULL) {
    uint64_t hsh = hash;
    int ok = 1;
    struct smr_log_entry first, last;
    if (pos == B) {
      /* nothing to send: only the hash must match */
    } else if (c->src->log_read(c->src->ctx, B, &last) == 0 && last.pos == B &&
               last.hash != 0 &&
               c->src->log_read(c->src->ctx, pos + 1, &first) == 0 &&
               first.pos == pos + 1 && first.hash != 0) {
      /* The source's run holds pos+1..B and chains (see smr_log_entry):
       * the receiver's hash must lead to our first entry's, and our last
       * entry's must be the boundary's. */
      hsh = smr_chain_hash(hash, pos + 1, first.data, first.len) ==
                    first.hash
                ? last.hash
                : ~c->view.start_hash;
    } else {
      for (uint64_t p = pos + 1; p <= B && ok; p++) {
        struct smr_log_entry le;
        if (c->src->log_read(c->src->ctx, p, &le) < 0 || le.pos != p)
          ok = 0;
        else
          hsh = smr_chain_hash(hsh, p, le.data, le.len);
      }
    }
    if (ok && hsh == c->view.start_hash) {
      x->delta = 1;
      x->next = x->acked = pos + 1;
      why = SMR_XFER_WHY_DELTA;
    } else if (ok) {
      why = SMR_XFER_WHY_DIVERGED;
    }
  }
  if (!x->delta && (c->src == NULL || c->src->snap_read == NULL))
    return; /* nothing we can send */
  if (!x->delta && c->snap_failed) {
    snap_lost(c);
    return;
  }
  struct outev *o = out_push(c, SMR_EV_XFER_BEGIN);
  o->to = peer_of(c, x->rank)->m;
  o->ev.u.xfer.delta = x->delta;
  o->ev.u.xfer.why = why;
  o->ev.u.xfer.from = has_state ? pos : 0;
  o->ev.u.xfer.boundary = B;
  x->active = 1;
}

static void xfer_send(struct smr_core *c, struct xfer *x, uint8_t kind,
                      uint64_t off, const void *data, uint32_t len) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.xfer.boundary = c->view.start_pos;
  m.u.xfer.kind = kind;
  m.u.xfer.offset = off;
  m.u.xfer.len = len;
  m.u.xfer.data = data;
  c->xfer_bytes_out += len;
  struct blob *b = frame(c, SMR_MSG_XFER, c->view.epoch, &m);
  send_to_rank(c, x->rank, b);
  blob_unref(b);
}

static void xfer_pump(struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  for (uint32_t r = 0; r < c->view.n; r++) {
    struct xfer *x = &c->xf[r];
    if (x->active && x->undecided) {
      if (c->capture_pending) continue;
      xfer_decide(c, x);
    }
    for (;;) {
      if (!x->active || x->ended) break;
      uint64_t window = x->delta ? c->xfer_window
                                 : (uint64_t)c->xfer_window * c->xfer_chunk;
      if (x->next - x->acked >= window) break;
      if (x->delta) {
        if (x->next <= c->view.start_pos) {
          struct smr_log_entry le;
          if (c->src->log_read(c->src->ctx, x->next, &le) < 0) {
            x->active = 0; /* log gone meanwhile: it will ask again */
            break;
          }
          xfer_send(c, x, SMR_XFER_LOG, x->next, le.data, le.len);
          x->next++;
          continue;
        }
      } else {
        if (c->snap == NULL) break; /* not captured yet (or failed) */
        if (c->xfer_chunk > c->scratch_cap) {
          c->scratch = realloc(c->scratch, c->xfer_chunk);
          if (c->scratch == NULL) abort();
          c->scratch_cap = c->xfer_chunk;
        }
        long n = c->src->snap_read(c->src->ctx, c->snap, x->next, c->scratch,
                                   c->xfer_chunk);
        if (n == -EAGAIN) break; /* being made: the next pump goes on */
        if (n < 0) {
          x->active = 0;
          c->snap_failed = 1;
          snap_lost(c);
          break;
        }
        if (n > 0) {
          xfer_send(c, x, SMR_XFER_SNAP, x->next, c->scratch, (uint32_t)n);
          x->next += (uint64_t)n;
          continue;
        }
      }
      uint8_t h[8];
      for (int i = 0; i < 8; i++)
        h[i] = (uint8_t)(c->view.start_hash >> (8 * i));
      xfer_send(c, x, SMR_XFER_END, x->delta ? 0 : x->next, h, 8);
      x->ended = 1;
    }
  }
}

static void on_xfer_ack(struct smr_core *c, uint32_t from,
                        const struct smr_wire_msg *m) {
  struct xfer *x = &c->xf[from];
  if (!x->active || m->u.xfer_ack.boundary != c->view.start_pos) return;
  uint64_t a = m->u.xfer_ack.offset;
  if (a == XFER_DONE) { /* it has its state */
    x->active = 0;
    c->xfers_out++;
    return;
  }
  if (a > x->acked && a <= x->next) x->acked = a;
}

/* Receiver side. */
static void request_state(struct smr_core *c) {
  uint32_t d = donor_of(&c->view);
  if (d == NO_RANK || d == c->rank) return;
  c->last_xfer_req = c->now;
  c->xfer_heard = c->now;
  c->restoring = 0;
  send_join(c, &c->peers[d].m, c->view.epoch);
}

static void restore_ev(struct smr_core *c, enum smr_event_type t,
                       uint64_t off, const void *data, size_t len) {
  struct outev *o = out_push(c, t);
  o->ev.u.restore.pos = c->view.start_pos;
  o->ev.u.restore.offset = off;
  o->ev.u.restore.hash = c->view.start_hash;
  if (t == SMR_EV_RESTORE_CHUNK) o->b = blob_new(data, len);
}

static void xfer_ack(struct smr_core *c, uint32_t to, uint64_t upto) {
  struct smr_wire_msg a;
  memset(&a, 0, sizeof(a));
  a.u.xfer_ack.boundary = c->view.start_pos;
  a.u.xfer_ack.offset = upto;
  struct blob *b = frame(c, SMR_MSG_XFER_ACK, c->view.epoch, &a);
  send_to_rank(c, to, b);
  blob_unref(b);
}

static void on_xfer(struct smr_core *c, uint32_t from,
                    const struct smr_wire_msg *m) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  if (from != donor_of(&c->view)) return;
  if (m->u.xfer.boundary != c->view.start_pos) return;
  if (c->caught_up) {
    xfer_ack(c, from, XFER_DONE); /* we got there by ourselves */
    return;
  }
  c->xfer_heard = c->now;
  const uint8_t *d = m->u.xfer.data;
  uint32_t len = m->u.xfer.len;
  if (m->u.xfer.kind != SMR_XFER_END) c->xfer_bytes_in += len;
  uint64_t off = m->u.xfer.offset;
  switch (m->u.xfer.kind) {
  case SMR_XFER_SNAP:
    if (off == 0) {
      restore_ev(c, SMR_EV_RESTORE_BEGIN, 0, NULL, 0);
      c->restoring = 1;
      c->restored = 0;
      c->svc_valid = 0;
    }
    if (!c->restoring || off != c->restored) return; /* stale session */
    restore_ev(c, SMR_EV_RESTORE_CHUNK, off, d, len);
    c->restored += len;
    xfer_ack(c, from, c->restored);
    return;
  case SMR_XFER_LOG: {
    if (c->restoring || !c->svc_valid || off > c->pos + 1) {
      request_state(c); /* out of step: start again from where we are */
      return;
    }
    if (off <= c->pos) return; /* an older session's frame */
    /* A replayed message of the group's history. */
    c->pos++;
    c->hash = smr_chain_hash(c->hash, c->pos, d, len);
    struct outev *o = out_push(c, SMR_EV_DELIVER);
    o->ev.u.deliver.pos = c->pos;
    o->ev.u.deliver.hash = c->hash;
    o->ev.u.deliver.epoch = 0;
    o->ev.u.deliver.seq = 0;
    o->b = blob_new(d, len);
    c->delivered_total++;
    xfer_ack(c, from, c->pos + 1);
    return;
  }
  case SMR_XFER_END: {
    uint64_t h = 0;
    for (uint32_t i = 0; i < 8 && i < len; i++) h |= (uint64_t)d[i] << (8 * i);
    if (c->restoring) {
      if (off != c->restored || h != c->view.start_hash) {
        request_state(c);
        return;
      }
      restore_ev(c, SMR_EV_RESTORE_END, off, NULL, 0);
      c->pos = c->view.start_pos;
      c->hash = h;
      c->svc_valid = 1;
      c->restoring = 0;
    }
    if (c->svc_valid && c->pos < c->view.start_pos) {
      /* Short of the boundary: an entry was lost on the way (a full
       * queue drops frames).  A gap, not a history that does not chain:
       * ask for the rest of the delta from where we are. */
      request_state(c);
      return;
    }
    if (!c->svc_valid || c->pos != c->view.start_pos ||
        c->hash != c->view.start_hash) {
      c->svc_valid = 0; /* the delta did not chain: take the snapshot */
      request_state(c);
      return;
    }
    c->caught_up = 1;
    c->xfers_in++;
    xfer_ack(c, from, XFER_DONE);
    send_heartbeat_all(c);
    update_stable(c);
    return;
  }
  default:
    return;
  }
}

/* ------------------------------------------------------------------------
 * Receiving frames
 * --------------------------------------------------------------------- */

static void on_heartbeat(struct smr_core *c, uint32_t from,
                         const struct smr_wire_msg *m) {
  struct peer *p = peer_of(c, from);
  if (m->u.hb.received > p->received) {
    p->received = m->u.hb.received;
    p->acked_at = c->now;
  }
  p->delivered = m->u.hb.delivered;
  p->flags = m->u.hb.flags;
  p->suspects = m->u.hb.suspects;
  if (m->u.hb.flags & SMR_HB_LEAVING) p->leaving = 1;
  if (c->st == SMR_ST_RECOVERING) {
    /* A running member that could run the view change itself. */
    if (!(m->u.hb.flags & HB_NO_STATE)) c->alive_at = c->now;
    return;
  }
  if (!(c->suspects & (1u << from))) {
    uint32_t g = m->u.hb.suspects & ~(1u << c->rank);
    uint32_t all = (c->view.n >= 32) ? ~0u : ((1u << c->view.n) - 1);
    g &= all;
    for (uint32_t r = 0; r < c->view.n; r++)
      if (g & (1u << r)) suspect(c, r);
  }
  if ((m->u.hb.flags & SMR_HB_WEDGED) || leavers(c)) wedge(c);
  if (c->leaving && others_have_state(c)) wedge(c);
  update_stable(c);
}

/* A restarted process learns of a later view that lists an earlier
 * process of ours, and that our disk never installed.  So no process of
 * ours ever acted in that view: we can serve it as an acceptor with empty
 * state (which a total restart needs: its members may be exactly the ones
 * that never installed the last view), and as a member that needs state.
 * Nothing was delivered in that view (it needed our acknowledgement), so
 * a trim computed with our zero receipt loses nothing. */
static int can_adopt(const struct smr_core *c, const struct smr_wire_view *v,
                     uint32_t r) {
  /* Only a disk that has kept everything since our first boot can vouch
   * that no earlier process of ours acted in v: one that was wiped (or
   * refused) cannot. */
  return c->durable && c->from_disk && r != NO_RANK &&
         v->epoch > c->view.epoch && v->m[r].incarnation < c->self.incarnation;
}

static void adopt_view(struct smr_core *c, const struct smr_wire_view *v,
                       uint32_t r) {
  drop_sent(c);
  struct entq keep = c->pend;
  memset(&c->pend, 0, sizeof(c->pend));
  reset_view_state(c);
  c->pend = keep;
  set_view(c, v, r);
  c->st = SMR_ST_RECOVERING;
  c->acceptor_ok = 1;
  c->caught_up = c->svc_valid && c->pos == v->start_pos &&
                 c->hash == v->start_hash;
  c->created_at = c->now;
  struct outev *o = out_push(c, SMR_EV_PERSIST_VIEW);
  o->b = blob_new(v, sizeof(*v));
  o->ev.u.view.rank = r;
  o->ev.u.view.needs_state = !c->caught_up;
  persist_acceptor(c);
}

static void on_viewinfo(struct smr_core *c, const struct smr_wire_msg *m) {
  const struct smr_wire_view *v = &m->u.viewinfo.view;
  if (!view_valid(v)) {
    c->refused++;
    return;
  }
  uint32_t me = rank_of(v, c->self.id);
  /* Every view a member tells about was decided (it installed it, or
   * adopted it from a decision).  The view right after ours tells its
   * trim, too: it starts where the old view's delivery ended. */
  if (c->st != SMR_ST_JOINING && c->st != SMR_ST_LEFT &&
      v->epoch == c->view.epoch + 1 && v->start_pos >= c->view.start_pos) {
    struct smr_wire_proposal p;
    memset(&p, 0, sizeof(p));
    p.next = *v;
    p.trim = v->start_pos - c->view.start_pos;
    learn(c, &p);
    return;
  }
  if ((c->st == SMR_ST_JOINING || c->st == SMR_ST_RECOVERING) &&
      can_adopt(c, v, me)) {
    adopt_view(c, v, me);
    return;
  }
  if (c->st == SMR_ST_JOINING) {
    uint32_t r = rank_of(v, c->self.id);
    if (r != NO_RANK && v->m[r].incarnation == c->self.incarnation &&
        v->epoch > c->view.epoch) {
      /* We were added but missed the decision; a joiner needs only the
       * view itself (it delivers nothing of the old one). */
      struct smr_wire_proposal p;
      memset(&p, 0, sizeof(p));
      p.next = *v;
      install(c, &p, r);
      c->has_last = 0; /* we do not know its trim: never pass it on */
      return;
    }
    if (v->epoch > c->target.epoch) {
      c->target = *v;
      join_broadcast(c);
    }
    return;
  }
  if (v->epoch < c->view.epoch) return;
  if (v->epoch == c->view.epoch) return;
  uint32_t r = rank_of(v, c->self.id);
  if (r != NO_RANK && v->m[r].incarnation == c->self.incarnation &&
      v->epoch == c->view.epoch + 1)
    return; /* we are in it: the DECIDE will follow */
  if (c->st == SMR_ST_LEFT) return;
  out_push(c, SMR_EV_EXCLUDED);
  start_joining(c, v);
}

static void on_hello(struct smr_core *c, const struct smr_wire_hdr *h,
                     uint8_t flags) {
  uint32_t r = rank_of(&c->view, h->from);
  if (c->st == SMR_ST_RECOVERING) {
    if (r != NO_RANK && h->epoch == c->view.epoch) {
      /* A fellow in a total restart; it can lead only with state. */
      c->peers[r].last_heard = c->now;
      c->suspects &= ~(1u << r);
      int can_lead = (flags & SMR_HELLO_RECOVERING) &&
                     !(flags & SMR_HELLO_NO_STATE);
      c->peers[r].flags = can_lead ? 0 : HB_NO_STATE;
    }
    else if (h->epoch < c->view.epoch && c->view.epoch > 0) {
      struct smr_member to;
      member_for(c, h, &to);
      send_viewinfo(c, &to);
    }
    return;
  }
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  if (r != NO_RANK && c->view.m[r].incarnation != 0 &&
      h->incarnation > c->view.m[r].incarnation)
    suspect(c, r); /* restarted: its old process is gone */
  if (h->epoch <= c->view.epoch) {
    struct smr_member to;
    member_for(c, h, &to);
    send_viewinfo(c, &to);
  }
}

static void send_hello_to(struct smr_core *c, const struct smr_member *to);

int smr_core_recv(struct smr_core *c, uint64_t now, const uint8_t *frame_,
                  size_t len) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  int rc = smr_wire_decode(frame_, len, &h, &m);
  if (rc < 0) return rc;
  if (h.group != c->group_hash) return -EPERM;
  if (strcmp(h.from, c->self.id) == 0) return -EPERM;
  out_begin(c);
  advance(c, now);
  if (c->st == SMR_ST_LEFT) return 0;

  /* Frames that do not need the sender to be in our view. */
  switch (h.type) {
  case SMR_MSG_DECIDE:
    if (proposal_valid(&m.u.decide.value)) learn(c, &m.u.decide.value);
    goto done;
  case SMR_MSG_VIEWINFO:
    on_viewinfo(c, &m);
    goto done;
  case SMR_MSG_HELLO:
    on_hello(c, &h, m.u.hello.flags);
    goto done;
  case SMR_MSG_JOIN:
    on_join(c, &h, &m);
    goto done;
  default:
    break;
  }
  /* A transfer's frame of a view we have not installed yet: lost (see
   * install()). */
  if (h.type == SMR_MSG_XFER && h.epoch > c->view.epoch &&
      h.epoch > c->xfer_early)
    c->xfer_early = h.epoch;
  if (c->st == SMR_ST_JOINING) {
    /* A member of the view we were excluded from, still in it. */
    if (c->has_last && h.epoch + 1 == c->last.next.epoch &&
        c->now >= c->last_relay + c->heartbeat_ms) {
      struct smr_member to;
      c->last_relay = c->now;
      member_for(c, &h, &to);
      send_decide(c, &to, &c->last);
    }
    goto done;
  }

  uint32_t from = rank_of(&c->view, h.from);
  if (h.epoch < c->view.epoch) {
    help_straggler(c, &h);
    goto done;
  }
  if (h.epoch > c->view.epoch) {
    /* We are behind: say so (a HELLO is answered with the sender's view,
     * which for the next epoch is its decision). */
    if (c->now >= c->last_nudge + c->heartbeat_ms) {
      struct smr_member to;
      c->last_nudge = c->now;
      member_for(c, &h, &to);
      send_hello_to(c, &to);
    }
    goto done;
  }
  if (from == NO_RANK) goto done;
  struct peer *p = peer_of(c, from);
  /* Incarnations: frames of an older process than the newest we heard are
   * leftovers; a newer process than the view's means the member restarted
   * (its old process failed).  The restarted process may still act in the
   * consensus of this epoch (it kept its acceptor state on disk), but only
   * the view's own process takes part in the data plane. */
  if (h.incarnation < p->inc_seen) goto done;
  if (h.incarnation > p->inc_seen) {
    p->inc_seen = h.incarnation;
    if (c->view.m[from].incarnation != 0) suspect(c, from);
  }
  int paxos = h.type == SMR_MSG_PREPARE || h.type == SMR_MSG_PROMISE ||
              h.type == SMR_MSG_ACCEPT || h.type == SMR_MSG_ACCEPTED ||
              h.type == SMR_MSG_NACK;
  if (!paxos && !same_process(&c->view.m[from], h.incarnation)) goto done;
  p->last_heard = c->now;
  if (c->st == SMR_ST_RECOVERING) c->suspects &= ~(1u << from);

  switch (h.type) {
  case SMR_MSG_HEARTBEAT:
    on_heartbeat(c, from, &m);
    break;
  case SMR_MSG_SUBMIT:
    on_submit(c, from, &m);
    break;
  case SMR_MSG_ORDER:
    on_order(c, from, &m);
    break;
  case SMR_MSG_PREPARE:
    on_prepare(c, from, m.u.prepare.ballot);
    break;
  case SMR_MSG_PROMISE: {
    struct promise pr;
    memset(&pr, 0, sizeof(pr));
    pr.have = 1;
    pr.incarnation = h.incarnation;
    pr.received = m.u.promise.received;
    pr.suspects = m.u.promise.suspects;
    pr.flags = m.u.promise.flags;
    pr.pos = m.u.promise.pos;
    pr.hash = m.u.promise.hash;
    pr.accepted_ballot = m.u.promise.accepted_ballot;
    pr.has_value = m.u.promise.has_value;
    if (pr.received < p->received) {
      c->refused++; /* it reports less than it acknowledged */
      break;
    }
    if (pr.has_value) {
      if (!proposal_valid(&m.u.promise.value) ||
          m.u.promise.value.next.epoch != c->view.epoch + 1)
        break;
      pr.value = m.u.promise.value;
    }
    on_promise_rec(c, from, &pr, m.u.promise.ballot);
    break;
  }
  case SMR_MSG_NACK:
    if (c->phase != 0 && m.u.nack.ballot == c->ballot) {
      c->phase = 0;
      if ((m.u.nack.promised >> 8) > c->round)
        c->round = m.u.nack.promised >> 8;
      if ((m.u.nack.promised & 0xff) < c->rank) c->lower_activity = c->now;
    }
    break;
  case SMR_MSG_ACCEPT:
    on_accept(c, from, m.u.accept.ballot, &m.u.accept.value);
    break;
  case SMR_MSG_ACCEPTED:
    on_accepted(c, from, m.u.accepted.ballot);
    break;
  case SMR_MSG_XFER:
    on_xfer(c, from, &m);
    break;
  case SMR_MSG_XFER_ACK:
    on_xfer_ack(c, from, &m);
    break;
  case SMR_MSG_LEAVE:
    p->leaving = 1;
    if (leavers(c)) wedge(c);
    break;
  default:
    break;
  }
done:
  maybe_start_change(c);
  check_quorum(c);
  CORE_CHECK(c);
  return 0;
}

/* ------------------------------------------------------------------------
 * Time
 * --------------------------------------------------------------------- */

static struct blob *hello_frame(struct smr_core *c) {
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  m.u.hello.flags =
      (c->acceptor_ok && c->st == SMR_ST_RECOVERING ? SMR_HELLO_RECOVERING
                                                     : 0) |
      (c->caught_up ? 0 : SMR_HELLO_NO_STATE);
  return frame(c, SMR_MSG_HELLO, c->view.epoch, &m);
}

static void send_hello_to(struct smr_core *c, const struct smr_member *to) {
  struct blob *b = hello_frame(c);
  send_blob(c, to, b);
  blob_unref(b);
}

static void send_hello(struct smr_core *c) {
  c->last_hello = c->now;
  struct blob *b = hello_frame(c);
  uint32_t sent = 0; /* bootstrap members already covered by the view */
  for (uint32_t r = 0; r < c->view.n; r++) {
    if (r == c->rank) continue;
    send_blob(c, &c->peers[r].m, b);
  }
  for (uint32_t i = 0; i < c->n_boot; i++) {
    if (strcmp(c->boot[i].id, c->self.id) == 0) continue;
    if (rank_of(&c->view, c->boot[i].id) != NO_RANK) continue;
    send_blob(c, &c->boot[i], b);
    sent++;
  }
  (void)sent;
  blob_unref(b);
}

void smr_core_tick(struct smr_core *c, uint64_t now) {
  out_begin(c);
  advance(c, now);
  if (c->n_joins > 0) prune_joins(c); /* (stale ones start no change) */
  switch (c->st) {
  case SMR_ST_LEFT:
    return;
  case SMR_ST_JOINING:
    if (c->now >= c->last_join_sent + c->suspect_ms / 2) join_broadcast(c);
    return;
  case SMR_ST_RECOVERING:
    if (c->now >= c->last_hello + c->heartbeat_ms) send_hello(c);
    for (uint32_t r = 0; r < c->view.n; r++)
      if (r != c->rank && c->now > c->peers[r].last_heard + c->suspect_ms)
        c->suspects |= 1u << r;
    break;
  case SMR_ST_NORMAL:
  case SMR_ST_WEDGED: {
    for (uint32_t r = 0; r < c->view.n; r++)
      if (r != c->rank && c->now > c->peers[r].last_heard + c->suspect_ms)
        suspect(c, r);
    int due = 0;
    for (uint32_t r = 0; r < c->view.n; r++)
      if (r != c->rank && c->now >= c->peers[r].last_sent + c->heartbeat_ms)
        due = 1;
    if (due) send_heartbeat_all(c);
    if (c->st == SMR_ST_NORMAL) {
      if (c->rank == 0) {
        leader_repair(c);
      } else {
        member_repair(c);
        chain_repair(c);
      }
    }
    /* The leader tells configured members outside the view where the
     * group is, so that they find it even if it moved to other hosts. */
    if (c->rank == 0 && c->st == SMR_ST_NORMAL &&
        c->now >= c->last_advert + 4ull * c->suspect_ms) {
      c->last_advert = c->now;
      for (uint32_t i = 0; i < c->n_boot; i++)
        if (rank_of(&c->view, c->boot[i].id) == NO_RANK)
          send_viewinfo(c, &c->boot[i]);
    }
    /* A state transfer that went quiet: ask again. */
    if (!c->caught_up && c->now >= c->xfer_heard + c->suspect_ms &&
        c->now >= c->last_xfer_req + c->suspect_ms)
      request_state(c);
    xfer_pump(c);
    break;
  }
  }
  /* A ballot that went nowhere: try again. */
  if (c->phase != 0 && c->now >= c->phase_start + 2ull * c->suspect_ms)
    c->phase = 0;
  proposer_progress(c);
  maybe_start_change(c);
  check_quorum(c);
  CORE_CHECK(c);
}

uint64_t smr_core_next_deadline(const struct smr_core *c) {
  uint64_t d = UINT64_MAX;
#define AT(t)            \
  do {                   \
    uint64_t t_ = (t);   \
    if (t_ < d) d = t_;  \
  } while (0)
  switch (c->st) {
  case SMR_ST_LEFT:
    return UINT64_MAX;
  case SMR_ST_JOINING:
    return c->last_join_sent + c->suspect_ms / 2;
  case SMR_ST_RECOVERING:
    AT(c->last_hello + c->heartbeat_ms);
    AT(c->created_at + c->suspect_ms);
    for (uint32_t r = 0; r < c->view.n; r++)
      if (r != c->rank && !(c->suspects & (1u << r)))
        AT(c->peers[r].last_heard + c->suspect_ms + 1);
    break;
  case SMR_ST_NORMAL:
  case SMR_ST_WEDGED:
    for (uint32_t r = 0; r < c->view.n; r++) {
      if (r == c->rank) continue;
      AT(c->peers[r].last_sent + c->heartbeat_ms);
      if (!(c->suspects & (1u << r)))
        AT(c->peers[r].last_heard + c->suspect_ms + 1);
    }
    if (c->rank == 0 && c->st == SMR_ST_NORMAL)
      AT(c->last_advert + 4ull * c->suspect_ms);
    if (!c->caught_up) {
      uint64_t a = c->xfer_heard + c->suspect_ms;
      uint64_t b = c->last_xfer_req + c->suspect_ms;
      AT(a > b ? a : b);
    }
    if (c->n_joins && c->rank == 0) AT(c->first_join_at + c->join_batch_ms);
    if (c->st == SMR_ST_WEDGED) AT(c->wedged_at + 6ull * c->suspect_ms);
    break;
  }
  if (c->phase != 0) {
    AT(c->phase_start + c->suspect_ms);
    AT(c->phase_start + 2ull * c->suspect_ms);
  }
  if (c->lower_activity) AT(c->lower_activity + 2ull * c->suspect_ms);
#undef AT
  if (d <= c->now) d = c->now + 1;
  return d;
}

/* ------------------------------------------------------------------------
 * Local requests
 * --------------------------------------------------------------------- */

int smr_core_submit(struct smr_core *c, uint64_t now, const void *data,
                    size_t len) {
  if (c->st == SMR_ST_LEFT) return -ENOTCONN;
  if (len > c->max_batch_bytes || len > SMR_FRAME_MAX / 2) return -EMSGSIZE;
  if (c->pend.n >= c->max_pending) return -EAGAIN;
  /* And by bytes: a program that submits faster than the group carries
   * would otherwise queue without bound (the benchmark's 1000 x 64 KiB
   * at once kept the primary's loop busy past suspect_ms under TCG). */
  if (c->max_pending_bytes != 0 && c->pend.n > 0 &&
      c->pend.bytes + len > c->max_pending_bytes)
    return -EAGAIN;
  out_begin(c);
  advance(c, now);
  struct ent e = {.b = blob_new(data, len)};
  entq_push(&c->pend, e);
  return 0;
}

void smr_core_flush(struct smr_core *c, uint64_t now) {
  out_begin(c);
  advance(c, now);
  if (c->st == SMR_ST_NORMAL) {
    if (c->rank == 0)
      leader_order(c);
    else
      member_submit(c);
    if (c->received > c->acked) {
      c->acked = c->received;
      send_heartbeat_all(c);
    }
  }
  if (c->st == SMR_ST_NORMAL || c->st == SMR_ST_WEDGED) {
    update_stable(c);
    xfer_pump(c);
  }
  CORE_CHECK(c);
}

int smr_core_leave(struct smr_core *c, uint64_t now) {
  if (c->st == SMR_ST_LEFT) return -ENOTCONN;
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return -EAGAIN;
  out_begin(c);
  advance(c, now);
  if (c->leaving) return 0;
  c->leaving = 1;
  struct smr_wire_msg m;
  memset(&m, 0, sizeof(m));
  struct blob *b = frame(c, SMR_MSG_LEAVE, c->view.epoch, &m);
  send_to_all(c, b);
  blob_unref(b);
  wedge(c);
  maybe_start_change(c);
  CORE_CHECK(c);
  return 0;
}

void smr_core_peer_lost(struct smr_core *c, uint64_t now, const char *id) {
  out_begin(c);
  advance(c, now);
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  suspect(c, rank_of(&c->view, id));
  maybe_start_change(c);
  check_quorum(c);
  CORE_CHECK(c);
}

void smr_core_send_dropped(struct smr_core *c, const char *id) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return;
  uint32_t r = rank_of(&c->view, id);
  if (r != NO_RANK && r != c->rank) c->peers[r].dropped = 1;
}

/* ------------------------------------------------------------------------
 * Creation, status
 * --------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static int cfg_error(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static int id_ok(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  return n > 0 && n < max;
}

int smr_core_create(const struct smr_core_config *cfg, struct smr_core **out,
                    char *err, size_t errlen) {
  *out = NULL;
  if (cfg->group == NULL || !id_ok(cfg->group, 64))
    return cfg_error(err, errlen, "group name must be 1..63 bytes");
  if (!id_ok(cfg->self.id, SMR_ID_MAX))
    return cfg_error(err, errlen, "member id must be 1..%d bytes",
                     SMR_ID_MAX - 1);
  if (strnlen(cfg->self.addr, SMR_ADDR_MAX) >= SMR_ADDR_MAX)
    return cfg_error(err, errlen, "member address too long");
  if (cfg->self.incarnation == 0)
    return cfg_error(err, errlen, "incarnation must be at least 1");
  if (cfg->n_bootstrap == 0 || cfg->n_bootstrap > SMR_MAX_MEMBERS)
    return cfg_error(err, errlen, "need 1..%d bootstrap members",
                     SMR_MAX_MEMBERS);
  for (uint32_t i = 0; i < cfg->n_bootstrap; i++) {
    if (!id_ok(cfg->bootstrap[i].id, SMR_ID_MAX))
      return cfg_error(err, errlen, "bootstrap member %u: bad id", i);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(cfg->bootstrap[i].id, cfg->bootstrap[j].id) == 0)
        return cfg_error(err, errlen, "bootstrap member '%s' listed twice",
                         cfg->bootstrap[i].id);
  }
  if (cfg->heartbeat_ms == 0 || cfg->suspect_ms <= cfg->heartbeat_ms)
    return cfg_error(err, errlen,
                     "need 0 < heartbeat_ms < suspect_ms (got %u, %u)",
                     cfg->heartbeat_ms, cfg->suspect_ms);
  if (cfg->max_batch_bytes == 0 || cfg->max_inflight == 0 ||
      cfg->max_pending == 0 || cfg->xfer_chunk == 0 || cfg->xfer_window == 0)
    return cfg_error(err, errlen, "batch, window and chunk sizes must be > 0");
  const struct smr_core_persisted *p = cfg->restore;
  if (p != NULL) {
    if (p->view.n == 0 || p->view.n > SMR_MAX_MEMBERS)
      return cfg_error(err, errlen, "persisted view is not valid");
    if (rank_of(&p->view, cfg->self.id) == NO_RANK)
      return cfg_error(err, errlen, "persisted view does not contain us");
    if (p->has_accepted && (p->accepted.next.epoch != p->view.epoch + 1 ||
                            !proposal_valid(&p->accepted)))
      return cfg_error(err, errlen, "persisted acceptor state is not valid");
    /* Consecutive; they may start after 1 when the service state (a
     * checkpoint) already covers the ones before. */
    for (uint32_t i = 0; i < p->n_entries; i++)
      if (p->entries[i].seq != p->entries[0].seq + i || p->entries[i].seq == 0 ||
          p->entries[i].sender >= p->view.n)
        return cfg_error(err, errlen, "persisted entries are not consecutive");
  }

  struct smr_core *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  snprintf(c->group, sizeof(c->group), "%s", cfg->group);
  c->group_hash = smr_wire_group_hash(c->group);
  c->self = cfg->self;
  c->self.id[SMR_ID_MAX - 1] = 0;
  c->self.addr[SMR_ADDR_MAX - 1] = 0;
  c->n_boot = cfg->n_bootstrap;
  memcpy(c->boot, cfg->bootstrap, cfg->n_bootstrap * sizeof(c->boot[0]));
  c->heartbeat_ms = cfg->heartbeat_ms;
  c->suspect_ms = cfg->suspect_ms;
  c->join_batch_ms = cfg->join_batch_ms;
  c->max_batch_bytes = cfg->max_batch_bytes;
  c->relay = cfg->relay != 0;
  c->max_inflight = cfg->max_inflight;
  c->max_pending = cfg->max_pending;
  c->max_pending_bytes = cfg->max_pending_bytes;
  c->xfer_chunk = cfg->xfer_chunk;
  c->xfer_window = cfg->xfer_window;
  c->durable = cfg->durable;
  c->src = cfg->source;
  c->unsent = cfg->unsent;
  c->unsent_ctx = cfg->unsent_ctx;
  c->st = SMR_ST_RECOVERING;
  c->rank = NO_RANK;

  c->from_disk = p != NULL;
  if (p != NULL) {
    /* Back from our own disk: recovering in our last installed view. */
    c->view = p->view;
    set_view(c, &p->view, rank_of(&p->view, cfg->self.id));
    c->acceptor_ok = 1;
    c->promised = p->promised;
    c->acc_ballot = p->accepted_ballot;
    c->has_acc = p->has_accepted;
    if (p->has_accepted) c->acc = p->accepted;
    c->svc_valid = 1;
    c->pos = p->pos;
    c->hash = p->hash;
    /* Is the service state this view's?  When the persisted entries start
     * at 1, the view's start followed by the entries it delivered must lead
     * exactly to it.  When they start later, a checkpoint of this view
     * covered the ones before (the runtime checked the checkpoint and the
     * replay after it), and the state must reach at least that far.  (The
     * view's NEEDS_STATE flag says nothing now: the state may have arrived
     * since.) */
    uint64_t first = p->n_entries ? p->entries[0].seq : 1;
    uint64_t last = p->n_entries ? p->entries[p->n_entries - 1].seq : 0;
    c->caught_up = 0;
    if (p->pos >= p->view.start_pos) {
      uint64_t d = p->pos - p->view.start_pos;
      if (p->n_entries && (first > d + 1 || last < d)) {
        free(c);
        return cfg_error(err, errlen,
                         "state at position %llu does not meet the persisted "
                         "entries %llu..%llu of epoch %llu",
                         (unsigned long long)p->pos,
                         (unsigned long long)first, (unsigned long long)last,
                         (unsigned long long)p->view.epoch);
      }
      if (p->n_entries > 0 && first == 1 && d > 0) { /* d <= last: checked */
        uint64_t h = p->view.start_hash;
        for (uint64_t i = 0; i < d; i++)
          h = smr_chain_hash(h, p->view.start_pos + i + 1,
                             p->entries[i].data, p->entries[i].len);
        c->caught_up = h == p->hash;
      } else {
        c->caught_up = d > 0 || p->hash == p->view.start_hash;
      }
      if (c->caught_up) {
        c->delivered = d;
        c->received = d;
      }
    }
    if (!c->caught_up && first != 1) {
      free(c);
      return cfg_error(err, errlen,
                       "persisted entries of epoch %llu start at %llu and "
                       "the service state is not this view's",
                       (unsigned long long)p->view.epoch,
                       (unsigned long long)first);
    }
    for (uint32_t i = 0; i < p->n_entries; i++) {
      if (p->entries[i].seq > c->received) c->received = p->entries[i].seq;
      if (c->caught_up && p->entries[i].seq <= c->delivered) continue;
      struct ent e = {.sender = p->entries[i].sender,
                      .sender_seq = p->entries[i].sender_seq,
                      .b = blob_new(p->entries[i].data, p->entries[i].len)};
      entq_push(&c->rbuf, e);
    }
    if (!c->caught_up) c->delivered = 0;
    c->acked = c->received;
  } else {
    /* Fresh: the bootstrap list is the placeholder view of epoch 0. */
    struct smr_wire_view v;
    memset(&v, 0, sizeof(v));
    for (uint32_t i = 0; i < cfg->n_bootstrap; i++) {
      struct smr_wire_member *w = &v.m[v.n++];
      memcpy(w->id, cfg->bootstrap[i].id, SMR_ID_MAX);
      w->id[SMR_ID_MAX - 1] = 0;
      memcpy(w->addr, cfg->bootstrap[i].addr, SMR_ADDR_MAX);
      w->addr[SMR_ADDR_MAX - 1] = 0;
      w->incarnation = 0;
    }
    set_view(c, &v, rank_of(&v, cfg->self.id));
    c->svc_valid = 1; /* the empty state is the state at position 0 */
    c->caught_up = 1;
    c->pos = cfg->state_pos;
    c->hash = cfg->state_hash;
    /* A process that lost its memory must not vote in epoch 0 again. */
    c->acceptor_ok = c->rank != NO_RANK && cfg->first_boot;
    /* With a disk, even epoch 0's votes are kept: the placeholder view is
     * persisted first, so a restart finds its acceptor state. */
    if (c->acceptor_ok && cfg->durable) {
      struct outev *o = out_push(c, SMR_EV_PERSIST_VIEW);
      o->b = blob_new(&v, sizeof(v));
      o->ev.u.view.rank = c->rank;
    }
  }
  c->now = 0;
  c->created_at = 0;
  c->last_hello = 0;
  if (c->rank == NO_RANK) {
    /* Not a configured member: a joiner.  Ask the configured members. */
    c->acceptor_ok = 0;
    c->caught_up = 0;
    c->st = SMR_ST_JOINING;
    c->target = c->view;
  }
  *out = c;
  return 0;
}

void smr_core_destroy(struct smr_core *c) {
  if (c == NULL) return;
  out_reset(c);
  free(c->out);
  entq_free(&c->rbuf);
  entq_free(&c->orderq);
  entq_free(&c->pend);
  xfer_reset(c);
  free(c->scratch);
  free(c);
}

void smr_core_status(const struct smr_core *c, struct smr_core_status *st) {
  memset(st, 0, sizeof(*st));
  st->state = c->st;
  st->view = &c->view;
  st->rank = c->rank;
  st->has_state = c->caught_up;
  st->quorum_lost = c->quorum_lost;
  st->pos = c->pos;
  st->hash = c->hash;
  st->received = c->received;
  st->stable = c->stable;
  st->delivered = c->delivered;
  st->views_installed = c->views_installed;
  st->delivered_total = c->delivered_total;
  st->suspicions = c->suspicions;
  st->pending = (uint32_t)c->pend.n;
  st->suspects = c->suspects;
  st->leaving = c->leaving;
  for (uint32_t r = 0; r < c->view.n && r < 32; r++)
    if (r == c->rank ? c->leaving : c->peers[r].leaving)
      st->leaving_mask |= 1u << r;
  st->refused = c->refused;
  for (uint32_t r = 0; r < c->view.n && r < 32; r++) {
    int lacks = r == c->rank ? !c->caught_up
                             : (c->peers[r].flags & HB_NO_STATE) != 0;
    if (lacks) st->lacks_state |= 1u << r;
  }
  for (uint32_t r = 0; r < c->view.n && r < SMR_MAX_MEMBERS; r++)
    st->m_delivered[r] = r == c->rank ? c->delivered : c->peers[r].delivered;
  st->xfer_rank = UINT32_MAX;
  for (uint32_t r = 0; r < c->view.n && r < SMR_MAX_MEMBERS; r++)
    if (c->xf[r].active) {
      st->xfer_rank = r;
      st->xfer_delta = c->xf[r].delta;
      st->xfer_acked = c->xf[r].acked;
    }
  st->xfers_out = c->xfers_out;
  st->relayed = c->relayed;
  st->repairs = c->repairs;
  st->xfer_bytes_out = c->xfer_bytes_out;
  st->xfers_in = c->xfers_in;
  st->xfer_bytes_in = c->xfer_bytes_in;
}

uint64_t smr_core_quorum_heard(const struct smr_core *c) {
  if (c->st != SMR_ST_NORMAL && c->st != SMR_ST_WEDGED) return 0;
  /* The (need-1)-th most recent contact among the others: by then a
   * majority of the view, counting ourselves, had been heard from. */
  uint32_t need = c->view.n / 2 + 1;
  if (need <= 1) return c->now;
  uint64_t best[SMR_MAX_MEMBERS];
  uint32_t k = 0;
  for (uint32_t r = 0; r < c->view.n; r++)
    if (r != c->rank) best[k++] = c->peers[r].last_heard;
  /* Few members: a selection by repeated maxima is enough. */
  uint64_t t = 0;
  for (uint32_t i = 0; i < need - 1 && i < k; i++) {
    uint32_t m = i;
    for (uint32_t j = i + 1; j < k; j++)
      if (best[j] > best[m]) m = j;
    uint64_t x = best[i];
    best[i] = best[m];
    best[m] = x;
    t = best[i];
  }
  return t;
}

const char *smr_core_state_name(enum smr_core_state s) {
  switch (s) {
  case SMR_ST_RECOVERING: return "recovering";
  case SMR_ST_JOINING: return "joining";
  case SMR_ST_NORMAL: return "normal";
  case SMR_ST_WEDGED: return "wedged";
  case SMR_ST_LEFT: return "left";
  }
  return "unknown";
}
