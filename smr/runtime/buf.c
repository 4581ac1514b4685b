/* buf.c -- struct smr_buf, the growable byte buffer of smr/service.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "smr/service.h"

int smr_buf_append(struct smr_buf *b, const void *data, size_t len) {
  if (len == 0) return 0;
  if (b->len + len < b->len) return -ENOMEM;
  if (b->len + len > b->cap) {
    size_t c = b->cap ? b->cap : 64;
    while (c < b->len + len) {
      if (c > SIZE_MAX / 2) return -ENOMEM;
      c *= 2;
    }
    uint8_t *p = realloc(b->data, c);
    if (p == NULL) return -ENOMEM;
    b->data = p;
    b->cap = c;
  }
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
