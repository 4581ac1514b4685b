/* test_kv_service.c -- the KV service behind struct smr_service_ops
 * (services/kv/kv.c, snapshot.c): the request format, apply and query,
 * expiry ticks, snapshots read in any chunking, restore of good, corrupt,
 * truncated and hand-made bad images, and the digest.
 *
 * The service is only ever used through kv_service_ops, as libsmr will. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv.h"
#include "resp.h"
#include "store.h"
#include "wire.h"

static const struct smr_service_ops *ops = &kv_service_ops;

/* ------------------------------------------------------------------------
 * Helpers */

/* Encodes a command line (words separated by spaces). */
static void encode(struct smr_buf *out, int64_t now, const char *line) {
  char *copy = strdup(line), *save = NULL;
  const uint8_t *argv[64];
  size_t argl[64], argc = 0;
  for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    if (!strcmp(w, "\\e")) *w = 0; /* \e: an empty argument */
    argv[argc] = (const uint8_t *)w;
    argl[argc++] = strlen(w);
  }
  out->len = 0;
  assert_int_equal(kv_request_encode(out, now, argc, argv, argl), 0);
  assert_int_equal(out->len, kv_request_size(argc, argl));
  free(copy);
}

static char reply_text[1 << 16];

static const char *apply_at(struct kv_service *svc, uint64_t pos, int64_t now,
                            const char *line) {
  struct smr_buf req = {0}, rep = {0};
  encode(&req, now, line);
  assert_int_equal(ops->apply(svc, pos, req.data, req.len, &rep), 0);
  assert_true(rep.len < sizeof reply_text);
  memcpy(reply_text, rep.data, rep.len);
  reply_text[rep.len] = 0;
  smr_buf_free(&req);
  smr_buf_free(&rep);
  return reply_text;
}

static const char *query_at(struct kv_service *svc, int64_t now,
                            const char *line) {
  struct smr_buf req = {0}, rep = {0};
  encode(&req, now, line);
  assert_int_equal(ops->query(svc, req.data, req.len, &rep), 0);
  memcpy(reply_text, rep.data, rep.len);
  reply_text[rep.len] = 0;
  smr_buf_free(&req);
  smr_buf_free(&rep);
  return reply_text;
}

static void digest(struct kv_service *svc, uint8_t out[SMR_DIGEST_LEN]) {
  ops->digest(svc, out);
}

/* Reads a whole snapshot in chunks of `chunk` bytes. */
static void snapshot(struct kv_service *svc, struct smr_buf *img,
                     size_t chunk) {
  void *snap = NULL;
  uint8_t *buf = malloc(chunk);
  long n;
  assert_non_null(buf);
  img->len = 0;
  assert_int_equal(ops->snapshot_open(svc, &snap), 0);
  while ((n = ops->snapshot_read(svc, snap, img->len, buf, chunk)) > 0)
    smr_buf_append(img, buf, (size_t)n);
  assert_int_equal(n, 0);
  ops->snapshot_close(svc, snap);
  free(buf);
}

/* Restores img in chunks; returns restore_end's result (or the first
 * chunk error). */
static int restore(struct kv_service *svc, const uint8_t *img, size_t len,
                   size_t chunk) {
  int r;
  assert_int_equal(ops->restore_begin(svc), 0);
  for (size_t at = 0; at < len; at += chunk) {
    size_t n = len - at < chunk ? len - at : chunk;
    r = ops->restore_chunk(svc, at, img + at, n);
    if (r) {
      assert_int_equal(ops->restore_end(svc), r == -EINVAL ? -EBADMSG : r);
      return r;
    }
  }
  return ops->restore_end(svc);
}

/* A service with some of everything. */
static void populate(struct kv_service *svc) {
  static const char *const cmds[] = {
      "SET s1 hello", "SET s2 world EX 100", "SET num 42", "RPUSH l a b c",
      "LPUSH l z", "SADD set m1 m2 m3 m4", "SREM set m2",
      "HSET h f1 v1 f2 v2 f3 v3", "HDEL h f2", "HSET h f0 v0",
      "ZADD z 1 a 2 b 2 c -1.5 d", "ZADD z inf top", "PEXPIRE l 50000",
      "SET empty \\e", NULL};
  for (int i = 0; cmds[i]; i++) apply_at(svc, (uint64_t)i + 1, 1000, cmds[i]);
}

/* Writes a header with correct checksums around body[0..n) claiming
 * nkeys records. */
static void make_image(struct smr_buf *out, uint64_t nkeys, const void *body,
                       size_t n) {
  uint8_t h[40];
  memset(h, 0, sizeof h);
  memcpy(h, "SMRKVSNP", 8);
  h[8] = 1;
  for (int i = 0; i < 8; i++) h[16 + i] = (uint8_t)(nkeys >> (8 * i));
  for (int i = 0; i < 8; i++) h[24 + i] = (uint8_t)((uint64_t)n >> (8 * i));
  uint32_t c = smr_crc32c(0, body, n);
  for (int i = 0; i < 4; i++) h[32 + i] = (uint8_t)(c >> (8 * i));
  c = smr_crc32c(0, h, 36);
  for (int i = 0; i < 4; i++) h[36 + i] = (uint8_t)(c >> (8 * i));
  out->len = 0;
  smr_buf_append(out, h, sizeof h);
  smr_buf_append(out, body, n);
}

/* ------------------------------------------------------------------------
 * Request format */

static void test_request_roundtrip(void **state) {
  const uint8_t *argv[3] = {(const uint8_t *)"SET", (const uint8_t *)"k",
                            (const uint8_t *)"a\0b"};
  size_t argl[3] = {3, 1, 3};
  struct smr_buf b = {0};
  struct kv_request r;
  (void)state;
  assert_int_equal(kv_request_encode(&b, 123456789, 3, argv, argl), 0);
  assert_int_equal(b.len, 20 + (4 + 3 + 1) + (4 + 1 + 1) + (4 + 3 + 1));
  assert_memory_equal(b.data, "KVRQ\x01\x01\0\0", 8);
  assert_int_equal(kv_request_decode(b.data, b.len, &r), 0);
  assert_int_equal(r.kind, KV_REQ_COMMAND);
  assert_int_equal(r.now_ms, 123456789);
  assert_int_equal(r.argc, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r.argl[i], argl[i]);
    assert_memory_equal(r.argv[i], argv[i], argl[i]);
    assert_int_equal(r.argv[i][argl[i]], 0);
  }
  kv_request_release(&r);
  b.len = 0;
  assert_int_equal(kv_request_encode_tick(&b, 5, 77), 0);
  assert_int_equal(kv_request_decode(b.data, b.len, &r), 0);
  assert_int_equal(r.kind, KV_REQ_TICK);
  assert_int_equal(r.budget, 77);
  assert_int_equal(r.argc, 0);
  kv_request_release(&r);
  /* Bad encodings. */
  assert_int_equal(kv_request_encode(&b, 0, 0, argv, argl), -EINVAL);
  assert_int_equal(kv_request_encode(&b, -1, 3, argv, argl), -EINVAL);
  assert_int_equal(kv_request_encode_tick(&b, -1, 1), -EINVAL);
  smr_buf_free(&b);
}

static void test_malformed_requests(void **state) {
  struct kv_service *svc = kv_service_new(NULL);
  struct smr_buf good = {0}, bad = {0}, rep = {0};
  uint8_t d0[SMR_DIGEST_LEN], d1[SMR_DIGEST_LEN];
  (void)state;
  apply_at(svc, 1, 0, "SET k v");
  digest(svc, d0);
  encode(&good, 0, "SET k changed");
  /* Every truncation, and each byte of the header flipped. */
  for (size_t cut = 0; cut < good.len; cut++) {
    struct kv_request r;
    assert_int_equal(kv_request_decode(good.data, cut, &r), -EBADMSG);
    rep.len = 0;
    assert_int_equal(ops->apply(svc, 2, good.data, cut, &rep), 0);
    assert_int_equal(rep.len, strlen("-ERR malformed request\r\n"));
    assert_memory_equal(rep.data, "-ERR malformed request\r\n", rep.len);
  }
  for (size_t i = 0; i < 8; i++) {
    bad.len = 0;
    smr_buf_append(&bad, good.data, good.len);
    bad.data[i] ^= 0x40;
    rep.len = 0;
    assert_int_equal(ops->apply(svc, 2, bad.data, bad.len, &rep), 0);
    assert_memory_equal(rep.data, "-ERR malformed", 14);
  }
  /* Missing NUL, negative time, trailing byte, argc 0, tick with bytes. */
  bad.len = 0;
  smr_buf_append(&bad, good.data, good.len);
  bad.data[bad.len - 1] = 'x';
  rep.len = 0;
  ops->apply(svc, 2, bad.data, bad.len, &rep);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  bad.len = 0;
  smr_buf_append(&bad, good.data, good.len);
  bad.data[15] = 0x80;
  rep.len = 0;
  ops->apply(svc, 2, bad.data, bad.len, &rep);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  smr_buf_append(&good, "", 1);
  rep.len = 0;
  ops->apply(svc, 2, good.data, good.len, &rep);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  bad.len = 0;
  smr_buf_append(&bad, good.data, 20);
  memset(bad.data + 16, 0, 4);
  rep.len = 0;
  ops->apply(svc, 2, bad.data, bad.len, &rep);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  bad.len = 0;
  kv_request_encode_tick(&bad, 0, 1);
  smr_buf_append(&bad, "x", 1);
  rep.len = 0;
  ops->apply(svc, 2, bad.data, bad.len, &rep);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  /* A tick is not a query. */
  bad.len = 0;
  kv_request_encode_tick(&bad, 0, 1);
  rep.len = 0;
  assert_int_equal(ops->query(svc, bad.data, bad.len, &rep), 0);
  assert_memory_equal(rep.data, "-ERR malformed", 14);
  /* None of it changed anything. */
  digest(svc, d1);
  assert_memory_equal(d0, d1, SMR_DIGEST_LEN);
  smr_buf_free(&good);
  smr_buf_free(&bad);
  smr_buf_free(&rep);
  kv_service_free(svc);
}

/* ------------------------------------------------------------------------
 * apply, query, ticks */

static void test_apply_query(void **state) {
  struct kv_service *svc = kv_service_new(NULL);
  struct smr_buf tick = {0}, rep = {0};
  uint8_t d0[SMR_DIGEST_LEN], d1[SMR_DIGEST_LEN];
  (void)state;
  assert_string_equal(ops->name, "kv");
  assert_string_equal(apply_at(svc, 1, 1000, "SET k v PX 100"), "+OK\r\n");
  assert_string_equal(query_at(svc, 1050, "GET k"), "$1\r\nv\r\n");
  assert_string_equal(query_at(svc, 1050, "SET k w"),
                      "-READONLY You can't write against a read only replica.\r\n");
  /* A query past the expiry sees nothing and changes nothing. */
  digest(svc, d0);
  assert_string_equal(query_at(svc, 2000, "GET k"), "$-1\r\n");
  assert_string_equal(query_at(svc, 2000, "DBSIZE"), ":1\r\n");
  digest(svc, d1);
  assert_memory_equal(d0, d1, SMR_DIGEST_LEN);
  /* A tick expires it; its reply is empty. */
  kv_request_encode_tick(&tick, 2000, 10);
  assert_int_equal(ops->apply(svc, 2, tick.data, tick.len, &rep), 0);
  assert_int_equal(rep.len, 0);
  assert_string_equal(query_at(svc, 2000, "DBSIZE"), ":0\r\n");
  /* Each apply also expires a few keys first. */
  for (int i = 0; i < 40; i++) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "SET e%02d v PX 10", i);
    apply_at(svc, 10 + (uint64_t)i, 3000, cmd);
  }
  assert_string_equal(apply_at(svc, 100, 4000, "DBSIZE"), ":24\r\n");
  assert_string_equal(apply_at(svc, 101, 4000, "DBSIZE"), ":8\r\n");
  assert_string_equal(apply_at(svc, 102, 4000, "DBSIZE"), ":0\r\n");
  smr_buf_free(&tick);
  smr_buf_free(&rep);
  kv_service_free(svc);
}

static void test_spop_by_position(void **state) {
  struct kv_service *a = kv_service_new(NULL);
  struct kv_options o = {99};
  struct kv_service *b = kv_service_new(&o);
  char first[128];
  int differs = 0;
  (void)state;
  for (uint64_t pos = 1; pos < 30; pos++) {
    apply_at(a, pos, 0, "SADD s 1 2 3 4 5 6 7 8 9");
    apply_at(b, pos, 0, "SADD s 1 2 3 4 5 6 7 8 9");
    strcpy(first, apply_at(a, pos, 0, "SPOP s"));
    assert_string_equal(apply_at(b, pos, 0, "SPOP s"), first);
    if (pos > 1 && strcmp(first, "$1\r\n1\r\n") != 0) differs = 1;
  }
  assert_true(differs);
  kv_service_free(a);
  kv_service_free(b);
}

/* ------------------------------------------------------------------------
 * Snapshots and restore */

static void test_snapshot_restore(void **state) {
  struct kv_service *a = kv_service_new(NULL);
  struct kv_options o = {0x1234};
  struct kv_service *b = kv_service_new(&o);
  struct smr_buf img = {0}, img2 = {0};
  uint8_t da[SMR_DIGEST_LEN], db[SMR_DIGEST_LEN];
  void *snap;
  uint8_t buf[64];
  (void)state;
  populate(a);
  digest(a, da);
  for (size_t chunk = 1; chunk <= 4096; chunk = chunk * 3 + 1) {
    snapshot(a, &img, chunk);
    assert_int_equal(restore(b, img.data, img.len, chunk), 0);
    assert_null(kv_service_restore_error(b));
    digest(b, db);
    assert_memory_equal(da, db, SMR_DIGEST_LEN);
    /* The copy answers as the original. */
    static const char *const reads[] = {"GET s1", "TTL s2", "LRANGE l 0 -1",
                                        "SMEMBERS set", "HGETALL h",
                                        "ZRANGE z 0 -1 WITHSCORES", "PTTL l",
                                        "DBSIZE", "GET empty", NULL};
    for (int i = 0; reads[i]; i++) {
      char want[512];
      strcpy(want, query_at(a, 2000, reads[i]));
      assert_string_equal(query_at(b, 2000, reads[i]), want);
    }
    /* And its own snapshot is the same image. */
    snapshot(b, &img2, 4096);
    assert_int_equal(img.len, img2.len);
    assert_memory_equal(img.data, img2.data, img.len);
  }
  /* Reads at any offset, repeatedly; the image does not follow applies. */
  assert_int_equal(ops->snapshot_open(a, &snap), 0);
  apply_at(a, 100, 2000, "SET s1 changed");
  apply_at(a, 101, 2000, "FLUSHALL");
  for (uint64_t off = 0; off < img.len; off += 17) {
    long n = ops->snapshot_read(a, snap, off, buf, sizeof buf);
    size_t want = img.len - off < sizeof buf ? img.len - off : sizeof buf;
    assert_int_equal(n, (long)want);
    assert_memory_equal(buf, img.data + off, want);
  }
  assert_int_equal(ops->snapshot_read(a, snap, img.len, buf, sizeof buf), 0);
  assert_int_equal(ops->snapshot_read(a, snap, img.len + 100, buf, sizeof buf), 0);
  ops->snapshot_close(a, snap);
  /* An empty store's image restores to an empty store. */
  snapshot(a, &img, 100);
  assert_int_equal(img.len, 40);
  assert_int_equal(restore(b, img.data, img.len, 7), 0);
  assert_string_equal(query_at(b, 0, "DBSIZE"), ":0\r\n");
  smr_buf_free(&img);
  smr_buf_free(&img2);
  kv_service_free(a);
  kv_service_free(b);
}

/* Every corruption of a good image is refused and leaves the service empty. */
static void test_corrupt_images(void **state) {
  struct kv_service *a = kv_service_new(NULL), *b = kv_service_new(NULL);
  struct smr_buf img = {0}, bad = {0};
  uint8_t empty[SMR_DIGEST_LEN], d[SMR_DIGEST_LEN];
  (void)state;
  digest(b, empty);
  populate(a);
  snapshot(a, &img, 1000);
  /* Each bit of some bytes, each byte of all. */
  for (size_t i = 0; i < img.len; i++) {
    bad.len = 0;
    smr_buf_append(&bad, img.data, img.len);
    bad.data[i] ^= (uint8_t)(1u << (i % 8));
    apply_at(b, 1, 0, "SET junk v"); /* refused images leave nothing */
    int r = restore(b, bad.data, bad.len, 1 + i % 13);
    assert_true(r == -EBADMSG);
    assert_non_null(kv_service_restore_error(b));
    digest(b, d);
    assert_memory_equal(d, empty, SMR_DIGEST_LEN);
  }
  /* Every truncation. */
  for (size_t cut = 0; cut < img.len; cut++) {
    assert_int_equal(restore(b, img.data, cut, 11), -EBADMSG);
    assert_non_null(strstr(kv_service_restore_error(b), "refused"));
    digest(b, d);
    assert_memory_equal(d, empty, SMR_DIGEST_LEN);
  }
  /* Trailing bytes. */
  bad.len = 0;
  smr_buf_append(&bad, img.data, img.len);
  smr_buf_append(&bad, "x", 1);
  assert_int_equal(restore(b, bad.data, bad.len, 64), -EBADMSG);
  assert_non_null(strstr(kv_service_restore_error(b), "bytes after"));
  /* Chunks out of order, and the calls out of sequence. */
  assert_int_equal(ops->restore_begin(b), 0);
  assert_int_equal(ops->restore_chunk(b, 0, img.data, 10), 0);
  assert_int_equal(ops->restore_chunk(b, 20, img.data + 20, 10), -EINVAL);
  assert_non_null(strstr(kv_service_restore_error(b), "offset"));
  assert_int_equal(ops->restore_chunk(b, 10, img.data + 10, 10), -EBADMSG);
  assert_int_equal(ops->restore_end(b), -EBADMSG);
  assert_int_equal(ops->restore_end(b), -EINVAL);
  assert_int_equal(ops->restore_chunk(b, 0, img.data, 10), -EINVAL);
  /* A good image after all that is accepted. */
  assert_int_equal(restore(b, img.data, img.len, 5), 0);
  assert_null(kv_service_restore_error(b));
  smr_buf_free(&img);
  smr_buf_free(&bad);
  kv_service_free(a);
  kv_service_free(b);
}

/* Images with good checksums but contents a writer never produces. */
static void test_invalid_records(void **state) {
  static const struct {
    const char *why;
    uint64_t nkeys;
    const char *body;
    size_t len;
    const char *err;
  } cases[] = {
#define B(s) s, sizeof s - 1
      {"unknown type", 1, B("\x09\x00\x01\x00\x00\x00k\x01\x00\x00\x00v"), "unknown type"},
      {"unknown flags", 1, B("\x01\x02\x01\x00\x00\x00k\x01\x00\x00\x00v"), "unknown flags"},
      {"keys out of order", 2,
       B("\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v\x01\x00\x01\x00\x00\x00j\x01\x00\x00\x00v"),
       "out of order"},
      {"repeated key", 2,
       B("\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v"),
       "out of order"},
      {"empty list", 1, B("\x02\x00\x01\x00\x00\x00l\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
       "element count"},
      {"repeated member", 1,
       B("\x03\x00\x01\x00\x00\x00s\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00m\x01\x00\x00\x00m"),
       "repeated set member"},
      {"repeated field", 1,
       B("\x04\x00\x01\x00\x00\x00h\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00" "f\x01\x00\x00\x00v"
         "\x01\x00\x00\x00" "f\x01\x00\x00\x00v"),
       "repeated hash field"},
      {"NaN score", 1, B("\x05\x00\x01\x00\x00\x00z\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf8\x7f\x01\x00\x00\x00m"), "invalid score"},
      {"-0 score", 1, B("\x05\x00\x01\x00\x00\x00z\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01\x00\x00\x00m"), "invalid score"},
      {"zset out of order", 1,
       B("\x05\x00\x01\x00\x00\x00z\x02\x00\x00\x00\x00\x00\x00\x00"
         "\x00\x00\x00\x00\x00\x00\xf0\x3f\x01\x00\x00\x00m"
         "\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00n"),
       "out of order"},
      {"repeated zset member", 1,
       B("\x05\x00\x01\x00\x00\x00z\x02\x00\x00\x00\x00\x00\x00\x00"
         "\x00\x00\x00\x00\x00\x00\xf0\x3f\x01\x00\x00\x00m"
         "\x00\x00\x00\x00\x00\x00\x00\x40\x01\x00\x00\x00m"),
       "repeated sorted set member"},
      {"string past the end", 1, B("\x01\x00\x01\x00\x00\x00k\xff\x00\x00\x00v"), "runs past"},
      {"fewer records", 2, B("\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
       NULL},
      {"too many records for the length", 3, B("\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v"),
       "cannot fill"},
#undef B
  };
  struct kv_service *b = kv_service_new(NULL);
  struct smr_buf img = {0};
  (void)state;
  /* The frame itself is fine: a valid one-key image is accepted. */
  make_image(&img, 1, "\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v", 12);
  assert_int_equal(restore(b, img.data, img.len, 3), 0);
  assert_string_equal(query_at(b, 0, "GET k"), "$1\r\nv\r\n");
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    make_image(&img, cases[i].nkeys, cases[i].body, cases[i].len);
    int r = restore(b, img.data, img.len, 1 + i % 5);
    if (r != -EBADMSG) fail_msg("%s: accepted", cases[i].why);
    if (cases[i].err && !strstr(kv_service_restore_error(b), cases[i].err))
      fail_msg("%s: %s", cases[i].why, kv_service_restore_error(b));
    assert_string_equal(query_at(b, 0, "DBSIZE"), ":0\r\n");
  }
  /* Bad header fields. */
  make_image(&img, 1, "\x01\x00\x01\x00\x00\x00k\x01\x00\x00\x00v", 12);
  img.data[8] = 2; /* version 2, checksum fixed up */
  {
    uint32_t c = smr_crc32c(0, img.data, 36);
    for (int k = 0; k < 4; k++) img.data[36 + k] = (uint8_t)(c >> (8 * k));
  }
  assert_int_equal(restore(b, img.data, img.len, 40), -EBADMSG);
  assert_non_null(strstr(kv_service_restore_error(b), "version"));
  memcpy(img.data, "NOTASNAP", 8);
  assert_int_equal(restore(b, img.data, img.len, 40), -EBADMSG);
  assert_non_null(strstr(kv_service_restore_error(b), "magic"));
  smr_buf_free(&img);
  kv_service_free(b);
}

/* ------------------------------------------------------------------------
 * Digest */

static void test_digest(void **state) {
  struct kv_service *a = kv_service_new(NULL);
  struct kv_options o = {42};
  struct kv_service *b = kv_service_new(&o);
  uint8_t da[SMR_DIGEST_LEN], db[SMR_DIGEST_LEN];
  (void)state;
  /* Empty stores agree. */
  digest(a, da);
  digest(b, db);
  assert_memory_equal(da, db, SMR_DIGEST_LEN);
  /* Same state through different histories and key orders. */
  apply_at(a, 1, 0, "SET x 1");
  apply_at(a, 2, 0, "SET y 2");
  apply_at(a, 3, 0, "ZADD z 2 b 1 a");
  apply_at(a, 4, 0, "HSET h f v");
  apply_at(b, 1, 0, "SET y 0");
  apply_at(b, 2, 0, "HSET h f v");
  apply_at(b, 3, 0, "ZADD z 1 a");
  apply_at(b, 4, 0, "SET y 2");
  apply_at(b, 5, 0, "SET tmp 1");
  apply_at(b, 6, 0, "ZADD z 5 b");
  apply_at(b, 7, 0, "ZADD z 2 b");
  apply_at(b, 8, 0, "SET x 1");
  apply_at(b, 9, 0, "DEL tmp");
  digest(a, da);
  digest(b, db);
  assert_memory_equal(da, db, SMR_DIGEST_LEN);
  /* Visible order is state: the same members in another order differ. */
  apply_at(a, 10, 0, "SADD s p q");
  apply_at(b, 10, 0, "SADD s q p");
  digest(a, da);
  digest(b, db);
  assert_memory_not_equal(da, db, SMR_DIGEST_LEN);
  apply_at(b, 11, 0, "DEL s");
  apply_at(b, 12, 0, "SADD s p q");
  digest(b, db);
  assert_memory_equal(da, db, SMR_DIGEST_LEN);
  /* So are expiry times, and every value. */
  apply_at(a, 13, 0, "PEXPIREAT x 99999");
  digest(a, da);
  assert_memory_not_equal(da, db, SMR_DIGEST_LEN);
  apply_at(b, 13, 0, "PEXPIREAT x 99998");
  digest(b, db);
  assert_memory_not_equal(da, db, SMR_DIGEST_LEN);
  apply_at(b, 14, 0, "PEXPIREAT x 99999");
  digest(b, db);
  assert_memory_equal(da, db, SMR_DIGEST_LEN);
  apply_at(b, 15, 0, "APPEND y !");
  digest(b, db);
  assert_memory_not_equal(da, db, SMR_DIGEST_LEN);
  kv_service_free(a);
  kv_service_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_roundtrip),
      cmocka_unit_test(test_malformed_requests),
      cmocka_unit_test(test_apply_query),
      cmocka_unit_test(test_spop_by_position),
      cmocka_unit_test(test_snapshot_restore),
      cmocka_unit_test(test_corrupt_images),
      cmocka_unit_test(test_invalid_records),
      cmocka_unit_test(test_digest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
