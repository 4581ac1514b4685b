/* test_kv_oom.c -- the KV service when memory runs out.
 *
 * This test is linked with -Wl,--wrap=malloc,calloc,realloc, so every
 * allocation in services/kv (a static library) goes through the wrappers
 * below, which can fail the Nth one.  For each operation, each of its
 * allocations is made to fail in turn, until one run needs no more:
 *
 *   - the operation reports -ENOMEM (or succeeds if the failure hit
 *     something optional, such as shrinking a table), never crashes;
 *   - the structures stay consistent (kv_store_check) even where the
 *     command's effect is partial, which store.h allows after -ENOMEM;
 *   - nothing leaks (the sanitizer build checks at exit);
 *   - a restore that fails leaves the service empty, a snapshot_open that
 *     fails leaves nothing open, the parser fails into its error state. */
#include <errno.h>
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

/* ------------------------------------------------------------------------
 * Allocation failure injection */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

static long fail_at = -1; /* the allocation (counted from arming) to fail */
static long count;
static int failed;

static int should_fail(void) {
  if (fail_at < 0) return 0;
  if (count++ != fail_at) return 0;
  failed = 1;
  return 1;
}

void *__wrap_malloc(size_t n) { return should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) {
  return should_fail() ? NULL : __real_calloc(n, m);
}
void *__wrap_realloc(void *p, size_t n) {
  return should_fail() ? NULL : __real_realloc(p, n);
}

static void arm(long k) {
  fail_at = k;
  count = 0;
  failed = 0;
}
static void disarm(void) { fail_at = -1; }

/* ------------------------------------------------------------------------
 * Helpers */

static int exec_line(struct kv_store *s, const char *line, struct smr_buf *out) {
  char copy[1024], *save = NULL;
  const uint8_t *argv[64];
  size_t argl[64], argc = 0;
  snprintf(copy, sizeof copy, "%s", line);
  for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    argv[argc] = (const uint8_t *)w;
    argl[argc++] = strlen(w);
  }
  struct kv_exec x = {argc, argv, argl, 1000, 5, 0};
  return kv_store_exec(s, &x, out);
}

static struct kv_store *baseline(void) {
  static const char *const cmds[] = {
      "SET s v", "SET n 5", "RPUSH l a b c d e f g h i j k l m n o p q",
      "SADD set a b c d e f g h", "HSET h a 1 b 2 c 3 d 4 e 5",
      "ZADD z 1 a 2 b 3 c 4 d 5 e 6 f 7 g", "SET t v PX 100000",
      "SET gone v PX 1", NULL};
  struct kv_store *s = kv_store_new(9);
  struct smr_buf out = {0};
  assert_non_null(s);
  for (int i = 0; cmds[i]; i++) assert_int_equal(exec_line(s, cmds[i], &out), 0);
  smr_buf_free(&out);
  return s;
}

/* ------------------------------------------------------------------------
 * Commands */

static void test_commands(void **state) {
  long enomem = 0;
  static const char *const cmds[] = {
      "SET new value", "SET s other EX 100", "SET n2 v GET PX 5000",
      "MSET a 1 b 2 c 3 d 4", "INCR n", "INCR fresh", "APPEND s more",
      "APPEND newapp x", "LPUSH l x y z w", "RPUSH newlist a b c d e f g h i",
      "LPOP l 10", "RPOP l", "LRANGE l 0 -1",
      "SADD set x y z w v u t s r q p o", "SADD newset a b c d e f g h i j",
      "SREM set a b c d e f g", "SPOP set 3", "SMEMBERS set",
      "HSET h f v g w a 9 x y z q", "HSET newh a 1 b 2 c 3 d 4 e 5 f 6",
      "HDEL h a b c d", "HGETALL h", "ZADD z 10 x 11 y 12 z 0 a 13 w",
      "ZADD newz 1 a 2 b 3 c 4 d 5 e 6 f", "ZADD z INCR 5 q", "ZINCRBY z 2 a",
      "ZREM z a b c", "ZPOPMIN z 3", "ZRANGE z 0 -1 WITHSCORES",
      "ZRANGE z -inf +inf BYSCORE", "EXPIRE s 100", "PEXPIRE l 5000",
      "PERSIST t", "DEL s l set h z", "GET gone", "FLUSHALL", "INFO",
      "CONFIG GET *", "COMMAND LIST", "nosuchcommand a b c", NULL};
  (void)state;
  for (int i = 0; cmds[i]; i++) {
    for (long k = 0;; k++) {
      struct kv_store *s = baseline();
      struct smr_buf out = {0};
      int r;
      arm(k);
      r = exec_line(s, cmds[i], &out);
      disarm();
      if (r != 0 && r != -ENOMEM) fail_msg("%s: returned %d", cmds[i], r);
      if (r == -ENOMEM) {
        assert_true(failed);
        enomem++;
      }
      if (kv_store_check(s) != 0)
        fail_msg("%s: inconsistent after allocation %ld failed", cmds[i], k);
      /* The store still works. */
      out.len = 0;
      assert_int_equal(exec_line(s, "SET probe 1", &out), 0);
      assert_int_equal(kv_store_check(s), 0);
      smr_buf_free(&out);
      kv_store_free(s);
      if (!failed) break; /* ran to the end without reaching allocation k */
      assert_true(k < 10000);
    }
  }
  /* The injection works: most failures surface as -ENOMEM. */
  print_message("%ld injected failures reported -ENOMEM\n", enomem);
  assert_true(enomem > 100);
}

/* ------------------------------------------------------------------------
 * Parser */

static void test_parser(void **state) {
  static const char stream[] =
      "*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$10\r\n0123456789\r\n"
      "SET \"quoted arg\" 'x'\r\n*1\r\n$4\r\nPING\r\n";
  (void)state;
  for (long k = 0;; k++) {
    struct resp_parser p;
    const uint8_t *b = (const uint8_t *)stream;
    size_t len = sizeof stream - 1, got = 0;
    int r = 0;
    resp_parser_init(&p, NULL);
    arm(k);
    while (len) {
      struct resp_request req;
      size_t used;
      r = resp_parse(&p, b, len < 7 ? len : 7, &used, &req);
      b += used;
      len -= used;
      if (r < 0) break;
      got += r == 1;
    }
    disarm();
    if (r < 0) {
      size_t el;
      assert_int_equal(r, -ENOMEM);
      assert_true(failed);
      assert_non_null(resp_parser_error(&p, &el));
      assert_int_equal(resp_parse(&p, b, 1, &(size_t){0}, &(struct resp_request){0}),
                       -ENOMEM);
    } else {
      assert_int_equal(got, 3);
    }
    resp_parser_free(&p);
    if (!failed) break;
  }
}

/* ------------------------------------------------------------------------
 * Service: apply, snapshots, restore, digest */

static void test_service(void **state) {
  const struct smr_service_ops *ops = &kv_service_ops;
  struct smr_buf img = {0}, req = {0}, rep = {0};
  uint8_t d_full[SMR_DIGEST_LEN], d_empty[SMR_DIGEST_LEN], d[SMR_DIGEST_LEN];
  struct kv_service *a;
  void *snap;
  (void)state;

  /* The reference: a service with data, its image and digest. */
  a = kv_service_new(NULL);
  assert_non_null(a);
  {
    static const char *const cmds[] = {"RPUSH l a b c", "SADD s x y",
                                       "HSET h f v", "ZADD z 1 m", "SET k v",
                                       NULL};
    for (int i = 0; cmds[i]; i++) {
      const uint8_t *argv[8];
      size_t argl[8], argc = 0;
      char copy[64], *save = NULL;
      snprintf(copy, sizeof copy, "%s", cmds[i]);
      for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        argv[argc] = (const uint8_t *)w;
        argl[argc++] = strlen(w);
      }
      req.len = 0;
      assert_int_equal(kv_request_encode(&req, 0, argc, argv, argl), 0);
      assert_int_equal(ops->apply(a, (uint64_t)i + 1, req.data, req.len, &rep), 0);
    }
  }
  ops->digest(a, d_full);
  assert_int_equal(ops->snapshot_open(a, &snap), 0);
  {
    uint8_t buf[256];
    long n;
    while ((n = ops->snapshot_read(a, snap, img.len, buf, sizeof buf)) > 0)
      smr_buf_append(&img, buf, (size_t)n);
  }
  ops->snapshot_close(a, snap);

  /* snapshot_open and digest under failures. */
  for (long k = 0;; k++) {
    arm(k);
    int r = ops->snapshot_open(a, &snap);
    disarm();
    if (r == 0) {
      ops->snapshot_close(a, snap);
      if (!failed) break;
    } else {
      assert_int_equal(r, -ENOMEM);
    }
  }
  for (long k = 0;; k++) {
    arm(k);
    ops->digest(a, d);
    disarm();
    if (!failed) {
      assert_memory_equal(d, d_full, sizeof d);
      break;
    }
    /* A failed digest is the marker no healthy replica has. */
    for (size_t i = 0; i < sizeof d; i++)
      if (d[i] != 0xff) assert_memory_equal(d, d_full, sizeof d);
  }

  /* Restore under failures: refused with -ENOMEM leaves it empty. */
  {
    struct kv_service *b = kv_service_new(NULL);
    ops->digest(b, d_empty);
    for (long k = 0;; k++) {
      int r, e;
      arm(k);
      r = ops->restore_begin(b);
      for (size_t at = 0; at < img.len && r == 0; at += 9) {
        size_t n = img.len - at < 9 ? img.len - at : 9;
        r = ops->restore_chunk(b, at, img.data + at, n);
      }
      e = ops->restore_end(b);
      if (!r) r = e;
      disarm();
      ops->digest(b, d);
      if (r == 0) {
        assert_memory_equal(d, d_full, sizeof d);
        if (!failed) break;
      } else {
        assert_int_equal(r, -ENOMEM);
        assert_int_equal(e, -ENOMEM);
        assert_non_null(kv_service_restore_error(b));
        assert_memory_equal(d, d_empty, sizeof d);
      }
      assert_true(k < 10000);
    }
    kv_service_free(b);
  }

  /* apply of a wide request: growing the argument vector can fail. */
  {
    const uint8_t *argv[200];
    size_t argl[200];
    argv[0] = (const uint8_t *)"DEL";
    argl[0] = 3;
    for (int i = 1; i < 200; i++) {
      argv[i] = (const uint8_t *)"k";
      argl[i] = 1;
    }
    req.len = 0;
    assert_int_equal(kv_request_encode(&req, 0, 200, argv, argl), 0);
    for (long k = 0;; k++) {
      struct kv_service *c = kv_service_new(NULL);
      rep.len = 0;
      arm(k);
      int r = ops->apply(c, 1, req.data, req.len, &rep);
      disarm();
      assert_true(r == 0 || r == -ENOMEM);
      kv_service_free(c);
      if (!failed) break;
    }
  }

  smr_buf_free(&img);
  smr_buf_free(&req);
  smr_buf_free(&rep);
  kv_service_free(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_commands),
      cmocka_unit_test(test_parser),
      cmocka_unit_test(test_service),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
