/* conntab.c -- the replicated table of client connections.
 *
 * DESIGN
 * ======
 * For a member to take over a client's TCP connection it must know, at the
 * moment it becomes primary, everything the dead primary knew that the
 * client can observe: the connection's TCP parameters, how many of the
 * client's bytes the group consumed (so the restored socket expects the
 * next one, and the client resends the rest), and the reply bytes the
 * client may not have received (so they can be sent again).  That is
 * replicated state, and the simplest correct way to keep replicated state
 * is to make it part of the state machine: this file wraps a service's
 * state machine (struct smr_service_ops) with a table of connections.
 *
 * Every submission is a record with a one-byte kind:
 *
 *   PLAIN   a request of the inner service that belongs to no gated
 *           connection (a backup's client, a timer tick): passed through;
 *   OPEN    a connection was accepted on the VIP: id, TCP state;
 *   REQ     one request of a connection: the stream offsets [start, end)
 *           of its bytes, the client's acknowledged reply offset as the
 *           primary last saw it, flags, and the inner request (or, with
 *           TCPR_REQ_LITERAL, the reply bytes themselves: QUIT's +OK, a
 *           protocol error).  Applied only if start >= the table's rcv_off
 *           (bytes in between are empty requests a parser skips); anything
 *           else is a duplicate and is skipped, so a request is applied once
 *           whoever submits it.  The reply is appended to the connection's
 *           unacknowledged bytes, which every replica therefore holds;
 *   ACKED   the client acknowledged reply bytes up to an offset: trim;
 *   FIN     the client closed its side;
 *   FORGET  the connection is gone;
 *   TAKE    a new primary takes the connections over.
 *
 * Every record but PLAIN carries the submitter's owner epoch (the epoch of
 * the view in which it became primary).  The table remembers the highest
 * one it applied and skips records with a lower one: a deposed primary can
 * still have submissions on their way (the core resubmits them when it
 * rejoins), and they must not move offsets the new primary restored from.
 *   PART    client bytes of a request that is not complete yet, replicated
 *           ahead so that the gate can acknowledge them: a client cannot
 *           send more than its congestion window without acknowledgements,
 *           so a request larger than that would never arrive whole if its
 *           bytes were only released with the request.  The table keeps
 *           them (every replica); the next REQ of the connection consumes
 *           them, and a new primary feeds them to its parser at takeover.
 *
 * Replies are deterministic (the inner service's contract), so replicas
 * need not ship reply bytes to each other: each computes them.  What a
 * replica does not know is how far the client has read; the primary tells
 * in REQ and ACKED, and a stale value only means some bytes are sent twice
 * after a takeover, which TCP discards as duplicates.
 *
 * The image (snapshot) is the table, then the inner image:
 *   u64 table length L, L table bytes, inner image bytes.
 * The table encoding ("TCT2", count, then each connection in id order) is
 * also what the digest hashes, with the inner digest.
 *
 * All integers are little endian.  Every decoder checks lengths and fields
 * and refuses bad bytes with -EINVAL without changing the state. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "smr/service.h"
#include "tcpr.h"

enum {
  REC_PLAIN = 0,
  REC_OPEN,
  REC_REQ,
  REC_ACKED,
  REC_FIN,
  REC_FORGET,
  REC_PART,
  REC_TAKE
};

#define TCP_STATE_LEN (4 + 4 + 2 + 2 + 4 + 4 + 2 + 1 + 1 + 1 + 4 + 8 + 4 + 4 + 4)
#define TABLE_MAGIC "TCT2"

struct tcpr_conntab {
  const struct smr_service_ops *inner_ops;
  void *inner;
  struct tcpr_conn **conns; /* sorted by id */
  uint64_t owner;           /* the current primary's owner epoch */
  size_t n, cap;
  /* Restore in progress. */
  uint64_t r_pos, r_table_len;
  uint8_t r_hdr[8];
  struct smr_buf r_table;
};

/* ------------------------------------------------------------------------
 * Little-endian encoding
 * --------------------------------------------------------------------- */

static int put(struct smr_buf *b, uint64_t v, int bytes) {
  uint8_t t[8];
  for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
  return smr_buf_append(b, t, (size_t)bytes);
}

struct rd {
  const uint8_t *p;
  size_t len, off;
  int bad;
};

static uint64_t get(struct rd *r, int bytes) {
  if (r->bad || r->len - r->off < (size_t)bytes) {
    r->bad = 1;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->off + i] << (8 * i);
  r->off += (size_t)bytes;
  return v;
}

static const uint8_t *get_bytes(struct rd *r, size_t n) {
  if (r->bad || r->len - r->off < n) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += n;
  return p;
}

static int put_tcp(struct smr_buf *b, const struct tcpr_tcp_state *s) {
  int rc = 0;
  rc |= put(b, s->laddr, 4);
  rc |= put(b, s->raddr, 4);
  rc |= put(b, s->lport, 2);
  rc |= put(b, s->rport, 2);
  rc |= put(b, s->rcv_isn1, 4);
  rc |= put(b, s->snd_isn1, 4);
  rc |= put(b, s->mss, 2);
  rc |= put(b, s->snd_wscale, 1);
  rc |= put(b, s->rcv_wscale, 1);
  rc |= put(b, s->opts, 1);
  rc |= put(b, s->tsval, 4);
  rc |= put(b, (uint64_t)s->ts_wall_us, 8);
  rc |= put(b, s->snd_wnd, 4);
  rc |= put(b, s->max_window, 4);
  rc |= put(b, s->rcv_wnd, 4);
  return rc ? -ENOMEM : 0;
}

static void get_tcp(struct rd *r, struct tcpr_tcp_state *s) {
  s->laddr = (uint32_t)get(r, 4);
  s->raddr = (uint32_t)get(r, 4);
  s->lport = (uint16_t)get(r, 2);
  s->rport = (uint16_t)get(r, 2);
  s->rcv_isn1 = (uint32_t)get(r, 4);
  s->snd_isn1 = (uint32_t)get(r, 4);
  s->mss = (uint16_t)get(r, 2);
  s->snd_wscale = (uint8_t)get(r, 1);
  s->rcv_wscale = (uint8_t)get(r, 1);
  s->opts = (uint8_t)get(r, 1);
  s->tsval = (uint32_t)get(r, 4);
  s->ts_wall_us = (int64_t)get(r, 8);
  s->snd_wnd = (uint32_t)get(r, 4);
  s->max_window = (uint32_t)get(r, 4);
  s->rcv_wnd = (uint32_t)get(r, 4);
  if (s->snd_wscale > 14 || s->rcv_wscale > 14 ||
      (s->opts & ~(TCPR_OPT_SACK | TCPR_OPT_TS | TCPR_OPT_WSCALE)) ||
      s->mss == 0)
    r->bad = 1;
}

/* ------------------------------------------------------------------------
 * Record encoders
 * --------------------------------------------------------------------- */

int tcpr_rec_plain(struct smr_buf *out, const void *req, size_t len) {
  if (put(out, REC_PLAIN, 1) < 0) return -ENOMEM;
  return smr_buf_append(out, req, len);
}

int tcpr_rec_open(struct smr_buf *out, uint64_t owner, uint64_t id,
                  const struct tcpr_tcp_state *st) {
  if (put(out, REC_OPEN, 1) | put(out, owner, 8) | put(out, id, 8))
    return -ENOMEM;
  return put_tcp(out, st);
}

int tcpr_rec_req(struct smr_buf *out, uint64_t owner, uint64_t id,
                 uint64_t start, uint64_t end, uint64_t acked, unsigned flags,
                 const void *payload, size_t len) {
  if (end < start || flags > (TCPR_REQ_LITERAL | TCPR_REQ_CLOSE_AFTER))
    return -EINVAL;
  int rc = put(out, REC_REQ, 1) | put(out, owner, 8) | put(out, id, 8) |
           put(out, start, 8) |
           put(out, end, 8) | put(out, acked, 8) | put(out, flags, 1);
  if (rc) return -ENOMEM;
  return smr_buf_append(out, payload, len);
}

int tcpr_rec_acked(struct smr_buf *out, uint64_t owner, uint64_t id,
                   uint64_t acked) {
  return (put(out, REC_ACKED, 1) | put(out, owner, 8) | put(out, id, 8) |
          put(out, acked, 8))
             ? -ENOMEM
             : 0;
}

int tcpr_rec_fin(struct smr_buf *out, uint64_t owner, uint64_t id,
                 uint64_t at) {
  return (put(out, REC_FIN, 1) | put(out, owner, 8) | put(out, id, 8) |
          put(out, at, 8))
             ? -ENOMEM
             : 0;
}

int tcpr_rec_forget(struct smr_buf *out, uint64_t owner, uint64_t id) {
  return (put(out, REC_FORGET, 1) | put(out, owner, 8) | put(out, id, 8))
             ? -ENOMEM
             : 0;
}

int tcpr_rec_take(struct smr_buf *out, uint64_t owner) {
  return (put(out, REC_TAKE, 1) | put(out, owner, 8)) ? -ENOMEM : 0;
}

int tcpr_rec_part(struct smr_buf *out, uint64_t owner, uint64_t id,
                  uint64_t at, const void *bytes, size_t len) {
  if (len == 0 || len > TCPR_MAX_PARTIAL) return -EINVAL;
  if (put(out, REC_PART, 1) | put(out, owner, 8) | put(out, id, 8) |
      put(out, at, 8))
    return -ENOMEM;
  return smr_buf_append(out, bytes, len);
}

/* ------------------------------------------------------------------------
 * The table
 * --------------------------------------------------------------------- */

static size_t find_idx(const struct tcpr_conntab *t, uint64_t id, int *found) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (t->conns[mid]->id < id) lo = mid + 1;
    else hi = mid;
  }
  *found = lo < t->n && t->conns[lo]->id == id;
  return lo;
}

const struct tcpr_conn *tcpr_conntab_find(const struct tcpr_conntab *t,
                                          uint64_t id) {
  int found;
  size_t i = find_idx(t, id, &found);
  return found ? t->conns[i] : NULL;
}

size_t tcpr_conntab_count(const struct tcpr_conntab *t) { return t->n; }

uint64_t tcpr_conntab_owner(const struct tcpr_conntab *t) { return t->owner; }

const struct tcpr_conn *tcpr_conntab_at(const struct tcpr_conntab *t,
                                        size_t i) {
  return i < t->n ? t->conns[i] : NULL;
}

static void conn_free(struct tcpr_conn *c) {
  free(c->unacked);
  free(c->partial);
  free(c);
}

/* The request stream was consumed up to `end`: partial bytes below it go. */
static void consume_partial(struct tcpr_conn *c, uint64_t end) {
  uint64_t pend = c->rcv_off + c->partial_len;
  if (end >= pend) {
    c->partial_len = 0;
  } else if (end > c->rcv_off) {
    size_t drop = (size_t)(end - c->rcv_off);
    memmove(c->partial, c->partial + drop, c->partial_len - drop);
    c->partial_len -= drop;
  }
}

static int add_partial(struct tcpr_conn *c, const uint8_t *p, size_t len) {
  if (c->partial_len + len > TCPR_MAX_PARTIAL) return -EFBIG;
  if (c->partial_len + len > c->partial_cap) {
    size_t cap = c->partial_cap ? c->partial_cap : 4096;
    while (cap < c->partial_len + len) cap *= 2;
    void *q = realloc(c->partial, cap);
    if (q == NULL) return -ENOMEM;
    c->partial = q;
    c->partial_cap = cap;
  }
  memcpy(c->partial + c->partial_len, p, len);
  c->partial_len += len;
  return 0;
}

static void remove_at(struct tcpr_conntab *t, size_t i) {
  conn_free(t->conns[i]);
  memmove(&t->conns[i], &t->conns[i + 1], (t->n - i - 1) * sizeof(*t->conns));
  t->n--;
}

static void table_clear(struct tcpr_conntab *t) {
  for (size_t i = 0; i < t->n; i++) conn_free(t->conns[i]);
  t->n = 0;
  t->owner = 0;
}

/* Inserts c (its id not present).  -ENOSPC when full. */
static int insert(struct tcpr_conntab *t, struct tcpr_conn *c) {
  int found;
  size_t i = find_idx(t, c->id, &found);
  if (found) return -EEXIST;
  if (t->n >= TCPR_MAX_CONNS) return -ENOSPC;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    void *p = realloc(t->conns, cap * sizeof(*t->conns));
    if (p == NULL) return -ENOMEM;
    t->conns = p;
    t->cap = cap;
  }
  memmove(&t->conns[i + 1], &t->conns[i], (t->n - i) * sizeof(*t->conns));
  t->conns[i] = c;
  t->n++;
  return 0;
}

static size_t unacked_len(const struct tcpr_conn *c) {
  return (size_t)(c->snd_off - c->acked);
}

/* The client acknowledged up to `acked` (ignored if not forward, clamped
 * to what was produced). */
static void trim(struct tcpr_conn *c, uint64_t acked) {
  if (acked > c->snd_off) acked = c->snd_off;
  if (acked <= c->acked) return;
  size_t drop = (size_t)(acked - c->acked);
  memmove(c->unacked, c->unacked + drop, unacked_len(c) - drop);
  c->acked = acked;
}

static int add_reply(struct tcpr_conn *c, const uint8_t *p, size_t len) {
  if (len == 0) return 0; /* (c->unacked may still be NULL) */
  size_t have = unacked_len(c);
  if (have + len > c->unacked_cap) {
    size_t cap = c->unacked_cap ? c->unacked_cap : 256;
    while (cap < have + len) cap *= 2;
    void *q = realloc(c->unacked, cap);
    if (q == NULL) return -ENOMEM;
    c->unacked = q;
    c->unacked_cap = cap;
  }
  memcpy(c->unacked + have, p, len);
  c->snd_off += len;
  return 0;
}

/* ------------------------------------------------------------------------
 * Apply
 * --------------------------------------------------------------------- */

static int status(struct smr_buf *reply, uint8_t st) {
  return smr_buf_append(reply, &st, 1);
}

/* Records of a primary that has been replaced (a lower owner epoch than
 * the table's) are skipped: a deposed primary may still have submissions
 * on their way.  A higher owner epoch takes the table over. */
static int own(struct tcpr_conntab *t, uint64_t owner) {
  if (owner < t->owner) return 0;
  t->owner = owner;
  return 1;
}

static int apply_take(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                      struct smr_buf *reply) {
  if (r->bad || r->off != r->len) return -EINVAL;
  return status(reply, own(t, owner) ? TCPR_ST_APPLIED : TCPR_ST_SKIPPED);
}

static int apply_open(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                      struct smr_buf *reply) {
  uint64_t id = get(r, 8);
  struct tcpr_tcp_state st;
  get_tcp(r, &st);
  if (r->bad || r->off != r->len) return -EINVAL;
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  /* A new connection from the same client address and port replaces one
   * the table still holds (its FORGET was lost with a primary). */
  for (size_t i = 0; i < t->n; i++) {
    const struct tcpr_tcp_state *o = &t->conns[i]->tcp;
    if (o->raddr == st.raddr && o->rport == st.rport &&
        o->laddr == st.laddr && o->lport == st.lport) {
      remove_at(t, i);
      break;
    }
  }
  if (tcpr_conntab_find(t, id) != NULL) return status(reply, TCPR_ST_SKIPPED);
  struct tcpr_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return -ENOMEM;
  c->id = id;
  c->tcp = st;
  int rc = insert(t, c);
  if (rc < 0) {
    conn_free(c);
    if (rc == -ENOSPC) return status(reply, TCPR_ST_REFUSED);
    return rc;
  }
  return status(reply, TCPR_ST_APPLIED);
}

static int apply_req(struct tcpr_conntab *t, uint64_t owner, uint64_t pos,
                     struct rd *r, struct smr_buf *reply) {
  uint64_t id = get(r, 8), start = get(r, 8), end = get(r, 8);
  uint64_t acked = get(r, 8);
  unsigned flags = (unsigned)get(r, 1);
  if (r->bad || end < start ||
      flags > (TCPR_REQ_LITERAL | TCPR_REQ_CLOSE_AFTER))
    return -EINVAL;
  size_t plen = r->len - r->off;
  const uint8_t *payload = get_bytes(r, plen);
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  int found;
  size_t i = find_idx(t, id, &found);
  if (!found) return status(reply, TCPR_ST_SKIPPED);
  struct tcpr_conn *c = t->conns[i];
  if (start < c->rcv_off || c->fin || c->closing)
    return status(reply, TCPR_ST_SKIPPED);
  /* The reply goes both to the submitter (after the status byte) and to
   * the table. */
  size_t base = reply->len;
  int rc = status(reply, TCPR_ST_APPLIED);
  if (rc < 0) return rc;
  if (flags & TCPR_REQ_LITERAL) {
    rc = smr_buf_append(reply, payload, plen);
  } else {
    rc = t->inner_ops->apply(t->inner, pos, payload, plen, reply);
  }
  if (rc < 0) return rc;
  rc = add_reply(c, reply->data + base + 1, reply->len - base - 1);
  if (rc < 0) return rc;
  consume_partial(c, end);
  c->rcv_off = end;
  if (flags & TCPR_REQ_CLOSE_AFTER) c->closing = 1;
  trim(c, acked);
  return 0;
}

static int apply_acked(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                       struct smr_buf *reply) {
  uint64_t id = get(r, 8), acked = get(r, 8);
  if (r->bad || r->off != r->len) return -EINVAL;
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  int found;
  size_t i = find_idx(t, id, &found);
  if (!found) return status(reply, TCPR_ST_SKIPPED);
  trim(t->conns[i], acked);
  return status(reply, TCPR_ST_APPLIED);
}

static int apply_fin(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                     struct smr_buf *reply) {
  uint64_t id = get(r, 8), at = get(r, 8);
  if (r->bad || r->off != r->len) return -EINVAL;
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  int found;
  size_t i = find_idx(t, id, &found);
  if (!found) return status(reply, TCPR_ST_SKIPPED);
  struct tcpr_conn *c = t->conns[i];
  if (c->fin || at < c->rcv_off) return status(reply, TCPR_ST_SKIPPED);
  consume_partial(c, at); /* an unfinished request: never comes now */
  c->partial_len = 0;
  c->rcv_off = at;
  c->fin = 1;
  return status(reply, TCPR_ST_APPLIED);
}

static int apply_forget(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                        struct smr_buf *reply) {
  uint64_t id = get(r, 8);
  if (r->bad || r->off != r->len) return -EINVAL;
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  int found;
  size_t i = find_idx(t, id, &found);
  if (!found) return status(reply, TCPR_ST_SKIPPED);
  remove_at(t, i);
  return status(reply, TCPR_ST_APPLIED);
}

static int apply_part(struct tcpr_conntab *t, uint64_t owner, struct rd *r,
                      struct smr_buf *reply) {
  uint64_t id = get(r, 8), at = get(r, 8);
  size_t len = r->len - r->off;
  const uint8_t *bytes = get_bytes(r, len);
  if (r->bad || len == 0 || len > TCPR_MAX_PARTIAL) return -EINVAL;
  if (!own(t, owner)) return status(reply, TCPR_ST_SKIPPED);
  int found;
  size_t i = find_idx(t, id, &found);
  if (!found) return status(reply, TCPR_ST_SKIPPED);
  struct tcpr_conn *c = t->conns[i];
  uint64_t have = c->rcv_off + c->partial_len;
  /* Only what continues the stream exactly (a duplicate or a gap is a
   * record of a former primary's, or a bug: skipped). */
  if (c->fin || c->closing || at != have) return status(reply, TCPR_ST_SKIPPED);
  int rc = add_partial(c, bytes, len);
  if (rc == -EFBIG) return status(reply, TCPR_ST_REFUSED);
  if (rc < 0) return rc;
  return status(reply, TCPR_ST_APPLIED);
}

static int ct_apply(void *svc, uint64_t pos, const uint8_t *req, size_t len,
                    struct smr_buf *reply) {
  struct tcpr_conntab *t = svc;
  if (len < 1) return -EINVAL;
  struct rd r = {req, len, 1, 0};
  if (req[0] == REC_PLAIN)
    return t->inner_ops->apply(t->inner, pos, req + 1, len - 1, reply);
  uint64_t owner = get(&r, 8);
  if (r.bad) return -EINVAL;
  switch (req[0]) {
  case REC_OPEN: return apply_open(t, owner, &r, reply);
  case REC_REQ: return apply_req(t, owner, pos, &r, reply);
  case REC_ACKED: return apply_acked(t, owner, &r, reply);
  case REC_FIN: return apply_fin(t, owner, &r, reply);
  case REC_FORGET: return apply_forget(t, owner, &r, reply);
  case REC_PART: return apply_part(t, owner, &r, reply);
  case REC_TAKE: return apply_take(t, owner, &r, reply);
  default: return -EINVAL;
  }
}

static int ct_query(void *svc, const uint8_t *req, size_t len,
                    struct smr_buf *reply) {
  struct tcpr_conntab *t = svc;
  return t->inner_ops->query(t->inner, req, len, reply);
}

/* ------------------------------------------------------------------------
 * Image: encoding and decoding of the table
 * --------------------------------------------------------------------- */

static int table_encode(const struct tcpr_conntab *t, struct smr_buf *b) {
  int rc = smr_buf_append(b, TABLE_MAGIC, 4) | put(b, t->n, 4) |
           put(b, t->owner, 8);
  for (size_t i = 0; i < t->n && rc == 0; i++) {
    const struct tcpr_conn *c = t->conns[i];
    rc |= put(b, c->id, 8);
    rc |= put_tcp(b, &c->tcp);
    rc |= put(b, c->rcv_off, 8) | put(b, c->snd_off, 8) | put(b, c->acked, 8);
    rc |= put(b, (uint64_t)(c->fin | (c->closing << 1)), 1);
    rc |= smr_buf_append(b, c->unacked, unacked_len(c));
    rc |= put(b, c->partial_len, 4);
    rc |= smr_buf_append(b, c->partial, c->partial_len);
  }
  return rc ? -ENOMEM : 0;
}

/* Decodes into t (which must be empty); on error t is left empty. */
static int table_decode(struct tcpr_conntab *t, const uint8_t *p, size_t len) {
  struct rd r = {p, len, 0, 0};
  const uint8_t *magic = get_bytes(&r, 4);
  uint64_t n = get(&r, 4);
  uint64_t owner = get(&r, 8);
  if (r.bad || memcmp(magic, TABLE_MAGIC, 4) != 0 || n > TCPR_MAX_CONNS)
    return -EINVAL;
  t->owner = owner;
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; i++) {
    struct tcpr_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
      table_clear(t);
      return -ENOMEM;
    }
    c->id = get(&r, 8);
    get_tcp(&r, &c->tcp);
    c->rcv_off = get(&r, 8);
    c->snd_off = get(&r, 8);
    c->acked = get(&r, 8);
    uint64_t fl = get(&r, 1);
    c->fin = (int)(fl & 1);
    c->closing = (int)((fl >> 1) & 1);
    uint64_t ul = c->snd_off - c->acked;
    const uint8_t *u = NULL;
    if (!r.bad && c->acked <= c->snd_off && fl <= 3 && ul <= len &&
        (i == 0 || c->id > prev))
      u = get_bytes(&r, (size_t)ul);
    else
      r.bad = 1;
    uint64_t pl = get(&r, 4);
    const uint8_t *pb = NULL;
    if (!r.bad && pl <= TCPR_MAX_PARTIAL && pl <= len)
      pb = get_bytes(&r, (size_t)pl);
    else
      r.bad = 1;
    int rc = -EINVAL;
    if (!r.bad) {
      c->unacked_cap = ul ? (size_t)ul : 0;
      c->unacked = ul ? malloc((size_t)ul) : NULL;
      if (ul && c->unacked == NULL) rc = -ENOMEM;
      else if (pl && add_partial(c, pb, (size_t)pl) < 0) rc = -ENOMEM;
      else {
        if (ul) memcpy(c->unacked, u, (size_t)ul);
        rc = insert(t, c); /* ids ascending: appends */
      }
    }
    if (rc < 0) {
      conn_free(c);
      table_clear(t);
      return rc;
    }
    prev = c->id;
  }
  if (r.off != r.len) {
    table_clear(t);
    return -EINVAL;
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * Snapshot, restore, digest
 * --------------------------------------------------------------------- */

struct ct_snap {
  struct smr_buf head; /* length + table bytes */
  void *inner;
};

static int ct_snapshot_open(void *svc, void **snap) {
  struct tcpr_conntab *t = svc;
  struct ct_snap *s = calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  int rc = put(&s->head, 0, 8);
  if (rc == 0) rc = table_encode(t, &s->head);
  if (rc == 0) {
    uint64_t l = s->head.len - 8;
    for (int i = 0; i < 8; i++) s->head.data[i] = (uint8_t)(l >> (8 * i));
    rc = t->inner_ops->snapshot_open(t->inner, &s->inner);
  }
  if (rc < 0) {
    smr_buf_free(&s->head);
    free(s);
    return rc;
  }
  *snap = s;
  return 0;
}

static long ct_snapshot_read(void *svc, void *snap, uint64_t off,
                             uint8_t *buf, size_t len) {
  struct tcpr_conntab *t = svc;
  struct ct_snap *s = snap;
  if (off < s->head.len) {
    size_t n = s->head.len - (size_t)off;
    if (n > len) n = len;
    memcpy(buf, s->head.data + off, n);
    return (long)n;
  }
  return t->inner_ops->snapshot_read(t->inner, s->inner, off - s->head.len,
                                     buf, len);
}

static void ct_snapshot_close(void *svc, void *snap) {
  struct tcpr_conntab *t = svc;
  struct ct_snap *s = snap;
  t->inner_ops->snapshot_close(t->inner, s->inner);
  smr_buf_free(&s->head);
  free(s);
}

static int ct_restore_begin(void *svc) {
  struct tcpr_conntab *t = svc;
  table_clear(t);
  t->r_pos = 0;
  t->r_table_len = 0;
  smr_buf_reset(&t->r_table);
  return t->inner_ops->restore_begin(t->inner);
}

/* An image's table may not be larger than this. */
#define MAX_TABLE_BYTES ((uint64_t)TCPR_MAX_CONNS * (TCPR_MAX_UNACKED + 128))

static int ct_restore_chunk(void *svc, uint64_t off, const uint8_t *buf,
                            size_t len) {
  struct tcpr_conntab *t = svc;
  if (off != t->r_pos) return -EINVAL;
  while (len > 0 && t->r_pos < 8) {
    t->r_hdr[t->r_pos++] = *buf++;
    len--;
    if (t->r_pos == 8) {
      for (int i = 0; i < 8; i++)
        t->r_table_len |= (uint64_t)t->r_hdr[i] << (8 * i);
      if (t->r_table_len > MAX_TABLE_BYTES) return -EINVAL;
    }
  }
  uint64_t table_end = 8 + t->r_table_len;
  if (len > 0 && t->r_pos < table_end) {
    size_t n = (size_t)(table_end - t->r_pos);
    if (n > len) n = len;
    if (smr_buf_append(&t->r_table, buf, n) < 0) return -ENOMEM;
    buf += n;
    len -= n;
    t->r_pos += n;
  }
  if (len > 0) {
    int rc = t->inner_ops->restore_chunk(t->inner, t->r_pos - table_end, buf,
                                         len);
    if (rc < 0) return rc;
    t->r_pos += len;
  }
  return 0;
}

static int ct_restore_end(void *svc) {
  struct tcpr_conntab *t = svc;
  int rc = 0;
  if (t->r_pos < 8 || t->r_table.len != t->r_table_len) rc = -EINVAL;
  if (rc == 0) rc = table_decode(t, t->r_table.data, t->r_table.len);
  smr_buf_free(&t->r_table);
  int irc = t->inner_ops->restore_end(t->inner);
  if (rc == 0) rc = irc;
  if (rc < 0) table_clear(t);
  return rc;
}

static void ct_digest(void *svc, uint8_t out[SMR_DIGEST_LEN]) {
  struct tcpr_conntab *t = svc;
  uint8_t inner[SMR_DIGEST_LEN];
  t->inner_ops->digest(t->inner, inner);
  struct smr_buf b = {0};
  int rc = table_encode(t, &b);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  unsigned int olen = 0;
  if (rc == 0 && m != NULL && EVP_DigestInit_ex(m, EVP_sha256(), NULL) &&
      EVP_DigestUpdate(m, inner, sizeof(inner)) &&
      EVP_DigestUpdate(m, b.data, b.len) &&
      EVP_DigestFinal_ex(m, out, &olen) && olen == SMR_DIGEST_LEN) {
    /* done */
  } else {
    /* Out of memory: a digest that cannot match a healthy replica's. */
    memset(out, 0xff, SMR_DIGEST_LEN);
  }
  EVP_MD_CTX_free(m);
  smr_buf_free(&b);
}

static const struct smr_service_ops conntab_ops = {
    .name = "tcpr",
    .apply = ct_apply,
    .query = ct_query,
    .snapshot_open = ct_snapshot_open,
    .snapshot_read = ct_snapshot_read,
    .snapshot_close = ct_snapshot_close,
    .restore_begin = ct_restore_begin,
    .restore_chunk = ct_restore_chunk,
    .restore_end = ct_restore_end,
    .digest = ct_digest,
};

int tcpr_conntab_new(const struct smr_service_ops *inner_ops, void *inner,
                     struct tcpr_conntab **out,
                     const struct smr_service_ops **ops) {
  struct tcpr_conntab *t = calloc(1, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  t->inner_ops = inner_ops;
  t->inner = inner;
  *out = t;
  *ops = &conntab_ops;
  return 0;
}

void tcpr_conntab_free(struct tcpr_conntab *t) {
  if (t == NULL) return;
  table_clear(t);
  free(t->conns);
  smr_buf_free(&t->r_table);
  free(t);
}
