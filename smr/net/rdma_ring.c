/* rdma_ring.c -- the RDMA byte ring's bookkeeping (see rdma_ring.h for the
 * layout, the credit and what a reader refuses).
 *
 * Positions are uint64_t byte counts that never wrap in practice (2^64
 * bytes); offsets are positions modulo the capacity, a power of two.
 * Every record starts at a multiple of 8, so a WRAP header (8 bytes)
 * always fits in what is left of a lap. */
#include <errno.h>
#include <string.h>

#include "rdma_ring.h"

#include "le.h"

static int pow2(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }


static int limits_ok(uint32_t cap, uint32_t max_len) {
  return pow2(cap) && cap >= SMR_RING_MIN_CAP && max_len > 0 &&
         max_len <= cap / 2 - 16;
}

void smr_ring_put_header(uint8_t *dst, uint32_t len, uint64_t pos) {
  smr_le_put32(dst, len);
  smr_le_put32(dst + 4, (uint32_t)(pos >> 3));
}

/* ------------------------------------------------------------------------
 * Writer
 * --------------------------------------------------------------------- */

int smr_ring_tx_init(struct smr_ring_tx *t, uint32_t cap, uint32_t max_len) {
  if (!limits_ok(cap, max_len)) return -EINVAL;
  memset(t, 0, sizeof(*t));
  t->cap = cap;
  t->max_len = max_len;
  return 0;
}

uint64_t smr_ring_tx_room(const struct smr_ring_tx *t) {
  return t->cap - (t->tail - t->head);
}

int smr_ring_tx_place(struct smr_ring_tx *t, uint32_t len,
                      struct smr_ring_place *pl) {
  if (len > t->max_len) return -EMSGSIZE;
  uint64_t size = smr_ring_record_size(len);
  uint32_t off = (uint32_t)(t->tail & (t->cap - 1));
  uint32_t to_end = t->cap - off;
  uint64_t need = size;
  memset(pl, 0, sizeof(*pl));
  if (size > to_end) {
    /* The rest of the lap goes to a WRAP record (to_end >= 8: offsets are
     * multiples of 8). */
    pl->wrap_off = off;
    pl->wrap_len = to_end;
    need += to_end;
    off = 0;
  }
  if (need > smr_ring_tx_room(t)) return -EAGAIN;
  pl->off = off;
  pl->pos = t->tail + pl->wrap_len;
  t->tail += need;
  pl->new_tail = t->tail;
  return 0;
}

int smr_ring_tx_credit(struct smr_ring_tx *t, uint64_t head) {
  if (head < t->head || head > t->tail || (head & 7) != 0) return -EPROTO;
  t->head = head;
  return 0;
}

/* ------------------------------------------------------------------------
 * Reader
 * --------------------------------------------------------------------- */

int smr_ring_rx_init(struct smr_ring_rx *r, uint32_t cap, uint32_t max_len) {
  if (!limits_ok(cap, max_len)) return -EINVAL;
  memset(r, 0, sizeof(*r));
  r->cap = cap;
  r->max_len = max_len;
  return 0;
}

int smr_ring_rx_announce(struct smr_ring_rx *r, uint32_t tail_lo) {
  /* The full tail: the current one plus how far its low bits moved. */
  uint64_t tail = r->tail + (uint32_t)(tail_lo - (uint32_t)r->tail);
  if ((tail & 7) != 0 || tail - r->head > r->cap) return -EPROTO;
  r->tail = tail;
  return 0;
}

int smr_ring_rx_next(struct smr_ring_rx *r, const uint8_t *base,
                     const uint8_t **payload, uint32_t *len) {
  for (;;) {
    if (r->head == r->tail) return 0;
    uint64_t avail = r->tail - r->head;
    uint32_t off = (uint32_t)(r->head & (r->cap - 1));
    uint32_t to_end = r->cap - off;
    if (avail < SMR_RING_HDR) return -EPROTO; /* a torn record announced */
    uint32_t n = smr_le_get32(base + off);
    if (smr_le_get32(base + off + 4) != (uint32_t)(r->head >> 3))
      return -EPROTO;
    if (n == SMR_RING_WRAP) {
      if (avail < to_end) return -EPROTO; /* the lap's end not announced */
      r->head += to_end;
      continue;
    }
    if (n > r->max_len) return -EPROTO;
    uint64_t size = smr_ring_record_size(n);
    if (size > to_end || size > avail) return -EPROTO;
    *payload = base + off + SMR_RING_HDR;
    *len = n;
    r->head += size;
    return 1;
  }
}

int smr_ring_rx_should_publish(const struct smr_ring_rx *r) {
  /* A quarter of the ring, or everything announced was read: a writer
   * waiting for room must not wait on a reader that has nothing left to
   * read (a large record after a WRAP can need almost the whole ring). */
  return r->head - r->published >= r->cap / 4 ||
         (r->head == r->tail && r->head != r->published);
}

void smr_ring_rx_published(struct smr_ring_rx *r) { r->published = r->head; }

/* ---- the SST slot ---- */

static uint64_t get64v(const volatile uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

int smr_sst_slot_fill(uint8_t *slot, uint64_t seq, const void *data,
                      uint32_t len) {
  if (len > SMR_SST_DATA_MAX) return -EMSGSIZE;
  memset(slot, 0, SMR_SST_SLOT);
  smr_le_put64(slot, seq);
  smr_le_put32(slot + 8, len);
  if (len > 0) memcpy(slot + 16, data, len);
  smr_le_put64(slot + SMR_SST_SLOT - 8, seq);
  return 0;
}

int smr_sst_slot_read(const volatile uint8_t *slot, uint64_t last,
                      uint64_t *seq, uint8_t *data, uint32_t *len) {
  /* Tail first, then the data, then the head: the reverse of the order
   * the write lands in (rdma_ring.h). */
  uint64_t tail = get64v(slot + SMR_SST_SLOT - 8);
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  if (tail == 0 || tail <= last) return 0;
  uint32_t n = 0, pad = 0;
  for (int i = 0; i < 4; i++) {
    n |= (uint32_t)slot[8 + i] << (8 * i);
    pad |= (uint32_t)slot[12 + i] << (8 * i);
  }
  if (n <= SMR_SST_DATA_MAX)
    for (uint32_t i = 0; i < n; i++) data[i] = slot[16 + i];
  __atomic_thread_fence(__ATOMIC_ACQUIRE);
  uint64_t head = get64v(slot);
  if (head != tail) return -EAGAIN;
  if (n > SMR_SST_DATA_MAX || pad != 0) return -EPROTO;
  *seq = head;
  *len = n;
  return 1;
}
