/* fuzz_core.c -- fuzz target for the member state machine (smr/core/core.c).
 *
 * fuzz_wire checks that hostile bytes cannot break the codec; this target
 * checks that well-formed but hostile *frames* cannot break a member: no
 * crash, no out-of-bounds access, and none of the core's own invariant
 * assertions (core_check and friends) may fire, whatever a peer sends.
 *
 * The input is a little program:
 *   byte 0      the member's starting point: a member of a running view,
 *               a joiner, or a member restored from its disk;
 *   then ops    tick, submit, flush, peer lost, a raw frame (any type,
 *               sender, epoch and incarnation, body bytes from the input,
 *               sealed with a valid checksum so the body parsers and the
 *               state machine are reached), or a structured frame (a
 *               PREPARE, ACCEPT, DECIDE, ORDER, ... built with field values
 *               from the input).
 * After every op all outputs are drained; every frame the member emits must
 * decode (it must never send what it would itself refuse). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "fuzz.h"

struct rd {
  const uint8_t *p;
  size_t n;
};

static uint8_t u8(struct rd *r) {
  if (r->n == 0) return 0;
  r->n--;
  return *r->p++;
}

static uint64_t u64(struct rd *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)u8(r) << (8 * i);
  return v;
}

/* Small numbers are what the protocol state is made of. */
static uint64_t small(struct rd *r) {
  uint8_t b = u8(r);
  return (b & 0x80) ? u64(r) : b;
}

static const char *const ids[] = {"n1", "n2", "n3", "n9"};

static struct smr_member boot[3];
static uint64_t now;

static void drain(struct smr_core *c) {
  struct smr_event ev;
  while (smr_core_poll(c, &ev)) {
    if (ev.type == SMR_EV_SEND) {
      struct smr_wire_hdr h;
      struct smr_wire_msg m;
      FUZZ_CHECK(smr_wire_decode(ev.u.send.data, ev.u.send.len, &h, &m) == 0);
    }
  }
}

static void hdr(struct smr_wire_hdr *h, uint8_t type, struct rd *r) {
  memset(h, 0, sizeof(*h));
  h->type = type;
  h->group = smr_wire_group_hash("fz");
  strcpy(h->from, ids[u8(r) % 4]);
  h->epoch = u8(r) % 5;
  h->incarnation = 1 + u8(r) % 3;
}

static void member(struct smr_wire_member *w, struct rd *r) {
  memset(w, 0, sizeof(*w));
  strcpy(w->id, ids[u8(r) % 4]);
  strcpy(w->addr, "a");
  w->incarnation = 1 + u8(r) % 3;
  w->flags = u8(r) & 1;
}

static void view(struct smr_wire_view *v, struct rd *r) {
  memset(v, 0, sizeof(*v));
  v->epoch = small(r);
  v->start_pos = small(r);
  v->start_hash = (u8(r) & 1) ? u64(r) : 0;
  v->n = 1 + u8(r) % 4;
  for (uint32_t i = 0; i < v->n; i++) member(&v->m[i], r);
}

static void proposal(struct smr_wire_proposal *p, struct rd *r) {
  view(&p->next, r);
  p->trim = small(r);
}

static void send_frame(struct smr_core *c, const struct smr_wire_hdr *h,
                       const struct smr_wire_msg *m) {
  static uint8_t buf[1 << 16];
  size_t n = smr_wire_encode(buf, sizeof(buf), h, m);
  if (n == 0) return; /* not encodable (e.g. duplicate-free view) */
  int rc = smr_core_recv(c, now, buf, n);
  FUZZ_CHECK(rc == 0 || rc == -EPERM || rc == -EBADMSG || rc == -EPROTO);
}

/* A frame of any type with a body straight from the input, sealed. */
static void raw_frame(struct smr_core *c, struct rd *r) {
  static uint8_t buf[SMR_WIRE_HDR_FIXED + SMR_ID_MAX + 512];
  struct smr_wire_hdr h;
  hdr(&h, (uint8_t)(1 + u8(r) % 16), r);
  size_t idl = strlen(h.from), len = u8(r) * 2u;
  if (len > r->n) len = r->n;
  size_t off = 0;
  buf[off++] = SMR_WIRE_MAGIC0;
  buf[off++] = SMR_WIRE_MAGIC1;
  buf[off++] = SMR_WIRE_VERSION;
  buf[off++] = h.type;
  for (int i = 0; i < 4; i++) buf[off++] = (uint8_t)(len >> (8 * i));
  for (int i = 0; i < 4; i++) buf[off++] = 0;
  for (int i = 0; i < 8; i++) buf[off++] = (uint8_t)(h.group >> (8 * i));
  for (int i = 0; i < 8; i++) buf[off++] = (uint8_t)(h.epoch >> (8 * i));
  for (int i = 0; i < 8; i++) buf[off++] = (uint8_t)(h.incarnation >> (8 * i));
  buf[off++] = (uint8_t)idl;
  memcpy(buf + off, h.from, idl);
  off += idl;
  memcpy(buf + off, r->p, len);
  r->p += len;
  r->n -= len;
  off += len;
  /* The checksum covers the frame with its own field taken as zero. */
  static const uint8_t zero[4];
  uint32_t crc = smr_crc32c(0, buf, 8);
  crc = smr_crc32c(crc, zero, 4);
  crc = smr_crc32c(crc, buf + 12, off - 12);
  for (int i = 0; i < 4; i++) buf[8 + i] = (uint8_t)(crc >> (8 * i));
  int rc = smr_core_recv(c, now, buf, off);
  FUZZ_CHECK(rc == 0 || rc == -EPERM || rc == -EBADMSG || rc == -EPROTO);
}

static void structured_frame(struct smr_core *c, struct rd *r) {
  static const uint8_t types[] = {
      SMR_MSG_HEARTBEAT, SMR_MSG_SUBMIT,   SMR_MSG_ORDER,    SMR_MSG_PREPARE,
      SMR_MSG_PROMISE,   SMR_MSG_NACK,     SMR_MSG_ACCEPT,   SMR_MSG_ACCEPTED,
      SMR_MSG_DECIDE,    SMR_MSG_JOIN,     SMR_MSG_VIEWINFO, SMR_MSG_HELLO,
      SMR_MSG_XFER,      SMR_MSG_XFER_ACK, SMR_MSG_LEAVE};
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry ents[8];
  static uint8_t payload[64];
  memset(&m, 0, sizeof(m));
  hdr(&h, types[u8(r) % sizeof(types)], r);
  switch (h.type) {
  case SMR_MSG_HEARTBEAT:
    m.u.hb.received = small(r);
    m.u.hb.delivered = small(r);
    m.u.hb.suspects = u8(r);
    m.u.hb.flags = u8(r);
    break;
  case SMR_MSG_SUBMIT:
  case SMR_MSG_ORDER: {
    uint32_t n = u8(r) % 8;
    for (uint32_t i = 0; i < n; i++) {
      ents[i].sender = u8(r) % 5;
      ents[i].sender_seq = small(r);
      ents[i].len = u8(r) % sizeof(payload);
      ents[i].data = payload;
    }
    if (h.type == SMR_MSG_SUBMIT) {
      m.u.submit.entries = ents;
      m.u.submit.count = n;
    } else {
      m.u.order.first_seq = small(r);
      m.u.order.entries = ents;
      m.u.order.count = n;
    }
    break;
  }
  case SMR_MSG_PREPARE:
    m.u.prepare.ballot = small(r);
    break;
  case SMR_MSG_PROMISE:
    m.u.promise.ballot = small(r);
    m.u.promise.received = small(r);
    m.u.promise.suspects = u8(r);
    m.u.promise.flags = u8(r) & 3;
    m.u.promise.pos = small(r);
    m.u.promise.hash = small(r);
    m.u.promise.accepted_ballot = small(r);
    m.u.promise.has_value = u8(r) & 1;
    if (m.u.promise.has_value) proposal(&m.u.promise.value, r);
    break;
  case SMR_MSG_NACK:
    m.u.nack.ballot = small(r);
    m.u.nack.promised = small(r);
    break;
  case SMR_MSG_ACCEPT:
    m.u.accept.ballot = small(r);
    proposal(&m.u.accept.value, r);
    break;
  case SMR_MSG_ACCEPTED:
    m.u.accepted.ballot = small(r);
    break;
  case SMR_MSG_DECIDE:
    proposal(&m.u.decide.value, r);
    break;
  case SMR_MSG_JOIN:
    strcpy(m.u.join.addr, "a");
    m.u.join.flags = u8(r) & 1;
    m.u.join.pos = small(r);
    m.u.join.hash = small(r);
    break;
  case SMR_MSG_VIEWINFO:
    view(&m.u.viewinfo.view, r);
    break;
  case SMR_MSG_HELLO:
    m.u.hello.flags = u8(r) & 1;
    break;
  case SMR_MSG_XFER:
    m.u.xfer.boundary = small(r);
    m.u.xfer.kind = 1 + u8(r) % 3;
    m.u.xfer.offset = small(r);
    m.u.xfer.len = u8(r) % sizeof(payload);
    m.u.xfer.data = payload;
    break;
  case SMR_MSG_XFER_ACK:
    m.u.xfer_ack.boundary = small(r);
    m.u.xfer_ack.offset = small(r);
    break;
  default:
    break;
  }
  send_frame(c, &h, &m);
}

/* The snapshot source: a constant image, and a log of position-derived
 * payloads, enough for a donor to have something to send. */
static int log_read(void *ctx, uint64_t pos, struct smr_log_entry *e) {
  (void)ctx;
  static uint8_t d[8];
  if (pos == 0 || pos > 64) return -ENOENT;
  for (int i = 0; i < 8; i++) d[i] = (uint8_t)(pos >> (8 * i));
  e->pos = pos;
  e->data = d;
  e->len = sizeof(d);
  return 0;
}
static int snap_open(void *ctx, uint64_t pos, void **s) {
  (void)ctx;
  (void)pos;
  *s = (void *)1;
  return 0;
}
static long snap_read(void *ctx, void *s, uint64_t off, void *buf,
                      size_t len) {
  (void)ctx;
  (void)s;
  if (off >= 100) return 0;
  size_t n = 100 - off < len ? 100 - off : len;
  memset(buf, 0x5a, n);
  return (long)n;
}
static void snap_close(void *ctx, void *s) {
  (void)ctx;
  (void)s;
}
static const struct smr_core_source src = {NULL, log_read, snap_open,
                                           snap_read, snap_close};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct rd r = {data, size};
  for (int i = 0; i < 3; i++) {
    memset(&boot[i], 0, sizeof(boot[i]));
    strcpy(boot[i].id, ids[i]);
    strcpy(boot[i].addr, "a");
  }
  struct smr_core_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.group = "fz";
  cfg.bootstrap = boot;
  cfg.n_bootstrap = 3;
  cfg.heartbeat_ms = 10;
  cfg.suspect_ms = 100;
  cfg.join_batch_ms = 20;
  cfg.max_batch_bytes = 128;
  cfg.max_inflight = 16;
  cfg.max_pending = 16;
  cfg.xfer_chunk = 32;
  cfg.xfer_window = 2;
  cfg.source = &src;
  strcpy(cfg.self.addr, "a");
  cfg.self.incarnation = 1;
  cfg.first_boot = 1;
  uint8_t mode = u8(&r) % 3;
  cfg.durable = mode == 2;
  struct smr_core_persisted p;
  struct smr_persisted_entry pe[3];
  static const uint8_t pd[] = "xyz";
  if (mode == 1) {
    strcpy(cfg.self.id, "n9"); /* a joiner */
  } else {
    strcpy(cfg.self.id, "n2");
  }
  if (mode == 2) {
    memset(&p, 0, sizeof(p));
    p.view.epoch = 3;
    p.view.n = 3;
    for (int i = 0; i < 3; i++) {
      strcpy(p.view.m[i].id, ids[i]);
      strcpy(p.view.m[i].addr, "a");
      p.view.m[i].incarnation = 1;
    }
    p.view.start_pos = 5;
    p.pos = 5;
    for (uint32_t i = 0; i < 3; i++) {
      pe[i].seq = i + 1;
      pe[i].sender = (uint8_t)i;
      pe[i].sender_seq = 1;
      pe[i].len = 3;
      pe[i].data = pd;
    }
    p.entries = pe;
    p.n_entries = 3;
    cfg.self.incarnation = 2;
    cfg.restore = &p;
  }
  struct smr_core *c;
  char err[128];
  FUZZ_CHECK(smr_core_create(&cfg, &c, err, sizeof(err)) == 0);
  now = 1;
  smr_core_tick(c, now);
  drain(c);
  if (mode == 0) {
    /* Into a running view: epoch 1 = n1, n2, n3, decided by n1. */
    struct smr_wire_hdr h;
    struct smr_wire_msg m;
    memset(&h, 0, sizeof(h));
    memset(&m, 0, sizeof(m));
    h.type = SMR_MSG_DECIDE;
    h.group = smr_wire_group_hash("fz");
    h.incarnation = 1;
    strcpy(h.from, "n1");
    m.u.decide.value.next.epoch = 1;
    m.u.decide.value.next.n = 3;
    for (int i = 0; i < 3; i++) {
      strcpy(m.u.decide.value.next.m[i].id, ids[i]);
      strcpy(m.u.decide.value.next.m[i].addr, "a");
      m.u.decide.value.next.m[i].incarnation = 1;
    }
    send_frame(c, &h, &m);
    drain(c);
    struct smr_core_status st;
    smr_core_status(c, &st);
    FUZZ_CHECK(st.state == SMR_ST_NORMAL);
  }
  int ops = 0;
  while (r.n > 0 && ops++ < 256) {
    switch (u8(&r) % 6) {
    case 0:
      now += u8(&r);
      smr_core_tick(c, now);
      break;
    case 1: {
      size_t len = u8(&r) % 32;
      if (len > r.n) len = r.n;
      int rc = smr_core_submit(c, now, r.p, len);
      FUZZ_CHECK(rc == 0 || rc == -EAGAIN || rc == -ENOTCONN);
      r.p += len;
      r.n -= len;
      break;
    }
    case 2:
      smr_core_flush(c, now);
      break;
    case 3:
      raw_frame(c, &r);
      break;
    case 4:
      structured_frame(c, &r);
      break;
    case 5:
      smr_core_peer_lost(c, now, ids[u8(&r) % 4]);
      break;
    }
    smr_core_flush(c, now);
    drain(c);
  }
  smr_core_destroy(c);
  return 0;
}
