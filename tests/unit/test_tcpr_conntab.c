/* test_tcpr_conntab.c -- the replicated connection table (tcpr/conntab.c):
 * records applied in order, duplicates skipped, replies kept until the
 * client acknowledges them, snapshot/restore/digest round trips, and bad
 * records and images refused without changing the state. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smr/service.h"
#include "tcpr.h"

/* ------------------------------------------------------------------------
 * A tiny inner service: its state is every request's bytes, concatenated;
 * the reply to a request is "+<total length>\r\n".
 * --------------------------------------------------------------------- */

struct toy {
  struct smr_buf state;
  struct smr_buf restoring;
  int applies;
};

static int toy_apply(void *svc, uint64_t pos, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  (void)pos;
  struct toy *t = svc;
  t->applies++;
  if (smr_buf_append(&t->state, req, len) < 0) return -ENOMEM;
  char r[32];
  int n = snprintf(r, sizeof(r), "+%zu\r\n", t->state.len);
  return smr_buf_append(reply, r, (size_t)n);
}

static int toy_query(void *svc, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  (void)svc;
  return smr_buf_append(reply, req, len);
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
  size_t n = b->len - (size_t)off;
  if (n > len) n = len;
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
  smr_buf_reset(&t->restoring);
  return 0;
}

static int toy_restore_chunk(void *svc, uint64_t off, const uint8_t *buf,
                             size_t len) {
  struct toy *t = svc;
  if (off != t->restoring.len) return -EINVAL;
  return smr_buf_append(&t->restoring, buf, len);
}

static int toy_restore_end(void *svc) {
  struct toy *t = svc;
  smr_buf_reset(&t->state);
  smr_buf_append(&t->state, t->restoring.data, t->restoring.len);
  return 0;
}

static void toy_digest(void *svc, uint8_t out[SMR_DIGEST_LEN]) {
  struct toy *t = svc;
  memset(out, 0, SMR_DIGEST_LEN);
  for (size_t i = 0; i < t->state.len; i++)
    out[i % SMR_DIGEST_LEN] ^= (uint8_t)(t->state.data[i] + i);
  out[0] ^= (uint8_t)t->state.len;
}

static const struct smr_service_ops toy_ops = {
    .name = "toy",
    .apply = toy_apply,
    .query = toy_query,
    .snapshot_open = toy_snap_open,
    .snapshot_read = toy_snap_read,
    .snapshot_close = toy_snap_close,
    .restore_begin = toy_restore_begin,
    .restore_chunk = toy_restore_chunk,
    .restore_end = toy_restore_end,
    .digest = toy_digest,
};

/* ------------------------------------------------------------------------
 * Fixture
 * --------------------------------------------------------------------- */

struct fx {
  struct toy toy;
  struct tcpr_conntab *t;
  const struct smr_service_ops *ops;
  struct smr_buf rec, reply;
  uint64_t pos;
};

static struct fx *fx_new(void) {
  struct fx *f = calloc(1, sizeof(*f));
  assert_int_equal(tcpr_conntab_new(&toy_ops, &f->toy, &f->t, &f->ops), 0);
  return f;
}

static void fx_free(struct fx *f) {
  tcpr_conntab_free(f->t);
  smr_buf_free(&f->toy.state);
  smr_buf_free(&f->toy.restoring);
  smr_buf_free(&f->rec);
  smr_buf_free(&f->reply);
  free(f);
}

/* Applies f->rec; returns apply's result, reply in f->reply. */
static int fx_apply(struct fx *f) {
  smr_buf_reset(&f->reply);
  int rc = f->ops->apply(f->t, ++f->pos, f->rec.data, f->rec.len, &f->reply);
  smr_buf_reset(&f->rec);
  return rc;
}

static struct tcpr_tcp_state tcp_state(uint16_t cport) {
  struct tcpr_tcp_state s;
  memset(&s, 0, sizeof(s));
  s.laddr = 0x640a4d0a; /* any value: the table does not interpret it */
  s.raddr = 0xc80a4d0a;
  s.lport = 6379;
  s.rport = cport;
  s.rcv_isn1 = 1000;
  s.snd_isn1 = 0xfffffff0u; /* wraps: offsets are what count */
  s.mss = 1448;
  s.snd_wscale = 7;
  s.rcv_wscale = 7;
  s.opts = TCPR_OPT_SACK | TCPR_OPT_TS | TCPR_OPT_WSCALE;
  s.tsval = 12345;
  s.ts_wall_us = 1700000000000000;
  s.snd_wnd = 65535;
  s.max_window = 65535;
  s.rcv_wnd = 65535;
  return s;
}

static void open_conn(struct fx *f, uint64_t id, uint16_t cport) {
  struct tcpr_tcp_state s = tcp_state(cport);
  assert_int_equal(tcpr_rec_open(&f->rec, 1, id, &s), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.len, 1);
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
}

static void req(struct fx *f, uint64_t id, uint64_t start, uint64_t end,
                uint64_t acked, unsigned flags, const char *payload) {
  assert_int_equal(tcpr_rec_req(&f->rec, 1, id, start, end, acked, flags,
                                payload, strlen(payload)),
                   0);
  assert_int_equal(fx_apply(f), 0);
}

/* ------------------------------------------------------------------------
 * Tests
 * --------------------------------------------------------------------- */

static void test_requests_and_replies(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 7, 40000);
  req(f, 7, 0, 10, 0, 0, "abc");
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_memory_equal(f->reply.data + 1, "+3\r\n", 4);
  const struct tcpr_conn *c = tcpr_conntab_find(f->t, 7);
  assert_non_null(c);
  assert_int_equal(c->rcv_off, 10);
  assert_int_equal(c->snd_off, 4);
  assert_int_equal(c->acked, 0);
  assert_memory_equal(c->unacked, "+3\r\n", 4);

  /* A duplicate (start below what was consumed) is skipped: no apply. */
  req(f, 7, 0, 10, 0, 0, "abc");
  assert_int_equal(f->reply.len, 1);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  assert_int_equal(f->toy.applies, 1);

  /* Bytes skipped by the parser (empty requests) between requests. */
  req(f, 7, 12, 20, 2, 0, "de");
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_memory_equal(f->reply.data + 1, "+5\r\n", 4);
  c = tcpr_conntab_find(f->t, 7);
  assert_int_equal(c->rcv_off, 20);
  assert_int_equal(c->snd_off, 8);
  assert_int_equal(c->acked, 2); /* trimmed by the REQ's acked */
  assert_memory_equal(c->unacked, "\r\n+5\r\n", 6);

  /* ACKED trims; backwards and beyond-the-end values are clamped. */
  assert_int_equal(tcpr_rec_acked(&f->rec, 1, 7, 1), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(tcpr_conntab_find(f->t, 7)->acked, 2);
  assert_int_equal(tcpr_rec_acked(&f->rec, 1, 7, 1000), 0);
  assert_int_equal(fx_apply(f), 0);
  c = tcpr_conntab_find(f->t, 7);
  assert_int_equal(c->acked, 8);

  /* Unknown connection: skipped. */
  req(f, 8, 0, 1, 0, 0, "x");
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  assert_int_equal(f->toy.applies, 2);
  fx_free(f);
}

static void test_literal_close_fin_forget(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 1, 1111);
  open_conn(f, 2, 2222);
  req(f, 1, 0, 6, 0, TCPR_REQ_LITERAL | TCPR_REQ_CLOSE_AFTER, "+OK\r\n");
  assert_memory_equal(f->reply.data + 1, "+OK\r\n", 5);
  assert_int_equal(f->toy.applies, 0);
  assert_true(tcpr_conntab_find(f->t, 1)->closing);
  /* Nothing is applied after the close. */
  req(f, 1, 6, 9, 0, 0, "zzz");
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);

  assert_int_equal(tcpr_rec_fin(&f->rec, 1, 2, 0), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_true(tcpr_conntab_find(f->t, 2)->fin);
  assert_int_equal(tcpr_rec_fin(&f->rec, 1, 2, 0), 0); /* again: skipped */
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);

  assert_int_equal(tcpr_rec_forget(&f->rec, 1, 1), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_null(tcpr_conntab_find(f->t, 1));
  assert_int_equal(tcpr_conntab_count(f->t), 1);
  assert_int_equal(tcpr_rec_forget(&f->rec, 1, 1), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  fx_free(f);
}

static void test_same_client_port_replaces(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 10, 5555);
  req(f, 10, 0, 3, 0, 0, "abc");
  open_conn(f, 11, 5555); /* the old one's FORGET was lost */
  assert_null(tcpr_conntab_find(f->t, 10));
  const struct tcpr_conn *c = tcpr_conntab_find(f->t, 11);
  assert_non_null(c);
  assert_int_equal(c->rcv_off, 0);
  assert_int_equal(tcpr_conntab_count(f->t), 1);
  fx_free(f);
}

static void test_plain_passes_through(void **state) {
  (void)state;
  struct fx *f = fx_new();
  assert_int_equal(tcpr_rec_plain(&f->rec, "hello", 5), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.len, 4);
  assert_memory_equal(f->reply.data, "+5\r\n", 4);
  assert_int_equal(tcpr_conntab_count(f->t), 0);
  fx_free(f);
}

static void test_bad_records(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 3, 3333);
  uint8_t digest0[SMR_DIGEST_LEN], digest1[SMR_DIGEST_LEN];
  f->ops->digest(f->t, digest0);
  const uint8_t empty = 0;
  smr_buf_reset(&f->reply);
  assert_int_equal(f->ops->apply(f->t, 1, &empty, 0, &f->reply), -EINVAL);
  uint8_t kinds[] = {9, 0xff};
  for (size_t i = 0; i < sizeof(kinds); i++)
    assert_int_equal(f->ops->apply(f->t, 1, &kinds[i], 1, &f->reply),
                     -EINVAL);
  /* Every truncation of a valid OPEN/ACKED/FIN/FORGET is refused. */
  struct tcpr_tcp_state s = tcp_state(4444);
  struct smr_buf recs[4] = {{0}, {0}, {0}, {0}};
  tcpr_rec_open(&recs[0], 1, 99, &s);
  tcpr_rec_acked(&recs[1], 1, 3, 5);
  tcpr_rec_fin(&recs[2], 1, 3, 0);
  tcpr_rec_forget(&recs[3], 1, 3);
  for (int r = 0; r < 4; r++) {
    for (size_t cut = 1; cut < recs[r].len; cut++)
      assert_int_equal(
          f->ops->apply(f->t, 1, recs[r].data, cut, &f->reply), -EINVAL);
    smr_buf_free(&recs[r]);
  }
  /* A REQ whose end is before its start; bad flags; a bad window scale. */
  assert_int_equal(tcpr_rec_req(&f->rec, 1, 3, 5, 4, 0, 0, "", 0), -EINVAL);
  assert_int_equal(tcpr_rec_req(&f->rec, 1, 3, 0, 4, 0, 8, "", 0), -EINVAL);
  s.snd_wscale = 15;
  tcpr_rec_open(&f->rec, 1, 100, &s);
  assert_int_equal(fx_apply(f), -EINVAL);
  f->ops->digest(f->t, digest1);
  assert_memory_equal(digest0, digest1, SMR_DIGEST_LEN);
  assert_int_equal(tcpr_conntab_count(f->t), 1);
  fx_free(f);
}

/* Copies f's image into g through restore, in chunks of `chunk` bytes. */
static int transfer(struct fx *f, struct fx *g, size_t chunk) {
  void *snap;
  assert_int_equal(f->ops->snapshot_open(f->t, &snap), 0);
  assert_int_equal(g->ops->restore_begin(g->t), 0);
  uint8_t buf[4096];
  uint64_t off = 0;
  int rc = 0;
  for (;;) {
    long n = f->ops->snapshot_read(f->t, snap, off, buf, chunk);
    assert_true(n >= 0);
    if (n == 0) break;
    rc = g->ops->restore_chunk(g->t, off, buf, (size_t)n);
    if (rc < 0) break;
    off += (uint64_t)n;
  }
  f->ops->snapshot_close(f->t, snap);
  if (rc == 0) rc = g->ops->restore_end(g->t);
  return rc;
}

static void test_snapshot_restore_digest(void **state) {
  (void)state;
  struct fx *f = fx_new();
  for (uint64_t id = 1; id <= 20; id++) {
    open_conn(f, id * 7919, (uint16_t)(1000 + id));
    req(f, id * 7919, 0, 5, 0, 0, "hello");
    if (id % 3 == 0) req(f, id * 7919, 5, 6, 1, 0, "x");
  }
  size_t chunks[] = {1, 7, 100, 4096};
  for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
    struct fx *g = fx_new();
    open_conn(g, 424242, 9); /* replaced by the restore */
    assert_int_equal(transfer(f, g, chunks[k]), 0);
    uint8_t a[SMR_DIGEST_LEN], b[SMR_DIGEST_LEN];
    f->ops->digest(f->t, a);
    g->ops->digest(g->t, b);
    assert_memory_equal(a, b, SMR_DIGEST_LEN);
    assert_int_equal(tcpr_conntab_count(g->t), 20);
    assert_null(tcpr_conntab_find(g->t, 424242));
    const struct tcpr_conn *c = tcpr_conntab_find(g->t, 3 * 7919);
    assert_non_null(c);
    assert_int_equal(c->rcv_off, 6);
    assert_int_equal(c->acked, 1);
    assert_int_equal(c->tcp.snd_isn1, 0xfffffff0u);
    /* The restored table goes on like the original. */
    req(g, 3 * 7919, 6, 7, 0, 0, "y");
    assert_int_equal(g->reply.data[0], TCPR_ST_APPLIED);
    fx_free(g);
  }
  /* Digests differ when the tables differ. */
  struct fx *h = fx_new();
  uint8_t a[SMR_DIGEST_LEN], b[SMR_DIGEST_LEN];
  f->ops->digest(f->t, a);
  h->ops->digest(h->t, b);
  assert_memory_not_equal(a, b, SMR_DIGEST_LEN);
  fx_free(h);
  fx_free(f);
}

/* A corrupted image is refused at the end and leaves an empty table. */
static void test_bad_image(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 5, 5);
  req(f, 5, 0, 2, 0, 0, "ab");
  void *snap;
  assert_int_equal(f->ops->snapshot_open(f->t, &snap), 0);
  uint8_t img[4096];
  long n = f->ops->snapshot_read(f->t, snap, 0, img, sizeof(img));
  f->ops->snapshot_close(f->t, snap);
  assert_true(n > 20);
  for (long i = 0; i < n; i++) {
    if (i >= 8 && i < 12) continue; /* the magic's own check: below */
    struct fx *g = fx_new();
    uint8_t bad[4096];
    memcpy(bad, img, (size_t)n);
    bad[i] ^= 0x80;
    int rc = g->ops->restore_begin(g->t);
    if (rc == 0) rc = g->ops->restore_chunk(g->t, 0, bad, (size_t)n);
    if (rc == 0) rc = g->ops->restore_end(g->t);
    if (rc < 0) assert_int_equal(tcpr_conntab_count(g->t), 0);
    fx_free(g);
  }
  /* Wrong magic; truncated. */
  struct fx *g = fx_new();
  img[8] = 'X';
  assert_int_equal(g->ops->restore_begin(g->t), 0);
  assert_int_equal(g->ops->restore_chunk(g->t, 0, img, (size_t)n), 0);
  assert_int_equal(g->ops->restore_end(g->t), -EINVAL);
  assert_int_equal(g->ops->restore_begin(g->t), 0);
  assert_int_equal(g->ops->restore_chunk(g->t, 0, img, 5), 0);
  assert_int_equal(g->ops->restore_end(g->t), -EINVAL);
  /* Out of order chunks. */
  assert_int_equal(g->ops->restore_begin(g->t), 0);
  assert_int_equal(g->ops->restore_chunk(g->t, 3, img, 5), -EINVAL);
  fx_free(g);
  fx_free(f);
}

static void part(struct fx *f, uint64_t id, uint64_t at, const char *b,
                 uint8_t expect) {
  assert_int_equal(tcpr_rec_part(&f->rec, 1, id, at, b, strlen(b)), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.len, 1);
  assert_int_equal(f->reply.data[0], expect);
}

/* PART records: a request's first bytes replicated ahead, consumed by the
 * request, kept by snapshots. */
static void test_partial_requests(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 4, 4444);
  req(f, 4, 0, 3, 0, 0, "abc");
  part(f, 4, 3, "*3\r\n", TCPR_ST_APPLIED);
  part(f, 4, 7, "$3\r\n", TCPR_ST_APPLIED);
  part(f, 4, 7, "$3\r\n", TCPR_ST_SKIPPED);  /* a duplicate */
  part(f, 4, 20, "zz", TCPR_ST_SKIPPED);       /* a gap */
  part(f, 4, 11, "SET", TCPR_ST_APPLIED);
  part(f, 4, 11, "SET", TCPR_ST_SKIPPED);
  part(f, 99, 0, "x", TCPR_ST_SKIPPED);        /* unknown connection */
  const struct tcpr_conn *c = tcpr_conntab_find(f->t, 4);
  assert_int_equal(c->rcv_off, 3);
  assert_int_equal(c->partial_len, 11);
  assert_memory_equal(c->partial, "*3\r\n$3\r\nSET", 11);
  assert_int_equal(tcpr_rec_part(&f->rec, 1, 4, 14, "", 0), -EINVAL);

  /* The image carries the partial bytes. */
  struct fx *g = fx_new();
  assert_int_equal(transfer(f, g, 5), 0);
  c = tcpr_conntab_find(g->t, 4);
  assert_int_equal(c->partial_len, 11);
  assert_memory_equal(c->partial, "*3\r\n$3\r\nSET", 11);
  fx_free(g);

  /* A request ending inside the partial bytes keeps the rest. */
  req(f, 4, 3, 10, 0, 0, "q");
  c = tcpr_conntab_find(f->t, 4);
  assert_int_equal(c->rcv_off, 10);
  assert_int_equal(c->partial_len, 4);
  assert_memory_equal(c->partial, "\nSET", 4);
  part(f, 4, 14, "\r\n", TCPR_ST_APPLIED);
  /* One ending past them takes them all. */
  req(f, 4, 10, 30, 0, 0, "r");
  c = tcpr_conntab_find(f->t, 4);
  assert_int_equal(c->partial_len, 0);
  assert_int_equal(c->rcv_off, 30);
  part(f, 4, 30, "x", TCPR_ST_APPLIED);
  /* No partial bytes after the client closed. */
  assert_int_equal(tcpr_rec_fin(&f->rec, 1, 4, 31), 0);
  assert_int_equal(fx_apply(f), 0);
  part(f, 4, 31, "y", TCPR_ST_SKIPPED);
  c = tcpr_conntab_find(f->t, 4);
  assert_int_equal(c->partial_len, 0);
  assert_int_equal(c->rcv_off, 31);
  fx_free(f);
}

/* Records of a replaced primary (a lower owner epoch) are skipped. */
static void test_owner_epochs(void **state) {
  (void)state;
  struct fx *f = fx_new();
  open_conn(f, 6, 6666);          /* owner 1 */
  req(f, 6, 0, 3, 0, 0, "abc");
  assert_int_equal(tcpr_conntab_owner(f->t), 1);
  assert_int_equal(tcpr_rec_take(&f->rec, 5), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_int_equal(tcpr_conntab_owner(f->t), 5);
  /* The old primary's records, still on their way, change nothing. */
  req(f, 6, 3, 6, 0, 0, "def");
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  assert_int_equal(tcpr_rec_part(&f->rec, 1, 6, 3, "xy", 2), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  assert_int_equal(tcpr_rec_forget(&f->rec, 1, 6), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  assert_int_equal(tcpr_conntab_find(f->t, 6)->rcv_off, 3);
  assert_int_equal(tcpr_conntab_find(f->t, 6)->partial_len, 0);
  /* The new primary's go through; an older TAKE is skipped. */
  assert_int_equal(tcpr_rec_req(&f->rec, 5, 6, 3, 6, 0, 0, "def", 3), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_APPLIED);
  assert_int_equal(tcpr_rec_take(&f->rec, 4), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(f->reply.data[0], TCPR_ST_SKIPPED);
  /* A higher owner in any record takes over too; images keep the owner. */
  assert_int_equal(tcpr_rec_acked(&f->rec, 9, 6, 1), 0);
  assert_int_equal(fx_apply(f), 0);
  assert_int_equal(tcpr_conntab_owner(f->t), 9);
  struct fx *g = fx_new();
  assert_int_equal(transfer(f, g, 3), 0);
  assert_int_equal(tcpr_conntab_owner(g->t), 9);
  fx_free(g);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requests_and_replies),
      cmocka_unit_test(test_literal_close_fin_forget),
      cmocka_unit_test(test_same_client_port_replaces),
      cmocka_unit_test(test_plain_passes_through),
      cmocka_unit_test(test_bad_records),
      cmocka_unit_test(test_snapshot_restore_digest),
      cmocka_unit_test(test_bad_image),
      cmocka_unit_test(test_partial_requests),
      cmocka_unit_test(test_owner_epochs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
