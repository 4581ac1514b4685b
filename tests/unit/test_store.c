/* test_store.c -- the data directory: recovery, torn tails, corruption,
 * checkpoints and compaction, locking (smr/runtime/store.c).
 *
 * The service is a toy that remembers the payloads it applied, so a test
 * can tell exactly which state came back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "smr/smr.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * A toy service: the applied payloads, NUL-separated.
 * --------------------------------------------------------------------- */

struct toy {
  struct smr_buf state;
  uint64_t applied;
  struct smr_buf img; /* restore in progress */
};

static int toy_apply(void *svc, uint64_t pos, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  struct toy *t = svc;
  (void)pos;
  smr_buf_append(&t->state, req, len);
  smr_buf_append(&t->state, "", 1);
  t->applied++;
  return smr_buf_append(reply, "+OK", 3);
}

static int toy_snap_open(void *svc, void **snap) {
  struct toy *t = svc;
  struct smr_buf *copy = calloc(1, sizeof(*copy));
  smr_buf_append(copy, t->state.data, t->state.len);
  *snap = copy;
  return 0;
}

static long toy_snap_read(void *svc, void *snap, uint64_t off, uint8_t *buf,
                          size_t len) {
  (void)svc;
  struct smr_buf *b = snap;
  if (off >= b->len) return 0;
  size_t n = b->len - off < len ? b->len - off : len;
  memcpy(buf, b->data + off, n);
  return (long)n;
}

static void toy_snap_close(void *svc, void *snap) {
  (void)svc;
  smr_buf_free(snap);
  free(snap);
}

static int toy_restore_begin(void *svc) {
  struct toy *t = svc;
  smr_buf_reset(&t->img);
  smr_buf_reset(&t->state);
  t->applied = 0;
  return 0;
}

static int toy_restore_chunk(void *svc, uint64_t off, const uint8_t *buf,
                             size_t len) {
  struct toy *t = svc;
  if (off != t->img.len) return -EINVAL;
  return smr_buf_append(&t->img, buf, len);
}

static int toy_restore_end(void *svc) {
  struct toy *t = svc;
  smr_buf_reset(&t->state);
  smr_buf_append(&t->state, t->img.data, t->img.len);
  t->applied = 0;
  for (size_t i = 0; i < t->state.len; i++)
    if (t->state.data[i] == 0) t->applied++;
  return 0;
}

static void toy_digest(void *svc, uint8_t out[SMR_DIGEST_LEN]) {
  (void)svc;
  memset(out, 0, SMR_DIGEST_LEN);
}

static const struct smr_service_ops toy_ops = {
    "toy",           toy_apply,         NULL,
    toy_snap_open,   toy_snap_read,     toy_snap_close,
    toy_restore_begin, toy_restore_chunk, toy_restore_end,
    toy_digest};

/* ------------------------------------------------------------------------
 * Fixture
 * --------------------------------------------------------------------- */

static char dir[256];
static struct toy toy;
static char lastlog[700];
static int errors;

static void logger(void *ctx, int level, const char *line) {
  (void)ctx;
  snprintf(lastlog, sizeof(lastlog), "%s", line);
  if (level == SMR_LOG_ERROR) errors++;
}

static void replay(void *ctx, uint64_t pos, const uint8_t *data,
                   size_t len) {
  (void)ctx;
  struct smr_buf r = {0};
  toy_apply(&toy, pos, data, len, &r);
  smr_buf_free(&r);
}

static struct smr_store *open_store(const char *group,
                                    struct smr_store_recovered *rec, int *rc) {
  smr_buf_free(&toy.state);
  smr_buf_free(&toy.img);
  memset(&toy, 0, sizeof(toy));
  struct smr_store_config cfg = {
      .dir = dir, .group = group, .durable = 1, .retain = 8,
      .svc = &toy_ops, .svc_ctx = &toy, .replay = replay, .ctx = NULL,
      .log = logger};
  struct smr_store *s = NULL;
  char err[256] = "";
  *rc = smr_store_open(&cfg, &s, rec, err, sizeof(err));
  if (*rc < 0) snprintf(lastlog, sizeof(lastlog), "%s", err);
  return s;
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/smr-test-store-XXXXXX");
  assert_non_null(mkdtemp(dir));
  errors = 0;
  lastlog[0] = 0;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  smr_buf_free(&toy.state);
  smr_buf_free(&toy.img);
  return 0;
}

static uint64_t chain(uint64_t upto) {
  uint64_t h = 0;
  for (uint64_t p = 1; p <= upto; p++) {
    char m[32];
    int n = snprintf(m, sizeof(m), "msg-%llu", (unsigned long long)p);
    h = smr_chain_hash(h, p, m, (size_t)n);
  }
  return h;
}

static void deliver_range(struct smr_store *s, uint64_t from, uint64_t to) {
  struct smr_buf r = {0};
  for (uint64_t p = from; p <= to; p++) {
    char m[32];
    int n = snprintf(m, sizeof(m), "msg-%llu", (unsigned long long)p);
    toy_apply(&toy, p, (const uint8_t *)m, (size_t)n, &r);
    assert_int_equal(smr_store_delivered(s, p, chain(p), (const uint8_t *)m,
                                         (size_t)n),
                     0);
  }
  smr_buf_free(&r);
}

static struct smr_wire_view view_of(uint64_t epoch) {
  struct smr_wire_view v;
  memset(&v, 0, sizeof(v));
  v.epoch = epoch;
  v.n = 2;
  strcpy(v.m[0].id, "n1");
  strcpy(v.m[0].addr, "a1");
  v.m[0].incarnation = 1;
  strcpy(v.m[1].id, "n2");
  strcpy(v.m[1].addr, "a2");
  v.m[1].incarnation = 1;
  return v;
}

static off_t file_size(const char *name) {
  char p[400];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  struct stat st;
  return stat(p, &st) == 0 ? st.st_size : -1;
}

static void append_bytes(const char *name, const void *d, size_t n) {
  char p[400];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, d, n), (ssize_t)n);
  close(fd);
}

static void flip_byte(const char *name, off_t at) {
  char p[400];
  snprintf(p, sizeof(p), "%s/%s", dir, name);
  int fd = open(p, O_RDWR);
  assert_true(fd >= 0);
  uint8_t b;
  assert_int_equal(pread(fd, &b, 1, at), 1);
  b ^= 0x40;
  assert_int_equal(pwrite(fd, &b, 1, at), 1);
  close(fd);
}

/* ------------------------------------------------------------------------
 * Tests
 * --------------------------------------------------------------------- */

static void test_fresh_then_recover_everything(void **state) {
  (void)state;
  struct smr_store_recovered rec;
  int rc;
  struct smr_store *s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0);
  assert_true(rec.first_boot);
  uint64_t inc1 = rec.incarnation;
  assert_true(inc1 > 1000000000000ull); /* the wall clock, in ms */
  assert_false(rec.has_view);
  assert_int_equal(rec.pos, 0);

  struct smr_wire_view v = view_of(3);
  assert_int_equal(smr_store_view(s, &v), 0);
  struct smr_wire_proposal acc;
  memset(&acc, 0, sizeof(acc));
  acc.next = view_of(4);
  acc.trim = 2;
  assert_int_equal(smr_store_acceptor(s, 3, 0x201, 0x201, 1, &acc), 0);
  for (uint64_t q = 1; q <= 3; q++) {
    struct smr_persisted_entry e = {q, 1, q, 5, (const uint8_t *)"entry"};
    assert_int_equal(smr_store_entry(s, 3, &e), 0);
  }
  deliver_range(s, 1, 5);
  assert_int_equal(smr_store_sync(s), 0);
  struct smr_store_stats st;
  smr_store_stats(s, &st);
  assert_true(st.fsyncs >= 1);
  smr_store_close(s);

  s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0);
  assert_true(rec.incarnation > inc1);
  assert_false(rec.first_boot);
  assert_true(rec.has_view);
  assert_int_equal(rec.p.view.epoch, 3);
  assert_int_equal(rec.p.promised, 0x201);
  assert_true(rec.p.has_accepted);
  assert_int_equal(rec.p.accepted.next.epoch, 4);
  assert_int_equal(rec.p.n_entries, 3);
  assert_int_equal(rec.p.entries[2].seq, 3);
  assert_memory_equal(rec.p.entries[0].data, "entry", 5);
  /* The service was rebuilt by replaying the log. */
  assert_int_equal(rec.pos, 5);
  assert_true(rec.hash == chain(5));
  assert_int_equal(toy.applied, 5);
  /* Deltas can be served from the log. */
  struct smr_log_entry le;
  assert_int_equal(smr_store_log_read(s, 4, &le), 0);
  assert_int_equal(le.len, 5);
  assert_memory_equal(le.data, "msg-4", 5);
  /* ... with the chain hash after each, kept in the log (a donor checks a
   * delta by its two ends). */
  assert_true(le.hash == chain(4));
  assert_int_equal(smr_store_log_read(s, 9, &le), -ENOENT);
  smr_store_close(s);
  assert_int_equal(errors, 0);
}

static void test_torn_tail_is_cut(void **state) {
  (void)state;
  struct smr_store_recovered rec;
  int rc;
  struct smr_store *s = open_store("g", &rec, &rc);
  deliver_range(s, 1, 3);
  smr_store_close(s);
  off_t before = file_size("log.smr");
  /* Half a frame: what a crash in the middle of a write leaves. */
  static const uint8_t half[] = {0x53, 0x4d, 0x01, 0x0d, 0x40, 0, 0, 0, 1, 2};
  append_bytes("log.smr", half, sizeof(half));
  s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0);
  assert_false(rec.corrupt);
  assert_int_equal(rec.pos, 3);
  assert_int_equal(file_size("log.smr"), before);
  assert_non_null(strstr(lastlog, "cut off"));
  /* And appending still works after the cut. */
  deliver_range(s, 4, 4);
  smr_store_close(s);
  s = open_store("g", &rec, &rc);
  assert_int_equal(rec.pos, 4);
  smr_store_close(s);
  assert_int_equal(errors, 0);
}

static void test_corrupt_log_is_refused_and_set_aside(void **state) {
  (void)state;
  struct smr_store_recovered rec;
  int rc;
  struct smr_store *s = open_store("g", &rec, &rc);
  struct smr_wire_view v = view_of(2);
  smr_store_view(s, &v);
  deliver_range(s, 1, 6);
  smr_store_close(s);
  flip_byte("log.smr", file_size("log.smr") / 2);
  s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0); /* the member starts, and rejoins */
  assert_true(rec.corrupt);
  assert_false(rec.has_view);
  /* What decoded before the damage is genuine history and is kept. */
  assert_true(rec.pos < 6);
  assert_true(rec.hash == chain(rec.pos));
  assert_int_equal(errors, 1);
  assert_non_null(strstr(lastlog, "refused file"));
  assert_true(rec.incarnation >= 2); /* never reused */
  /* Set aside, not deleted: log.smr.corrupt-<n>. */
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "test -s \"$(ls -d '%s'/log.smr.corrupt-* | head -1)\"",
           dir);
  assert_int_equal(system(cmd), 0);
  smr_store_close(s);
}

static void test_checkpoint_compacts_and_recovers(void **state) {
  (void)state;
  struct smr_store_recovered rec;
  int rc;
  struct smr_store *s = open_store("g", &rec, &rc);
  struct smr_wire_view v = view_of(5);
  smr_store_view(s, &v);
  /* The view starts at position 0: entry k is delivered at position k. */
  for (uint64_t q = 1; q <= 45; q++) {
    struct smr_persisted_entry e = {q, 0, q, 5, (const uint8_t *)"entry"};
    assert_int_equal(smr_store_entry(s, 5, &e), 0);
  }
  deliver_range(s, 1, 40);
  assert_int_equal(smr_store_sync(s), 0);
  off_t big = file_size("log.smr");
  assert_int_equal(smr_store_checkpoint(s, 40, chain(40)), 0);
  off_t small = file_size("log.smr");
  assert_true(small < big);
  assert_true(file_size("checkpoint.smr") > 0);
  deliver_range(s, 41, 45);
  /* Retention (8): the oldest deltas are gone, the recent ones served. */
  struct smr_log_entry le;
  assert_int_equal(smr_store_log_read(s, 20, &le), -ENOENT);
  assert_int_equal(smr_store_log_read(s, 44, &le), 0);
  assert_true(le.hash == chain(44));
  assert_int_equal(smr_store_log_read(s, 38, &le), 0);
  assert_true(le.hash == chain(38)); /* (copied by the compaction) */
  smr_store_close(s);

  s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0);
  assert_int_equal(rec.pos, 45);
  assert_true(rec.hash == chain(45));
  assert_int_equal(toy.applied, 45);
  assert_true(rec.has_view);
  assert_int_equal(rec.p.view.epoch, 5);
  /* The entries the checkpoint covers were dropped by the compaction. */
  assert_int_equal(rec.p.n_entries, 5);
  assert_int_equal(rec.p.entries[0].seq, 41);
  assert_int_equal(rec.p.entries[4].seq, 45);
  smr_store_close(s);
  assert_int_equal(errors, 0);
}

static void test_corrupt_checkpoint_is_refused(void **state) {
  (void)state;
  struct smr_store_recovered rec;
  int rc;
  struct smr_store *s = open_store("g", &rec, &rc);
  deliver_range(s, 1, 10);
  assert_int_equal(smr_store_checkpoint(s, 10, chain(10)), 0);
  smr_store_close(s);
  flip_byte("checkpoint.smr", 50);
  s = open_store("g", &rec, &rc);
  assert_int_equal(rc, 0);
  assert_true(rec.corrupt);
  assert_int_equal(rec.pos, 0); /* nothing trustworthy: rejoin for it */
  assert_int_equal(errors, 1);
  smr_store_close(s);
}

static void test_other_group_and_lock(void **state) {
  (void)state;
  struct smr_store_recovered rec, rec2;
  int rc, rc2;
  struct smr_store *s = open_store("g", &rec, &rc);
  deliver_range(s, 1, 2);
  /* A second process on the same directory is refused. */
  struct smr_store_config cfg = {.dir = dir, .group = "g", .durable = 1,
                                 .svc = &toy_ops, .svc_ctx = &toy};
  struct smr_store *s2 = NULL;
  char err[256];
  rc2 = smr_store_open(&cfg, &s2, &rec2, err, sizeof(err));
  assert_int_equal(rc2, -EBUSY);
  assert_non_null(strstr(err, "in use"));
  smr_store_close(s);
  /* Another group's directory is a configuration error. */
  s = open_store("other", &rec, &rc);
  assert_int_equal(rc, -EINVAL);
  assert_null(s);
  assert_non_null(strstr(lastlog, "another group"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fresh_then_recover_everything,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_tail_is_cut, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_corrupt_log_is_refused_and_set_aside, setup, teardown),
      cmocka_unit_test_setup_teardown(test_checkpoint_compacts_and_recovers,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_checkpoint_is_refused,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_group_and_lock, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
