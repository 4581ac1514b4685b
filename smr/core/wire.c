/* wire.c -- encoding and decoding of the group protocol's frames.
 *
 * The layout is specified in wire.h; this file is its only implementation.
 *
 * Encoding is two passes.  body_size() walks the message once, validating
 * everything the encoder could be handed wrongly (type, string lengths,
 * member counts, entry pointers, booleans, transfer kinds) and summing the
 * bytes; only if the whole frame fits the caller's buffer does the second
 * pass write it, with no further checks needed except assertions.  The
 * checksum is computed last, over the finished frame with its CRC field
 * still zero.  Sizes are summed in 64 bits and capped at SMR_FRAME_MAX as
 * they grow, so hostile counts cannot overflow them.
 *
 * Decoding goes through a cursor (struct rd) whose every read checks the
 * bytes left before touching them.  A failed read marks the cursor bad and
 * returns zeros; the parse runs to the end of the body (loops are bounded
 * by SMR_MAX_MEMBERS or by the bytes left) and the error is reported once,
 * at the end.  So no length is ever used before it is checked, and a frame
 * is accepted only if the body is consumed exactly.  Checks run from the
 * outside in: framing (magic, version, length) first, because nothing else
 * can be trusted without it; then the checksum; then the type, so that an
 * unknown type with a good checksum reads as a newer protocol (-EPROTO)
 * while a corrupted type byte reads as corruption (-EBADMSG).
 *
 * The encoding is canonical: every field has one representation (strings
 * without NUL bytes, booleans 0 or 1, nothing after the body), so a frame
 * that decodes re-encodes to the same bytes.  The fuzz target relies on it.
 *
 * Nothing here allocates, and the only state is which CRC32C code this CPU
 * runs fastest (chosen once, the same by every thread that races to it);
 * the CRC tables are static const data (crc32c_table.h) and every function
 * is reentrant. */
#include "wire.h"

#include <errno.h>
#include <string.h>

#include "assert.h"
#include "crc32c_table.h"

/* Fixed body sizes, and the per-entry overhead of SUBMIT and ORDER. */
#define HB_BODY (8 + 8 + 4 + 1)
#define PROMISE_FIXED (8 + 8 + 4 + 1 + 8 + 8 + 8 + 1)
#define VIEW_FIXED (8 + 8 + 8 + 1)
#define MEMBER_FIXED (1 + 1 + 8 + 1) /* two length bytes, incarnation, flags */
#define XFER_FIXED (8 + 1 + 8 + 4)
#define XFER_END_LEN 8 /* an END chunk's data is the u64 boundary hash */

/* ---------------------------------------------------------------- CRC32C */

uint32_t smr_crc32c_sw(uint32_t crc, const void *buf, size_t len) {
  const uint8_t *p = buf;

  crc = ~crc;
  while (len >= 8) {
    uint64_t w = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
                 (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 |
                 (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
                 (uint64_t)p[7] << 56;
    w ^= crc;
    crc = crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff] ^
          crc32c_table[5][(w >> 16) & 0xff] ^
          crc32c_table[4][(w >> 24) & 0xff] ^
          crc32c_table[3][(w >> 32) & 0xff] ^
          crc32c_table[2][(w >> 40) & 0xff] ^
          crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--) crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* The same with SSE 4.2's crc32 instruction, which computes CRC32C (the
 * Castagnoli polynomial) 8 bytes at a time: used when the CPU has it
 * (every x86-64 made since 2008), about 5 times the tables' speed -- but
 * not on a CPU that qemu emulates (TCG), which has the instruction too and
 * runs it bit by bit in a helper: there it is 5 times *slower* than the
 * tables (114 against 627 MB/s in the test VM; a member computes the CRC
 * of every byte it receives, logs and delivers, so under emulation this
 * was a third of the group's CPU).  TCG says who it is in the hypervisor
 * CPUID leaf, as KVM and others do. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <nmmintrin.h>
#include <stdatomic.h>
#define HAVE_CRC32C_SSE42 1

static int cpu_is_emulated(void) {
  unsigned a, b, c, d;
  char sig[12];
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 31))) return 0;
  __cpuid(0x40000000, a, b, c, d); /* the hypervisor's leaf */
  memcpy(sig, &b, 4);
  memcpy(sig + 4, &c, 4);
  memcpy(sig + 8, &d, 4);
  return memcmp(sig, "TCGTCGTCGTCG", 12) == 0;
}

/* 1: the instruction, 2: the tables, 0: not chosen yet. */
static atomic_int crc_choice;

static int crc_use_sse42(void) {
  int ch = atomic_load_explicit(&crc_choice, memory_order_relaxed);
  if (ch == 0) {
    ch = __builtin_cpu_supports("sse4.2") && !cpu_is_emulated() ? 1 : 2;
    atomic_store_explicit(&crc_choice, ch, memory_order_relaxed);
  }
  return ch == 1;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(
    uint32_t crc, const uint8_t *p, size_t len) {
  uint64_t c = (uint32_t)~crc;
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8); /* little endian: the bytes in order */
    c = _mm_crc32_u64(c, w);
    p += 8;
    len -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (len--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#endif

uint32_t smr_crc32c(uint32_t crc, const void *buf, size_t len) {
#ifdef HAVE_CRC32C_SSE42
  if (crc_use_sse42()) return crc32c_sse42(crc, buf, len);
#endif
  return smr_crc32c_sw(crc, buf, len);
}

/* ------------------------------------------------------------ group hash */

uint64_t smr_wire_group_hash(const char *name) {
  const unsigned char *s = (const unsigned char *)name;
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a 64 offset basis */

  smr_assert(name != NULL);
  while (*s) {
    h ^= *s++;
    h *= 0x100000001b3u; /* FNV 64 prime */
  }
  /* FNV-1a mixes its last bytes poorly into the high bits; finish with the
   * 64-bit finaliser of MurmurHash3 so that every input bit reaches every
   * output bit. */
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 33;
  return h;
}

/* ------------------------------------------------------------ type names */

const char *smr_msg_type_name(int type) {
  static const char *const names[] = {
      [SMR_MSG_HEARTBEAT] = "HEARTBEAT", [SMR_MSG_SUBMIT] = "SUBMIT",
      [SMR_MSG_ORDER] = "ORDER",         [SMR_MSG_PREPARE] = "PREPARE",
      [SMR_MSG_PROMISE] = "PROMISE",     [SMR_MSG_NACK] = "NACK",
      [SMR_MSG_ACCEPT] = "ACCEPT",       [SMR_MSG_ACCEPTED] = "ACCEPTED",
      [SMR_MSG_DECIDE] = "DECIDE",       [SMR_MSG_JOIN] = "JOIN",
      [SMR_MSG_VIEWINFO] = "VIEWINFO",   [SMR_MSG_HELLO] = "HELLO",
      [SMR_MSG_XFER] = "XFER",           [SMR_MSG_XFER_ACK] = "XFER_ACK",
      [SMR_MSG_LEAVE] = "LEAVE",
  };
  if (type < SMR_MSG_HEARTBEAT || type > SMR_MSG_TYPE_MAX_) return "UNKNOWN";
  return names[type];
}

/* ------------------------------------------------------------- body size */

/* Bytes of a string field, or 0 if s is empty or not NUL terminated
 * within max bytes (then it cannot be encoded). */
static size_t str_size(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  return (n == 0 || n >= max) ? 0 : 1 + n;
}

#define BAD UINT64_MAX

static uint64_t view_size(const struct smr_wire_view *v) {
  uint64_t sz = VIEW_FIXED;
  if (v->n > SMR_MAX_MEMBERS) return BAD;
  for (uint32_t i = 0; i < v->n; i++) {
    size_t id = str_size(v->m[i].id, SMR_ID_MAX);
    size_t addr = str_size(v->m[i].addr, SMR_ADDR_MAX);
    if (id == 0 || addr == 0) return BAD;
    sz += (MEMBER_FIXED - 2) + id + addr;
  }
  return sz;
}

static uint64_t proposal_size(const struct smr_wire_proposal *p) {
  uint64_t sz = view_size(&p->next);
  return sz == BAD ? BAD : sz + 8;
}

/* Body bytes of SUBMIT (fixed = 4, per = 12) or ORDER (fixed = 12,
 * per = 13) entries, capped: any total over SMR_FRAME_MAX is BAD. */
static uint64_t entries_size(const struct smr_wire_entry *e, uint32_t count,
                             uint64_t fixed, uint64_t per, int with_sender) {
  uint64_t sz = fixed;
  if (count > 0 && e == NULL) return BAD;
  for (uint32_t i = 0; i < count; i++) {
    if (e[i].len > 0 && e[i].data == NULL) return BAD;
    if (with_sender && e[i].sender >= SMR_MAX_MEMBERS) return BAD;
    sz += per + e[i].len;
    if (sz > SMR_FRAME_MAX) return BAD;
  }
  return sz;
}

/* The body's size, or BAD if m cannot be encoded as a frame of this type. */
static uint64_t body_size(int type, const struct smr_wire_msg *m) {
  uint64_t sz;
  switch (type) {
    case SMR_MSG_HEARTBEAT:
      return HB_BODY;
    case SMR_MSG_SUBMIT:
      return entries_size(m->u.submit.entries, m->u.submit.count, 4, 12, 0);
    case SMR_MSG_ORDER:
      return entries_size(m->u.order.entries, m->u.order.count, 12, 13, 1);
    case SMR_MSG_PREPARE:
      return 8;
    case SMR_MSG_PROMISE:
      if (m->u.promise.has_value > 1) return BAD;
      if (!m->u.promise.has_value) return PROMISE_FIXED;
      sz = proposal_size(&m->u.promise.value);
      return sz == BAD ? BAD : PROMISE_FIXED + sz;
    case SMR_MSG_NACK:
      return 16;
    case SMR_MSG_ACCEPT:
      sz = proposal_size(&m->u.accept.value);
      return sz == BAD ? BAD : 8 + sz;
    case SMR_MSG_ACCEPTED:
      return 8;
    case SMR_MSG_DECIDE:
      return proposal_size(&m->u.decide.value);
    case SMR_MSG_JOIN:
      sz = str_size(m->u.join.addr, SMR_ADDR_MAX);
      return sz == 0 ? BAD : sz + 1 + 8 + 8;
    case SMR_MSG_VIEWINFO:
      return view_size(&m->u.viewinfo.view);
    case SMR_MSG_HELLO:
      return 1;
    case SMR_MSG_XFER:
      switch (m->u.xfer.kind) {
        case SMR_XFER_SNAP:
        case SMR_XFER_LOG:
          break;
        case SMR_XFER_END:
          if (m->u.xfer.len != XFER_END_LEN) return BAD;
          break;
        default:
          return BAD;
      }
      if (m->u.xfer.len > 0 && m->u.xfer.data == NULL) return BAD;
      sz = (uint64_t)XFER_FIXED + m->u.xfer.len;
      return sz > SMR_FRAME_MAX ? BAD : sz;
    case SMR_MSG_XFER_ACK:
      return 16;
    case SMR_MSG_LEAVE:
      return 0;
    default:
      return BAD;
  }
}

size_t smr_wire_size(const struct smr_wire_hdr *h,
                     const struct smr_wire_msg *m) {
  size_t from = str_size(h->from, SMR_ID_MAX);
  uint64_t body = body_size(h->type, m);
  if (from == 0 || body == BAD || body > SMR_FRAME_MAX) return 0;
  /* from counts its length byte, which is the last of the fixed header */
  return (size_t)(SMR_WIRE_HDR_FIXED - 1 + from + body);
}

/* ---------------------------------------------------------------- encode */

/* A write cursor.  The encoder has sized the frame before writing, so the
 * bound is only asserted. */
struct wr {
  uint8_t *p, *end;
};

static void put8(struct wr *w, uint8_t v) {
  smr_assert(w->end - w->p >= 1);
  *w->p++ = v;
}

static void put32(struct wr *w, uint32_t v) {
  smr_assert(w->end - w->p >= 4);
  for (int i = 0; i < 4; i++) *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put64(struct wr *w, uint64_t v) {
  smr_assert(w->end - w->p >= 8);
  for (int i = 0; i < 8; i++) *w->p++ = (uint8_t)(v >> (8 * i));
}

static void put_bytes(struct wr *w, const void *src, size_t n) {
  smr_assert((size_t)(w->end - w->p) >= n);
  if (n) memcpy(w->p, src, n);
  w->p += n;
}

/* Writes a string already validated by str_size(). */
static void put_str(struct wr *w, const char *s) {
  size_t n = strlen(s);
  put8(w, (uint8_t)n);
  put_bytes(w, s, n);
}

static void put_view(struct wr *w, const struct smr_wire_view *v) {
  put64(w, v->epoch);
  put64(w, v->start_pos);
  put64(w, v->start_hash);
  put8(w, (uint8_t)v->n);
  for (uint32_t i = 0; i < v->n; i++) {
    put_str(w, v->m[i].id);
    put_str(w, v->m[i].addr);
    put64(w, v->m[i].incarnation);
    put8(w, v->m[i].flags);
  }
}

static void put_proposal(struct wr *w, const struct smr_wire_proposal *p) {
  put_view(w, &p->next);
  put64(w, p->trim);
}

static void put_entries(struct wr *w, const struct smr_wire_entry *e,
                        uint32_t count, int with_sender) {
  put32(w, count);
  for (uint32_t i = 0; i < count; i++) {
    if (with_sender) put8(w, e[i].sender);
    put64(w, e[i].sender_seq);
    put32(w, e[i].len);
    put_bytes(w, e[i].data, e[i].len);
  }
}

static void put_body(struct wr *w, int type, const struct smr_wire_msg *m) {
  switch (type) {
    case SMR_MSG_HEARTBEAT:
      put64(w, m->u.hb.received);
      put64(w, m->u.hb.delivered);
      put32(w, m->u.hb.suspects);
      put8(w, m->u.hb.flags);
      break;
    case SMR_MSG_SUBMIT:
      put_entries(w, m->u.submit.entries, m->u.submit.count, 0);
      break;
    case SMR_MSG_ORDER:
      put64(w, m->u.order.first_seq);
      put_entries(w, m->u.order.entries, m->u.order.count, 1);
      break;
    case SMR_MSG_PREPARE:
      put64(w, m->u.prepare.ballot);
      break;
    case SMR_MSG_PROMISE:
      put64(w, m->u.promise.ballot);
      put64(w, m->u.promise.received);
      put32(w, m->u.promise.suspects);
      put8(w, m->u.promise.flags);
      put64(w, m->u.promise.pos);
      put64(w, m->u.promise.hash);
      put64(w, m->u.promise.accepted_ballot);
      put8(w, m->u.promise.has_value);
      if (m->u.promise.has_value) put_proposal(w, &m->u.promise.value);
      break;
    case SMR_MSG_NACK:
      put64(w, m->u.nack.ballot);
      put64(w, m->u.nack.promised);
      break;
    case SMR_MSG_ACCEPT:
      put64(w, m->u.accept.ballot);
      put_proposal(w, &m->u.accept.value);
      break;
    case SMR_MSG_ACCEPTED:
      put64(w, m->u.accepted.ballot);
      break;
    case SMR_MSG_DECIDE:
      put_proposal(w, &m->u.decide.value);
      break;
    case SMR_MSG_JOIN:
      put_str(w, m->u.join.addr);
      put8(w, m->u.join.flags);
      put64(w, m->u.join.pos);
      put64(w, m->u.join.hash);
      break;
    case SMR_MSG_VIEWINFO:
      put_view(w, &m->u.viewinfo.view);
      break;
    case SMR_MSG_HELLO:
      put8(w, m->u.hello.flags);
      break;
    case SMR_MSG_XFER:
      put64(w, m->u.xfer.boundary);
      put8(w, m->u.xfer.kind);
      put64(w, m->u.xfer.offset);
      put32(w, m->u.xfer.len);
      put_bytes(w, m->u.xfer.data, m->u.xfer.len);
      break;
    case SMR_MSG_XFER_ACK:
      put64(w, m->u.xfer_ack.boundary);
      put64(w, m->u.xfer_ack.offset);
      break;
    case SMR_MSG_LEAVE:
      break;
    default:
      smr_assert(!"type validated by body_size");
  }
}

static uint32_t ld32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t ld64(const uint8_t *p) {
  return (uint64_t)ld32(p) | (uint64_t)ld32(p + 4) << 32;
}

/* The CRC of a whole frame, its CRC field (bytes 8..11) taken as zero. */
static uint32_t frame_crc(const uint8_t *buf, size_t len) {
  static const uint8_t zero[4];
  uint32_t crc = smr_crc32c(0, buf, 8);
  crc = smr_crc32c(crc, zero, sizeof zero);
  return smr_crc32c(crc, buf + 12, len - 12);
}

size_t smr_wire_encode(uint8_t *buf, size_t cap, const struct smr_wire_hdr *h,
                       const struct smr_wire_msg *m) {
  size_t len = smr_wire_size(h, m);
  struct wr w;
  uint32_t crc;

  if (len == 0 || len > cap) return 0;
  w.p = buf;
  w.end = buf + len;
  put8(&w, SMR_WIRE_MAGIC0);
  put8(&w, SMR_WIRE_MAGIC1);
  put8(&w, SMR_WIRE_VERSION);
  put8(&w, h->type);
  put32(&w, (uint32_t)(len - SMR_WIRE_HDR_FIXED - strlen(h->from)));
  put32(&w, 0); /* CRC, filled in below */
  put64(&w, h->group);
  put64(&w, h->epoch);
  put64(&w, h->incarnation);
  put_str(&w, h->from);
  smr_assert(w.p - buf == (ptrdiff_t)(SMR_WIRE_HDR_FIXED + strlen(h->from)));
  put_body(&w, h->type, m);
  smr_assert(w.p == w.end);

  crc = frame_crc(buf, len);
  w.p = buf + 8;
  put32(&w, crc);
  return len;
}

/* ----------------------------------------------------------------- frame */

long smr_wire_frame_len(const uint8_t *buf, size_t len) {
  uint32_t body = 0;
  uint8_t idlen;

  if (len >= 1 && buf[0] != SMR_WIRE_MAGIC0) return -EBADMSG;
  if (len >= 2 && buf[1] != SMR_WIRE_MAGIC1) return -EBADMSG;
  if (len >= 3 && buf[2] != SMR_WIRE_VERSION) return -EPROTO;
  if (len >= 8) {
    body = ld32(buf + 4);
    if (body > SMR_FRAME_MAX) return -EMSGSIZE;
  }
  if (len < SMR_WIRE_HDR_FIXED) return 0;
  idlen = buf[SMR_WIRE_HDR_FIXED - 1];
  if (idlen == 0 || idlen >= SMR_ID_MAX) return -EBADMSG;
  return (long)SMR_WIRE_HDR_FIXED + idlen + (long)body;
}

/* ---------------------------------------------------------------- decode */

/* A read cursor.  A read past the end sets bad, returns zeros and leaves
 * the cursor where it was; the caller tests bad once, after the parse. */
struct rd {
  const uint8_t *p, *end;
  int bad;
};

static int need(struct rd *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) {
    r->bad = 1;
    return 0;
  }
  return 1;
}

static uint8_t get8(struct rd *r) {
  return need(r, 1) ? *r->p++ : 0;
}

static uint32_t get32(struct rd *r) {
  uint32_t v;
  if (!need(r, 4)) return 0;
  v = ld32(r->p);
  r->p += 4;
  return v;
}

static uint64_t get64(struct rd *r) {
  uint64_t v;
  if (!need(r, 8)) return 0;
  v = ld64(r->p);
  r->p += 8;
  return v;
}

/* A u8-length string into dst[max]: 1..max-1 bytes, none of them NUL (so
 * that the decoded string re-encodes to the same bytes). */
static void get_str(struct rd *r, char *dst, size_t max) {
  uint8_t n = get8(r);
  if (r->bad) return;
  if (n == 0 || n >= max || !need(r, n) || memchr(r->p, 0, n) != NULL) {
    r->bad = 1;
    return;
  }
  memcpy(dst, r->p, n);
  dst[n] = '\0';
  r->p += n;
}

static void get_view(struct rd *r, struct smr_wire_view *v) {
  memset(v, 0, sizeof *v);
  v->epoch = get64(r);
  v->start_pos = get64(r);
  v->start_hash = get64(r);
  v->n = get8(r);
  if (v->n > SMR_MAX_MEMBERS) {
    r->bad = 1;
    return;
  }
  for (uint32_t i = 0; i < v->n && !r->bad; i++) {
    get_str(r, v->m[i].id, SMR_ID_MAX);
    get_str(r, v->m[i].addr, SMR_ADDR_MAX);
    v->m[i].incarnation = get64(r);
    v->m[i].flags = get8(r);
  }
}

static void get_proposal(struct rd *r, struct smr_wire_proposal *p) {
  get_view(r, &p->next);
  p->trim = get64(r);
}

/* Validates count entries and points it at them.  Every entry must lie
 * wholly inside the body; smr_wire_entries_next() relies on that. */
static void get_entries(struct rd *r, struct smr_wire_entries *it,
                        int with_sender) {
  uint32_t count = get32(r);

  it->count = count;
  it->with_sender = (uint8_t)with_sender;
  it->p = r->p;
  /* Each entry takes at least 12 bytes and the loop stops at the first
   * short read, so it runs at most (bytes left / 12) times whatever count
   * claims. */
  for (uint32_t i = 0; i < count && !r->bad; i++) {
    uint8_t sender = with_sender ? get8(r) : 0;
    uint32_t len;
    (void)get64(r);
    len = get32(r);
    if (sender >= SMR_MAX_MEMBERS || !need(r, len)) r->bad = 1;
    else r->p += len;
  }
  it->end = r->p;
}

static void get_body(struct rd *r, int type, struct smr_wire_msg *m) {
  switch (type) {
    case SMR_MSG_HEARTBEAT:
      m->u.hb.received = get64(r);
      m->u.hb.delivered = get64(r);
      m->u.hb.suspects = get32(r);
      m->u.hb.flags = get8(r);
      break;
    case SMR_MSG_SUBMIT:
      m->u.submit.entries = NULL;
      get_entries(r, &m->u.submit.it, 0);
      m->u.submit.count = m->u.submit.it.count;
      break;
    case SMR_MSG_ORDER:
      m->u.order.first_seq = get64(r);
      m->u.order.entries = NULL;
      get_entries(r, &m->u.order.it, 1);
      m->u.order.count = m->u.order.it.count;
      break;
    case SMR_MSG_PREPARE:
      m->u.prepare.ballot = get64(r);
      break;
    case SMR_MSG_PROMISE:
      m->u.promise.ballot = get64(r);
      m->u.promise.received = get64(r);
      m->u.promise.suspects = get32(r);
      m->u.promise.flags = get8(r);
      m->u.promise.pos = get64(r);
      m->u.promise.hash = get64(r);
      m->u.promise.accepted_ballot = get64(r);
      m->u.promise.has_value = get8(r);
      if (m->u.promise.has_value > 1) r->bad = 1;
      if (m->u.promise.has_value == 1) get_proposal(r, &m->u.promise.value);
      else memset(&m->u.promise.value, 0, sizeof m->u.promise.value);
      break;
    case SMR_MSG_NACK:
      m->u.nack.ballot = get64(r);
      m->u.nack.promised = get64(r);
      break;
    case SMR_MSG_ACCEPT:
      m->u.accept.ballot = get64(r);
      get_proposal(r, &m->u.accept.value);
      break;
    case SMR_MSG_ACCEPTED:
      m->u.accepted.ballot = get64(r);
      break;
    case SMR_MSG_DECIDE:
      get_proposal(r, &m->u.decide.value);
      break;
    case SMR_MSG_JOIN:
      memset(m->u.join.addr, 0, sizeof m->u.join.addr);
      get_str(r, m->u.join.addr, SMR_ADDR_MAX);
      m->u.join.flags = get8(r);
      m->u.join.pos = get64(r);
      m->u.join.hash = get64(r);
      break;
    case SMR_MSG_VIEWINFO:
      get_view(r, &m->u.viewinfo.view);
      break;
    case SMR_MSG_HELLO:
      m->u.hello.flags = get8(r);
      break;
    case SMR_MSG_XFER:
      m->u.xfer.boundary = get64(r);
      m->u.xfer.kind = get8(r);
      m->u.xfer.offset = get64(r);
      m->u.xfer.len = get32(r);
      m->u.xfer.data = NULL;
      if (r->bad) break;
      if (m->u.xfer.kind < SMR_XFER_SNAP || m->u.xfer.kind > SMR_XFER_END ||
          (m->u.xfer.kind == SMR_XFER_END && m->u.xfer.len != XFER_END_LEN) ||
          !need(r, m->u.xfer.len)) {
        r->bad = 1;
        break;
      }
      m->u.xfer.data = r->p;
      r->p += m->u.xfer.len;
      break;
    case SMR_MSG_XFER_ACK:
      m->u.xfer_ack.boundary = get64(r);
      m->u.xfer_ack.offset = get64(r);
      break;
    case SMR_MSG_LEAVE:
      break;
    default:
      r->bad = 1; /* unreachable: the type was checked by the caller */
  }
}

int smr_wire_decode(const uint8_t *buf, size_t len, struct smr_wire_hdr *h,
                    struct smr_wire_msg *m) {
  long flen = smr_wire_frame_len(buf, len);
  struct rd r;

  if (flen < 0) return (int)flen;
  if (flen == 0 || (size_t)flen != len) return -EBADMSG; /* short or long */
  if (ld32(buf + 8) != frame_crc(buf, len)) return -EBADMSG;
  if (buf[3] < SMR_MSG_HEARTBEAT || buf[3] > SMR_MSG_TYPE_MAX_) return -EPROTO;

  memset(h, 0, sizeof *h);
  h->type = buf[3];
  r.p = buf + 12;
  r.end = buf + len;
  r.bad = 0;
  h->group = get64(&r);
  h->epoch = get64(&r);
  h->incarnation = get64(&r);
  get_str(&r, h->from, SMR_ID_MAX);
  if (r.bad) return -EBADMSG;
  smr_assert(r.p == buf + SMR_WIRE_HDR_FIXED + buf[SMR_WIRE_HDR_FIXED - 1]);

  get_body(&r, h->type, m);
  if (r.bad || r.p != r.end) return -EBADMSG;
  return 0;
}

int smr_wire_entries_next(struct smr_wire_entries *it,
                          struct smr_wire_entry *e) {
  size_t fixed = it->with_sender ? 13 : 12;
  const uint8_t *p = it->p;

  if (it->count == 0) return 0;
  /* The decoder validated the region; these fail only on a corrupted or
   * hand-built iterator. */
  if (NEVER((size_t)(it->end - p) < fixed)) return it->count = 0, 0;
  e->sender = it->with_sender ? *p++ : 0;
  e->sender_seq = ld64(p);
  e->len = ld32(p + 8);
  p += 12;
  if (NEVER((size_t)(it->end - p) < e->len)) return it->count = 0, 0;
  e->data = p;
  it->p = p + e->len;
  it->count--;
  return 1;
}
