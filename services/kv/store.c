/* store.c -- the keyspace, expiry, command dispatch, and the keyspace and
 * server commands of the KV store (see store.h for the determinism
 * contract).
 *
 * Keyspace: a kv_dict from key to struct kv_obj.  Its order is never
 * shown to a client, so keys are deleted with the O(1) swap.  An object
 * remembers the dict's copy of its key, for the expiry heap's tie-break.
 *
 * Expiry: keys with a time are in a binary min-heap ordered by
 * (expire_at, key bytes).  That is a total order on the keys, so the key
 * kv_store_expire_tick() removes next is determined by the set of keys and
 * times alone, whatever the heap's layout after different histories or a
 * restore.
 *
 * Dispatch: the command table is sorted by name for a binary search on
 * the lower-cased name.  Then Redis's checks, in Redis's order: unknown
 * command, unknown subcommand of a container (CONFIG, COMMAND), arity,
 * read-only mode; then the command itself.  Error texts are Redis 7.0's,
 * byte for byte (tests/unit/test_kv_redis.c compares with a real server). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * Objects */

struct kv_obj *kv_obj_new(struct kv_store *s, enum kv_type type) {
  struct kv_obj *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->type = (uint8_t)type;
  o->heap = KV_NO_HEAP;
  switch (type) {
    case KV_LIST:
      o->u.list = calloc(1, sizeof *o->u.list);
      if (!o->u.list) goto fail;
      break;
    case KV_SET:
    case KV_HASH:
      o->u.set = malloc(sizeof *o->u.set);
      if (!o->u.set) goto fail;
      kv_dict_init(o->u.set, s->seed);
      break;
    case KV_ZSET:
      o->u.zset = malloc(sizeof *o->u.zset);
      if (!o->u.zset) goto fail;
      if (kv_zset_init(o->u.zset, s->seed)) {
        free(o->u.zset);
        goto fail;
      }
      break;
    default:
      smr_assert(0 && "unreachable");
      goto fail;
  }
  return o;
fail:
  free(o);
  return NULL;
}

struct kv_obj *kv_obj_new_str(struct kv_str *str) {
  struct kv_obj *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->type = KV_STRING;
  o->heap = KV_NO_HEAP;
  o->u.str = str;
  return o;
}

/* Frees the value, leaving the object. */
static void obj_free_value(struct kv_obj *o) {
  switch (o->type) {
    case KV_STRING:
      free(o->u.str);
      break;
    case KV_LIST:
      kv_list_free(o->u.list);
      free(o->u.list);
      break;
    case KV_SET:
      for (uint32_t i = 0; i < o->u.set->nent; i++)
        free(o->u.set->ent[i].key);
      kv_dict_free(o->u.set);
      free(o->u.set);
      break;
    case KV_HASH:
      for (uint32_t i = 0; i < o->u.hash->nent; i++) {
        free(o->u.hash->ent[i].key);
        free(o->u.hash->ent[i].val);
      }
      kv_dict_free(o->u.hash);
      free(o->u.hash);
      break;
    case KV_ZSET:
      kv_zset_free(o->u.zset);
      free(o->u.zset);
      break;
    default:
      smr_assert(0 && "unreachable");
  }
  o->u.str = NULL;
}

void kv_obj_free(struct kv_obj *o) {
  if (!o) return;
  obj_free_value(o);
  free(o);
}

size_t kv_obj_len(const struct kv_obj *o) {
  switch (o->type) {
    case KV_STRING: return o->u.str->len;
    case KV_LIST: return o->u.list->len;
    case KV_SET:
    case KV_HASH: return kv_dict_size(o->u.set);
    case KV_ZSET: return o->u.zset->len;
    default: smr_assert(0 && "unreachable"); return 0;
  }
}

/* ------------------------------------------------------------------------
 * Store */

struct kv_store *kv_store_new(uint64_t seed) {
  struct kv_store *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->seed = seed;
  kv_dict_init(&s->keys, seed);
  return s;
}

void kv_store_clear(struct kv_store *s) {
  for (uint32_t i = 0; i < s->keys.nent; i++) {
    if (!s->keys.ent[i].key) continue;
    kv_obj_free(s->keys.ent[i].val);
    free(s->keys.ent[i].key);
  }
  kv_dict_free(&s->keys);
  free(s->heap);
  s->heap = NULL;
  s->nheap = s->heap_cap = 0;
}

void kv_store_free(struct kv_store *s) {
  if (!s) return;
  kv_store_clear(s);
  free(s);
}

size_t kv_store_size(const struct kv_store *s) { return kv_dict_size(&s->keys); }
size_t kv_store_expires(const struct kv_store *s) { return s->nheap; }

/* ------------------------------------------------------------------------
 * Expiry heap */

static int heap_less(const struct kv_obj *a, const struct kv_obj *b) {
  if (a->expire_at != b->expire_at) return a->expire_at < b->expire_at;
  return kv_str_cmp(a->key->data, a->key->len, b->key->data, b->key->len) < 0;
}

static void heap_put(struct kv_store *s, size_t i, struct kv_obj *o) {
  s->heap[i] = o;
  o->heap = i;
}

static void heap_up(struct kv_store *s, size_t i) {
  struct kv_obj *o = s->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less(o, s->heap[p])) break;
    heap_put(s, i, s->heap[p]);
    i = p;
  }
  heap_put(s, i, o);
}

static void heap_down(struct kv_store *s, size_t i) {
  struct kv_obj *o = s->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, m;
    if (l >= s->nheap) break;
    m = l + 1 < s->nheap && heap_less(s->heap[l + 1], s->heap[l]) ? l + 1 : l;
    if (!heap_less(s->heap[m], o)) break;
    heap_put(s, i, s->heap[m]);
    i = m;
  }
  heap_put(s, i, o);
}

static void heap_remove(struct kv_store *s, struct kv_obj *o) {
  size_t i = o->heap;
  struct kv_obj *last;
  smr_assert(i < s->nheap && s->heap[i] == o);
  last = s->heap[--s->nheap];
  o->heap = KV_NO_HEAP;
  if (last != o) {
    heap_put(s, i, last);
    heap_down(s, i);
    heap_up(s, last->heap);
  }
}

int kv_db_set_expire(struct kv_store *s, struct kv_obj *o, int64_t when) {
  if (o->heap != KV_NO_HEAP) {
    o->expire_at = when;
    heap_down(s, o->heap);
    heap_up(s, o->heap);
    return 0;
  }
  if (s->nheap == s->heap_cap) {
    size_t cap = s->heap_cap ? s->heap_cap * 2 : 16;
    struct kv_obj **h = realloc(s->heap, cap * sizeof *h);
    if (!h) return -ENOMEM;
    s->heap = h;
    s->heap_cap = cap;
  }
  o->expire_at = when;
  s->heap[s->nheap] = o;
  o->heap = s->nheap++;
  heap_up(s, o->heap);
  return 0;
}

int kv_db_persist(struct kv_store *s, struct kv_obj *o) {
  if (o->heap == KV_NO_HEAP) return 0;
  heap_remove(s, o);
  return 1;
}

/* ------------------------------------------------------------------------
 * Keyspace */

struct kv_obj *kv_db_find(const struct kv_store *s, const void *k, size_t n) {
  uint32_t e = kv_dict_find(&s->keys, k, n);
  return e == KV_DICT_NONE ? NULL : s->keys.ent[e].val;
}

int kv_db_add(struct kv_store *s, const void *k, size_t n, struct kv_obj *o) {
  struct kv_str *key = kv_str_new(k, n);
  if (!key) return -ENOMEM;
  if (kv_dict_add(&s->keys, key, o, NULL)) {
    free(key);
    return -ENOMEM;
  }
  o->key = key;
  return 0;
}

int kv_db_delete(struct kv_store *s, const void *k, size_t n) {
  uint32_t e = kv_dict_find(&s->keys, k, n);
  struct kv_obj *o;
  struct kv_str *key;
  if (e == KV_DICT_NONE) return 0;
  o = s->keys.ent[e].val;
  key = s->keys.ent[e].key;
  if (o->heap != KV_NO_HEAP) heap_remove(s, o);
  kv_dict_del_swap(&s->keys, e);
  kv_obj_free(o);
  free(key);
  return 1;
}

size_t kv_store_expire_tick(struct kv_store *s, int64_t now_ms,
                            size_t budget) {
  size_t n = 0;
  while (n < budget && s->nheap && s->heap[0]->expire_at < now_ms) {
    struct kv_str *key = s->heap[0]->key;
    if (!ALWAYS(kv_db_delete(s, key->data, key->len))) break;
    n++;
  }
  return n;
}

/* ------------------------------------------------------------------------
 * Lookups for commands */

struct kv_obj *kv_lookup(struct kv_ctx *c, size_t argi) {
  struct kv_obj *o = kv_db_find(c->s, c->argv[argi], c->argl[argi]);
  if (!o) return NULL;
  if (o->heap != KV_NO_HEAP && c->now > o->expire_at) {
    if (!c->readonly) kv_db_delete(c->s, c->argv[argi], c->argl[argi]);
    return NULL;
  }
  return o;
}

struct kv_obj *kv_lookup_type(struct kv_ctx *c, size_t argi,
                              enum kv_type type, int *wrong) {
  struct kv_obj *o = kv_lookup(c, argi);
  *wrong = 0;
  if (o && o->type != type) {
    kv_reply_wrongtype(c);
    *wrong = 1;
    return NULL;
  }
  return o;
}

void kv_delete_arg(struct kv_ctx *c, size_t argi) {
  smr_assert(!c->readonly);
  kv_db_delete(c->s, c->argv[argi], c->argl[argi]);
}

int kv_add_arg(struct kv_ctx *c, size_t argi, struct kv_obj *o) {
  smr_assert(!c->readonly);
  if (kv_db_add(c->s, c->argv[argi], c->argl[argi], o)) {
    kv_obj_free(o);
    kv_reply_oom(c);
    return -ENOMEM;
  }
  return 0;
}

int kv_set_string(struct kv_ctx *c, size_t argi, const void *v, size_t n,
                  int keepttl) {
  struct kv_obj *o;
  struct kv_str *str = kv_str_new(v, n);
  if (!str) {
    kv_reply_oom(c);
    return -ENOMEM;
  }
  o = kv_db_find(c->s, c->argv[argi], c->argl[argi]);
  if (o) {
    /* Overwrite in place: the object (and its heap slot) stays. */
    obj_free_value(o);
    o->type = KV_STRING;
    o->u.str = str;
    if (!keepttl) kv_db_persist(c->s, o);
    return 0;
  }
  o = kv_obj_new_str(str);
  if (!o) {
    free(str);
    kv_reply_oom(c);
    return -ENOMEM;
  }
  return kv_add_arg(c, argi, o);
}

/* ------------------------------------------------------------------------
 * Arguments */

int kv_arg_is(const struct kv_ctx *c, size_t i, const char *word) {
  return strcasecmp((const char *)c->argv[i], word) == 0;
}

int kv_arg_ll(struct kv_ctx *c, size_t i, int64_t *v) {
  if (resp_str2ll(c->argv[i], c->argl[i], v)) return 0;
  kv_reply_error(c, KV_ERR_NOTINT);
  return -1;
}

int kv_arg_positive(struct kv_ctx *c, size_t i, int64_t *v) {
  if (resp_str2ll(c->argv[i], c->argl[i], v) && *v >= 0) return 0;
  kv_reply_error(c, KV_ERR_POSITIVE);
  return -1;
}

int kv_parse_double(const uint8_t *s, size_t n, double *v) {
  char *end;
  double d;
  if (n == 0 || s[n] != 0) return -1;
  if (s[0] == ' ' || s[0] == '\t' || s[0] == '\n' || s[0] == '\v' ||
      s[0] == '\f' || s[0] == '\r')
    return -1;
  errno = 0;
  d = strtod((const char *)s, &end);
  if ((size_t)(end - (const char *)s) != n) return -1;
  if (errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL || d == 0)) return -1;
  if (isnan(d)) return -1;
  *v = d;
  return 0;
}

int kv_arg_double(struct kv_ctx *c, size_t i, double *v) {
  if (kv_parse_double(c->argv[i], c->argl[i], v) == 0) return 0;
  kv_reply_error(c, KV_ERR_NOTFLOAT);
  return -1;
}

uint64_t kv_rand(uint64_t *state) {
  /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------
 * Replies */

static void chk(struct kv_ctx *c, int r) {
  if (r && !c->err) c->err = r;
}

void kv_reply_oom(struct kv_ctx *c) {
  if (!c->err) c->err = -ENOMEM;
}
void kv_reply_ok(struct kv_ctx *c) { chk(c, resp_add_simple(c->reply, "OK")); }
void kv_reply_simple(struct kv_ctx *c, const char *s) {
  chk(c, resp_add_simple(c->reply, s));
}
void kv_reply_error(struct kv_ctx *c, const char *msg) {
  chk(c, resp_add_error(c->reply, msg));
}
void kv_reply_errorf(struct kv_ctx *c, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  smr_assert(n >= 0);
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  chk(c, resp_add_error_len(c->reply, buf, (size_t)n));
}
void kv_reply_int(struct kv_ctx *c, int64_t v) {
  chk(c, resp_add_int(c->reply, v));
}
void kv_reply_bulk(struct kv_ctx *c, const void *p, size_t n) {
  chk(c, resp_add_bulk(c->reply, p, n));
}
void kv_reply_str(struct kv_ctx *c, const struct kv_str *s) {
  chk(c, resp_add_bulk(c->reply, s->data, s->len));
}
void kv_reply_null(struct kv_ctx *c) { chk(c, resp_add_null(c->reply)); }
void kv_reply_array(struct kv_ctx *c, uint64_t n) {
  chk(c, resp_add_array(c->reply, n));
}
void kv_reply_null_array(struct kv_ctx *c) {
  chk(c, resp_add_null_array(c->reply));
}
void kv_reply_double(struct kv_ctx *c, double d) {
  chk(c, resp_add_double(c->reply, d));
}
void kv_reply_wrongtype(struct kv_ctx *c) { kv_reply_error(c, KV_ERR_WRONGTYPE); }
void kv_reply_syntax(struct kv_ctx *c) { kv_reply_error(c, KV_ERR_SYNTAX); }

/* ------------------------------------------------------------------------
 * Keyspace commands */

static void cmd_del(struct kv_ctx *c) {
  int64_t n = 0;
  for (size_t i = 1; i < c->argc; i++) {
    if (!kv_lookup(c, i)) continue; /* drops it if expired */
    kv_delete_arg(c, i);
    n++;
  }
  kv_reply_int(c, n);
}

static void cmd_exists(struct kv_ctx *c) {
  int64_t n = 0;
  for (size_t i = 1; i < c->argc; i++) n += kv_lookup(c, i) != NULL;
  kv_reply_int(c, n);
}

static void cmd_type(struct kv_ctx *c) {
  static const char *const names[] = {"none", "string", "list",
                                      "set",  "hash",   "zset"};
  struct kv_obj *o = kv_lookup(c, 1);
  kv_reply_simple(c, names[o ? o->type : 0]);
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT: key time [NX|XX|GT|LT]. */
#define EXP_NX 1
#define EXP_XX 2
#define EXP_GT 4
#define EXP_LT 8

static void expire_generic(struct kv_ctx *c, int64_t base, int seconds) {
  unsigned flags = 0;
  int64_t when;
  struct kv_obj *o;
  for (size_t j = 3; j < c->argc; j++) {
    if (kv_arg_is(c, j, "nx")) flags |= EXP_NX;
    else if (kv_arg_is(c, j, "xx")) flags |= EXP_XX;
    else if (kv_arg_is(c, j, "gt")) flags |= EXP_GT;
    else if (kv_arg_is(c, j, "lt")) flags |= EXP_LT;
    else {
      /* The option in full (up to a NUL), as Redis prints it. */
      struct smr_buf b = {0};
      if (smr_buf_append(&b, "ERR Unsupported option ", 23) ||
          smr_buf_append(&b, c->argv[j], strlen((const char *)c->argv[j])))
        kv_reply_oom(c);
      else
        chk(c, resp_add_error_len(c->reply, (const char *)b.data, b.len));
      smr_buf_free(&b);
      return;
    }
  }
  if ((flags & EXP_NX) && (flags & (EXP_XX | EXP_GT | EXP_LT))) {
    kv_reply_error(c, "ERR NX and XX, GT or LT options at the same time "
                      "are not compatible");
    return;
  }
  if ((flags & EXP_GT) && (flags & EXP_LT)) {
    kv_reply_error(c, "ERR GT and LT options at the same time are not "
                      "compatible");
    return;
  }
  if (kv_arg_ll(c, 2, &when)) return;
  if (seconds) {
    if (when > INT64_MAX / 1000 || when < INT64_MIN / 1000) goto invalid;
    when *= 1000;
  }
  if (when > INT64_MAX - base) goto invalid;
  when += base;
  o = kv_lookup(c, 1);
  if (!o) {
    kv_reply_int(c, 0);
    return;
  }
  if (flags) {
    int has = o->heap != KV_NO_HEAP;
    int64_t cur = o->expire_at;
    if (((flags & EXP_NX) && has) || ((flags & EXP_XX) && !has) ||
        ((flags & EXP_GT) && (!has || when <= cur)) ||
        ((flags & EXP_LT) && has && when >= cur)) {
      kv_reply_int(c, 0);
      return;
    }
  }
  if (when <= c->now) {
    kv_delete_arg(c, 1);
  } else if (kv_db_set_expire(c->s, o, when)) {
    kv_reply_oom(c);
    return;
  }
  kv_reply_int(c, 1);
  return;
invalid:
  kv_reply_errorf(c, "ERR invalid expire time in '%s' command",
                  c->cmd->fullname);
}

static void cmd_expire(struct kv_ctx *c) { expire_generic(c, c->now, 1); }
static void cmd_pexpire(struct kv_ctx *c) { expire_generic(c, c->now, 0); }
static void cmd_expireat(struct kv_ctx *c) { expire_generic(c, 0, 1); }
static void cmd_pexpireat(struct kv_ctx *c) { expire_generic(c, 0, 0); }

static void ttl_generic(struct kv_ctx *c, int ms) {
  struct kv_obj *o = kv_lookup(c, 1);
  int64_t ttl;
  if (!o) {
    kv_reply_int(c, -2);
    return;
  }
  if (o->heap == KV_NO_HEAP) {
    kv_reply_int(c, -1);
    return;
  }
  /* Not expired, so expire_at >= now >= 0: no overflow. */
  ttl = o->expire_at - c->now;
  if (ttl < 0) ttl = 0;
  kv_reply_int(c, ms ? ttl : (int64_t)(((uint64_t)ttl + 500) / 1000));
}

static void cmd_ttl(struct kv_ctx *c) { ttl_generic(c, 0); }
static void cmd_pttl(struct kv_ctx *c) { ttl_generic(c, 1); }

static void cmd_persist(struct kv_ctx *c) {
  struct kv_obj *o = kv_lookup(c, 1);
  kv_reply_int(c, o ? kv_db_persist(c->s, o) : 0);
}

static void cmd_dbsize(struct kv_ctx *c) {
  kv_reply_int(c, (int64_t)kv_store_size(c->s));
}

static void cmd_flushall(struct kv_ctx *c) {
  if (c->argc > 2 ||
      (c->argc == 2 && !kv_arg_is(c, 1, "sync") && !kv_arg_is(c, 1, "async"))) {
    kv_reply_syntax(c);
    return;
  }
  kv_store_clear(c->s);
  kv_reply_ok(c);
}

/* ------------------------------------------------------------------------
 * Connection and server commands */

static void cmd_ping(struct kv_ctx *c) {
  if (c->argc > 2) {
    kv_reply_errorf(c, "ERR wrong number of arguments for '%s' command",
                    c->cmd->fullname);
    return;
  }
  if (c->argc == 2)
    kv_reply_bulk(c, c->argv[1], c->argl[1]);
  else
    kv_reply_simple(c, "PONG");
}

static void cmd_echo(struct kv_ctx *c) { kv_reply_bulk(c, c->argv[1], c->argl[1]); }

static void cmd_select(struct kv_ctx *c) {
  int64_t id;
  if (kv_arg_ll(c, 1, &id)) return;
  if (id < INT_MIN || id > INT_MAX) {
    kv_reply_error(c, "ERR value is out of range, value must between "
                      "-2147483648 and 2147483647");
    return;
  }
  if (id != 0) {
    kv_reply_error(c, "ERR DB index is out of range");
    return;
  }
  kv_reply_ok(c);
}

/* INFO [section ...]: "server" and "keyspace" (and "default", "all",
 * "everything" for both).  Only facts that are the same on every replica. */
static void cmd_info(struct kv_ctx *c) {
  int server = c->argc == 1, keyspace = c->argc == 1;
  struct smr_buf b = {0};
  char line[128];
  int n, r = 0;
  for (size_t i = 1; i < c->argc; i++) {
    if (kv_arg_is(c, i, "server")) server = 1;
    else if (kv_arg_is(c, i, "keyspace")) keyspace = 1;
    else if (kv_arg_is(c, i, "default") || kv_arg_is(c, i, "all") ||
             kv_arg_is(c, i, "everything"))
      server = keyspace = 1;
  }
  if (server) {
    static const char text[] =
        "# Server\r\n"
        "redis_version:7.0.15\r\n"
        "redis_mode:standalone\r\n"
        "arch_bits:64\r\n"
        "smr_service:kv\r\n"
        "smr_kv_snapshot_version:1\r\n";
    r |= smr_buf_append(&b, text, sizeof text - 1);
  }
  if (keyspace) {
    if (b.len) r |= smr_buf_append(&b, "\r\n", 2);
    r |= smr_buf_append(&b, "# Keyspace\r\n", 12);
    if (kv_store_size(c->s)) {
      n = snprintf(line, sizeof line, "db0:keys=%zu,expires=%zu,avg_ttl=0\r\n",
                   kv_store_size(c->s), kv_store_expires(c->s));
      r |= smr_buf_append(&b, line, (size_t)n);
    }
  }
  if (r)
    kv_reply_oom(c);
  else
    kv_reply_bulk(c, b.data ? b.data : (const uint8_t *)"", b.len);
  smr_buf_free(&b);
}

/* The parameters CONFIG GET knows: what a group member looks like to a
 * client.  Persistence is the group's business, not Redis's. */
static const struct {
  const char *name, *value;
} config_params[] = {
    {"appendfsync", "no"},
    {"appendonly", "no"},
    {"cluster-enabled", "no"},
    {"databases", "1"},
    {"maxclients", "10000"},
    {"maxmemory", "0"},
    {"maxmemory-policy", "noeviction"},
    {"notify-keyspace-events", ""},
    {"replica-read-only", "yes"},
    {"save", ""},
    {"slave-read-only", "yes"},
    {"timeout", "0"},
};
#define N_CONFIG (sizeof config_params / sizeof config_params[0])

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

/* Glob match, case-insensitive: * ? [abc] [^a-z] and \ escapes. */
static int glob_match(const char *p, const char *s) {
  while (*p) {
    switch (*p) {
      case '*':
        while (p[1] == '*') p++;
        if (!p[1]) return 1;
        for (; *s; s++)
          if (glob_match(p + 1, s)) return 1;
        return 0;
      case '?':
        if (!*s) return 0;
        s++;
        break;
      case '[': {
        int neg = 0, hit = 0;
        p++;
        if (*p == '^') {
          neg = 1;
          p++;
        }
        for (;;) {
          if (*p == '\\' && p[1]) {
            p++;
            if (lower(*p) == lower(*s)) hit = 1;
          } else if (*p == ']') {
            break;
          } else if (!*p) {
            p--;
            break;
          } else if (p[1] == '-' && p[2] && p[2] != ']') {
            int a = lower(p[0]), z = lower(p[2]), ch = lower(*s);
            if (a > z) {
              int t = a;
              a = z;
              z = t;
            }
            if (ch >= a && ch <= z) hit = 1;
            p += 2;
          } else if (lower(*p) == lower(*s)) {
            hit = 1;
          }
          p++;
        }
        if (neg) hit = !hit;
        if (!hit || !*s) return 0;
        s++;
        break;
      }
      case '\\':
        if (p[1]) p++;
        /* fall through */
      default:
        if (lower(*p) != lower(*s)) return 0;
        s++;
        break;
    }
    p++;
  }
  return !*s;
}

static void cmd_config_get(struct kv_ctx *c) {
  unsigned char seen[N_CONFIG] = {0};
  /* Matches in the order found: table index and the name to show. */
  size_t idx[N_CONFIG], argi[N_CONFIG], n = 0;
  for (size_t i = 2; i < c->argc; i++) {
    const char *pat = (const char *)c->argv[i];
    int glob = strpbrk(pat, "[*?") != NULL;
    for (size_t k = 0; k < N_CONFIG; k++) {
      if (seen[k]) continue;
      if (glob ? !glob_match(pat, config_params[k].name)
               : strcasecmp(pat, config_params[k].name) != 0)
        continue;
      seen[k] = 1;
      idx[n] = k;
      argi[n] = glob ? 0 : i; /* an exact name is shown as typed */
      n++;
    }
  }
  kv_reply_array(c, 2 * n);
  for (size_t m = 0; m < n; m++) {
    if (argi[m])
      kv_reply_bulk(c, c->argv[argi[m]], strlen((const char *)c->argv[argi[m]]));
    else
      chk(c, resp_add_bulk_str(c->reply, config_params[idx[m]].name));
    chk(c, resp_add_bulk_str(c->reply, config_params[idx[m]].value));
  }
}

static void cmd_config_set(struct kv_ctx *c) {
  kv_reply_error(c, "ERR CONFIG SET is not supported: the group is "
                    "configured through smrd");
}

static void cmd_config_resetstat(struct kv_ctx *c) { kv_reply_ok(c); }

static void reply_help(struct kv_ctx *c, const char *const *lines) {
  size_t n = 0;
  while (lines[n]) n++;
  kv_reply_array(c, n);
  for (size_t i = 0; i < n; i++) kv_reply_simple(c, lines[i]);
}

static void cmd_config_help(struct kv_ctx *c) {
  static const char *const lines[] = {
      "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "GET <pattern>",
      "    Return parameters matching the glob-like <pattern> and their values.",
      "RESETSTAT",
      "    Reset statistics (none are kept).",
      "HELP",
      "    Print this help.",
      NULL};
  reply_help(c, lines);
}

static void cmd_command_count(struct kv_ctx *c);
static void cmd_command_list(struct kv_ctx *c);

static void cmd_command(struct kv_ctx *c) {
  /* The full command information is not kept: an empty list tells a
   * client to use its own defaults. */
  kv_reply_array(c, 0);
}

static void cmd_command_docs(struct kv_ctx *c) { kv_reply_array(c, 0); }

static void cmd_command_info(struct kv_ctx *c) {
  kv_reply_array(c, c->argc - 2);
  for (size_t i = 2; i < c->argc; i++) kv_reply_null(c);
}

static void cmd_command_help(struct kv_ctx *c) {
  static const char *const lines[] = {
      "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
      "(no subcommand)",
      "    Return an empty list (details are not kept).",
      "COUNT",
      "    Return the number of commands.",
      "DOCS [<command-name> ...]",
      "    Return an empty map.",
      "INFO [<command-name> ...]",
      "    Return a null for each command.",
      "LIST",
      "    Return the names of all commands.",
      "HELP",
      "    Print this help.",
      NULL};
  reply_help(c, lines);
}

/* ------------------------------------------------------------------------
 * The command table (sorted by name) */

static const struct kv_cmd config_subs[] = {
    {"get", "config|get", -3, 0, cmd_config_get, NULL},
    {"help", "config|help", 2, 0, cmd_config_help, NULL},
    {"resetstat", "config|resetstat", 2, 0, cmd_config_resetstat, NULL},
    {"set", "config|set", -4, 0, cmd_config_set, NULL},
    {NULL, NULL, 0, 0, NULL, NULL}};

static const struct kv_cmd command_subs[] = {
    {"count", "command|count", 2, 0, cmd_command_count, NULL},
    {"docs", "command|docs", -2, 0, cmd_command_docs, NULL},
    {"help", "command|help", 2, 0, cmd_command_help, NULL},
    {"info", "command|info", -2, 0, cmd_command_info, NULL},
    {"list", "command|list", -2, 0, cmd_command_list, NULL},
    {NULL, NULL, 0, 0, NULL, NULL}};

#define W KV_CMD_WRITE
#define CT KV_CMD_CONTAINER
static const struct kv_cmd commands[] = {
    {"append", "append", 3, W, kv_cmd_append, NULL},
    {"command", "command", -1, CT, cmd_command, command_subs},
    {"config", "config", -2, CT, NULL, config_subs},
    {"dbsize", "dbsize", 1, 0, cmd_dbsize, NULL},
    {"decr", "decr", 2, W, kv_cmd_decr, NULL},
    {"decrby", "decrby", 3, W, kv_cmd_decrby, NULL},
    {"del", "del", -2, W, cmd_del, NULL},
    {"echo", "echo", 2, 0, cmd_echo, NULL},
    {"exists", "exists", -2, 0, cmd_exists, NULL},
    {"expire", "expire", -3, W, cmd_expire, NULL},
    {"expireat", "expireat", -3, W, cmd_expireat, NULL},
    {"flushall", "flushall", -1, W, cmd_flushall, NULL},
    {"flushdb", "flushdb", -1, W, cmd_flushall, NULL},
    {"get", "get", 2, 0, kv_cmd_get, NULL},
    {"hdel", "hdel", -3, W, kv_cmd_hdel, NULL},
    {"hexists", "hexists", 3, 0, kv_cmd_hexists, NULL},
    {"hget", "hget", 3, 0, kv_cmd_hget, NULL},
    {"hgetall", "hgetall", 2, 0, kv_cmd_hgetall, NULL},
    {"hlen", "hlen", 2, 0, kv_cmd_hlen, NULL},
    {"hmget", "hmget", -3, 0, kv_cmd_hmget, NULL},
    {"hmset", "hmset", -4, W, kv_cmd_hmset, NULL},
    {"hset", "hset", -4, W, kv_cmd_hset, NULL},
    {"incr", "incr", 2, W, kv_cmd_incr, NULL},
    {"incrby", "incrby", 3, W, kv_cmd_incrby, NULL},
    {"info", "info", -1, 0, cmd_info, NULL},
    {"lindex", "lindex", 3, 0, kv_cmd_lindex, NULL},
    {"llen", "llen", 2, 0, kv_cmd_llen, NULL},
    {"lpop", "lpop", -2, W, kv_cmd_lpop, NULL},
    {"lpush", "lpush", -3, W, kv_cmd_lpush, NULL},
    {"lrange", "lrange", 4, 0, kv_cmd_lrange, NULL},
    {"mget", "mget", -2, 0, kv_cmd_mget, NULL},
    {"mset", "mset", -3, W, kv_cmd_mset, NULL},
    {"msetnx", "msetnx", -3, W, kv_cmd_msetnx, NULL},
    {"persist", "persist", 2, W, cmd_persist, NULL},
    {"pexpire", "pexpire", -3, W, cmd_pexpire, NULL},
    {"pexpireat", "pexpireat", -3, W, cmd_pexpireat, NULL},
    {"ping", "ping", -1, 0, cmd_ping, NULL},
    {"pttl", "pttl", 2, 0, cmd_pttl, NULL},
    {"rpop", "rpop", -2, W, kv_cmd_rpop, NULL},
    {"rpush", "rpush", -3, W, kv_cmd_rpush, NULL},
    {"sadd", "sadd", -3, W, kv_cmd_sadd, NULL},
    {"scard", "scard", 2, 0, kv_cmd_scard, NULL},
    {"select", "select", 2, 0, cmd_select, NULL},
    {"set", "set", -3, W, kv_cmd_set, NULL},
    {"setnx", "setnx", 3, W, kv_cmd_setnx, NULL},
    {"sismember", "sismember", 3, 0, kv_cmd_sismember, NULL},
    {"smembers", "smembers", 2, 0, kv_cmd_smembers, NULL},
    {"spop", "spop", -2, W, kv_cmd_spop, NULL},
    {"srem", "srem", -3, W, kv_cmd_srem, NULL},
    {"strlen", "strlen", 2, 0, kv_cmd_strlen, NULL},
    {"ttl", "ttl", 2, 0, cmd_ttl, NULL},
    {"type", "type", 2, 0, cmd_type, NULL},
    {"unlink", "unlink", -2, W, cmd_del, NULL},
    {"zadd", "zadd", -4, W, kv_cmd_zadd, NULL},
    {"zcard", "zcard", 2, 0, kv_cmd_zcard, NULL},
    {"zincrby", "zincrby", 4, W, kv_cmd_zincrby, NULL},
    {"zpopmax", "zpopmax", -2, W, kv_cmd_zpopmax, NULL},
    {"zpopmin", "zpopmin", -2, W, kv_cmd_zpopmin, NULL},
    {"zrange", "zrange", -4, 0, kv_cmd_zrange, NULL},
    {"zrank", "zrank", 3, 0, kv_cmd_zrank, NULL},
    {"zrem", "zrem", -3, W, kv_cmd_zrem, NULL},
    {"zrevrange", "zrevrange", -4, 0, kv_cmd_zrevrange, NULL},
    {"zscore", "zscore", 3, 0, kv_cmd_zscore, NULL},
};
#undef W
#undef CT
static const size_t n_commands = sizeof commands / sizeof commands[0];

static void cmd_command_count(struct kv_ctx *c) {
  kv_reply_int(c, (int64_t)n_commands);
}

static void cmd_command_list(struct kv_ctx *c) {
  if (c->argc > 2) {
    kv_reply_syntax(c);
    return;
  }
  kv_reply_array(c, n_commands);
  for (size_t i = 0; i < n_commands; i++)
    chk(c, resp_add_bulk_str(c->reply, commands[i].name));
}


/* ------------------------------------------------------------------------
 * Dispatch */

/* The entry of table[0..n) named name[0..len) in any case, or NULL. */
static const struct kv_cmd *find_in(const struct kv_cmd *table, size_t n,
                                    const uint8_t *name, size_t len) {
  char low[24];
  size_t lo = 0, hi = n;
  if (len == 0 || len >= sizeof low) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (name[i] == 0) return NULL;
    low[i] = (char)lower(name[i]);
  }
  low[len] = 0;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int cmp = strcmp(low, table[mid].name);
    if (cmp == 0) return &table[mid];
    if (cmp < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  return NULL;
}

static size_t subs_count(const struct kv_cmd *subs) {
  size_t n = 0;
  while (subs[n].name) n++;
  return n;
}

int kv_command_exists(const uint8_t *name, size_t len) {
  return find_in(commands, n_commands, name, len) != NULL;
}

int kv_command_is_write(const uint8_t *name, size_t len) {
  const struct kv_cmd *cmd = find_in(commands, n_commands, name, len);
  return cmd && (cmd->flags & KV_CMD_WRITE);
}

/* Length of argument i as Redis's "%.*s" sees it: up to a NUL, at most
 * max bytes. */
static size_t cstr_len(const struct kv_ctx *c, size_t i, size_t max) {
  size_t n = c->argl[i] < max ? c->argl[i] : max;
  const uint8_t *z = memchr(c->argv[i], 0, n);
  return z ? (size_t)(z - c->argv[i]) : n;
}

static void reply_unknown_command(struct kv_ctx *c) {
  struct smr_buf b = {0};
  int r = 0;
  r |= smr_buf_append(&b, "ERR unknown command '", 21);
  r |= smr_buf_append(&b, c->argv[0], cstr_len(c, 0, 128));
  r |= smr_buf_append(&b, "', with args beginning with: ", 29);
  {
    size_t args = 0; /* length of the argument list so far */
    for (size_t i = 1; i < c->argc && args < 128; i++) {
      size_t n = cstr_len(c, i, 128 - args);
      r |= smr_buf_append(&b, "'", 1);
      r |= smr_buf_append(&b, c->argv[i], n);
      r |= smr_buf_append(&b, "' ", 2);
      args += n + 3;
    }
  }
  if (r)
    kv_reply_oom(c);
  else
    chk(c, resp_add_error_len(c->reply, (const char *)b.data, b.len));
  smr_buf_free(&b);
}

static void reply_unknown_subcommand(struct kv_ctx *c) {
  char up[24];
  size_t n = c->argl[0] < sizeof up - 1 ? c->argl[0] : sizeof up - 1;
  for (size_t i = 0; i < n; i++) {
    int ch = c->argv[0][i];
    up[i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
  }
  up[n] = 0;
  kv_reply_errorf(c, "ERR unknown subcommand '%.*s'. Try %s HELP.",
                  (int)cstr_len(c, 1, 128), (const char *)c->argv[1], up);
}

int kv_store_exec(struct kv_store *s, const struct kv_exec *x,
                  struct smr_buf *reply) {
  struct kv_ctx c;
  const struct kv_cmd *cmd;
  smr_assert(x->argc >= 1);
  for (size_t i = 0; i < x->argc; i++) smr_assert(x->argv[i][x->argl[i]] == 0);
  memset(&c, 0, sizeof c);
  c.s = s;
  c.argc = x->argc;
  c.argv = x->argv;
  c.argl = x->argl;
  c.now = x->now_ms < 0 ? 0 : x->now_ms;
  c.seed = x->seed;
  c.readonly = x->readonly;
  c.reply = reply;

  cmd = find_in(commands, n_commands, x->argv[0], x->argl[0]);
  if (!cmd) {
    reply_unknown_command(&c);
    return c.err;
  }
  if ((cmd->flags & KV_CMD_CONTAINER) && c.argc >= 2) {
    const struct kv_cmd *sub =
        find_in(cmd->subs, subs_count(cmd->subs), x->argv[1], x->argl[1]);
    if (!sub) {
      reply_unknown_subcommand(&c);
      return c.err;
    }
    cmd = sub;
  }
  c.cmd = cmd;
  if ((cmd->arity > 0 && c.argc != (size_t)cmd->arity) ||
      (cmd->arity < 0 && c.argc < (size_t)-cmd->arity) || !cmd->fn) {
    kv_reply_errorf(&c, "ERR wrong number of arguments for '%s' command",
                    cmd->fullname);
    return c.err;
  }
  if (c.readonly && (cmd->flags & KV_CMD_WRITE)) {
    kv_reply_error(&c, "READONLY You can't write against a read only replica.");
    return c.err;
  }
  cmd->fn(&c);
  return c.err;
}

/* ------------------------------------------------------------------------
 * Invariants */

static int obj_check(const struct kv_obj *o) {
  switch (o->type) {
    case KV_STRING:
      return o->u.str && o->u.str->data[o->u.str->len] == 0 ? 0 : -1;
    case KV_LIST:
      return o->u.list->len > 0 ? 0 : -1;
    case KV_SET:
      if (o->u.set->nent != o->u.set->live) return -1;
      /* fall through */
    case KV_HASH:
      return kv_dict_size(o->u.set) > 0 && kv_dict_check(o->u.set) == 0 ? 0
                                                                        : -1;
    case KV_ZSET:
      return o->u.zset->len > 0 && kv_zset_check(o->u.zset) == 0 ? 0 : -1;
    default:
      return -1;
  }
}

int kv_store_check(const struct kv_store *s) {
  size_t with_ttl = 0;
  if (kv_dict_check(&s->keys)) return -1;
  if (s->keys.nent != s->keys.live) return -1;
  for (uint32_t i = 0; i < s->keys.nent; i++) {
    const struct kv_obj *o = s->keys.ent[i].val;
    if (o->key != s->keys.ent[i].key || obj_check(o)) return -1;
    if (o->heap != KV_NO_HEAP) {
      with_ttl++;
      if (o->heap >= s->nheap || s->heap[o->heap] != o) return -1;
    }
  }
  if (with_ttl != s->nheap) return -1;
  for (size_t i = 1; i < s->nheap; i++)
    if (heap_less(s->heap[i], s->heap[(i - 1) / 2])) return -1;
  for (size_t i = 1; i < n_commands; i++)
    if (strcmp(commands[i - 1].name, commands[i].name) >= 0) return -1;
  return 0;
}
