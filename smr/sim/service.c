/* service.c -- the toy replicated service and a donor's state source.
 *
 * Every node runs the same tiny deterministic service: 256 u64 registers
 * and a count of applied messages.  Applying a payload hashes it and
 * rewrites four registers chosen by the hash, each new value depending on
 * the old one and on the count, so two histories that differ in content
 * or in order end in different states.
 *
 * The digest is a sum over the registers of a strong mix of (index,
 * value), kept incrementally (O(1) per apply), combined with the count.
 * svc_digest_full() recomputes it from scratch; the checker compares the
 * two now and then to check the bookkeeping itself.
 *
 * The snapshot image is the serialised state: magic, version, position,
 * count, registers and a checksum (SIM_IMG_SIZE bytes, about 2 KB: with a
 * 256-byte transfer chunk a snapshot takes nine XFER frames).
 *
 * A node also keeps the last SIM_RING delivered messages (its "log"), from
 * which a donor serves deltas; older positions answer -ENOENT and force a
 * full snapshot.
 *
 * Payloads are self-describing so the checker can tell a submitted message
 * from a corrupted or invented one:
 *   u32 magic "SMRP", u64 id, u8 node, u8 probe, u16 fill, u32 inc,
 *   u32 counter, then `fill` bytes derived from the id. */
#include <errno.h>
#include <string.h>

#include "sim.h"

#define IMG_MAGIC 0x474d4953u /* "SIMG" */
#define PAY_MAGIC 0x50524d53u /* "SMRP" */

/* ------------------------------------------------------------------------
 * Hashing
 * ---------------------------------------------------------------------- */

uint64_t sim_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void wr64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t sim_hash(const void *data, size_t len, uint64_t seed) {
  const uint8_t *p = data;
  uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ull);
  while (len >= 8) {
    h = sim_mix64(h ^ rd64(p));
    p += 8;
    len -= 8;
  }
  uint64_t t = 0;
  for (size_t i = 0; i < len; i++) t |= (uint64_t)p[i] << (8 * i);
  return sim_mix64(h ^ t ^ 0xa5a5a5a5a5a5a5a5ull);
}

/* ------------------------------------------------------------------------
 * The state machine
 * ---------------------------------------------------------------------- */

static uint64_t reg_mix(uint32_t i, uint64_t v) {
  return sim_mix64(v ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull));
}

void svc_reset(struct sim_service *s) {
  memset(s, 0, sizeof *s);
  for (uint32_t i = 0; i < SIM_REGS; i++) s->sum += reg_mix(i, 0);
}

void svc_apply(struct sim_service *s, const uint8_t *data, size_t len) {
  uint64_t h = sim_hash(data, len, 0x5eed);
  for (int k = 0; k < 4; k++) {
    uint32_t r = (uint32_t)(h >> (8 * k)) & (SIM_REGS - 1);
    uint64_t old = s->regs[r];
    uint64_t nv = sim_mix64(old ^ h ^ (s->count << 3) ^ (uint64_t)k);
    s->sum += reg_mix(r, nv) - reg_mix(r, old);
    s->regs[r] = nv;
  }
  s->count++;
}

uint64_t svc_digest(const struct sim_service *s) {
  return s->sum ^ sim_mix64(s->count + 0x1234);
}

uint64_t svc_digest_full(const struct sim_service *s) {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < SIM_REGS; i++) sum += reg_mix(i, s->regs[i]);
  return sum ^ sim_mix64(s->count + 0x1234);
}

/* ------------------------------------------------------------------------
 * Snapshot image
 * ---------------------------------------------------------------------- */

void svc_image(const struct sim_service *s, uint8_t *img) {
  uint8_t *p = img;
  wr32(p, IMG_MAGIC);
  wr32(p + 4, 1);
  wr64(p + 8, s->pos);
  wr64(p + 16, s->count);
  p += 24;
  for (uint32_t i = 0; i < SIM_REGS; i++, p += 8) wr64(p, s->regs[i]);
  wr64(p, sim_hash(img, (size_t)(p - img), 0x1ca6e));
}

/* Rebuilds s from an image; pos and hash are left for the caller (the
 * image's position is checked against pos).  Returns 0, or -EBADMSG. */
int svc_from_image(struct sim_service *s, const uint8_t *img, size_t len) {
  if (len != SIM_IMG_SIZE) return -EBADMSG;
  if (rd32(img) != IMG_MAGIC || rd32(img + 4) != 1) return -EBADMSG;
  if (rd64(img + SIM_IMG_SIZE - 8) != sim_hash(img, SIM_IMG_SIZE - 8, 0x1ca6e))
    return -EBADMSG;
  svc_reset(s);
  s->pos = rd64(img + 8);
  s->count = rd64(img + 16);
  const uint8_t *p = img + 24;
  for (uint32_t i = 0; i < SIM_REGS; i++, p += 8) {
    uint64_t v = rd64(p);
    s->sum += reg_mix(i, v) - reg_mix(i, 0);
    s->regs[i] = v;
  }
  return 0;
}

/* ------------------------------------------------------------------------
 * Retained log
 * ---------------------------------------------------------------------- */

void ring_reset(struct sim_node *n) {
  for (int i = 0; i < SIM_RING; i++) n->ring[i].pos = 0;
}

void ring_put(struct sim_node *n, uint64_t pos, uint64_t hash,
              const uint8_t *d, size_t len) {
  struct sim_logslot *s = &n->ring[pos % SIM_RING];
  if (len > SIM_PAYLOAD_MAX) {
    s->pos = 0; /* cannot happen for a payload the checker accepted */
    return;
  }
  s->pos = pos;
  s->hash = hash;
  s->len = (uint32_t)len;
  memcpy(s->data, d, len);
}

/* ------------------------------------------------------------------------
 * smr_core_source: what a donor reads
 * ---------------------------------------------------------------------- */

static int src_log_read(void *ctx, uint64_t pos, struct smr_log_entry *e) {
  struct sim_node *n = ctx;
  struct sim_logslot *s = &n->ring[pos % SIM_RING];
  if (pos == 0 || s->pos != pos || pos > n->svc.pos) return -ENOENT;
  e->pos = pos;
  e->data = s->data;
  e->len = s->len;
  /* The ring is one run since its last reset (deliveries fill it in
   * order; a slot overwritten by a later lap no longer answers for its old
   * position): the donor may check a delta by its two ends. */
  e->hash = s->hash;
  return 0;
}

static int src_snap_open(void *ctx, uint64_t pos, void **snap) {
  struct sim_node *n = ctx;
  struct sim_world *w = sim_w;
  /* The core opens the image inside the call that decides the view, when
   * the deliveries up to the boundary are still in its output queue: the
   * service reaches pos only once they are drained.  So the image is
   * captured lazily, at the moment the service reaches pos (as a runtime
   * must do too); a service already past pos is a broken contract. */
  if (n->restoring || !n->has_state || n->svc.pos > pos) {
    sim_fail(w, INV_XFER,
             "%s: snap_open(pos=%llu) but its service is at pos %llu%s%s",
             n->id, (unsigned long long)pos, (unsigned long long)n->svc.pos,
             n->restoring ? " (mid-restore)" : "",
             n->has_state ? "" : " (no state)");
    return -EINVAL;
  }
  for (int i = 0; i < SIM_SNAPS; i++) {
    struct sim_snap *s = &w->snaps[i];
    if (s->used) continue;
    s->used = 1;
    s->owner = n->idx;
    s->pos = pos;
    s->pending = n->svc.pos < pos;
    if (!s->pending) svc_image(&n->svc, s->img);
    *snap = s;
    sim_trace(w, T_SNAP, n->idx, -1, s->pending, 0, pos, (uint64_t)i, 0);
    return 0;
  }
  return -ENOMEM;
}

/* Called whenever n's service advances: captures the images waiting for
 * this position. */
void snaps_capture(struct sim_world *w, struct sim_node *n) {
  for (int i = 0; i < SIM_SNAPS; i++) {
    struct sim_snap *s = &w->snaps[i];
    if (!s->used || !s->pending || s->owner != n->idx) continue;
    if (s->pos == n->svc.pos) {
      svc_image(&n->svc, s->img);
      s->pending = 0;
    } else if (s->pos < n->svc.pos) {
      sim_fail(w, INV_XFER, "%s: the image of pos %llu was never captured",
               n->id, (unsigned long long)s->pos);
    }
  }
}

static long src_snap_read(void *ctx, void *snap, uint64_t off, void *buf,
                          size_t len) {
  (void)ctx;
  struct sim_snap *s = snap;
  if (s->pending) {
    sim_w->snap_early++;
    return -EAGAIN; /* the service has not reached the boundary yet */
  }
  if (off >= SIM_IMG_SIZE) return 0;
  size_t k = SIM_IMG_SIZE - (size_t)off;
  if (k > len) k = len;
  memcpy(buf, s->img + off, k);
  return (long)k;
}

static void src_snap_close(void *ctx, void *snap) {
  (void)ctx;
  struct sim_snap *s = snap;
  s->used = 0;
}

void source_init(struct sim_world *w, struct sim_node *n) {
  (void)w;
  n->src.ctx = n;
  n->src.log_read = src_log_read;
  n->src.snap_open = src_snap_open;
  n->src.snap_read = src_snap_read;
  n->src.snap_close = src_snap_close;
}

/* A crashed donor's open images go away with it. */
void snaps_release(struct sim_world *w, int owner) {
  for (int i = 0; i < SIM_SNAPS; i++)
    if (w->snaps[i].used && w->snaps[i].owner == owner) w->snaps[i].used = 0;
}

/* ------------------------------------------------------------------------
 * Payloads
 * ---------------------------------------------------------------------- */

size_t payload_build(uint8_t *buf, uint64_t id, int node, uint64_t inc,
                     uint64_t counter, size_t fill, int probe) {
  if (fill > SIM_PAYLOAD_MAX - SIM_PAYLOAD_HDR)
    fill = SIM_PAYLOAD_MAX - SIM_PAYLOAD_HDR;
  wr32(buf, PAY_MAGIC);
  wr64(buf + 4, id);
  buf[12] = (uint8_t)node;
  buf[13] = (uint8_t)probe;
  buf[14] = (uint8_t)fill;
  buf[15] = (uint8_t)(fill >> 8);
  wr32(buf + 16, (uint32_t)inc);
  wr32(buf + 20, (uint32_t)counter);
  uint64_t x = id * 0x2545f4914f6cdd1dull + 7;
  for (size_t i = 0; i < fill; i++) {
    if ((i & 7) == 0) x = sim_mix64(x);
    buf[SIM_PAYLOAD_HDR + i] = (uint8_t)(x >> (8 * (i & 7)));
  }
  return SIM_PAYLOAD_HDR + fill;
}

/* Returns 0 and the id if d looks like one of our payloads. */
int payload_parse(const uint8_t *d, size_t len, uint64_t *id) {
  if (len < SIM_PAYLOAD_HDR || len > SIM_PAYLOAD_MAX) return -1;
  if (rd32(d) != PAY_MAGIC) return -1;
  size_t fill = (size_t)d[14] | (size_t)d[15] << 8;
  if (SIM_PAYLOAD_HDR + fill != len) return -1;
  *id = rd64(d + 4);
  return 0;
}
