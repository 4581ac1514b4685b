/* smrbuf.c -- struct smr_buf, the growable byte buffer of smr/service.h.
 *
 * Services and libsmr pass replies and state images through it.  It lives
 * here, the first user of the service interface, until libsmr's runtime
 * takes it over; it depends on nothing but libc, so it can move as is.
 *
 * Growth doubles the capacity (starting at 64 bytes), so appending n bytes
 * in pieces costs O(n) amortised.  A failed append leaves the buffer as it
 * was. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smr/service.h"

/* ------------------------------------------------------------------------
 * Growth */

static int buf_grow(struct smr_buf *b, size_t need) {
  size_t cap = b->cap ? b->cap : 64;
  uint8_t *p;
  while (cap < need) {
    if (cap > SIZE_MAX / 2) {
      cap = need;
      break;
    }
    cap *= 2;
  }
  p = realloc(b->data, cap);
  if (!p) return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

/* ------------------------------------------------------------------------
 * API */

int smr_buf_append(struct smr_buf *b, const void *data, size_t len) {
  if (len == 0) return 0;
  if (len > SIZE_MAX - b->len) return -ENOMEM;
  if (b->len + len > b->cap && buf_grow(b, b->len + len)) return -ENOMEM;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  return 0;
}

void smr_buf_reset(struct smr_buf *b) { b->len = 0; }

void smr_buf_free(struct smr_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
