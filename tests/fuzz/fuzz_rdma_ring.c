/* fuzz_rdma_ring.c -- fuzz target for the RDMA ring's reader
 * (smr/net/rdma_ring.c), which parses bytes another machine wrote into
 * our memory, and for the writer/reader pair's agreement.
 *
 * The first byte picks the mode:
 *
 *  even: hostile ring.  The next cap bytes (256) are the ring's memory, as
 *        a peer could have written it; the rest is a list of 32-bit tail
 *        announcements, each followed by reads until none is left.  Every
 *        record returned must lie inside the ring and inside what was
 *        announced, the head never passes the tail, and after -EPROTO the
 *        reader is not used again (the transport drops the connection).
 *  2 mod 4 (a subset of even): also an SST slot: the first SMR_SST_SLOT
 *        bytes as a peer could have written them, read once; a slot read
 *        as whole must have its length within SMR_SST_DATA_MAX and fill
 *        back to the same bytes.
 *  odd:  honest pair.  The rest is a list of payload lengths and reader
 *        steps; the writer places and writes each record, the reader reads
 *        and publishes credit at its own pace; every payload must come out
 *        whole and in order, and no call may return -EPROTO.
 *
 * Oracle failures abort (FUZZ_CHECK).  The ring is a heap block of exactly
 * cap bytes, so an out-of-bounds read is caught by ASan. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rdma_ring.h"

#define CAP 256u
#define MAXLEN (CAP / 2 - 16)

static void hostile(const uint8_t *data, size_t size) {
  if (size < CAP) return;
  uint8_t *ring = malloc(CAP);
  if (ring == NULL) return;
  memcpy(ring, data, CAP);
  data += CAP;
  size -= CAP;
  struct smr_ring_rx r;
  FUZZ_CHECK(smr_ring_rx_init(&r, CAP, MAXLEN) == 0);
  while (size >= 4) {
    uint32_t a = (uint32_t)data[0] | (uint32_t)data[1] << 8 |
                 (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
    data += 4;
    size -= 4;
    uint64_t tail0 = r.tail;
    int rc = smr_ring_rx_announce(&r, a);
    FUZZ_CHECK(rc == 0 || rc == -EPROTO);
    if (rc < 0) {
      FUZZ_CHECK(r.tail == tail0); /* nothing changed */
      continue;
    }
    FUZZ_CHECK(r.tail >= r.head && r.tail - r.head <= CAP);
    for (;;) {
      const uint8_t *p = NULL;
      uint32_t len = 0;
      uint64_t head0 = r.head;
      rc = smr_ring_rx_next(&r, ring, &p, &len);
      FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EPROTO);
      if (rc == -EPROTO) goto out;
      if (rc == 0) break;
      FUZZ_CHECK(len <= MAXLEN);
      FUZZ_CHECK(p >= ring + SMR_RING_HDR && p + len <= ring + CAP);
      FUZZ_CHECK(r.head > head0 && r.head <= r.tail);
      if (len > 0) FUZZ_CHECK(p[0] == p[0]); /* touch the bytes */
      if (smr_ring_rx_should_publish(&r)) smr_ring_rx_published(&r);
    }
  }
out:
  free(ring);
}

static void honest(const uint8_t *data, size_t size) {
  uint8_t *ring = calloc(1, CAP);
  if (ring == NULL) return;
  struct smr_ring_tx t;
  struct smr_ring_rx r;
  FUZZ_CHECK(smr_ring_tx_init(&t, CAP, MAXLEN) == 0);
  FUZZ_CHECK(smr_ring_rx_init(&r, CAP, MAXLEN) == 0);
  uint32_t sent = 0, got = 0;
  uint32_t lens[4096];
  for (size_t i = 0; i < size && sent < 4096; i++) {
    uint8_t b = data[i];
    if (b & 0x80) { /* reader steps */
      for (int k = 0; k < (b & 7) + 1; k++) {
        const uint8_t *p;
        uint32_t len;
        int rc = smr_ring_rx_next(&r, ring, &p, &len);
        FUZZ_CHECK(rc == 0 || rc == 1);
        if (rc == 0) break;
        FUZZ_CHECK(got < sent && len == lens[got]);
        for (uint32_t j = 0; j < len; j++)
          FUZZ_CHECK(p[j] == (uint8_t)(got + j));
        got++;
      }
      if (smr_ring_rx_should_publish(&r)) {
        FUZZ_CHECK(smr_ring_tx_credit(&t, r.head) == 0);
        smr_ring_rx_published(&r);
      }
    } else { /* a record of b (0..127) bytes, capped at MAXLEN */
      uint32_t len = b > MAXLEN ? MAXLEN : b;
      struct smr_ring_place pl;
      int rc = smr_ring_tx_place(&t, len, &pl);
      FUZZ_CHECK(rc == 0 || rc == -EAGAIN);
      if (rc < 0) continue;
      FUZZ_CHECK(pl.off + smr_ring_record_size(len) <= CAP);
      if (pl.wrap_len > 0)
        smr_ring_put_header(ring + pl.wrap_off, SMR_RING_WRAP,
                            pl.pos - pl.wrap_len);
      smr_ring_put_header(ring + pl.off, len, pl.pos);
      for (uint32_t j = 0; j < len; j++)
        ring[pl.off + SMR_RING_HDR + j] = (uint8_t)(sent + j);
      lens[sent++] = len;
      FUZZ_CHECK(smr_ring_rx_announce(&r, (uint32_t)t.tail) == 0);
    }
  }
  free(ring);
}

static void sst_slot(const uint8_t *data, size_t size) {
  uint8_t *slot = malloc(SMR_SST_SLOT), out[SMR_SST_DATA_MAX],
          again[SMR_SST_SLOT];
  uint64_t seq = 0;
  uint32_t len = 0;
  FUZZ_CHECK(slot != NULL);
  memset(slot, 0, SMR_SST_SLOT);
  memcpy(slot, data, size < SMR_SST_SLOT ? size : SMR_SST_SLOT);
  int r = smr_sst_slot_read(slot, 0, &seq, out, &len);
  FUZZ_CHECK(r == 0 || r == 1 || r == -EAGAIN || r == -EPROTO);
  if (r == 1) {
    FUZZ_CHECK(len <= SMR_SST_DATA_MAX && seq != 0);
    FUZZ_CHECK(smr_sst_slot_fill(again, seq, out, len) == 0);
    /* Only the unused tail of the data area may differ. */
    FUZZ_CHECK(memcmp(again, slot, 16 + len) == 0);
    FUZZ_CHECK(memcmp(again + SMR_SST_SLOT - 8, slot + SMR_SST_SLOT - 8, 8) == 0);
  }
  free(slot);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if ((data[0] & 3) == 2) sst_slot(data + 1, size - 1);
  if (data[0] & 1)
    honest(data + 1, size - 1);
  else
    hostile(data + 1, size - 1);
  return 0;
}
