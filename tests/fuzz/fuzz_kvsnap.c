/* fuzz_kvsnap.c -- fuzz target for the KV snapshot decoder
 * (services/kv/snapshot.c).
 *
 * Input: a mode byte, then
 *   mode bit 0 clear  an image, as is;
 *   mode bit 0 set    a record count byte and a record body, wrapped in a
 *                     header with correct checksums ("sealed"), so that the
 *                     fuzzer reaches the record parser instead of stopping
 *                     at the CRC.
 * The image is fed in chunks of 1 + (mode >> 1) bytes.
 *
 * Oracle: the image is refused with -EBADMSG and a reason (never a crash,
 * a leak or another error), or it restores a store whose invariants hold
 * and whose own snapshot is the very same bytes: the format is canonical,
 * so anything the decoder accepts must be exactly what the encoder would
 * write. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "store.h"
#include "wire.h"

static void le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct smr_buf img = {0}, again = {0};
  struct kv_restore *r;
  struct kv_store *s = NULL;
  size_t chunk;
  int rc = 0;
  if (size < 1) return 0;
  chunk = 1 + (data[0] >> 1);
  if (data[0] & 1) {
    uint8_t h[40];
    if (size < 2) return 0;
    memset(h, 0, sizeof h);
    memcpy(h, "SMRKVSNP", 8);
    le(h + 8, 1, 4);
    le(h + 16, data[1], 8);
    le(h + 24, size - 2, 8);
    le(h + 32, smr_crc32c(0, data + 2, size - 2), 4);
    le(h + 36, smr_crc32c(0, h, 36), 4);
    FUZZ_CHECK(smr_buf_append(&img, h, sizeof h) == 0);
    FUZZ_CHECK(smr_buf_append(&img, data + 2, size - 2) == 0);
  } else {
    FUZZ_CHECK(smr_buf_append(&img, data + 1, size - 1) == 0);
  }

  r = kv_restore_new(size);
  FUZZ_CHECK(r != NULL);
  for (size_t at = 0; at < img.len && rc == 0; at += chunk) {
    size_t n = img.len - at < chunk ? img.len - at : chunk;
    rc = kv_restore_feed(r, img.data + at, n);
  }
  if (rc == 0) rc = kv_restore_finish(r, &s);
  if (rc) {
    FUZZ_CHECK(rc == -EBADMSG);
    FUZZ_CHECK(kv_restore_error(r) != NULL);
    /* Sticky. */
    FUZZ_CHECK(kv_restore_feed(r, (const uint8_t *)"x", 1) == rc);
  } else {
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(kv_store_check(s) == 0);
    FUZZ_CHECK(kv_snapshot_write(s, &again) == 0);
    FUZZ_CHECK(again.len == img.len);
    FUZZ_CHECK(memcmp(again.data, img.data, img.len) == 0);
    kv_store_free(s);
  }
  kv_restore_free(r);
  smr_buf_free(&img);
  smr_buf_free(&again);
  return 0;
}
