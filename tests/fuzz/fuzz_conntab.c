/* fuzz_conntab.c -- fuzz target for TCP-R's replicated connection table
 * (tcpr/conntab.c): its record decoder and its image decoder.
 *
 * Input: a mode byte, then
 *   mode even  records, each a 2-byte little-endian length and its bytes,
 *              applied in order to a table wrapped around a toy service;
 *   mode odd   an image, fed to restore in chunks of 1 + (mode >> 1) bytes.
 *
 * Oracle: apply returns 0 or -EINVAL (a refused record changes nothing:
 * the digest is the same before and after); a table's image restores into
 * a fresh table with the same digest; an image that restore accepts is
 * canonical: the restored table's own image is the very same bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smr/service.h"
#include "tcpr.h"

/* The toy inner service: state = bytes of every request; image = state. */
struct toy {
  struct smr_buf st, in;
};

static int t_apply(void *s, uint64_t pos, const uint8_t *r, size_t n,
                   struct smr_buf *reply) {
  (void)pos;
  struct toy *t = s;
  if (smr_buf_append(&t->st, r, n) < 0) return -ENOMEM;
  return smr_buf_append(reply, "+OK\r\n", 5);
}
static int t_query(void *s, const uint8_t *r, size_t n, struct smr_buf *o) {
  (void)s;
  return smr_buf_append(o, r, n);
}
static int t_sopen(void *s, void **snap) {
  struct toy *t = s;
  struct smr_buf *c = calloc(1, sizeof(*c));
  FUZZ_CHECK(c != NULL);
  FUZZ_CHECK(smr_buf_append(c, t->st.data, t->st.len) == 0);
  *snap = c;
  return 0;
}
static long t_sread(void *s, void *snap, uint64_t off, uint8_t *buf,
                    size_t len) {
  (void)s;
  struct smr_buf *b = snap;
  if (off >= b->len) return 0;
  size_t n = b->len - (size_t)off < len ? b->len - (size_t)off : len;
  memcpy(buf, b->data + off, n);
  return (long)n;
}
static void t_sclose(void *s, void *snap) {
  (void)s;
  smr_buf_free(snap);
  free(snap);
}
static int t_rbegin(void *s) {
  struct toy *t = s;
  smr_buf_reset(&t->in);
  return 0;
}
static int t_rchunk(void *s, uint64_t off, const uint8_t *b, size_t n) {
  struct toy *t = s;
  if (off != t->in.len) return -EINVAL;
  return smr_buf_append(&t->in, b, n);
}
static int t_rend(void *s) {
  struct toy *t = s;
  smr_buf_reset(&t->st);
  return smr_buf_append(&t->st, t->in.data, t->in.len);
}
static void t_digest(void *s, uint8_t out[SMR_DIGEST_LEN]) {
  struct toy *t = s;
  memset(out, 0, SMR_DIGEST_LEN);
  for (size_t i = 0; i < t->st.len; i++) out[i % SMR_DIGEST_LEN] += t->st.data[i];
}
static const struct smr_service_ops toy_ops = {
    "toy", t_apply, t_query, t_sopen, t_sread, t_sclose,
    t_rbegin, t_rchunk, t_rend, t_digest};

struct side {
  struct toy toy;
  struct tcpr_conntab *t;
  const struct smr_service_ops *ops;
};

static void side_init(struct side *s) {
  memset(s, 0, sizeof(*s));
  FUZZ_CHECK(tcpr_conntab_new(&toy_ops, &s->toy, &s->t, &s->ops) == 0);
}

static void side_free(struct side *s) {
  tcpr_conntab_free(s->t);
  smr_buf_free(&s->toy.st);
  smr_buf_free(&s->toy.in);
}

static void image(struct side *s, struct smr_buf *out) {
  void *snap;
  uint8_t buf[512];
  FUZZ_CHECK(s->ops->snapshot_open(s->t, &snap) == 0);
  for (uint64_t off = 0;;) {
    long n = s->ops->snapshot_read(s->t, snap, off, buf, sizeof(buf));
    FUZZ_CHECK(n >= 0);
    if (n == 0) break;
    FUZZ_CHECK(smr_buf_append(out, buf, (size_t)n) == 0);
    off += (uint64_t)n;
  }
  s->ops->snapshot_close(s->t, snap);
}

static int restore(struct side *s, const uint8_t *p, size_t n, size_t chunk) {
  int rc = s->ops->restore_begin(s->t);
  for (size_t at = 0; at < n && rc == 0; at += chunk) {
    size_t k = n - at < chunk ? n - at : chunk;
    rc = s->ops->restore_chunk(s->t, at, p + at, k);
  }
  if (rc == 0) rc = s->ops->restore_end(s->t);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  struct side a, b;
  side_init(&a);
  side_init(&b);
  struct smr_buf reply = {0}, img = {0}, img2 = {0};
  uint8_t d0[SMR_DIGEST_LEN], d1[SMR_DIGEST_LEN];
  if ((data[0] & 1) == 0) {
    uint64_t pos = 0;
    for (size_t at = 1; at + 2 <= size;) {
      size_t n = (size_t)data[at] | ((size_t)data[at + 1] << 8);
      at += 2;
      if (n > size - at) n = size - at;
      a.ops->digest(a.t, d0);
      smr_buf_reset(&reply);
      int rc = a.ops->apply(a.t, ++pos, data + at, n, &reply);
      FUZZ_CHECK(rc == 0 || rc == -EINVAL);
      if (rc == -EINVAL) {
        a.ops->digest(a.t, d1);
        FUZZ_CHECK(memcmp(d0, d1, SMR_DIGEST_LEN) == 0);
      }
      at += n;
    }
    image(&a, &img);
    FUZZ_CHECK(restore(&b, img.data, img.len, 100) == 0);
    a.ops->digest(a.t, d0);
    b.ops->digest(b.t, d1);
    FUZZ_CHECK(memcmp(d0, d1, SMR_DIGEST_LEN) == 0);
    FUZZ_CHECK(tcpr_conntab_count(a.t) == tcpr_conntab_count(b.t));
  } else {
    size_t chunk = 1 + (data[0] >> 1);
    if (restore(&b, data + 1, size - 1, chunk) == 0) {
      image(&b, &img2);
      FUZZ_CHECK(img2.len == size - 1);
      FUZZ_CHECK(memcmp(img2.data, data + 1, size - 1) == 0);
    } else {
      FUZZ_CHECK(tcpr_conntab_count(b.t) == 0);
    }
  }
  smr_buf_free(&reply);
  smr_buf_free(&img);
  smr_buf_free(&img2);
  side_free(&a);
  side_free(&b);
  return 0;
}
