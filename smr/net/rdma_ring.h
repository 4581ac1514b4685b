/* rdma_ring.h -- the byte ring one member writes into another's memory
 * with one-sided RDMA writes, and the credit that keeps the writer from
 * overrunning the reader.  Pure bookkeeping (no verbs): the RDMA transport
 * (rdma.c) moves the bytes; this decides where they go and checks what
 * arrives.
 *
 * Layout.  The reader owns a registered buffer of `cap` bytes (a power of
 * two, at least 64).  Positions are byte counts since the connection began
 * (uint64_t, only growing); position p lives at offset p % cap.  A record
 * is
 *
 *     u32 len     payload bytes (little endian), or SMR_RING_WRAP
 *     u32 stamp   (uint32_t)(p >> 3): the record's own position, so a
 *                 record read at the wrong place is refused
 *     payload     len bytes
 *     pad         to a multiple of 8
 *
 * and never wraps: when a record does not fit before the end of the
 * buffer, a WRAP record fills the rest of the lap (its len field says so;
 * only its 8-byte header is written) and the record starts at offset 0.
 *
 * Notification and credit.  After writing records the writer tells the
 * reader its new tail (the immediate of an RDMA WRITE WITH IMMEDIATE
 * carries its low 32 bits); the reader parses records up to that tail
 * only, so it never reads bytes still being written.  The reader frees
 * space by publishing its head (the position up to which it consumed the
 * records) into the writer's memory with another one-sided write, when at
 * least a quarter of the ring was consumed since the last time; the writer
 * never places a record that would pass head + cap.
 *
 * Everything a reader sees came from another machine: a tail that goes
 * backwards or past the capacity, a record header with the wrong stamp, a
 * length past the tail or over the limit, a WRAP that is not at the end of
 * a lap -- each is -EPROTO, and the transport drops the connection.
 *
 * This is the ring of RDMC/Derecho's small-message path (a per-sender
 * ring, one-sided writes, counters pushed back) reduced to one writer and
 * one reader per ring; the stamps replace Derecho's per-slot sequence
 * counters, which the reader polls where this one is told by the
 * immediate. */
#ifndef SMR_NET_RDMA_RING_H
#define SMR_NET_RDMA_RING_H

#include <stddef.h>
#include <stdint.h>

#define SMR_RING_HDR 8u
#define SMR_RING_WRAP 0xffffffffu
#define SMR_RING_MIN_CAP 64u

/* Bytes a record of len payload bytes occupies. */
static inline uint64_t smr_ring_record_size(uint32_t len) {
  return SMR_RING_HDR + (((uint64_t)len + 7u) & ~(uint64_t)7u);
}

/* ---- the writer's side ---- */

struct smr_ring_tx {
  uint32_t cap;     /* the reader's buffer */
  uint32_t max_len; /* largest payload accepted */
  uint64_t tail;    /* next position to write */
  uint64_t head;    /* the reader's last published head */
};

/* Where one record goes.  If wrap_len > 0, a WRAP header is written at
 * wrap_off first (only its SMR_RING_HDR bytes; wrap_len is the whole
 * remainder of the lap).  The record's header and payload go at off. */
struct smr_ring_place {
  uint32_t wrap_off, wrap_len;
  uint32_t off;
  uint64_t pos;      /* the record's position (for its stamp) */
  uint64_t new_tail; /* the writer's tail once it is written */
};

/* cap: a power of two >= SMR_RING_MIN_CAP; max_len: <= cap / 2 - 16 so
 * that any record fits after a wrap.  0 or -EINVAL. */
int smr_ring_tx_init(struct smr_ring_tx *t, uint32_t cap, uint32_t max_len);

/* Plans a record of len payload bytes and advances the tail: 0, -EAGAIN
 * (no room until the reader frees some: wait for its credit), or
 * -EMSGSIZE (len over max_len; never fits). */
int smr_ring_tx_place(struct smr_ring_tx *t, uint32_t len,
                      struct smr_ring_place *pl);

/* The reader's published head.  -EPROTO if it is behind the last one or
 * past the tail (a broken or lying peer). */
int smr_ring_tx_credit(struct smr_ring_tx *t, uint64_t head);

/* Bytes free for records now. */
uint64_t smr_ring_tx_room(const struct smr_ring_tx *t);

/* Writes a record header (len, or SMR_RING_WRAP, and the stamp of pos). */
void smr_ring_put_header(uint8_t *dst, uint32_t len, uint64_t pos);

/* ---- the reader's side ---- */

struct smr_ring_rx {
  uint32_t cap;
  uint32_t max_len;
  uint64_t head;      /* next record to read */
  uint64_t tail;      /* the writer's announced tail */
  uint64_t published; /* the head last published to the writer */
};

int smr_ring_rx_init(struct smr_ring_rx *r, uint32_t cap, uint32_t max_len);

/* The writer announced a tail whose low 32 bits are tail_lo.  0, or
 * -EPROTO when that is behind the current tail or more than cap past the
 * head. */
int smr_ring_rx_announce(struct smr_ring_rx *r, uint32_t tail_lo);

/* The next record in base (the ring's memory): 1 with *payload and *len
 * set (the head moves past it; the bytes stay valid until the head is
 * published), 0 if there is none up to the tail, -EPROTO if the bytes are
 * malformed.  WRAP records are skipped here. */
int smr_ring_rx_next(struct smr_ring_rx *r, const uint8_t *base,
                     const uint8_t **payload, uint32_t *len);

/* 1 if the head moved at least a quarter of the ring since it was last
 * published, or the reader has read everything announced and has not
 * published that yet (then publish r->head and call
 * smr_ring_rx_published). */
int smr_ring_rx_should_publish(const struct smr_ring_rx *r);
void smr_ring_rx_published(struct smr_ring_rx *r);

/* ---- the SST slot ----
 *
 * Beside the ring, each side of a link owns one slot of SMR_SST_SLOT bytes
 * that the other side overwrites with one-sided RDMA WRITEs: the latest of
 * a kind of message where only the latest matters (the transport puts the
 * member's heartbeat there, with the received/delivered counters that
 * stability is computed from: Derecho's SST, one row per peer).  Each write
 * carries an immediate that wakes the reader, which then looks at the slot
 * (Derecho's readers poll the table without pause instead; a member here
 * sleeps in its event loop, and a heartbeat that acknowledges is what the
 * primary waits for before it can deliver).
 *
 *     u64 seq     1, 2, 3, ...: the writer's count of slot writes
 *     u32 len     bytes of data (at most SMR_SST_DATA_MAX)
 *     u32 zero
 *     data        len bytes, the rest of the slot up to the tail unused
 *     u64 seq     again, in the slot's last 8 bytes
 *
 * A write replaces the whole slot.  The RDMA WRITE places the bytes in
 * ascending address order (rxe copies them so; hardware RC writes land in
 * order on the PCIe bus), and the reader reads them in the other order:
 * the tail's seq, the data, then the head's seq, and takes the slot only if
 * both are the same and newer than what it had.  A write that lands while
 * the reader reads changes the head first, so a torn copy never passes.
 * The writer keeps at most one write in flight (its source buffer must not
 * change under the adapter), so writes to a slot never overlap either, and
 * posts each at once or not at all (the transport sends that heartbeat in
 * the stream instead): a write held back would land after records posted
 * behind it, and its row would overtake them.
 *
 * The slot comes from another machine: a length past SMR_SST_DATA_MAX or
 * a nonzero pad is -EPROTO. */
#define SMR_SST_SLOT 256u
#define SMR_SST_DATA_MAX (SMR_SST_SLOT - 24u)

/* Fills slot (SMR_SST_SLOT bytes) for write number seq; -EMSGSIZE if len
 * is over SMR_SST_DATA_MAX. */
int smr_sst_slot_fill(uint8_t *slot, uint64_t seq, const void *data,
                      uint32_t len);

/* Reads a slot that another machine writes: 1 with *seq, data and *len
 * (data has room for SMR_SST_DATA_MAX) if it holds a whole write newer
 * than last, 0 if nothing newer (or never written), -EAGAIN if a write is
 * landing (look again later), -EPROTO if the slot is malformed. */
int smr_sst_slot_read(const volatile uint8_t *slot, uint64_t last,
                      uint64_t *seq, uint8_t *data, uint32_t *len);

#endif
