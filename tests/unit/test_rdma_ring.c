/* test_rdma_ring.c -- unit tests of the RDMA byte ring's bookkeeping
 * (smr/net/rdma_ring.c): a writer and a reader sharing one buffer carry
 * random records over many laps with every byte checked; the writer waits
 * for credit when full; and the reader refuses every malformed thing a
 * peer could write or announce (wrong stamp, length over the limit or past
 * the tail, a record across the end, a torn header, an incomplete WRAP, a
 * tail too far or misaligned, a credit that goes back). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rdma_ring.h"

static void test_init_refuses(void **state) {
  (void)state;
  struct smr_ring_tx t;
  struct smr_ring_rx r;
  assert_int_equal(smr_ring_tx_init(&t, 0, 8), -EINVAL);
  assert_int_equal(smr_ring_tx_init(&t, 32, 8), -EINVAL);   /* too small */
  assert_int_equal(smr_ring_tx_init(&t, 100, 8), -EINVAL);  /* not 2^n */
  assert_int_equal(smr_ring_tx_init(&t, 256, 0), -EINVAL);
  assert_int_equal(smr_ring_tx_init(&t, 256, 113), -EINVAL); /* > cap/2-16 */
  assert_int_equal(smr_ring_tx_init(&t, 256, 112), 0);
  assert_int_equal(smr_ring_rx_init(&r, 96, 8), -EINVAL);
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
}

/* Writes a record as the transport would: the WRAP header, then header
 * and payload, at the planned offsets. */
static void write_record(uint8_t *ring, const struct smr_ring_place *pl,
                         const uint8_t *payload, uint32_t len) {
  if (pl->wrap_len > 0)
    smr_ring_put_header(ring + pl->wrap_off, SMR_RING_WRAP,
                        pl->pos - pl->wrap_len);
  smr_ring_put_header(ring + pl->off, len, pl->pos);
  memcpy(ring + pl->off + SMR_RING_HDR, payload, len);
}

static uint32_t rnd(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

/* Records of random sizes through a 1 KiB ring, many laps: every payload
 * arrives whole, in order, byte for byte; the writer stalls exactly when
 * the reader has not freed enough. */
static void test_roundtrip_many_laps(void **state) {
  (void)state;
  enum { CAP = 1024, MAXLEN = CAP / 2 - 16, N = 20000 };
  uint8_t *ring = calloc(1, CAP);
  assert_non_null(ring);
  struct smr_ring_tx t;
  struct smr_ring_rx r;
  assert_int_equal(smr_ring_tx_init(&t, CAP, MAXLEN), 0);
  assert_int_equal(smr_ring_rx_init(&r, CAP, MAXLEN), 0);
  uint32_t x = 88172645u, sent = 0, got = 0, stalls = 0, wraps = 0;
  uint8_t buf[MAXLEN];
  while (got < N) {
    /* The writer puts in what fits. */
    while (sent < N) {
      uint32_t len = rnd(&x) % (MAXLEN + 1);
      if (rnd(&x) % 4 == 0) len = rnd(&x) % 16; /* many small ones */
      struct smr_ring_tx save = t;
      struct smr_ring_place pl;
      int rc = smr_ring_tx_place(&t, len, &pl);
      if (rc == -EAGAIN) {
        /* Nothing moved, and it really does not fit. */
        assert_memory_equal(&save, &t, sizeof(t));
        stalls++;
        break;
      }
      assert_int_equal(rc, 0);
      assert_true(pl.off + smr_ring_record_size(len) <= CAP);
      assert_true(pl.new_tail - t.head <= CAP);
      if (pl.wrap_len > 0) wraps++;
      for (uint32_t i = 0; i < len; i++) buf[i] = (uint8_t)(sent * 31 + i);
      /* A length prefix in the payload lets the reader check it. */
      write_record(ring, &pl, buf, len);
      sent++;
      assert_int_equal(smr_ring_rx_announce(&r, (uint32_t)t.tail), 0);
      if (rnd(&x) % 3 == 0) break; /* let the reader interleave */
    }
    /* The reader takes a few. */
    uint32_t take = 1 + rnd(&x) % 8;
    for (uint32_t k = 0; k < take; k++) {
      const uint8_t *p;
      uint32_t len;
      int rc = smr_ring_rx_next(&r, ring, &p, &len);
      assert_true(rc >= 0);
      if (rc == 0) break;
      for (uint32_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(got * 31 + i))
          fail_msg("record %u byte %u wrong", got, i);
      got++;
    }
    if (smr_ring_rx_should_publish(&r) || sent == N) {
      assert_int_equal(smr_ring_tx_credit(&t, r.head), 0);
      smr_ring_rx_published(&r);
    }
  }
  assert_int_equal(got, N);
  assert_true(stalls > 100); /* the writer did have to wait */
  assert_true(wraps > 100);
  free(ring);
}

static void test_full_and_too_big(void **state) {
  (void)state;
  struct smr_ring_tx t;
  assert_int_equal(smr_ring_tx_init(&t, 256, 112), 0);
  struct smr_ring_place pl;
  assert_int_equal(smr_ring_tx_place(&t, 113, &pl), -EMSGSIZE);
  /* 3 x 72 bytes = 216; a 4th would need 256 (40 wrap + 72): no room. */
  for (int i = 0; i < 3; i++) assert_int_equal(smr_ring_tx_place(&t, 64, &pl), 0);
  assert_int_equal(smr_ring_tx_room(&t), 40);
  assert_int_equal(smr_ring_tx_place(&t, 64, &pl), -EAGAIN);
  assert_int_equal(smr_ring_tx_place(&t, 32, &pl), 0); /* 40 exactly */
  assert_int_equal(pl.wrap_len, 0);
  assert_int_equal(smr_ring_tx_room(&t), 0);
  /* Credit for the first record: the next goes to offset 0 after a WRAP?
   * No: the tail is at the lap's end, so offset 0 with no WRAP. */
  assert_int_equal(smr_ring_tx_credit(&t, 72), 0);
  assert_int_equal(smr_ring_tx_place(&t, 64, &pl), 0);
  assert_int_equal(pl.off, 0);
  assert_int_equal(pl.wrap_len, 0);
  /* Credit refusals: back, past the tail, misaligned. */
  assert_int_equal(smr_ring_tx_credit(&t, 64), -EPROTO);
  assert_int_equal(smr_ring_tx_credit(&t, t.tail + 8), -EPROTO);
  assert_int_equal(smr_ring_tx_credit(&t, 76), -EPROTO);
  assert_int_equal(smr_ring_tx_credit(&t, t.tail), 0);
}

/* A reader over a hand-built ring. */
static void test_reader_refuses(void **state) {
  (void)state;
  uint8_t ring[256];
  struct smr_ring_rx r;
  const uint8_t *p;
  uint32_t len;

  /* A good record of 5 bytes at 0 (16 bytes). */
  memset(ring, 0, sizeof(ring));
  smr_ring_put_header(ring, 5, 0);
  memcpy(ring + 8, "hello", 5);
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), 0); /* none yet */
  assert_int_equal(smr_ring_rx_announce(&r, 16), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), 1);
  assert_int_equal(len, 5);
  assert_memory_equal(p, "hello", 5);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), 0);

  /* Announcements: misaligned, past head + cap, backwards (which reads as
   * almost 2^32 ahead). */
  assert_int_equal(smr_ring_rx_announce(&r, 20), -EPROTO);
  assert_int_equal(smr_ring_rx_announce(&r, 16 + 256 + 8), -EPROTO);
  assert_int_equal(smr_ring_rx_announce(&r, 8), -EPROTO);
  assert_int_equal(r.tail, 16);

  /* Wrong stamp. */
  smr_ring_put_header(ring + 16, 5, 0);
  assert_int_equal(smr_ring_rx_announce(&r, 32), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);

  /* Length over the limit; length past the tail. */
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  smr_ring_put_header(ring, 113, 0);
  assert_int_equal(smr_ring_rx_announce(&r, 128), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  smr_ring_put_header(ring, 100, 0);
  assert_int_equal(smr_ring_rx_announce(&r, 64), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);

  /* A torn header: the tail announced 8 bytes in, ... 0 bytes of record
   * is fine, 8 bytes of header then a payload past the tail is not. */
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  smr_ring_put_header(ring, 5, 0);
  assert_int_equal(smr_ring_rx_announce(&r, 8), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);

  /* A record across the end of the buffer (no WRAP before it). */
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  r.head = r.tail = r.published = 240; /* 16 bytes to the end */
  smr_ring_put_header(ring + 240, 40, 240);
  assert_int_equal(smr_ring_rx_announce(&r, 240 + 48), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);

  /* A WRAP whose lap end was not announced, then a proper one. */
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  r.head = r.tail = r.published = 240;
  smr_ring_put_header(ring + 240, SMR_RING_WRAP, 240);
  assert_int_equal(smr_ring_rx_announce(&r, 248), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), -EPROTO);
  assert_int_equal(smr_ring_rx_init(&r, 256, 112), 0);
  r.head = r.tail = r.published = 240;
  smr_ring_put_header(ring + 240, SMR_RING_WRAP, 240);
  smr_ring_put_header(ring, 3, 256);
  memcpy(ring + 8, "abc", 3);
  assert_int_equal(smr_ring_rx_announce(&r, 256 + 16), 0);
  assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), 1);
  assert_int_equal(len, 3);
  assert_memory_equal(p, "abc", 3);
}

/* Positions past 2^32: the 32-bit announcement still reconstructs the
 * tail, and stamps keep matching. */
static void test_positions_past_4g(void **state) {
  (void)state;
  enum { CAP = 256 };
  uint8_t ring[CAP];
  struct smr_ring_tx t;
  struct smr_ring_rx r;
  assert_int_equal(smr_ring_tx_init(&t, CAP, 112), 0);
  assert_int_equal(smr_ring_rx_init(&r, CAP, 112), 0);
  uint64_t start = (1ull << 32) - 64;
  t.tail = t.head = start;
  r.head = r.tail = r.published = start;
  for (uint32_t i = 0; i < 40; i++) {
    struct smr_ring_place pl;
    uint8_t b[24];
    memset(b, (int)i, sizeof(b));
    assert_int_equal(smr_ring_tx_place(&t, sizeof(b), &pl), 0);
    write_record(ring, &pl, b, sizeof(b));
    assert_int_equal(smr_ring_rx_announce(&r, (uint32_t)t.tail), 0);
    const uint8_t *p;
    uint32_t len;
    assert_int_equal(smr_ring_rx_next(&r, ring, &p, &len), 1);
    assert_int_equal(len, sizeof(b));
    assert_memory_equal(p, b, sizeof(b));
    assert_int_equal(smr_ring_tx_credit(&t, r.head), 0);
  }
  assert_true(r.head > (1ull << 32));
}

/* The SST slot: a write read back whole; nothing new is 0; a write
 * landing (head and tail differ) is -EAGAIN; a bad length or pad is
 * -EPROTO only once the write is whole; an older seq is not news. */
static void test_sst_slot(void **state) {
  uint8_t slot[SMR_SST_SLOT], data[SMR_SST_DATA_MAX], big[SMR_SST_DATA_MAX + 1];
  uint64_t seq = 0;
  uint32_t len = 0;

  (void)state;
  memset(slot, 0, sizeof slot);
  assert_int_equal(smr_sst_slot_read(slot, 0, &seq, data, &len), 0);
  assert_int_equal(smr_sst_slot_fill(slot, 1, "hello", 5), 0);
  assert_int_equal(smr_sst_slot_read(slot, 0, &seq, data, &len), 1);
  assert_int_equal(seq, 1);
  assert_int_equal(len, 5);
  assert_memory_equal(data, "hello", 5);
  assert_int_equal(smr_sst_slot_read(slot, 1, &seq, data, &len), 0);
  /* The largest data fits; one more byte does not. */
  memset(big, 0xab, sizeof big);
  assert_int_equal(smr_sst_slot_fill(slot, 2, big, SMR_SST_DATA_MAX), 0);
  assert_int_equal(smr_sst_slot_read(slot, 1, &seq, data, &len), 1);
  assert_int_equal(len, SMR_SST_DATA_MAX);
  assert_memory_equal(data, big, SMR_SST_DATA_MAX);
  assert_int_equal(smr_sst_slot_fill(slot, 3, big, SMR_SST_DATA_MAX + 1),
                   -EMSGSIZE);
  /* Write 4 landing in address order on top of write 2: until its tail is
   * in, nothing is new (the tail still says 2); once it is, all of it is
   * there.  Never a mix. */
  uint8_t next[SMR_SST_SLOT], mix[SMR_SST_SLOT];
  assert_int_equal(smr_sst_slot_fill(slot, 2, big, SMR_SST_DATA_MAX), 0);
  assert_int_equal(smr_sst_slot_fill(next, 4, "four", 4), 0);
  for (size_t k = 0; k <= SMR_SST_SLOT; k++) {
    memcpy(mix, next, k);
    memcpy(mix + k, slot + k, SMR_SST_SLOT - k);
    int r = smr_sst_slot_read(mix, 2, &seq, data, &len);
    if (k > SMR_SST_SLOT - 8) { /* the tail's low byte (4) is in */
      assert_int_equal(r, 1);
      assert_int_equal(seq, 4);
      assert_int_equal(len, 4);
      assert_memory_equal(data, "four", 4);
    } else {
      assert_int_equal(r, 0);
    }
  }
  /* The reader took the tail of write 4, and write 5 begins to land
   * before it reads the head: not whole. */
  memcpy(mix, next, SMR_SST_SLOT);
  mix[0] = 5;
  assert_int_equal(smr_sst_slot_read(mix, 2, &seq, data, &len), -EAGAIN);
  /* Whole but malformed. */
  assert_int_equal(smr_sst_slot_fill(slot, 5, "x", 1), 0);
  slot[8] = 0xff; /* length 255 */
  assert_int_equal(smr_sst_slot_read(slot, 0, &seq, data, &len), -EPROTO);
  assert_int_equal(smr_sst_slot_fill(slot, 5, "x", 1), 0);
  slot[13] = 1; /* pad */
  assert_int_equal(smr_sst_slot_read(slot, 0, &seq, data, &len), -EPROTO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_refuses),
      cmocka_unit_test(test_roundtrip_many_laps),
      cmocka_unit_test(test_full_and_too_big),
      cmocka_unit_test(test_reader_refuses),
      cmocka_unit_test(test_positions_past_4g),
      cmocka_unit_test(test_sst_slot),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
