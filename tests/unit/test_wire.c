/* test_wire.c -- unit tests of the frame codec (smr/core/wire.c).
 *
 * Three kinds of test:
 *  - known answers: the CRC32C check value, the CRC tables against the
 *    bitwise definition, one frame laid out by hand from wire.h's table;
 *  - round trips: every message type, hand-picked edge cases and a few
 *    thousand random messages from a fixed-seed PRNG, with every decoded
 *    field compared against what was encoded;
 *  - refusals: the encoder on bad input and short buffers, the decoder on
 *    each kind of corruption wire.h lists.  Structural corruptions are
 *    "resealed" (length and checksum fixed up after the damage) so that
 *    they reach the body parser instead of being caught by the CRC.
 *
 * The PRNG is seeded with a constant: a failure reproduces exactly. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "crc32c_table.h"
#include "wire.h"

#define BUF_MAX 8192
#define ENTRIES_MAX 64

/* ------------------------------------------------------------ helpers */

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void) {
  /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545f4914f6cdd1du;
}

static uint32_t rnd_below(uint32_t n) { return (uint32_t)(rnd() % n); }

/* A random non-empty string of max-1 bytes or fewer, without NUL. */
static void rnd_str(char *dst, size_t max) {
  size_t n = 1 + rnd_below((uint32_t)(max - 1));
  for (size_t i = 0; i < n; i++) dst[i] = (char)(1 + rnd_below(255));
  dst[n] = '\0';
}

static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0);
  }
  return ~crc;
}

static uint32_t get_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Fixes the body length (to len - header) and the checksum of a frame
 * whose bytes were altered on purpose. */
static void reseal(uint8_t *buf, size_t len) {
  put_le32(buf + 4, (uint32_t)(len - SMR_WIRE_HDR_FIXED - buf[36]));
  put_le32(buf + 8, 0);
  put_le32(buf + 8, ref_crc32c(0, buf, len));
}

/* Body offset of an encoded frame. */
static size_t body_at(const uint8_t *buf) {
  return SMR_WIRE_HDR_FIXED + buf[SMR_WIRE_HDR_FIXED - 1];
}

/* Test messages.  One global sample keeps the arrays off the stack. */
struct sample {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry e[ENTRIES_MAX];
  uint8_t payload[ENTRIES_MAX][48];
  uint8_t xfer[64];
};

static struct sample S;
static uint8_t buf[BUF_MAX];
static uint8_t buf2[BUF_MAX];

/* Inserts n copies of byte v at offset off of the frame in buf2 of *len
 * bytes, and reseals it. */
static void insert_bytes(size_t *len, size_t off, size_t n, uint8_t v) {
  memmove(buf2 + off + n, buf2 + off, *len - off);
  memset(buf2 + off, v, n);
  *len += n;
  reseal(buf2, *len);
}

static void fill_hdr(struct smr_wire_hdr *h, int type) {
  memset(h, 0, sizeof *h);
  h->type = (uint8_t)type;
  h->group = smr_wire_group_hash("kv");
  h->epoch = 7;
  h->incarnation = 3;
  strcpy(h->from, "n1");
}

static void fill_view(struct smr_wire_view *v, uint32_t n) {
  memset(v, 0, sizeof *v);
  v->epoch = 9;
  v->start_pos = 1000;
  v->start_hash = 0xfeedfacecafebeefu;
  v->n = n;
  for (uint32_t i = 0; i < n; i++) {
    snprintf(v->m[i].id, sizeof v->m[i].id, "n%u", i + 1);
    snprintf(v->m[i].addr, sizeof v->m[i].addr, "10.77.0.%u:7000", i + 1);
    v->m[i].incarnation = 100 + i;
    v->m[i].flags = (uint8_t)(i & 1);
  }
}

static void rnd_view(struct smr_wire_view *v) {
  memset(v, 0, sizeof *v);
  v->epoch = rnd();
  v->start_pos = rnd();
  v->start_hash = rnd();
  v->n = rnd_below(SMR_MAX_MEMBERS + 1);
  for (uint32_t i = 0; i < v->n; i++) {
    rnd_str(v->m[i].id, SMR_ID_MAX);
    rnd_str(v->m[i].addr, SMR_ADDR_MAX);
    v->m[i].incarnation = rnd();
    v->m[i].flags = (uint8_t)rnd();
  }
}

static void rnd_entries(struct sample *s, uint32_t count, int with_sender) {
  for (uint32_t i = 0; i < count; i++) {
    s->e[i].sender = with_sender ? (uint8_t)rnd_below(SMR_MAX_MEMBERS) : 0;
    s->e[i].sender_seq = rnd();
    s->e[i].len = rnd_below(sizeof s->payload[i] + 1);
    for (uint32_t k = 0; k < s->e[i].len; k++) s->payload[i][k] = (uint8_t)rnd();
    s->e[i].data = s->payload[i];
  }
}

/* A random, valid message of the given type into S. */
static void rnd_msg(int type) {
  struct smr_wire_msg *m = &S.m;
  memset(&S.h, 0, sizeof S.h);
  memset(m, 0, sizeof *m);
  S.h.type = (uint8_t)type;
  S.h.group = rnd();
  S.h.epoch = rnd();
  S.h.incarnation = rnd();
  rnd_str(S.h.from, SMR_ID_MAX);
  switch (type) {
    case SMR_MSG_HEARTBEAT:
      m->u.hb.received = rnd();
      m->u.hb.delivered = rnd();
      m->u.hb.suspects = (uint32_t)rnd();
      m->u.hb.flags = (uint8_t)rnd();
      break;
    case SMR_MSG_SUBMIT:
      m->u.submit.count = rnd_below(ENTRIES_MAX + 1);
      rnd_entries(&S, m->u.submit.count, 0);
      m->u.submit.entries = S.e;
      break;
    case SMR_MSG_ORDER:
      m->u.order.first_seq = rnd();
      m->u.order.count = rnd_below(ENTRIES_MAX + 1);
      rnd_entries(&S, m->u.order.count, 1);
      m->u.order.entries = S.e;
      break;
    case SMR_MSG_PREPARE:
      m->u.prepare.ballot = rnd();
      break;
    case SMR_MSG_PROMISE:
      m->u.promise.ballot = rnd();
      m->u.promise.received = rnd();
      m->u.promise.suspects = (uint32_t)rnd();
      m->u.promise.flags = (uint8_t)rnd();
      m->u.promise.pos = rnd();
      m->u.promise.hash = rnd();
      m->u.promise.accepted_ballot = rnd();
      m->u.promise.has_value = (uint8_t)rnd_below(2);
      if (m->u.promise.has_value) {
        rnd_view(&m->u.promise.value.next);
        m->u.promise.value.trim = rnd();
      }
      break;
    case SMR_MSG_NACK:
      m->u.nack.ballot = rnd();
      m->u.nack.promised = rnd();
      break;
    case SMR_MSG_ACCEPT:
      m->u.accept.ballot = rnd();
      rnd_view(&m->u.accept.value.next);
      m->u.accept.value.trim = rnd();
      break;
    case SMR_MSG_ACCEPTED:
      m->u.accepted.ballot = rnd();
      break;
    case SMR_MSG_DECIDE:
      rnd_view(&m->u.decide.value.next);
      m->u.decide.value.trim = rnd();
      break;
    case SMR_MSG_JOIN:
      rnd_str(m->u.join.addr, SMR_ADDR_MAX);
      m->u.join.flags = (uint8_t)rnd();
      m->u.join.pos = rnd();
      m->u.join.hash = rnd();
      break;
    case SMR_MSG_VIEWINFO:
      rnd_view(&m->u.viewinfo.view);
      break;
    case SMR_MSG_HELLO:
      m->u.hello.flags = (uint8_t)rnd();
      break;
    case SMR_MSG_XFER:
      m->u.xfer.boundary = rnd();
      m->u.xfer.kind = (uint8_t)(SMR_XFER_SNAP + rnd_below(3));
      m->u.xfer.offset = rnd();
      m->u.xfer.len = m->u.xfer.kind == SMR_XFER_END
                          ? 8
                          : rnd_below(sizeof S.xfer + 1);
      for (uint32_t k = 0; k < m->u.xfer.len; k++) S.xfer[k] = (uint8_t)rnd();
      m->u.xfer.data = S.xfer;
      break;
    case SMR_MSG_XFER_ACK:
      m->u.xfer_ack.boundary = rnd();
      m->u.xfer_ack.offset = rnd();
      break;
    case SMR_MSG_LEAVE:
      break;
    default:
      fail_msg("bad type %d", type);
  }
}

/* ---------------------------------------------------------- comparison */

static void same_view(const struct smr_wire_view *a,
                      const struct smr_wire_view *b) {
  assert_int_equal(a->epoch, b->epoch);
  assert_int_equal(a->start_pos, b->start_pos);
  assert_int_equal(a->start_hash, b->start_hash);
  assert_int_equal(a->n, b->n);
  for (uint32_t i = 0; i < a->n; i++) {
    assert_string_equal(a->m[i].id, b->m[i].id);
    assert_string_equal(a->m[i].addr, b->m[i].addr);
    assert_int_equal(a->m[i].incarnation, b->m[i].incarnation);
    assert_int_equal(a->m[i].flags, b->m[i].flags);
  }
  /* unused slots come back zeroed */
  for (uint32_t i = b->n; i < SMR_MAX_MEMBERS; i++) {
    assert_int_equal(b->m[i].id[0], 0);
    assert_int_equal(b->m[i].addr[0], 0);
    assert_int_equal(b->m[i].incarnation, 0);
  }
}

static void same_proposal(const struct smr_wire_proposal *a,
                          const struct smr_wire_proposal *b) {
  same_view(&a->next, &b->next);
  assert_int_equal(a->trim, b->trim);
}

/* The decoded entries (iterator in got) equal sent[0..count). */
static void same_entries(const struct smr_wire_entry *sent, uint32_t count,
                         struct smr_wire_entries it, int with_sender,
                         const uint8_t *frame, size_t len) {
  struct smr_wire_entry e;
  assert_int_equal(it.count, count);
  assert_int_equal(it.with_sender, with_sender);
  for (uint32_t i = 0; i < count; i++) {
    assert_int_equal(smr_wire_entries_next(&it, &e), 1);
    assert_int_equal(e.sender, with_sender ? sent[i].sender : 0);
    assert_int_equal(e.sender_seq, sent[i].sender_seq);
    assert_int_equal(e.len, sent[i].len);
    /* the payload points into the frame */
    assert_true(e.data >= frame && e.data + e.len <= frame + len);
    if (e.len) assert_memory_equal(e.data, sent[i].data, e.len);
  }
  assert_int_equal(smr_wire_entries_next(&it, &e), 0);
  assert_int_equal(smr_wire_entries_next(&it, &e), 0);
}

static void same_msg(const struct smr_wire_hdr *ha,
                     const struct smr_wire_msg *a,
                     const struct smr_wire_hdr *hb,
                     const struct smr_wire_msg *b, const uint8_t *frame,
                     size_t len) {
  assert_int_equal(ha->type, hb->type);
  assert_int_equal(ha->group, hb->group);
  assert_int_equal(ha->epoch, hb->epoch);
  assert_int_equal(ha->incarnation, hb->incarnation);
  assert_string_equal(ha->from, hb->from);
  switch (ha->type) {
    case SMR_MSG_HEARTBEAT:
      assert_int_equal(a->u.hb.received, b->u.hb.received);
      assert_int_equal(a->u.hb.delivered, b->u.hb.delivered);
      assert_int_equal(a->u.hb.suspects, b->u.hb.suspects);
      assert_int_equal(a->u.hb.flags, b->u.hb.flags);
      break;
    case SMR_MSG_SUBMIT:
      assert_null(b->u.submit.entries);
      assert_int_equal(a->u.submit.count, b->u.submit.count);
      same_entries(a->u.submit.entries, a->u.submit.count, b->u.submit.it, 0,
                   frame, len);
      break;
    case SMR_MSG_ORDER:
      assert_int_equal(a->u.order.first_seq, b->u.order.first_seq);
      assert_null(b->u.order.entries);
      assert_int_equal(a->u.order.count, b->u.order.count);
      same_entries(a->u.order.entries, a->u.order.count, b->u.order.it, 1,
                   frame, len);
      break;
    case SMR_MSG_PREPARE:
      assert_int_equal(a->u.prepare.ballot, b->u.prepare.ballot);
      break;
    case SMR_MSG_PROMISE:
      assert_int_equal(a->u.promise.ballot, b->u.promise.ballot);
      assert_int_equal(a->u.promise.received, b->u.promise.received);
      assert_int_equal(a->u.promise.suspects, b->u.promise.suspects);
      assert_int_equal(a->u.promise.flags, b->u.promise.flags);
      assert_int_equal(a->u.promise.pos, b->u.promise.pos);
      assert_int_equal(a->u.promise.hash, b->u.promise.hash);
      assert_int_equal(a->u.promise.accepted_ballot,
                       b->u.promise.accepted_ballot);
      assert_int_equal(a->u.promise.has_value, b->u.promise.has_value);
      if (a->u.promise.has_value)
        same_proposal(&a->u.promise.value, &b->u.promise.value);
      break;
    case SMR_MSG_NACK:
      assert_int_equal(a->u.nack.ballot, b->u.nack.ballot);
      assert_int_equal(a->u.nack.promised, b->u.nack.promised);
      break;
    case SMR_MSG_ACCEPT:
      assert_int_equal(a->u.accept.ballot, b->u.accept.ballot);
      same_proposal(&a->u.accept.value, &b->u.accept.value);
      break;
    case SMR_MSG_ACCEPTED:
      assert_int_equal(a->u.accepted.ballot, b->u.accepted.ballot);
      break;
    case SMR_MSG_DECIDE:
      same_proposal(&a->u.decide.value, &b->u.decide.value);
      break;
    case SMR_MSG_JOIN:
      assert_string_equal(a->u.join.addr, b->u.join.addr);
      assert_int_equal(a->u.join.flags, b->u.join.flags);
      assert_int_equal(a->u.join.pos, b->u.join.pos);
      assert_int_equal(a->u.join.hash, b->u.join.hash);
      break;
    case SMR_MSG_VIEWINFO:
      same_view(&a->u.viewinfo.view, &b->u.viewinfo.view);
      break;
    case SMR_MSG_HELLO:
      assert_int_equal(a->u.hello.flags, b->u.hello.flags);
      break;
    case SMR_MSG_XFER:
      assert_int_equal(a->u.xfer.boundary, b->u.xfer.boundary);
      assert_int_equal(a->u.xfer.kind, b->u.xfer.kind);
      assert_int_equal(a->u.xfer.offset, b->u.xfer.offset);
      assert_int_equal(a->u.xfer.len, b->u.xfer.len);
      assert_true(b->u.xfer.data >= frame &&
                  b->u.xfer.data + b->u.xfer.len == frame + len);
      if (a->u.xfer.len)
        assert_memory_equal(a->u.xfer.data, b->u.xfer.data, a->u.xfer.len);
      break;
    case SMR_MSG_XFER_ACK:
      assert_int_equal(a->u.xfer_ack.boundary, b->u.xfer_ack.boundary);
      assert_int_equal(a->u.xfer_ack.offset, b->u.xfer_ack.offset);
      break;
    case SMR_MSG_LEAVE:
      break;
    default:
      fail_msg("bad type %d", ha->type);
  }
}

/* Encodes S into buf, checks size agreement, decodes, compares; returns
 * the frame length. */
static size_t roundtrip(void) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  size_t sz = smr_wire_size(&S.h, &S.m);
  size_t len;

  assert_true(sz > 0);
  assert_true(sz <= BUF_MAX);
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  assert_int_equal(len, sz);
  assert_int_equal(smr_wire_frame_len(buf, len), len);
  memset(&h, 0xa5, sizeof h);
  memset(&m, 0xa5, sizeof m);
  assert_int_equal(smr_wire_decode(buf, len, &h, &m), 0);
  same_msg(&S.h, &S.m, &h, &m, buf, len);
  return len;
}

/* Encodes a fresh random message of the given type into buf. */
static size_t encode_rnd(int type) {
  size_t len;
  rnd_msg(type);
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  assert_true(len > 0);
  return len;
}

static int decode(const uint8_t *p, size_t len) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  return smr_wire_decode(p, len, &h, &m);
}

/* --------------------------------------------------------------- CRC32C */

static void test_crc32c_known_answers(void **state) {
  static const uint8_t zeros[32];
  uint8_t ones[32];
  (void)state;
  assert_int_equal(smr_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(smr_crc32c_sw(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(smr_crc32c(0, "", 0), 0);
  /* RFC 3720 (iSCSI) B.4 test vectors */
  assert_int_equal(smr_crc32c(0, zeros, sizeof zeros), 0x8A9136AAu);
  memset(ones, 0xff, sizeof ones);
  assert_int_equal(smr_crc32c(0, ones, sizeof ones), 0x62A8AB43u);
  /* continuation */
  assert_int_equal(smr_crc32c(smr_crc32c(0, "1234", 4), "56789", 5),
                   0xE3069283u);
}

static void test_crc32c_table(void **state) {
  (void)state;
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
    assert_int_equal(crc32c_table[0][n], c);
    for (int s = 1; s < 8; s++) {
      /* shift eight more zero bits through the register */
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
      assert_int_equal(crc32c_table[s][n], c);
    }
  }
}

static void test_crc32c_matches_bitwise(void **state) {
  uint8_t data[256 + 8];
  (void)state;
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)rnd();
  for (size_t off = 0; off < 8; off++)
    for (size_t n = 0; n + off <= sizeof data; n++) {
      uint32_t seed = (uint32_t)rnd();
      assert_int_equal(smr_crc32c(seed, data + off, n),
                       ref_crc32c(seed, data + off, n));
      assert_int_equal(smr_crc32c_sw(seed, data + off, n),
                       ref_crc32c(seed, data + off, n));
    }
}

/* ------------------------------------------------------ hash and names */

static void test_group_hash(void **state) {
  static uint64_t seen[512];
  char name[16];
  (void)state;
  assert_int_equal(smr_wire_group_hash("kv"), smr_wire_group_hash("kv"));
  assert_int_not_equal(smr_wire_group_hash("kv"), smr_wire_group_hash("kw"));
  assert_int_not_equal(smr_wire_group_hash(""), smr_wire_group_hash("a"));
  /* no collisions among similar names, and the top bits vary too */
  uint64_t top_or = 0, top_and = ~(uint64_t)0;
  for (int i = 0; i < 512; i++) {
    snprintf(name, sizeof name, "group%d", i);
    seen[i] = smr_wire_group_hash(name);
    top_or |= seen[i] >> 56;
    top_and &= seen[i] >> 56;
    for (int j = 0; j < i; j++) assert_int_not_equal(seen[i], seen[j]);
  }
  assert_int_equal(top_or, 0xff);
  assert_int_equal(top_and, 0);
}

static void test_type_names(void **state) {
  (void)state;
  assert_string_equal(smr_msg_type_name(SMR_MSG_HEARTBEAT), "HEARTBEAT");
  assert_string_equal(smr_msg_type_name(SMR_MSG_XFER_ACK), "XFER_ACK");
  assert_string_equal(smr_msg_type_name(SMR_MSG_LEAVE), "LEAVE");
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    assert_non_null(smr_msg_type_name(t));
    assert_string_not_equal(smr_msg_type_name(t), "UNKNOWN");
    for (int u = SMR_MSG_HEARTBEAT; u < t; u++)
      assert_string_not_equal(smr_msg_type_name(t), smr_msg_type_name(u));
  }
  assert_string_equal(smr_msg_type_name(0), "UNKNOWN");
  assert_string_equal(smr_msg_type_name(SMR_MSG_TYPE_MAX_ + 1), "UNKNOWN");
  assert_string_equal(smr_msg_type_name(-1), "UNKNOWN");
  assert_string_equal(smr_msg_type_name(255), "UNKNOWN");
}

/* ----------------------------------------------------------- round trips */

/* A HEARTBEAT laid out by hand from the table in wire.h. */
static void test_golden_heartbeat(void **state) {
  static const uint8_t want_hdr[] = {
      0x53, 0x4d, 1, SMR_MSG_HEARTBEAT, 21, 0, 0, 0, /* magic..length */
      0, 0, 0, 0,                                    /* CRC (zero here) */
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* group */
      0x02, 0, 0, 0, 0, 0, 0, 0,                       /* epoch */
      0x05, 0, 0, 0, 0, 0, 0, 0x80,                    /* incarnation */
      2, 'n', '1',                                     /* from */
      0x10, 0x0f, 0, 0, 0, 0, 0, 0,                    /* received */
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  /* delivered */
      0x01, 0x02, 0x03, 0x04,                          /* suspects */
      0x03,                                            /* flags */
  };
  uint8_t want[sizeof want_hdr];
  (void)state;
  fill_hdr(&S.h, SMR_MSG_HEARTBEAT);
  S.h.group = 0x0102030405060708u;
  S.h.epoch = 2;
  S.h.incarnation = 0x8000000000000005u;
  memset(&S.m, 0, sizeof S.m);
  S.m.u.hb.received = 0xf10;
  S.m.u.hb.delivered = UINT64_MAX;
  S.m.u.hb.suspects = 0x04030201;
  S.m.u.hb.flags = SMR_HB_WEDGED | SMR_HB_LEAVING;
  memcpy(want, want_hdr, sizeof want);
  put_le32(want + 8, ref_crc32c(0, want, sizeof want));
  assert_int_equal(smr_wire_encode(buf, sizeof buf, &S.h, &S.m), sizeof want);
  assert_memory_equal(buf, want, sizeof want);
  roundtrip();
}

static void test_roundtrip_each_type(void **state) {
  (void)state;
  /* hand-picked edge cases */
  fill_hdr(&S.h, SMR_MSG_LEAVE);
  memset(&S.m, 0, sizeof S.m);
  assert_int_equal(roundtrip(), SMR_WIRE_HDR_FIXED + 2);

  fill_hdr(&S.h, SMR_MSG_SUBMIT); /* no entries */
  S.m.u.submit.entries = NULL;
  S.m.u.submit.count = 0;
  assert_int_equal(roundtrip(), SMR_WIRE_HDR_FIXED + 2 + 4);

  fill_hdr(&S.h, SMR_MSG_ORDER); /* one empty payload */
  S.m.u.order.first_seq = 42;
  S.e[0] = (struct smr_wire_entry){.sender = 15, .sender_seq = 1, .len = 0};
  S.m.u.order.entries = S.e;
  S.m.u.order.count = 1;
  assert_int_equal(roundtrip(), SMR_WIRE_HDR_FIXED + 2 + 12 + 13);

  fill_hdr(&S.h, SMR_MSG_PROMISE);
  memset(&S.m, 0, sizeof S.m);
  S.m.u.promise.ballot = 5;
  S.m.u.promise.has_value = 0;
  roundtrip();
  S.m.u.promise.has_value = 1;
  fill_view(&S.m.u.promise.value.next, SMR_MAX_MEMBERS);
  S.m.u.promise.value.trim = 77;
  roundtrip();

  fill_hdr(&S.h, SMR_MSG_VIEWINFO); /* longest strings, full view */
  memset(&S.m, 0, sizeof S.m);
  fill_view(&S.m.u.viewinfo.view, SMR_MAX_MEMBERS);
  memset(S.m.u.viewinfo.view.m[3].id, 'x', SMR_ID_MAX - 1);
  memset(S.m.u.viewinfo.view.m[3].addr, 'y', SMR_ADDR_MAX - 1);
  memset(S.h.from, 'z', SMR_ID_MAX - 1);
  roundtrip();
  fill_view(&S.m.u.viewinfo.view, 0); /* empty view */
  roundtrip();

  fill_hdr(&S.h, SMR_MSG_XFER);
  memset(&S.m, 0, sizeof S.m);
  S.m.u.xfer.kind = SMR_XFER_SNAP; /* empty chunk */
  roundtrip();
  S.m.u.xfer.kind = SMR_XFER_END;
  S.m.u.xfer.len = 8;
  S.m.u.xfer.data = (const uint8_t *)"hash0123";
  roundtrip();

  /* and every type with random contents */
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    rnd_msg(t);
    roundtrip();
  }
}

static void test_roundtrip_random(void **state) {
  (void)state;
  for (int i = 0; i < 3000; i++) {
    rnd_msg(SMR_MSG_HEARTBEAT + rnd_below(SMR_MSG_TYPE_MAX_));
    roundtrip();
  }
}

static void test_entries_iteration(void **state) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry e;
  struct smr_wire_entries copy;
  size_t len;
  (void)state;

  fill_hdr(&S.h, SMR_MSG_SUBMIT);
  for (uint32_t i = 0; i < 5; i++) {
    S.e[i].sender = 9; /* ignored by SUBMIT */
    S.e[i].sender_seq = 100 + i;
    S.e[i].len = i * 3;
    memset(S.payload[i], 'a' + (int)i, i * 3);
    S.e[i].data = S.payload[i];
  }
  S.m.u.submit.entries = S.e;
  S.m.u.submit.count = 5;
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  assert_int_equal(len, SMR_WIRE_HDR_FIXED + 2 + 4 +
                            5 * SMR_WIRE_SUBMIT_ENTRY_OVERHEAD + 30);
  assert_int_equal(smr_wire_decode(buf, len, &h, &m), 0);
  assert_int_equal(m.u.submit.count, 5);
  assert_int_equal(m.u.submit.it.count, 5);
  assert_int_equal(m.u.submit.it.with_sender, 0);

  /* a copy of the iterator iterates independently */
  copy = m.u.submit.it;
  for (uint32_t i = 0; i < 5; i++) {
    assert_int_equal(smr_wire_entries_next(&m.u.submit.it, &e), 1);
    assert_int_equal(e.sender, 0);
    assert_int_equal(e.sender_seq, 100 + i);
    assert_int_equal(e.len, i * 3);
    assert_ptr_equal(e.data, buf + SMR_WIRE_HDR_FIXED + 2 + 4 +
                                 (i + 1) * SMR_WIRE_SUBMIT_ENTRY_OVERHEAD +
                                 3 * (i * (i - 1) / 2));
    if (e.len) assert_memory_equal(e.data, S.payload[i], e.len);
  }
  assert_int_equal(smr_wire_entries_next(&m.u.submit.it, &e), 0);
  assert_int_equal(copy.count, 5);
  assert_int_equal(smr_wire_entries_next(&copy, &e), 1);
  assert_int_equal(e.sender_seq, 100);

  /* ORDER keeps the sender rank */
  fill_hdr(&S.h, SMR_MSG_ORDER);
  S.m.u.order.first_seq = 1;
  S.m.u.order.entries = S.e;
  S.m.u.order.count = 5;
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  assert_int_equal(len, SMR_WIRE_HDR_FIXED + 2 + 12 +
                            5 * SMR_WIRE_ORDER_ENTRY_OVERHEAD + 30);
  assert_int_equal(smr_wire_decode(buf, len, &h, &m), 0);
  assert_int_equal(m.u.order.it.with_sender, 1);
  for (uint32_t i = 0; i < 5; i++) {
    assert_int_equal(smr_wire_entries_next(&m.u.order.it, &e), 1);
    assert_int_equal(e.sender, 9);
    assert_int_equal(e.sender_seq, 100 + i);
  }
  assert_int_equal(smr_wire_entries_next(&m.u.order.it, &e), 0);
}

/* --------------------------------------------------------- encode refusals */

static void test_encode_small_buffer(void **state) {
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len = encode_rnd(t);
    assert_int_equal(smr_wire_size(&S.h, &S.m), len);
    for (size_t cap = 0; cap < len; cap++) {
      memset(buf2, 0xee, len + 1);
      assert_int_equal(smr_wire_encode(buf2, cap, &S.h, &S.m), 0);
      /* nothing written at or past cap */
      for (size_t k = cap; k <= len; k++) assert_int_equal(buf2[k], 0xee);
    }
    assert_int_equal(smr_wire_encode(buf2, len, &S.h, &S.m), len);
    assert_memory_equal(buf, buf2, len);
  }
}

/* The sample S must not encode. */
static void refused(void) {
  assert_int_equal(smr_wire_size(&S.h, &S.m), 0);
  assert_int_equal(smr_wire_encode(buf, sizeof buf, &S.h, &S.m), 0);
}

static void test_encode_bad_inputs(void **state) {
  static const uint8_t big[1];
  (void)state;

  /* types */
  rnd_msg(SMR_MSG_HELLO);
  S.h.type = 0;
  refused();
  S.h.type = SMR_MSG_TYPE_MAX_ + 1;
  refused();

  /* sender id: empty, or unterminated within SMR_ID_MAX */
  rnd_msg(SMR_MSG_HELLO);
  S.h.from[0] = '\0';
  refused();
  memset(S.h.from, 'a', sizeof S.h.from);
  refused();

  /* view: too many members, empty or unterminated strings */
  fill_hdr(&S.h, SMR_MSG_VIEWINFO);
  fill_view(&S.m.u.viewinfo.view, SMR_MAX_MEMBERS);
  assert_true(smr_wire_size(&S.h, &S.m) > 0);
  S.m.u.viewinfo.view.n = SMR_MAX_MEMBERS + 1;
  refused();
  S.m.u.viewinfo.view.n = 300; /* would not fit the u8 either */
  refused();
  fill_view(&S.m.u.viewinfo.view, 3);
  S.m.u.viewinfo.view.m[2].id[0] = '\0';
  refused();
  fill_view(&S.m.u.viewinfo.view, 3);
  memset(S.m.u.viewinfo.view.m[1].id, 'i', SMR_ID_MAX);
  refused();
  fill_view(&S.m.u.viewinfo.view, 3);
  S.m.u.viewinfo.view.m[0].addr[0] = '\0';
  refused();
  fill_view(&S.m.u.viewinfo.view, 3);
  memset(S.m.u.viewinfo.view.m[2].addr, 'a', SMR_ADDR_MAX);
  refused();

  /* the same checks reach the proposal inside ACCEPT, DECIDE, PROMISE */
  fill_hdr(&S.h, SMR_MSG_ACCEPT);
  fill_view(&S.m.u.accept.value.next, SMR_MAX_MEMBERS);
  assert_true(smr_wire_size(&S.h, &S.m) > 0);
  S.m.u.accept.value.next.n = SMR_MAX_MEMBERS + 1;
  refused();
  fill_hdr(&S.h, SMR_MSG_DECIDE);
  fill_view(&S.m.u.decide.value.next, 2);
  S.m.u.decide.value.next.m[1].id[0] = '\0';
  refused();

  /* booleans */
  rnd_msg(SMR_MSG_PROMISE);
  S.m.u.promise.has_value = 2;
  refused();

  /* JOIN address */
  rnd_msg(SMR_MSG_JOIN);
  S.m.u.join.addr[0] = '\0';
  refused();
  memset(S.m.u.join.addr, 'a', sizeof S.m.u.join.addr);
  refused();

  /* XFER kind, END length, NULL data */
  rnd_msg(SMR_MSG_XFER);
  S.m.u.xfer.kind = 0;
  refused();
  S.m.u.xfer.kind = SMR_XFER_END + 1;
  refused();
  S.m.u.xfer.kind = SMR_XFER_END;
  S.m.u.xfer.len = 7;
  refused();
  S.m.u.xfer.kind = SMR_XFER_SNAP;
  S.m.u.xfer.len = 4;
  S.m.u.xfer.data = NULL;
  refused();
  /* body over SMR_FRAME_MAX (data is never read: the size check fails) */
  S.m.u.xfer.data = big;
  S.m.u.xfer.len = SMR_FRAME_MAX;
  refused();
  S.m.u.xfer.len = UINT32_MAX;
  refused();

  /* entries: NULL array, NULL data, bad rank, oversized total */
  fill_hdr(&S.h, SMR_MSG_SUBMIT);
  S.m.u.submit.entries = NULL;
  S.m.u.submit.count = 1;
  refused();
  S.e[0] = (struct smr_wire_entry){.sender_seq = 1, .len = 3, .data = NULL};
  S.m.u.submit.entries = S.e;
  refused();
  S.e[0].data = big;
  S.e[0].len = SMR_FRAME_MAX / 2;
  S.e[1] = S.e[0];
  S.m.u.submit.count = 2;
  refused();
  S.e[0].len = S.e[1].len = UINT32_MAX;
  refused();
  fill_hdr(&S.h, SMR_MSG_ORDER);
  S.e[0] = (struct smr_wire_entry){.sender = SMR_MAX_MEMBERS, .len = 0};
  S.m.u.order.entries = S.e;
  S.m.u.order.count = 1;
  refused();
  S.e[0].sender = SMR_MAX_MEMBERS - 1;
  assert_true(smr_wire_size(&S.h, &S.m) > 0);
}

/* --------------------------------------------------------------- framing */

static void test_frame_len_partial(void **state) {
  size_t len;
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    len = encode_rnd(t);
    for (size_t k = 0; k < SMR_WIRE_HDR_FIXED; k++)
      assert_int_equal(smr_wire_frame_len(buf, k), 0);
    for (size_t k = SMR_WIRE_HDR_FIXED; k <= len + 5; k++)
      assert_int_equal(smr_wire_frame_len(buf, k), (long)len);
  }
  assert_int_equal(smr_wire_frame_len(NULL, 0), 0);

  /* each header field is judged as soon as its bytes are present */
  len = encode_rnd(SMR_MSG_PREPARE);
  memcpy(buf2, buf, len);
  buf2[0] = 'X';
  assert_int_equal(smr_wire_frame_len(buf2, 1), -EBADMSG);
  memcpy(buf2, buf, len);
  buf2[1] = 'X';
  assert_int_equal(smr_wire_frame_len(buf2, 1), 0);
  assert_int_equal(smr_wire_frame_len(buf2, 2), -EBADMSG);
  memcpy(buf2, buf, len);
  buf2[2] = SMR_WIRE_VERSION + 1;
  assert_int_equal(smr_wire_frame_len(buf2, 2), 0);
  assert_int_equal(smr_wire_frame_len(buf2, 3), -EPROTO);
  memcpy(buf2, buf, len);
  put_le32(buf2 + 4, SMR_FRAME_MAX + 1);
  assert_int_equal(smr_wire_frame_len(buf2, 7), 0);
  assert_int_equal(smr_wire_frame_len(buf2, 8), -EMSGSIZE);
  put_le32(buf2 + 4, UINT32_MAX);
  assert_int_equal(smr_wire_frame_len(buf2, 8), -EMSGSIZE);
  put_le32(buf2 + 4, SMR_FRAME_MAX); /* the largest legal body */
  assert_int_equal(smr_wire_frame_len(buf2, SMR_WIRE_HDR_FIXED),
                   (long)(SMR_WIRE_HDR_FIXED + buf2[36] + SMR_FRAME_MAX));
  assert_true((size_t)smr_wire_frame_len(buf2, SMR_WIRE_HDR_FIXED) <=
              SMR_WIRE_FRAME_LEN_MAX);
  memcpy(buf2, buf, len);
  buf2[36] = 0;
  assert_int_equal(smr_wire_frame_len(buf2, 36), 0);
  assert_int_equal(smr_wire_frame_len(buf2, 37), -EBADMSG);
  buf2[36] = SMR_ID_MAX;
  assert_int_equal(smr_wire_frame_len(buf2, 37), -EBADMSG);
  buf2[36] = SMR_ID_MAX - 1;
  assert_int_equal(smr_wire_frame_len(buf2, 37),
                   (long)(SMR_WIRE_HDR_FIXED + SMR_ID_MAX - 1 + 8));
}

/* Frames of every type back to back, cut by smr_wire_frame_len alone. */
static void test_frame_len_stream(void **state) {
  static uint8_t stream[BUF_MAX * 4];
  size_t at = 0, off = 0, lens[SMR_MSG_TYPE_MAX_ + 1];
  int n = 0;
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len;
    rnd_msg(t);
    if (t == SMR_MSG_SUBMIT) S.m.u.submit.count = 3; /* keep it small */
    if (t == SMR_MSG_ORDER) S.m.u.order.count = 3;
    len = smr_wire_encode(stream + at, sizeof stream - at, &S.h, &S.m);
    assert_true(len > 0);
    lens[n++] = len;
    at += len;
  }
  for (int i = 0; i < n; i++) {
    long fl;
    /* feed the bytes one at a time up to the header */
    for (size_t k = 0; k < SMR_WIRE_HDR_FIXED; k++)
      assert_int_equal(smr_wire_frame_len(stream + off, k), 0);
    fl = smr_wire_frame_len(stream + off, at - off);
    assert_int_equal(fl, (long)lens[i]);
    assert_int_equal(decode(stream + off, (size_t)fl), 0);
    assert_int_equal(stream[off + 3], SMR_MSG_HEARTBEAT + i);
    off += (size_t)fl;
  }
  assert_int_equal(off, at);
}

/* ------------------------------------------------------- decode refusals */

/* Every bit pattern flip of every byte of a valid frame of every type is
 * refused, with the error the damaged field calls for. */
static void test_decode_byte_flips(void **state) {
  static const uint8_t masks[] = {0x01, 0x80, 0xff, 0x5a};
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len = encode_rnd(t);
    if (len > 600) { /* bound the work: shrink big random bodies */
      if (t == SMR_MSG_SUBMIT) S.m.u.submit.count = 4;
      if (t == SMR_MSG_ORDER) S.m.u.order.count = 4;
      len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
    }
    assert_int_equal(decode(buf, len), 0);
    for (size_t i = 0; i < len; i++)
      for (size_t k = 0; k < sizeof masks; k++) {
        int r;
        memcpy(buf2, buf, len);
        buf2[i] ^= masks[k];
        r = decode(buf2, len);
        if (i < 2) {
          assert_int_equal(r, -EBADMSG);
        } else if (i == 2) {
          assert_int_equal(r, -EPROTO);
        } else if (i >= 4 && i < 8) {
          /* a length field that no longer matches: wrong size or too big */
          assert_true(r == -EBADMSG || r == -EMSGSIZE);
          if (get_le32(buf2 + 4) > SMR_FRAME_MAX)
            assert_int_equal(r, -EMSGSIZE);
        } else {
          /* everything else, payload bytes included, is caught (at the
           * latest) by the checksum */
          assert_int_equal(r, -EBADMSG);
        }
      }
  }
}

static void test_decode_truncation(void **state) {
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len = encode_rnd(t);
    for (size_t k = 0; k < len; k++) {
      /* a copy of exactly k bytes, so ASan sees any over-read */
      uint8_t *p = buf2 + sizeof buf2 - k;
      memcpy(p, buf, k);
      assert_int_equal(decode(p, k), -EBADMSG);
    }
  }
  assert_int_equal(decode(NULL, 0), -EBADMSG);
}

static void test_decode_trailing(void **state) {
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len = encode_rnd(t);
    /* extra bytes beyond the frame */
    buf[len] = 0;
    assert_int_equal(decode(buf, len + 1), -EBADMSG);
    /* extra bytes inside the frame, length and checksum made consistent:
     * the body parser must notice it did not consume them */
    for (size_t extra = 1; extra <= 9; extra++) {
      memcpy(buf2, buf, len);
      memset(buf2 + len, 0, extra);
      reseal(buf2, len + extra);
      assert_int_equal(smr_wire_frame_len(buf2, len + extra),
                       (long)(len + extra));
      assert_int_equal(decode(buf2, len + extra), -EBADMSG);
    }
  }
}

/* A body cut short but correctly framed and sealed. */
static void test_decode_short_body(void **state) {
  (void)state;
  for (int t = SMR_MSG_HEARTBEAT; t <= SMR_MSG_TYPE_MAX_; t++) {
    size_t len = encode_rnd(t), body = body_at(buf);
    for (size_t k = body; k < len; k++) {
      memcpy(buf2, buf, k);
      reseal(buf2, k);
      assert_int_equal(decode(buf2, k), -EBADMSG);
    }
  }
}

static void test_decode_oversize_length(void **state) {
  size_t len;
  (void)state;
  len = encode_rnd(SMR_MSG_NACK);
  memcpy(buf2, buf, len);
  put_le32(buf2 + 4, SMR_FRAME_MAX + 1);
  put_le32(buf2 + 8, 0);
  put_le32(buf2 + 8, ref_crc32c(0, buf2, len));
  assert_int_equal(decode(buf2, len), -EMSGSIZE);
  put_le32(buf2 + 4, UINT32_MAX);
  assert_int_equal(decode(buf2, len), -EMSGSIZE);
  /* a legal but wrong length */
  put_le32(buf2 + 4, (uint32_t)(len - body_at(buf2) + 1));
  assert_int_equal(decode(buf2, len), -EBADMSG);
  put_le32(buf2 + 4, (uint32_t)(len - body_at(buf2) - 1));
  assert_int_equal(decode(buf2, len), -EBADMSG);
}

/* Damage at byte off (set to v), resealed; expect err. */
static void damaged(size_t len, size_t off, uint8_t v, int err) {
  memcpy(buf2, buf, len);
  buf2[off] = v;
  reseal(buf2, len);
  assert_int_equal(decode(buf2, len), err);
}

static void test_decode_bad_header(void **state) {
  size_t len;
  (void)state;
  len = encode_rnd(SMR_MSG_HELLO);
  assert_int_equal(decode(buf, len), 0);
  damaged(len, 0, 'X', -EBADMSG);
  damaged(len, 1, 'X', -EBADMSG);
  damaged(len, 2, 0, -EPROTO);
  damaged(len, 2, SMR_WIRE_VERSION + 1, -EPROTO);
  damaged(len, 3, 0, -EPROTO);
  damaged(len, 3, SMR_MSG_TYPE_MAX_ + 1, -EPROTO);
  damaged(len, 3, 255, -EPROTO);
  /* a known type whose body does not fit: HELLO's 1 byte as PREPARE */
  damaged(len, 3, SMR_MSG_PREPARE, -EBADMSG);
  /* a NUL inside the sender id */
  damaged(len, SMR_WIRE_HDR_FIXED, 0, -EBADMSG);
  damaged(len, SMR_WIRE_HDR_FIXED + buf[36] - 1, 0, -EBADMSG);

  /* sender id lengths 0 and SMR_ID_MAX (reseal keeps the body length) */
  memcpy(buf2, buf, len);
  buf2[36] = 0;
  reseal(buf2, len);
  assert_int_equal(decode(buf2, len), -EBADMSG);
  memset(buf2, 'i', sizeof buf2);
  memcpy(buf2, buf, SMR_WIRE_HDR_FIXED);
  buf2[36] = SMR_ID_MAX;
  buf2[SMR_WIRE_HDR_FIXED + SMR_ID_MAX] = 0; /* HELLO flags */
  reseal(buf2, SMR_WIRE_HDR_FIXED + SMR_ID_MAX + 1);
  assert_int_equal(decode(buf2, SMR_WIRE_HDR_FIXED + SMR_ID_MAX + 1),
                   -EBADMSG);
  /* the same with SMR_ID_MAX - 1 is fine */
  buf2[36] = SMR_ID_MAX - 1;
  reseal(buf2, SMR_WIRE_HDR_FIXED + SMR_ID_MAX);
  assert_int_equal(decode(buf2, SMR_WIRE_HDR_FIXED + SMR_ID_MAX), 0);
}

/* Offset of the view inside a frame of S's type. */
static size_t view_at(const uint8_t *frame, int type) {
  size_t b = body_at(frame);
  switch (type) {
    case SMR_MSG_VIEWINFO:
    case SMR_MSG_DECIDE:
      return b;
    case SMR_MSG_ACCEPT:
      return b + 8;
    case SMR_MSG_PROMISE:
      return b + 46;
    default:
      fail_msg("no view in type %d", type);
      return 0;
  }
}

static void test_decode_bad_view(void **state) {
  static const int types[] = {SMR_MSG_VIEWINFO, SMR_MSG_DECIDE,
                              SMR_MSG_ACCEPT, SMR_MSG_PROMISE};
  (void)state;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    int t = types[i];
    size_t len, v, m0, addr0;
    fill_hdr(&S.h, t);
    memset(&S.m, 0, sizeof S.m);
    S.m.u.promise.has_value = 1; /* harmless for the other types */
    fill_view(t == SMR_MSG_VIEWINFO ? &S.m.u.viewinfo.view
              : t == SMR_MSG_DECIDE ? &S.m.u.decide.value.next
              : t == SMR_MSG_ACCEPT ? &S.m.u.accept.value.next
                                    : &S.m.u.promise.value.next,
              2);
    len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
    assert_true(len > 0);
    assert_int_equal(decode(buf, len), 0);
    v = view_at(buf, t);
    m0 = v + 25; /* first member's id length */
    assert_int_equal(buf[m0], 2);
    addr0 = m0 + 1 + buf[m0];

    /* member count: more than SMR_MAX_MEMBERS, or not matching the bytes */
    damaged(len, v + 24, SMR_MAX_MEMBERS + 1, -EBADMSG);
    damaged(len, v + 24, 255, -EBADMSG);
    damaged(len, v + 24, 3, -EBADMSG);
    damaged(len, v + 24, 1, -EBADMSG);
    /* member strings: empty, too long, running past the body, NUL */
    damaged(len, m0, 0, -EBADMSG);
    damaged(len, m0, SMR_ID_MAX, -EBADMSG);
    damaged(len, m0, 255, -EBADMSG);
    damaged(len, m0 + 1, 0, -EBADMSG);
    damaged(len, addr0, 0, -EBADMSG);
    damaged(len, addr0, SMR_ADDR_MAX, -EBADMSG);
    damaged(len, addr0, 255, -EBADMSG);
    damaged(len, addr0 + 1, 0, -EBADMSG);
    if (t == SMR_MSG_PROMISE) {
      damaged(len, v - 1, 2, -EBADMSG);   /* has_value */
      damaged(len, v - 1, 255, -EBADMSG); /* has_value */
      damaged(len, v - 1, 0, -EBADMSG);   /* proposal left as trailing */
    }
  }

  /* n exactly SMR_MAX_MEMBERS with 16 minimal members decodes */
  fill_hdr(&S.h, SMR_MSG_VIEWINFO);
  fill_view(&S.m.u.viewinfo.view, SMR_MAX_MEMBERS);
  assert_true(roundtrip() > 0);
}

/* Frames that are consistent in every byte count but break one limit:
 * the parser must refuse them on the limit itself. */
static void test_decode_limits_exact(void **state) {
  size_t len, len2, v, m0, addr0, last;
  (void)state;

  /* a member id of SMR_ID_MAX - 1 bytes decodes; one more byte does not */
  fill_hdr(&S.h, SMR_MSG_VIEWINFO);
  memset(&S.m, 0, sizeof S.m);
  fill_view(&S.m.u.viewinfo.view, 2);
  memset(S.m.u.viewinfo.view.m[0].id, 'i', SMR_ID_MAX - 1);
  memset(S.m.u.viewinfo.view.m[0].addr, 'a', SMR_ADDR_MAX - 1);
  len = roundtrip();
  v = body_at(buf);
  m0 = v + 25;
  assert_int_equal(buf[m0], SMR_ID_MAX - 1);
  addr0 = m0 + 1 + SMR_ID_MAX - 1;
  assert_int_equal(buf[addr0], SMR_ADDR_MAX - 1);

  memcpy(buf2, buf, len);
  len2 = len;
  buf2[m0] = SMR_ID_MAX;
  insert_bytes(&len2, m0 + 1, 1, 'i');
  assert_int_equal(decode(buf2, len2), -EBADMSG);

  memcpy(buf2, buf, len);
  len2 = len;
  buf2[addr0] = SMR_ADDR_MAX;
  insert_bytes(&len2, addr0 + 1, 1, 'a');
  assert_int_equal(decode(buf2, len2), -EBADMSG);

  /* the JOIN address likewise */
  fill_hdr(&S.h, SMR_MSG_JOIN);
  memset(&S.m, 0, sizeof S.m);
  memset(S.m.u.join.addr, 'a', SMR_ADDR_MAX - 1);
  len = roundtrip();
  memcpy(buf2, buf, len);
  len2 = len;
  buf2[body_at(buf)] = SMR_ADDR_MAX;
  insert_bytes(&len2, body_at(buf) + 1, 1, 'a');
  assert_int_equal(decode(buf2, len2), -EBADMSG);

  /* SMR_MAX_MEMBERS + 1 well-formed members */
  fill_hdr(&S.h, SMR_MSG_VIEWINFO);
  memset(&S.m, 0, sizeof S.m);
  fill_view(&S.m.u.viewinfo.view, SMR_MAX_MEMBERS);
  len = roundtrip();
  v = body_at(buf);
  last = len - (1 + 3 + 1 + 15 + 9); /* "n16", "10.77.0.16:7000" */
  assert_int_equal(buf[last], 3);
  memcpy(buf2, buf, len);
  memcpy(buf2 + len, buf + last, len - last);
  buf2[v + 24] = SMR_MAX_MEMBERS + 1;
  reseal(buf2, len + (len - last));
  assert_int_equal(decode(buf2, len + (len - last)), -EBADMSG);

  /* has_value other than 0/1 with nothing after it */
  fill_hdr(&S.h, SMR_MSG_PROMISE);
  memset(&S.m, 0, sizeof S.m);
  len = roundtrip();
  assert_int_equal(buf[len - 1], 0);
  damaged(len, len - 1, 2, -EBADMSG);
  damaged(len, len - 1, 0xff, -EBADMSG);
}

static void test_decode_bad_join(void **state) {
  size_t len, b;
  (void)state;
  fill_hdr(&S.h, SMR_MSG_JOIN);
  memset(&S.m, 0, sizeof S.m);
  strcpy(S.m.u.join.addr, "10.0.0.9:7000");
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  b = body_at(buf);
  assert_int_equal(decode(buf, len), 0);
  damaged(len, b, 0, -EBADMSG);
  damaged(len, b, SMR_ADDR_MAX, -EBADMSG);
  damaged(len, b, 255, -EBADMSG);
  damaged(len, b, 14, -EBADMSG);
  damaged(len, b, 12, -EBADMSG);
  damaged(len, b + 5, 0, -EBADMSG);
}

static void test_decode_bad_entries(void **state) {
  size_t len, b;
  (void)state;

  /* SUBMIT with two entries of 5 bytes */
  fill_hdr(&S.h, SMR_MSG_SUBMIT);
  for (int i = 0; i < 2; i++)
    S.e[i] = (struct smr_wire_entry){
        .sender_seq = (uint64_t)i, .len = 5, .data = (const uint8_t *)"abcde"};
  S.m.u.submit.entries = S.e;
  S.m.u.submit.count = 2;
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  b = body_at(buf);
  assert_int_equal(decode(buf, len), 0);
  damaged(len, b, 3, -EBADMSG);       /* count: more than present */
  damaged(len, b, 1, -EBADMSG);       /* count: fewer (trailing) */
  damaged(len, b, 0, -EBADMSG);       /* count: none (trailing) */
  damaged(len, b + 3, 0x80, -EBADMSG); /* count: huge */
  damaged(len, b + 12, 6, -EBADMSG);  /* len: eats into the next entry */
  damaged(len, b + 12, 4, -EBADMSG);  /* len: leaves a stray byte */
  damaged(len, b + 15, 0xff, -EBADMSG); /* len: far past the body */
  damaged(len, b + 4 + 17 + 8, 200, -EBADMSG); /* second entry's len */

  /* ORDER: the same, plus the sender rank */
  fill_hdr(&S.h, SMR_MSG_ORDER);
  S.e[0].sender = 0;
  S.e[1].sender = SMR_MAX_MEMBERS - 1;
  S.m.u.order.first_seq = 10;
  S.m.u.order.entries = S.e;
  S.m.u.order.count = 2;
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  b = body_at(buf);
  assert_int_equal(decode(buf, len), 0);
  damaged(len, b + 8, 3, -EBADMSG);
  damaged(len, b + 8, 1, -EBADMSG);
  damaged(len, b + 12, SMR_MAX_MEMBERS, -EBADMSG);       /* sender */
  damaged(len, b + 12 + 18, 255, -EBADMSG);              /* second sender */
  damaged(len, b + 12 + 9, 6, -EBADMSG);                 /* len */
  damaged(len, b + 12 + 9, 4, -EBADMSG);                 /* len */
  damaged(len, b + 12 + 12, 0xff, -EBADMSG);             /* len */
}

static void test_decode_bad_xfer(void **state) {
  size_t len, b;
  (void)state;
  fill_hdr(&S.h, SMR_MSG_XFER);
  memset(&S.m, 0, sizeof S.m);
  S.m.u.xfer.kind = SMR_XFER_END;
  S.m.u.xfer.len = 8;
  S.m.u.xfer.data = (const uint8_t *)"\1\2\3\4\5\6\7\10";
  len = smr_wire_encode(buf, sizeof buf, &S.h, &S.m);
  b = body_at(buf);
  assert_int_equal(decode(buf, len), 0);
  damaged(len, b + 8, 0, -EBADMSG);                /* kind */
  damaged(len, b + 8, SMR_XFER_END + 1, -EBADMSG); /* kind */
  damaged(len, b + 8, SMR_XFER_LOG, 0);            /* LOG may carry 8 */
  damaged(len, b + 17, 9, -EBADMSG);               /* len past the body */
  damaged(len, b + 17, 7, -EBADMSG);               /* trailing byte */
  damaged(len, b + 20, 0x10, -EBADMSG);            /* huge len */
  /* an END whose data is not 8 bytes, framed consistently */
  memcpy(buf2, buf, len - 1);
  buf2[b + 17] = 7;
  reseal(buf2, len - 1);
  assert_int_equal(decode(buf2, len - 1), -EBADMSG);
  buf2[b + 8] = SMR_XFER_SNAP;
  reseal(buf2, len - 1);
  assert_int_equal(decode(buf2, len - 1), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c_known_answers),
      cmocka_unit_test(test_crc32c_table),
      cmocka_unit_test(test_crc32c_matches_bitwise),
      cmocka_unit_test(test_group_hash),
      cmocka_unit_test(test_type_names),
      cmocka_unit_test(test_golden_heartbeat),
      cmocka_unit_test(test_roundtrip_each_type),
      cmocka_unit_test(test_roundtrip_random),
      cmocka_unit_test(test_entries_iteration),
      cmocka_unit_test(test_encode_small_buffer),
      cmocka_unit_test(test_encode_bad_inputs),
      cmocka_unit_test(test_frame_len_partial),
      cmocka_unit_test(test_frame_len_stream),
      cmocka_unit_test(test_decode_byte_flips),
      cmocka_unit_test(test_decode_truncation),
      cmocka_unit_test(test_decode_trailing),
      cmocka_unit_test(test_decode_short_body),
      cmocka_unit_test(test_decode_oversize_length),
      cmocka_unit_test(test_decode_bad_header),
      cmocka_unit_test(test_decode_bad_view),
      cmocka_unit_test(test_decode_limits_exact),
      cmocka_unit_test(test_decode_bad_join),
      cmocka_unit_test(test_decode_bad_entries),
      cmocka_unit_test(test_decode_bad_xfer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
