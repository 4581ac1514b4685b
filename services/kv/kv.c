/* kv.c -- the KV service: request format, apply/query, snapshots, restore
 * and digest (contract in kv.h).
 *
 * The service owns one store.  apply() decodes a request in place (the
 * argument vector points into the request bytes; the service keeps the
 * vector's arrays between calls), runs the active expiry step and the
 * command, and leaves the reply in the caller's buffer.  query() is the
 * same without the expiry step, in the store's read-only mode.
 *
 * A snapshot is an image written at open time into a buffer that later
 * applies cannot touch; reads copy slices of it.  A restore streams into a
 * new store (snapshot.c) that replaces the service's store only once the
 * whole image checks out. */
#include "kv.h"

#include <errno.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "resp.h"
#include "store.h"

#define DIGEST_DOMAIN "smr-kv digest 1\n"

struct kv_service {
  struct kv_store *store;
  uint64_t seed;
  /* The argument vector of the request being run. */
  const uint8_t **argv;
  size_t *argl;
  size_t cap;
  /* Restore in progress (NULL otherwise). */
  struct kv_restore *restore;
  uint64_t restore_off;
  int restoring;
  int restore_err; /* why the restore in progress was refused, or 0 */
  char restore_why[192];
};

struct kv_snap {
  struct smr_buf img;
};

/* ------------------------------------------------------------------------
 * Request format */

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

static int put_header(struct smr_buf *out, int kind, int64_t now_ms,
                      uint32_t n) {
  uint8_t h[KV_REQ_HDR];
  memcpy(h, KV_REQ_MAGIC, 4);
  h[4] = KV_REQ_VERSION;
  h[5] = (uint8_t)kind;
  h[6] = h[7] = 0;
  put64(h + 8, (uint64_t)now_ms);
  put32(h + 16, n);
  return smr_buf_append(out, h, sizeof h);
}

size_t kv_request_size(size_t argc, const size_t *argl) {
  size_t n = KV_REQ_HDR;
  for (size_t i = 0; i < argc; i++) n += 4 + argl[i] + 1;
  return n;
}

int kv_request_encode(struct smr_buf *out, int64_t now_ms, size_t argc,
                      const uint8_t *const *argv, const size_t *argl) {
  size_t at = out->len;
  uint8_t len[4];
  if (argc == 0 || argc > UINT32_MAX || now_ms < 0) return -EINVAL;
  for (size_t i = 0; i < argc; i++)
    if (argl[i] >= UINT32_MAX) return -EINVAL;
  if (put_header(out, KV_REQ_COMMAND, now_ms, (uint32_t)argc)) goto oom;
  for (size_t i = 0; i < argc; i++) {
    put32(len, (uint32_t)argl[i]);
    if (smr_buf_append(out, len, 4) || smr_buf_append(out, argv[i], argl[i]) ||
        smr_buf_append(out, "", 1))
      goto oom;
  }
  return 0;
oom:
  out->len = at;
  return -ENOMEM;
}

int kv_request_encode_tick(struct smr_buf *out, int64_t now_ms,
                           uint32_t budget) {
  if (now_ms < 0) return -EINVAL;
  return put_header(out, KV_REQ_TICK, now_ms, budget) ? -ENOMEM : 0;
}

/* Checks req and counts its arguments; 0 or -EBADMSG. */
static int request_check(const uint8_t *req, size_t len,
                         struct kv_request *out) {
  size_t at = KV_REQ_HDR;
  uint32_t n;
  if (len < KV_REQ_HDR || memcmp(req, KV_REQ_MAGIC, 4) != 0 ||
      req[4] != KV_REQ_VERSION || req[6] || req[7])
    return -EBADMSG;
  memset(out, 0, sizeof *out);
  out->kind = req[5];
  out->now_ms = (int64_t)get64(req + 8);
  n = get32(req + 16);
  if (out->now_ms < 0) return -EBADMSG;
  if (out->kind == KV_REQ_TICK) {
    out->budget = n;
    return len == KV_REQ_HDR ? 0 : -EBADMSG;
  }
  if (out->kind != KV_REQ_COMMAND || n == 0) return -EBADMSG;
  for (uint32_t i = 0; i < n; i++) {
    size_t l;
    if (len - at < 4) return -EBADMSG;
    l = get32(req + at);
    at += 4;
    if (len - at < l + 1 || req[at + l] != 0) return -EBADMSG;
    at += l + 1;
  }
  if (at != len) return -EBADMSG;
  out->argc = n;
  return 0;
}

/* Fills argv/argl (room for out->argc) from a checked request. */
static void request_fill(const uint8_t *req, struct kv_request *out) {
  size_t at = KV_REQ_HDR;
  for (size_t i = 0; i < out->argc; i++) {
    size_t l = get32(req + at);
    out->argl[i] = l;
    out->argv[i] = req + at + 4;
    at += 4 + l + 1;
  }
}

int kv_request_decode(const uint8_t *req, size_t len, struct kv_request *out) {
  int r = request_check(req, len, out);
  if (r) return r;
  if (out->argc == 0) return 0;
  out->argv = malloc(out->argc * sizeof *out->argv);
  out->argl = malloc(out->argc * sizeof *out->argl);
  if (!out->argv || !out->argl) {
    kv_request_release(out);
    return -ENOMEM;
  }
  request_fill(req, out);
  return 0;
}

void kv_request_release(struct kv_request *r) {
  free((void *)r->argv);
  free(r->argl);
  r->argv = NULL;
  r->argl = NULL;
}

/* ------------------------------------------------------------------------
 * Service lifetime */

struct kv_service *kv_service_new(const struct kv_options *opt) {
  struct kv_service *svc = calloc(1, sizeof *svc);
  if (!svc) return NULL;
  svc->seed = opt ? opt->hash_seed : 0x736d722d6b76ULL; /* "smr-kv" */
  svc->store = kv_store_new(svc->seed);
  if (!svc->store) {
    free(svc);
    return NULL;
  }
  return svc;
}

void kv_service_free(struct kv_service *svc) {
  if (!svc) return;
  kv_store_free(svc->store);
  kv_restore_free(svc->restore);
  free((void *)svc->argv);
  free(svc->argl);
  free(svc);
}

struct kv_store *kv_service_store(struct kv_service *svc) { return svc->store; }

const char *kv_service_restore_error(const struct kv_service *svc) {
  return svc->restore_why[0] ? svc->restore_why : NULL;
}

/* ------------------------------------------------------------------------
 * apply and query */

/* Decodes req into the service's argument vector. */
static int decode(struct kv_service *svc, const uint8_t *req, size_t len,
                  struct kv_request *out) {
  int r = request_check(req, len, out);
  if (r) return r;
  if (out->argc > svc->cap) {
    size_t cap = svc->cap ? svc->cap : 16;
    while (cap < out->argc) cap *= 2;
    const uint8_t **argv = realloc((void *)svc->argv, cap * sizeof *argv);
    if (!argv) return -ENOMEM;
    svc->argv = argv;
    size_t *argl = realloc(svc->argl, cap * sizeof *argl);
    if (!argl) return -ENOMEM;
    svc->argl = argl;
    svc->cap = cap;
  }
  out->argv = svc->argv;
  out->argl = svc->argl;
  request_fill(req, out);
  return 0;
}

/* The seed of a request's randomness: a mix of its position. */
static uint64_t pos_seed(uint64_t pos) {
  uint64_t z = pos + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static int run(struct kv_service *svc, uint64_t pos, const uint8_t *req,
               size_t len, struct smr_buf *reply, int readonly) {
  struct kv_request rq;
  struct kv_exec x;
  int r;
  smr_assert(!svc->restoring);
  r = decode(svc, req, len, &rq);
  if (r == -ENOMEM) return r;
  if (r || (readonly && rq.kind != KV_REQ_COMMAND))
    return resp_add_error(reply, "ERR malformed request");
  if (rq.kind == KV_REQ_TICK) {
    kv_store_expire_tick(svc->store, rq.now_ms, rq.budget);
    return 0;
  }
  if (!readonly) kv_store_expire_tick(svc->store, rq.now_ms, KV_EXPIRE_PER_APPLY);
  x.argc = rq.argc;
  x.argv = rq.argv;
  x.argl = rq.argl;
  x.now_ms = rq.now_ms;
  x.seed = pos_seed(pos);
  x.readonly = readonly;
  return kv_store_exec(svc->store, &x, reply);
}

static int svc_apply(void *p, uint64_t pos, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  return run(p, pos, req, len, reply, 0);
}

static int svc_query(void *p, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  return run(p, 0, req, len, reply, 1);
}

/* ------------------------------------------------------------------------
 * Snapshots */

static int svc_snapshot_open(void *p, void **snapp) {
  struct kv_service *svc = p;
  struct kv_snap *snap = calloc(1, sizeof *snap);
  int r;
  if (!snap) return -ENOMEM;
  r = kv_snapshot_write(svc->store, &snap->img);
  if (r) {
    smr_buf_free(&snap->img);
    free(snap);
    return r;
  }
  *snapp = snap;
  return 0;
}

static long svc_snapshot_read(void *p, void *s, uint64_t off, uint8_t *buf,
                              size_t len) {
  struct kv_snap *snap = s;
  size_t n;
  (void)p;
  if (off >= snap->img.len) return 0;
  n = snap->img.len - (size_t)off;
  if (n > len) n = len;
  if (n > (size_t)LONG_MAX) n = (size_t)LONG_MAX;
  memcpy(buf, snap->img.data + off, n);
  return (long)n;
}

static void svc_snapshot_close(void *p, void *s) {
  struct kv_snap *snap = s;
  (void)p;
  if (!snap) return;
  smr_buf_free(&snap->img);
  free(snap);
}

/* ------------------------------------------------------------------------
 * Restore */

/* Ends the restore in progress with error err (the reason comes from the
 * decoder unless given); the service stays empty. */
static int restore_refused(struct kv_service *svc, int err, const char *why) {
  if (!why && svc->restore) why = kv_restore_error(svc->restore);
  if (!svc->restore_why[0])
    snprintf(svc->restore_why, sizeof svc->restore_why, "%s",
             why ? why : "kv snapshot refused");
  kv_restore_free(svc->restore);
  svc->restore = NULL;
  svc->restore_err = err;
  kv_store_clear(svc->store);
  return err;
}

static int svc_restore_begin(void *p) {
  struct kv_service *svc = p;
  /* Empty at once: whatever happens next, the old state is gone. */
  kv_store_clear(svc->store);
  kv_restore_free(svc->restore);
  svc->restore = kv_restore_new(svc->seed);
  svc->restore_off = 0;
  svc->restore_why[0] = 0;
  svc->restore_err = 0;
  svc->restoring = 1;
  if (!svc->restore)
    return restore_refused(svc, -ENOMEM, "kv snapshot refused: out of memory");
  return 0;
}

static int svc_restore_chunk(void *p, uint64_t off, const uint8_t *buf,
                             size_t len) {
  struct kv_service *svc = p;
  int r;
  if (!svc->restoring) return -EINVAL;
  if (svc->restore_err) return svc->restore_err; /* refused already */
  if (off != svc->restore_off) {
    char why[128];
    snprintf(why, sizeof why,
             "kv snapshot refused: chunk at offset %llu, expected %llu",
             (unsigned long long)off, (unsigned long long)svc->restore_off);
    restore_refused(svc, -EBADMSG, why);
    return -EINVAL;
  }
  r = kv_restore_feed(svc->restore, buf, len);
  if (r) return restore_refused(svc, r, NULL);
  svc->restore_off += len;
  return 0;
}

static int svc_restore_end(void *p) {
  struct kv_service *svc = p;
  struct kv_store *s = NULL;
  int r;
  if (!svc->restoring) return -EINVAL;
  svc->restoring = 0;
  if (svc->restore_err) return svc->restore_err;
  r = kv_restore_finish(svc->restore, &s);
  if (r) return restore_refused(svc, r, NULL);
  kv_restore_free(svc->restore);
  svc->restore = NULL;
  kv_store_free(svc->store);
  svc->store = s;
  return 0;
}

/* ------------------------------------------------------------------------
 * Digest */

static int digest_put(void *arg, const void *p, size_t n) {
  return EVP_DigestUpdate(arg, p, n) == 1 ? 0 : -EIO;
}

static void svc_digest(void *p, uint8_t out[SMR_DIGEST_LEN]) {
  struct kv_service *svc = p;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned int n = 0;
  int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
           EVP_DigestUpdate(md, DIGEST_DOMAIN, sizeof DIGEST_DOMAIN - 1) == 1 &&
           kv_store_serialize(svc->store, digest_put, md) == 0 &&
           EVP_DigestFinal_ex(md, out, &n) == 1 && n == SMR_DIGEST_LEN;
  EVP_MD_CTX_free(md);
  /* Out of memory: a digest no healthy replica has, so the divergence
   * check flags this one rather than passing it. */
  if (!ok) memset(out, 0xff, SMR_DIGEST_LEN);
}

/* ------------------------------------------------------------------------
 * The vtable */

const struct smr_service_ops kv_service_ops = {
    .name = "kv",
    .apply = svc_apply,
    .query = svc_query,
    .snapshot_open = svc_snapshot_open,
    .snapshot_read = svc_snapshot_read,
    .snapshot_close = svc_snapshot_close,
    .restore_begin = svc_restore_begin,
    .restore_chunk = svc_restore_chunk,
    .restore_end = svc_restore_end,
    .digest = svc_digest,
};
