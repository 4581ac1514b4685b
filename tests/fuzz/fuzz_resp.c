/* fuzz_resp.c -- fuzz target for the RESP parser and, behind it, the KV
 * service (services/kv).
 *
 * Input: one byte choosing how the rest is cut into chunks, then a client
 * byte stream.  Oracles:
 *
 *  1. Chunking does not matter: the stream parsed in one piece and parsed
 *     in pseudo-random chunks of 1..32 bytes give the same requests (same
 *     arguments, same end offsets) and the same protocol error, if any.
 *     Every argument is NUL terminated and offsets only grow.
 *  2. Each request survives the group format: kv_request_encode then
 *     kv_request_decode give back the same arguments.
 *  3. Each request runs through the service as the runtime would run it:
 *     read-only ones first as a query (which must leave the keyspace size
 *     unchanged), then every one through apply.  Every reply is exactly
 *     one well-formed RESP reply; the store's invariants hold.
 *  4. At the end, a snapshot restored into a second service has the same
 *     digest, and re-snapshots to the same image.
 *
 * Limits are small (1024 arguments, 64 KB bulks, 1 MB requests) to keep
 * runs fast; the limits themselves are unit-tested. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kv.h"
#include "resp.h"
#include "store.h"

#define MAX_REQS 4096

/* The requests of one parse, flattened for comparison. */
struct trace {
  struct smr_buf bytes; /* argc, lengths, arguments */
  uint64_t ends[MAX_REQS];
  size_t n;
  int err;
  char errmsg[RESP_ERR_MAX];
};

static const struct resp_limits lim = {1024, 65536, 1 << 20};

static void trace_add(struct trace *t, const struct resp_request *r) {
  uint64_t argc = r->argc;
  FUZZ_CHECK(r->argc >= 1);
  FUZZ_CHECK(r->end > r->start);
  FUZZ_CHECK(smr_buf_append(&t->bytes, &argc, sizeof argc) == 0);
  for (size_t i = 0; i < r->argc; i++) {
    uint64_t l = r->argl[i];
    FUZZ_CHECK(r->argv[i][r->argl[i]] == 0);
    FUZZ_CHECK(smr_buf_append(&t->bytes, &l, sizeof l) == 0);
    FUZZ_CHECK(smr_buf_append(&t->bytes, r->argv[i], r->argl[i]) == 0);
  }
  if (t->n < MAX_REQS) t->ends[t->n] = r->end;
  t->n++;
}

static uint64_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Parses data; chunk_seed 0: in one piece.  Calls each(request) if given. */
static void parse(const uint8_t *data, size_t size, uint64_t chunk_seed,
                  struct trace *t,
                  void (*each)(void *, const struct resp_request *),
                  void *arg) {
  struct resp_parser p;
  uint64_t prev_end = 0;
  memset(t, 0, sizeof *t);
  resp_parser_init(&p, &lim);
  while (size && !t->err) {
    size_t n = chunk_seed ? 1 + rng_next(&chunk_seed) % 32 : size;
    if (n > size) n = size;
    size -= n;
    while (n) {
      struct resp_request req;
      size_t used;
      int r = resp_parse(&p, data, n, &used, &req);
      FUZZ_CHECK(used <= n);
      data += used;
      n -= used;
      if (r == 1) {
        FUZZ_CHECK(req.start >= prev_end && req.end == resp_parser_offset(&p));
        prev_end = req.end;
        trace_add(t, &req);
        if (each) each(arg, &req);
      } else if (r < 0) {
        size_t el;
        const char *e = resp_parser_error(&p, &el);
        FUZZ_CHECK(r == -EPROTO && e && el < sizeof t->errmsg);
        FUZZ_CHECK(resp_reply_len((const uint8_t *)e, el) == (long)el);
        memcpy(t->errmsg, e, el);
        t->err = r;
        break;
      } else {
        FUZZ_CHECK(r == 0 && n == 0);
      }
    }
  }
  resp_parser_free(&p);
}

/* ------------------------------------------------------------------------
 * Running requests */

struct runner {
  struct kv_service *svc;
  uint64_t pos;
  struct smr_buf req, rep;
};

static void check_one_reply(const struct smr_buf *rep) {
  FUZZ_CHECK(rep->len > 0);
  FUZZ_CHECK(resp_reply_len(rep->data, rep->len) == (long)rep->len);
}

static void run_one(void *arg, const struct resp_request *r) {
  struct runner *x = arg;
  const struct smr_service_ops *ops = &kv_service_ops;
  struct kv_store *s = kv_service_store(x->svc);
  struct kv_request d;
  int64_t now = 1000 + (int64_t)x->pos * 7;

  x->req.len = 0;
  FUZZ_CHECK(kv_request_encode(&x->req, now, r->argc, r->argv, r->argl) == 0);
  FUZZ_CHECK(x->req.len == kv_request_size(r->argc, r->argl));
  FUZZ_CHECK(kv_request_decode(x->req.data, x->req.len, &d) == 0);
  FUZZ_CHECK(d.kind == KV_REQ_COMMAND && d.now_ms == now && d.argc == r->argc);
  for (size_t i = 0; i < r->argc; i++)
    FUZZ_CHECK(d.argl[i] == r->argl[i] &&
               memcmp(d.argv[i], r->argv[i], r->argl[i]) == 0);
  kv_request_release(&d);

  if (!kv_command_is_write(r->argv[0], r->argl[0])) {
    size_t keys = kv_store_size(s);
    x->rep.len = 0;
    FUZZ_CHECK(ops->query(x->svc, x->req.data, x->req.len, &x->rep) == 0);
    check_one_reply(&x->rep);
    FUZZ_CHECK(kv_store_size(s) == keys);
  }
  x->rep.len = 0;
  FUZZ_CHECK(ops->apply(x->svc, ++x->pos, x->req.data, x->req.len, &x->rep) ==
             0);
  check_one_reply(&x->rep);
  FUZZ_CHECK(kv_store_check(s) == 0);
}

/* Snapshot of a into a fresh service: same digest, same image. */
static void check_snapshot(struct kv_service *a) {
  const struct smr_service_ops *ops = &kv_service_ops;
  struct kv_options o = {777};
  struct kv_service *b = kv_service_new(&o);
  struct smr_buf img = {0}, img2 = {0};
  uint8_t buf[97], da[SMR_DIGEST_LEN], db[SMR_DIGEST_LEN];
  void *snap;
  long n;
  FUZZ_CHECK(b != NULL);
  for (int k = 0; k < 2; k++) {
    struct kv_service *from = k ? b : a;
    struct smr_buf *to = k ? &img2 : &img;
    FUZZ_CHECK(ops->snapshot_open(from, &snap) == 0);
    while ((n = ops->snapshot_read(from, snap, to->len, buf, sizeof buf)) > 0)
      FUZZ_CHECK(smr_buf_append(to, buf, (size_t)n) == 0);
    FUZZ_CHECK(n == 0);
    ops->snapshot_close(from, snap);
    if (k) break;
    FUZZ_CHECK(ops->restore_begin(b) == 0);
    for (size_t at = 0; at < img.len; at += 61) {
      size_t c = img.len - at < 61 ? img.len - at : 61;
      FUZZ_CHECK(ops->restore_chunk(b, at, img.data + at, c) == 0);
    }
    FUZZ_CHECK(ops->restore_end(b) == 0);
  }
  FUZZ_CHECK(img.len == img2.len && memcmp(img.data, img2.data, img.len) == 0);
  ops->digest(a, da);
  ops->digest(b, db);
  FUZZ_CHECK(memcmp(da, db, sizeof da) == 0);
  smr_buf_free(&img);
  smr_buf_free(&img2);
  kv_service_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct trace whole, chunked;
  struct runner x;
  uint64_t seed;
  if (size < 1) return 0;
  seed = 0x9e3779b97f4a7c15ULL * (1 + (uint64_t)data[0]);
  data++;
  size--;

  parse(data, size, 0, &whole, NULL, NULL);
  memset(&x, 0, sizeof x);
  x.svc = kv_service_new(NULL);
  FUZZ_CHECK(x.svc != NULL);
  parse(data, size, seed, &chunked, run_one, &x);

  FUZZ_CHECK(whole.n == chunked.n && whole.err == chunked.err);
  FUZZ_CHECK(strcmp(whole.errmsg, chunked.errmsg) == 0);
  FUZZ_CHECK(whole.bytes.len == chunked.bytes.len);
  FUZZ_CHECK(whole.bytes.len == 0 ||
             memcmp(whole.bytes.data, chunked.bytes.data, whole.bytes.len) == 0);
  for (size_t i = 0; i < whole.n && i < MAX_REQS; i++)
    FUZZ_CHECK(whole.ends[i] == chunked.ends[i]);

  check_snapshot(x.svc);
  smr_buf_free(&whole.bytes);
  smr_buf_free(&chunked.bytes);
  smr_buf_free(&x.req);
  smr_buf_free(&x.rep);
  kv_service_free(x.svc);
  return 0;
}
