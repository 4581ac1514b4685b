/* fuzz_wire.c -- fuzz target for the frame codec (smr/core/wire.c).
 *
 * Each input is used three ways:
 *
 *  1. As one frame, as is.  The decoder must not crash or read out of
 *     bounds (ASan), must return 0 or one of its documented errors, and
 *     must agree with smr_wire_frame_len().  A frame that decodes must
 *     re-encode to the very same bytes (the encoding is canonical, see
 *     wire.h), smr_wire_size() must predict that length, an encode into a
 *     buffer one byte short must fail, and decoding the re-encoding must
 *     give the same fields.
 *
 *  2. "Sealed": a copy with the magic, version, sender id length, body
 *     length and checksum forced valid, then treated as in 1.  Random
 *     bytes almost never carry a good CRC32C; sealing lets the fuzzer
 *     explore the body parsers instead of the checksum.
 *
 *  3. As a byte stream cut into frames by smr_wire_frame_len() alone, as a
 *     transport would: each cut must be stable under shorter prefixes of
 *     the header, and each frame is decoded.
 *
 * Oracle failures abort (FUZZ_CHECK).  The same file runs under libFuzzer
 * and under replay.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "wire.h"

static int same_view(const struct smr_wire_view *a,
                     const struct smr_wire_view *b) {
  if (a->epoch != b->epoch || a->start_pos != b->start_pos ||
      a->start_hash != b->start_hash || a->n != b->n)
    return 0;
  for (uint32_t i = 0; i < a->n; i++)
    if (strcmp(a->m[i].id, b->m[i].id) != 0 ||
        strcmp(a->m[i].addr, b->m[i].addr) != 0 ||
        a->m[i].incarnation != b->m[i].incarnation ||
        a->m[i].flags != b->m[i].flags)
      return 0;
  return 1;
}

static int same_proposal(const struct smr_wire_proposal *a,
                         const struct smr_wire_proposal *b) {
  return same_view(&a->next, &b->next) && a->trim == b->trim;
}

static int same_entries(struct smr_wire_entries a, struct smr_wire_entries b) {
  struct smr_wire_entry x, y;
  if (a.count != b.count || a.with_sender != b.with_sender) return 0;
  for (;;) {
    int ra = smr_wire_entries_next(&a, &x), rb = smr_wire_entries_next(&b, &y);
    if (ra != rb) return 0;
    if (!ra) return 1;
    if (x.sender != y.sender || x.sender_seq != y.sender_seq ||
        x.len != y.len || (x.len && memcmp(x.data, y.data, x.len) != 0))
      return 0;
  }
}

/* Two decoded messages carry the same fields. */
static int same_msg(const struct smr_wire_hdr *ha, const struct smr_wire_msg *a,
                    const struct smr_wire_hdr *hb,
                    const struct smr_wire_msg *b) {
  if (ha->type != hb->type || ha->group != hb->group ||
      ha->epoch != hb->epoch || ha->incarnation != hb->incarnation ||
      strcmp(ha->from, hb->from) != 0)
    return 0;
  switch (ha->type) {
    case SMR_MSG_HEARTBEAT:
      return a->u.hb.received == b->u.hb.received &&
             a->u.hb.delivered == b->u.hb.delivered &&
             a->u.hb.suspects == b->u.hb.suspects &&
             a->u.hb.flags == b->u.hb.flags;
    case SMR_MSG_SUBMIT:
      return a->u.submit.count == b->u.submit.count &&
             same_entries(a->u.submit.it, b->u.submit.it);
    case SMR_MSG_ORDER:
      return a->u.order.first_seq == b->u.order.first_seq &&
             a->u.order.count == b->u.order.count &&
             same_entries(a->u.order.it, b->u.order.it);
    case SMR_MSG_PREPARE:
      return a->u.prepare.ballot == b->u.prepare.ballot;
    case SMR_MSG_PROMISE:
      return a->u.promise.ballot == b->u.promise.ballot &&
             a->u.promise.received == b->u.promise.received &&
             a->u.promise.suspects == b->u.promise.suspects &&
             a->u.promise.flags == b->u.promise.flags &&
             a->u.promise.pos == b->u.promise.pos &&
             a->u.promise.hash == b->u.promise.hash &&
             a->u.promise.accepted_ballot == b->u.promise.accepted_ballot &&
             a->u.promise.has_value == b->u.promise.has_value &&
             (!a->u.promise.has_value ||
              same_proposal(&a->u.promise.value, &b->u.promise.value));
    case SMR_MSG_NACK:
      return a->u.nack.ballot == b->u.nack.ballot &&
             a->u.nack.promised == b->u.nack.promised;
    case SMR_MSG_ACCEPT:
      return a->u.accept.ballot == b->u.accept.ballot &&
             same_proposal(&a->u.accept.value, &b->u.accept.value);
    case SMR_MSG_ACCEPTED:
      return a->u.accepted.ballot == b->u.accepted.ballot;
    case SMR_MSG_DECIDE:
      return same_proposal(&a->u.decide.value, &b->u.decide.value);
    case SMR_MSG_JOIN:
      return strcmp(a->u.join.addr, b->u.join.addr) == 0 &&
             a->u.join.flags == b->u.join.flags &&
             a->u.join.pos == b->u.join.pos &&
             a->u.join.hash == b->u.join.hash;
    case SMR_MSG_VIEWINFO:
      return same_view(&a->u.viewinfo.view, &b->u.viewinfo.view);
    case SMR_MSG_HELLO:
      return a->u.hello.flags == b->u.hello.flags;
    case SMR_MSG_XFER:
      return a->u.xfer.boundary == b->u.xfer.boundary &&
             a->u.xfer.kind == b->u.xfer.kind &&
             a->u.xfer.offset == b->u.xfer.offset &&
             a->u.xfer.len == b->u.xfer.len &&
             (!a->u.xfer.len ||
              memcmp(a->u.xfer.data, b->u.xfer.data, a->u.xfer.len) == 0);
    case SMR_MSG_XFER_ACK:
      return a->u.xfer_ack.boundary == b->u.xfer_ack.boundary &&
             a->u.xfer_ack.offset == b->u.xfer_ack.offset;
    case SMR_MSG_LEAVE:
      return 1;
    default:
      return 0;
  }
}

/* Turns a decoded SUBMIT or ORDER back into an encodable message: the
 * entries array is filled from the iterator.  Returns the array to free. */
static struct smr_wire_entry *to_encodable(struct smr_wire_msg *m, int type) {
  struct smr_wire_entries it;
  struct smr_wire_entry *e;
  uint32_t i = 0;

  if (type == SMR_MSG_SUBMIT) it = m->u.submit.it;
  else if (type == SMR_MSG_ORDER) it = m->u.order.it;
  else return NULL;
  FUZZ_CHECK(it.count == (type == SMR_MSG_SUBMIT ? m->u.submit.count
                                                 : m->u.order.count));
  e = malloc(sizeof *e * (it.count ? it.count : 1));
  FUZZ_CHECK(e != NULL);
  while (smr_wire_entries_next(&it, &e[i])) i++;
  if (type == SMR_MSG_SUBMIT) {
    FUZZ_CHECK(i == m->u.submit.count);
    FUZZ_CHECK(m->u.submit.entries == NULL);
    m->u.submit.entries = e;
  } else {
    FUZZ_CHECK(i == m->u.order.count);
    FUZZ_CHECK(m->u.order.entries == NULL);
    m->u.order.entries = e;
  }
  return e;
}

static void one_frame(const uint8_t *buf, size_t len) {
  struct smr_wire_hdr h, h2;
  struct smr_wire_msg m, m2;
  struct smr_wire_entry *e;
  uint8_t *out;
  long fl = smr_wire_frame_len(buf, len);
  int r = smr_wire_decode(buf, len, &h, &m);
  size_t n;

  FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -EPROTO || r == -EMSGSIZE);
  FUZZ_CHECK(fl >= 0 || fl == -EBADMSG || fl == -EPROTO || fl == -EMSGSIZE);
  /* the decoder frames exactly as smr_wire_frame_len() does */
  if (fl < 0) FUZZ_CHECK(r == fl);
  if (fl == 0 || (fl > 0 && (size_t)fl != len)) FUZZ_CHECK(r == -EBADMSG);
  if (r != 0) return;
  FUZZ_CHECK((size_t)fl == len);
  FUZZ_CHECK(h.type >= SMR_MSG_HEARTBEAT && h.type <= SMR_MSG_TYPE_MAX_);
  FUZZ_CHECK(strcmp(smr_msg_type_name(h.type), "UNKNOWN") != 0);

  /* re-encode: same size, same bytes (canonical), and not one byte less */
  e = to_encodable(&m, h.type);
  FUZZ_CHECK(smr_wire_size(&h, &m) == len);
  out = malloc(len);
  FUZZ_CHECK(out != NULL);
  FUZZ_CHECK(smr_wire_encode(out, len - 1, &h, &m) == 0);
  n = smr_wire_encode(out, len, &h, &m);
  FUZZ_CHECK(n == len);
  FUZZ_CHECK(memcmp(out, buf, len) == 0);

  /* and the re-encoding decodes to the same fields */
  FUZZ_CHECK(smr_wire_decode(out, n, &h2, &m2) == 0);
  FUZZ_CHECK(smr_wire_decode(buf, len, &h, &m) == 0); /* fresh iterators */
  FUZZ_CHECK(same_msg(&h, &m, &h2, &m2));
  free(out);
  free(e);
}

/* The input with its framing forced valid (see the file comment). */
static void sealed(const uint8_t *data, size_t size) {
  uint8_t *buf;
  size_t idlen, body;
  uint32_t crc;

  if (size < SMR_WIRE_HDR_FIXED + 1) return;
  buf = malloc(size);
  FUZZ_CHECK(buf != NULL);
  memcpy(buf, data, size);
  buf[0] = SMR_WIRE_MAGIC0;
  buf[1] = SMR_WIRE_MAGIC1;
  buf[2] = SMR_WIRE_VERSION;
  idlen = 1 + buf[36] % (SMR_ID_MAX - 1);
  if (idlen > size - SMR_WIRE_HDR_FIXED) idlen = size - SMR_WIRE_HDR_FIXED;
  buf[36] = (uint8_t)idlen;
  body = size - SMR_WIRE_HDR_FIXED - idlen;
  if (body > SMR_FRAME_MAX) {
    free(buf);
    return;
  }
  for (int i = 0; i < 4; i++) buf[4 + i] = (uint8_t)(body >> (8 * i));
  memset(buf + 8, 0, 4);
  crc = smr_crc32c(0, buf, size);
  for (int i = 0; i < 4; i++) buf[8 + i] = (uint8_t)(crc >> (8 * i));
  FUZZ_CHECK(smr_wire_frame_len(buf, size) == (long)size);
  one_frame(buf, size);
  free(buf);
}

/* The input as a stream of frames. */
static void stream(const uint8_t *data, size_t size) {
  size_t off = 0;
  while (off < size) {
    long fl = smr_wire_frame_len(data + off, size - off);
    if (fl <= 0) {
      if (fl == 0) FUZZ_CHECK(size - off < SMR_WIRE_HDR_FIXED);
      return;
    }
    FUZZ_CHECK(fl > SMR_WIRE_HDR_FIXED &&
               (size_t)fl <= SMR_WIRE_FRAME_LEN_MAX);
    /* the header alone decides the length; fewer bytes cannot */
    FUZZ_CHECK(smr_wire_frame_len(data + off, SMR_WIRE_HDR_FIXED) == fl);
    for (size_t k = 0; k < SMR_WIRE_HDR_FIXED; k++)
      FUZZ_CHECK(smr_wire_frame_len(data + off, k) == 0);
    if ((size_t)fl > size - off) return; /* a transport would wait */
    one_frame(data + off, (size_t)fl);
    off += (size_t)fl;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  one_frame(data, size);
  sealed(data, size);
  stream(data, size);
  return 0;
}
