/* snapshot.c -- the store's canonical serialisation, its snapshot image and
 * the streaming restore.
 *
 * Records (all integers little endian):
 *
 *   record   u8 type (1 string, 2 list, 3 set, 4 hash, 5 zset)
 *            u8 flags (bit 0: has an expiry time; other bits zero)
 *            [i64 expire_at, ms since the epoch, if flags bit 0]
 *            str key
 *            value
 *   str      u32 length, that many bytes
 *   value    string  str
 *            list    u64 n >= 1, n x str                  (head to tail)
 *            set     u64 n >= 1, n x str                  (member order)
 *            hash    u64 n >= 1, n x (str field, str value) (field order)
 *            zset    u64 n >= 1, n x (f64 score, str member)
 *                    (ascending (score, member); score not NaN, not -0;
 *                    f64 is the IEEE-754 bits as a u64)
 *
 * Records come in ascending order of key bytes, and every order inside a
 * value is the one clients see, so the stream is canonical: two stores
 * with the same logical state (same keys, values, visible orders and
 * expiry times) serialise to the same bytes, whatever their history, hash
 * seeds or table layouts.  The digest (kv.c) hashes this stream.
 *
 * Image = 40-byte header + the records:
 *
 *   0   8  magic "SMRKVSNP"
 *   8   4  version (1)
 *   12  4  flags (0)
 *   16  8  number of records (keys)
 *   24  8  length of the records in bytes
 *   32  4  CRC32C of the records
 *   36  4  CRC32C of bytes 0..35
 *
 * The restore reads the records as they stream in, building a new store,
 * and checks everything a writer guarantees: known type and flags, lengths
 * within the bytes the header announced, keys strictly ascending (no
 * duplicates), no empty container, no duplicate member or field, sorted
 * set entries strictly ascending with valid scores, the announced record
 * count and length, and both checksums.  The body checksum can only be
 * checked at the end, so a corrupt image may be partly parsed first;
 * nothing of it is kept unless all checks pass.  Strings are allocated as
 * their bytes arrive (doubling), so a corrupt length cannot make it
 * allocate much more than the image holds. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "store_int.h"
#include "wire.h"

#define SNAP_MAGIC "SMRKVSNP"
#define SNAP_VERSION 1u
#define SNAP_HDR 40u
#define REC_HAS_EXPIRE 0x01u

/* ------------------------------------------------------------------------
 * Little-endian helpers */

static void le32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t rd32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}
static uint64_t dbl_bits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static double bits_dbl(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* ------------------------------------------------------------------------
 * Serialisation */

/* A buffered writer in front of the sink. */
struct writer {
  kv_sink_fn sink;
  void *arg;
  int err;
  size_t n;
  uint8_t buf[8192];
};

static void w_flush(struct writer *w) {
  if (w->n && !w->err) w->err = w->sink(w->arg, w->buf, w->n);
  w->n = 0;
}

static void w_put(struct writer *w, const void *p, size_t n) {
  if (w->err) return;
  if (w->n + n > sizeof w->buf) w_flush(w);
  if (n >= sizeof w->buf) {
    if (!w->err) w->err = w->sink(w->arg, p, n);
    return;
  }
  memcpy(w->buf + w->n, p, n);
  w->n += n;
}

static void w_u8(struct writer *w, uint8_t v) { w_put(w, &v, 1); }
static void w_u32(struct writer *w, uint32_t v) {
  uint8_t b[4];
  le32(b, v);
  w_put(w, b, 4);
}
static void w_u64(struct writer *w, uint64_t v) {
  uint8_t b[8];
  le64(b, v);
  w_put(w, b, 8);
}
static void w_str(struct writer *w, const struct kv_str *s) {
  w_u32(w, s->len);
  w_put(w, s->data, s->len);
}

static void w_record(struct writer *w, const struct kv_obj *o) {
  w_u8(w, o->type);
  w_u8(w, o->heap != KV_NO_HEAP ? REC_HAS_EXPIRE : 0);
  if (o->heap != KV_NO_HEAP) w_u64(w, (uint64_t)o->expire_at);
  w_str(w, o->key);
  switch (o->type) {
    case KV_STRING:
      w_str(w, o->u.str);
      break;
    case KV_LIST:
      w_u64(w, o->u.list->len);
      for (size_t i = 0; i < o->u.list->len; i++)
        w_str(w, kv_list_at(o->u.list, i));
      break;
    case KV_SET:
    case KV_HASH: {
      const struct kv_dict *d = o->u.set;
      w_u64(w, kv_dict_size(d));
      for (uint32_t i = 0; i < d->nent; i++) {
        if (!d->ent[i].key) continue;
        w_str(w, d->ent[i].key);
        if (o->type == KV_HASH) w_str(w, d->ent[i].val);
      }
      break;
    }
    case KV_ZSET:
      w_u64(w, o->u.zset->len);
      for (const struct kv_znode *x = kv_zset_first(o->u.zset); x;
           x = x->level[0].fwd) {
        w_u64(w, dbl_bits(x->score));
        w_str(w, x->member);
      }
      break;
    default:
      smr_assert(0 && "unreachable");
  }
}

static int key_order(const void *a, const void *b) {
  const struct kv_str *x = *(struct kv_str *const *)a;
  const struct kv_str *y = *(struct kv_str *const *)b;
  return kv_str_cmp(x->data, x->len, y->data, y->len);
}

int kv_store_serialize(const struct kv_store *s, kv_sink_fn sink, void *arg) {
  size_t n = kv_dict_size(&s->keys), k = 0;
  struct kv_str **keys = NULL;
  struct writer *w;
  int err;
  if (n) {
    keys = malloc(n * sizeof *keys);
    if (!keys) return -ENOMEM;
  }
  w = malloc(sizeof *w);
  if (!w) {
    free(keys);
    return -ENOMEM;
  }
  w->sink = sink;
  w->arg = arg;
  w->err = 0;
  w->n = 0;
  for (uint32_t i = 0; i < s->keys.nent; i++)
    if (s->keys.ent[i].key) keys[k++] = s->keys.ent[i].key;
  smr_assert(k == n);
  if (n) qsort(keys, n, sizeof *keys, key_order);
  for (size_t i = 0; i < n && !w->err; i++)
    w_record(w, kv_db_find(s, keys[i]->data, keys[i]->len));
  w_flush(w);
  err = w->err;
  free(w);
  free(keys);
  return err;
}

/* ------------------------------------------------------------------------
 * Image */

struct img_sink {
  struct smr_buf *out;
  uint32_t crc;
  uint64_t len;
};

static int img_put(void *arg, const void *p, size_t n) {
  struct img_sink *k = arg;
  k->crc = smr_crc32c(k->crc, p, n);
  k->len += n;
  return smr_buf_append(k->out, p, n);
}

int kv_snapshot_write(const struct kv_store *s, struct smr_buf *out) {
  uint8_t hdr[SNAP_HDR];
  size_t at = out->len;
  struct img_sink k = {out, 0, 0};
  int r;
  memset(hdr, 0, sizeof hdr);
  if (smr_buf_append(out, hdr, sizeof hdr)) return -ENOMEM;
  r = kv_store_serialize(s, img_put, &k);
  if (r) {
    out->len = at;
    return r;
  }
  memcpy(hdr, SNAP_MAGIC, 8);
  le32(hdr + 8, SNAP_VERSION);
  le32(hdr + 12, 0);
  le64(hdr + 16, kv_store_size(s));
  le64(hdr + 24, k.len);
  le32(hdr + 32, k.crc);
  le32(hdr + 36, smr_crc32c(0, hdr, 36));
  memcpy(out->data + at, hdr, sizeof hdr);
  return 0;
}

/* ------------------------------------------------------------------------
 * Restore: state */

enum {
  R_HDR,   /* header bytes */
  R_REC,   /* 2 bytes: type, flags */
  R_EXP,   /* 8: expiry time */
  R_KLEN,  /* 4: key length */
  R_COUNT, /* 8: container size */
  R_SCORE, /* 8: zset score */
  R_SLEN,  /* 4: a value string's length */
  R_STR,   /* string bytes */
  R_END,   /* all records read */
  R_FAIL
};

/* What a string being read is. */
enum { S_KEY, S_VALUE, S_ELEM };

struct kv_restore {
  struct kv_store *s;
  int st, err;
  char why[160];
  uint8_t hdr[SNAP_HDR];
  size_t hgot;
  uint64_t nkeys, body_len, body_got, keys_done;
  uint32_t body_crc, crc;
  /* A fixed-size field being read. */
  uint8_t fix[8];
  size_t fneed, fgot;
  /* A string being read. */
  int sfor;
  struct kv_str *str;
  size_t slen, sgot, scap;
  /* The record being read. */
  uint8_t type, flags;
  int64_t expire;
  struct kv_str *key;   /* read, not yet in the store */
  struct kv_obj *obj;   /* in the store (containers) */
  uint64_t n, i;
  int field_next;       /* hash: 0 reading a field, 1 its value */
  struct kv_str *field;
  double score;
  const struct kv_str *prev_key; /* the last key added (store-owned) */
};

static int fail(struct kv_restore *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct kv_restore *r, int err, const char *fmt, ...) {
  va_list ap;
  int n;
  n = snprintf(r->why, sizeof r->why, "kv snapshot refused: ");
  va_start(ap, fmt);
  vsnprintf(r->why + n, sizeof r->why - (size_t)n, fmt, ap);
  va_end(ap);
  r->st = R_FAIL;
  r->err = err;
  return err;
}

struct kv_restore *kv_restore_new(uint64_t seed) {
  struct kv_restore *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->s = kv_store_new(seed);
  if (!r->s) {
    free(r);
    return NULL;
  }
  r->st = R_HDR;
  return r;
}

void kv_restore_free(struct kv_restore *r) {
  if (!r) return;
  kv_store_free(r->s);
  free(r->str);
  free(r->key);
  free(r->field);
  free(r);
}

const char *kv_restore_error(const struct kv_restore *r) {
  return r->err ? r->why : NULL;
}

/* ------------------------------------------------------------------------
 * Restore: fields */

static void need(struct kv_restore *r, int st, size_t n) {
  r->st = st;
  r->fneed = n;
  r->fgot = 0;
}

/* Starts reading a string of len bytes (as field kind sfor). */
static int need_str(struct kv_restore *r, int sfor, uint32_t len) {
  if (len >= UINT32_MAX || len > r->body_len - r->body_got)
    return fail(r, -EBADMSG, "string length %u runs past the image", len);
  r->sfor = sfor;
  r->slen = len;
  r->sgot = 0;
  r->scap = len < 65536 ? len : 65536;
  r->str = malloc(sizeof *r->str + r->scap + 1);
  if (!r->str) return fail(r, -ENOMEM, "out of memory");
  r->st = R_STR;
  return 0;
}

/* The current record is complete. */
static int record_done(struct kv_restore *r, struct kv_obj *o) {
  if ((r->flags & REC_HAS_EXPIRE) && kv_db_set_expire(r->s, o, r->expire))
    return fail(r, -ENOMEM, "out of memory");
  r->prev_key = o->key;
  r->obj = NULL;
  r->keys_done++;
  if (r->keys_done == r->nkeys)
    r->st = R_END;
  else
    need(r, R_REC, 2);
  return 0;
}

/* Puts the record's key in the store with o (taking both). */
static int add_key(struct kv_restore *r, struct kv_obj *o) {
  if (kv_dict_add(&r->s->keys, r->key, o, NULL)) {
    kv_obj_free(o);
    return fail(r, -ENOMEM, "out of memory");
  }
  o->key = r->key;
  r->key = NULL;
  return 0;
}

/* After an element: the next one or the end of the record. */
static int elem_next(struct kv_restore *r) {
  r->i++;
  if (r->i == r->n) return record_done(r, r->obj);
  if (r->type == KV_ZSET)
    need(r, R_SCORE, 8);
  else
    need(r, R_SLEN, 4);
  return 0;
}

/* A string has been read completely. */
static int str_done(struct kv_restore *r) {
  struct kv_str *str = r->str;
  struct kv_obj *o = r->obj;
  r->str = NULL;
  str->len = (uint32_t)r->slen;
  str->data[r->slen] = 0;
  if (r->sfor == S_KEY) {
    if (r->prev_key && kv_str_cmp(str->data, str->len, r->prev_key->data,
                                  r->prev_key->len) <= 0) {
      free(str);
      return fail(r, -EBADMSG, "record %llu: keys out of order or repeated",
                  (unsigned long long)r->keys_done);
    }
    r->key = str;
    if (r->type == KV_STRING)
      need(r, R_SLEN, 4);
    else
      need(r, R_COUNT, 8);
    return 0;
  }
  if (r->sfor == S_VALUE) {
    o = kv_obj_new_str(str);
    if (!o) {
      free(str);
      return fail(r, -ENOMEM, "out of memory");
    }
    if (add_key(r, o)) return r->err;
    return record_done(r, o);
  }
  switch (r->type) {
    case KV_LIST:
      if (kv_list_push(o->u.list, str, 0)) {
        free(str);
        return fail(r, -ENOMEM, "out of memory");
      }
      break;
    case KV_SET:
      if (kv_dict_find(o->u.set, str->data, str->len) != KV_DICT_NONE) {
        free(str);
        return fail(r, -EBADMSG, "record %llu: repeated set member",
                    (unsigned long long)r->keys_done);
      }
      if (kv_dict_add(o->u.set, str, NULL, NULL)) {
        free(str);
        return fail(r, -ENOMEM, "out of memory");
      }
      break;
    case KV_HASH:
      if (!r->field_next) {
        if (kv_dict_find(o->u.hash, str->data, str->len) != KV_DICT_NONE) {
          free(str);
          return fail(r, -EBADMSG, "record %llu: repeated hash field",
                      (unsigned long long)r->keys_done);
        }
        r->field = str;
        r->field_next = 1;
        need(r, R_SLEN, 4);
        return 0;
      }
      r->field_next = 0;
      if (kv_dict_add(o->u.hash, r->field, str, NULL)) {
        free(str);
        return fail(r, -ENOMEM, "out of memory");
      }
      r->field = NULL;
      break;
    case KV_ZSET: {
      struct kv_zset *z = o->u.zset;
      const struct kv_znode *t = z->tail;
      int ok = !t || t->score < r->score ||
               (t->score == r->score &&
                kv_str_cmp(t->member->data, t->member->len, str->data,
                           str->len) < 0);
      if (!ok) {
        free(str);
        return fail(r, -EBADMSG, "record %llu: sorted set out of order",
                    (unsigned long long)r->keys_done);
      }
      if (kv_zset_find(z, str->data, str->len)) {
        free(str);
        return fail(r, -EBADMSG, "record %llu: repeated sorted set member",
                    (unsigned long long)r->keys_done);
      }
      if (kv_zset_add(z, str->data, str->len, r->score)) {
        free(str);
        return fail(r, -ENOMEM, "out of memory");
      }
      free(str);
      break;
    }
    default:
      free(str);
      smr_assert(0 && "unreachable");
      return fail(r, -EBADMSG, "internal state");
  }
  return elem_next(r);
}

/* A fixed-size field has been read completely. */
static int fix_done(struct kv_restore *r) {
  const uint8_t *f = r->fix;
  switch (r->st) {
    case R_REC:
      r->type = f[0];
      r->flags = f[1];
      if (r->type < KV_STRING || r->type > KV_ZSET)
        return fail(r, -EBADMSG, "record %llu: unknown type %u",
                    (unsigned long long)r->keys_done, r->type);
      if (r->flags & ~REC_HAS_EXPIRE)
        return fail(r, -EBADMSG, "record %llu: unknown flags 0x%x",
                    (unsigned long long)r->keys_done, r->flags);
      if (r->flags & REC_HAS_EXPIRE)
        need(r, R_EXP, 8);
      else
        need(r, R_KLEN, 4);
      return 0;
    case R_EXP:
      r->expire = (int64_t)rd64(f);
      need(r, R_KLEN, 4);
      return 0;
    case R_KLEN:
      return need_str(r, S_KEY, rd32(f));
    case R_SLEN:
      return need_str(r, r->type == KV_STRING ? S_VALUE : S_ELEM, rd32(f));
    case R_COUNT: {
      struct kv_obj *o;
      r->n = rd64(f);
      r->i = 0;
      r->field_next = 0;
      /* Each element takes at least 4 bytes (8 for hash pairs). */
      if (r->n == 0 || r->n > (r->body_len - r->body_got) / 4 ||
          r->n >= UINT32_MAX / 4)
        return fail(r, -EBADMSG, "record %llu: bad element count %llu",
                    (unsigned long long)r->keys_done,
                    (unsigned long long)r->n);
      o = kv_obj_new(r->s, (enum kv_type)r->type);
      if (!o) return fail(r, -ENOMEM, "out of memory");
      if (add_key(r, o)) return r->err;
      r->obj = o;
      if (r->type == KV_ZSET)
        need(r, R_SCORE, 8);
      else
        need(r, R_SLEN, 4);
      return 0;
    }
    case R_SCORE:
      r->score = bits_dbl(rd64(f));
      if (isnan(r->score) || (r->score == 0 && signbit(r->score)))
        return fail(r, -EBADMSG, "record %llu: invalid score",
                    (unsigned long long)r->keys_done);
      need(r, R_SLEN, 4);
      return 0;
    default:
      smr_assert(0 && "unreachable");
      return fail(r, -EBADMSG, "internal state");
  }
}

static int header_done(struct kv_restore *r) {
  const uint8_t *h = r->hdr;
  if (memcmp(h, SNAP_MAGIC, 8) != 0)
    return fail(r, -EBADMSG, "not a kv snapshot (bad magic)");
  if (rd32(h + 36) != smr_crc32c(0, h, 36))
    return fail(r, -EBADMSG, "header checksum mismatch");
  if (rd32(h + 8) != SNAP_VERSION)
    return fail(r, -EBADMSG, "unsupported version %u", rd32(h + 8));
  if (rd32(h + 12) != 0)
    return fail(r, -EBADMSG, "unknown header flags 0x%x", rd32(h + 12));
  r->nkeys = rd64(h + 16);
  r->body_len = rd64(h + 24);
  r->body_crc = rd32(h + 32);
  /* A record takes at least 2 + 4 + 4 bytes. */
  if (r->nkeys > r->body_len / 10 || (r->nkeys == 0) != (r->body_len == 0))
    return fail(r, -EBADMSG, "%llu records cannot fill %llu bytes",
                (unsigned long long)r->nkeys,
                (unsigned long long)r->body_len);
  if (r->nkeys == 0)
    r->st = R_END;
  else
    need(r, R_REC, 2);
  return 0;
}

/* ------------------------------------------------------------------------
 * Restore: the stream */

int kv_restore_feed(struct kv_restore *r, const uint8_t *p, size_t n) {
  while (n && !r->err) {
    size_t k;
    if (r->st == R_HDR) {
      k = SNAP_HDR - r->hgot < n ? SNAP_HDR - r->hgot : n;
      memcpy(r->hdr + r->hgot, p, k);
      r->hgot += k;
      p += k;
      n -= k;
      if (r->hgot == SNAP_HDR) header_done(r);
      continue;
    }
    if (r->st == R_END)
      return fail(r, -EBADMSG, "bytes after the last record");
    if (r->st == R_STR) {
      k = r->slen - r->sgot < n ? r->slen - r->sgot : n;
    } else {
      k = r->fneed - r->fgot < n ? r->fneed - r->fgot : n;
    }
    if (k > r->body_len - r->body_got)
      return fail(r, -EBADMSG, "records longer than the header says");
    r->crc = smr_crc32c(r->crc, p, k);
    r->body_got += k;
    if (r->st == R_STR) {
      if (r->sgot + k > r->scap) {
        size_t cap = r->scap * 2 > r->sgot + k ? r->scap * 2 : r->sgot + k;
        struct kv_str *s;
        if (cap > r->slen) cap = r->slen;
        s = realloc(r->str, sizeof *s + cap + 1);
        if (!s) return fail(r, -ENOMEM, "out of memory");
        r->str = s;
        r->scap = cap;
      }
      memcpy(r->str->data + r->sgot, p, k);
      r->sgot += k;
    } else {
      memcpy(r->fix + r->fgot, p, k);
      r->fgot += k;
    }
    p += k;
    n -= k;
    /* Complete fields; zero-length strings complete without bytes. */
    for (;;) {
      if (r->st == R_STR && r->sgot == r->slen) {
        str_done(r);
      } else if (r->st != R_STR && r->st != R_END && r->st != R_FAIL &&
                 r->st != R_HDR && r->fgot == r->fneed) {
        fix_done(r);
      } else {
        break;
      }
      if (r->err) break;
    }
  }
  return r->err;
}

int kv_restore_finish(struct kv_restore *r, struct kv_store **out) {
  if (r->err) return r->err;
  if (r->st == R_HDR)
    return fail(r, -EBADMSG, "truncated image (%zu of %u header bytes)",
                r->hgot, SNAP_HDR);
  if (r->st != R_END)
    return fail(r, -EBADMSG,
                "truncated image (%llu of %llu record bytes, %llu of %llu "
                "records)",
                (unsigned long long)r->body_got,
                (unsigned long long)r->body_len,
                (unsigned long long)r->keys_done,
                (unsigned long long)r->nkeys);
  if (r->body_got != r->body_len)
    return fail(r, -EBADMSG, "records shorter than the header says");
  if (r->crc != r->body_crc)
    return fail(r, -EBADMSG, "record checksum mismatch");
  *out = r->s;
  r->s = NULL;
  return 0;
}
