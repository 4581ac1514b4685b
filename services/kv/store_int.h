/* store_int.h -- what the store's files share: objects, the keyspace, the
 * command context and reply helpers.  Not for use outside services/kv.
 *
 * Files:
 *   store.c        keyspace, expiry, dispatch, the command table, keyspace
 *                  and server commands
 *   cmd_string.c   strings          cmd_list.c   lists
 *   cmd_set.c      sets             cmd_hash.c   hashes
 *   cmd_zset.c     sorted sets
 *   snapshot.c     canonical serialisation, snapshot image, restore */
#ifndef SMR_KV_STORE_INT_H
#define SMR_KV_STORE_INT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "ds.h"
#include "resp.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Objects */

enum kv_type {
  KV_STRING = 1,
  KV_LIST = 2,
  KV_SET = 3,
  KV_HASH = 4,
  KV_ZSET = 5
};

#define KV_NO_HEAP SIZE_MAX

struct kv_obj {
  uint8_t type;
  size_t heap;        /* index in the expiry heap, or KV_NO_HEAP */
  int64_t expire_at;  /* ms since the epoch, when heap != KV_NO_HEAP */
  struct kv_str *key; /* the keyspace's copy of the key */
  union {
    struct kv_str *str;
    struct kv_list *list;
    struct kv_dict *set;  /* member -> NULL; del_swap only */
    struct kv_dict *hash; /* field -> struct kv_str *value; del_stable */
    struct kv_zset *zset;
  } u;
};

struct kv_store {
  struct kv_dict keys; /* key -> struct kv_obj *; del_swap only */
  struct kv_obj **heap; /* expiry min-heap on (expire_at, key) */
  size_t nheap, heap_cap;
  uint64_t seed;
};

/* A new empty container object (NULL when out of memory). */
struct kv_obj *kv_obj_new(struct kv_store *s, enum kv_type type);
/* A string object taking str. */
struct kv_obj *kv_obj_new_str(struct kv_str *str);
/* Frees the value and the object (not the key). */
void kv_obj_free(struct kv_obj *o);
/* Elements in a container. */
size_t kv_obj_len(const struct kv_obj *o);

/* ------------------------------------------------------------------------
 * Keyspace (low level: no expiry checks) */

struct kv_obj *kv_db_find(const struct kv_store *s, const void *k, size_t n);
/* Adds key k (absent) with o; 0 or -ENOMEM (o not taken then). */
int kv_db_add(struct kv_store *s, const void *k, size_t n, struct kv_obj *o);
/* Deletes key k if present (value freed); returns 1 if it was. */
int kv_db_delete(struct kv_store *s, const void *k, size_t n);
/* Sets o's expiry time (heap insert or move); 0 or -ENOMEM. */
int kv_db_set_expire(struct kv_store *s, struct kv_obj *o, int64_t when);
/* Removes o's expiry time; returns 1 if it had one. */
int kv_db_persist(struct kv_store *s, struct kv_obj *o);

/* ------------------------------------------------------------------------
 * Command context */

struct kv_cmd;

struct kv_ctx {
  struct kv_store *s;
  size_t argc;
  const uint8_t *const *argv;
  const size_t *argl;
  int64_t now;
  uint64_t seed;
  int readonly;
  const struct kv_cmd *cmd;
  struct smr_buf *reply;
  int err; /* sticky -ENOMEM */
};

typedef void (*kv_cmd_fn)(struct kv_ctx *c);

#define KV_CMD_WRITE 0x1u
#define KV_CMD_CONTAINER 0x2u /* has subcommands */

struct kv_cmd {
  const char *name;     /* lower case */
  const char *fullname; /* "config|get" for a subcommand */
  int arity;            /* > 0 exact, < 0 at least -arity */
  unsigned flags;
  kv_cmd_fn fn;
  const struct kv_cmd *subs; /* containers: NULL-name terminated */
};

/* Lookups honouring expiry: NULL if absent or expired (an expired key is
 * deleted unless read-only).  The *_type variants reply WRONGTYPE and set
 * *wrong when the key holds another type. */
struct kv_obj *kv_lookup(struct kv_ctx *c, size_t argi);
struct kv_obj *kv_lookup_type(struct kv_ctx *c, size_t argi,
                              enum kv_type type, int *wrong);
/* Deletes the key of argument argi (the caller's object goes with it). */
void kv_delete_arg(struct kv_ctx *c, size_t argi);
/* Adds key argv[argi] with o; on failure frees o and sets c->err. */
int kv_add_arg(struct kv_ctx *c, size_t argi, struct kv_obj *o);

/* The argument as a C string compared case-insensitively, as Redis's
 * strcasecmp (stops at a NUL inside the argument, like Redis). */
int kv_arg_is(const struct kv_ctx *c, size_t i, const char *word);

/* Numeric arguments: on failure they reply the error and return -1. */
int kv_arg_ll(struct kv_ctx *c, size_t i, int64_t *v);
/* A count >= 0; any failure replies "value is out of range, must be
 * positive" (Redis's getPositiveLongFromObjectOrReply with that text). */
int kv_arg_positive(struct kv_ctx *c, size_t i, int64_t *v);
/* A score: strtod over the whole argument, no leading space, no NaN, no
 * overflow or underflow to zero ("value is not a valid float"). */
int kv_parse_double(const uint8_t *s, size_t n, double *v);
int kv_arg_double(struct kv_ctx *c, size_t i, double *v);

/* Draws from the command's random stream (SPOP). */
uint64_t kv_rand(uint64_t *state);

/* ------------------------------------------------------------------------
 * Replies (errors are full texts without the leading '-') */

void kv_reply_ok(struct kv_ctx *c);
void kv_reply_simple(struct kv_ctx *c, const char *s);
void kv_reply_error(struct kv_ctx *c, const char *msg);
void kv_reply_errorf(struct kv_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void kv_reply_int(struct kv_ctx *c, int64_t v);
void kv_reply_bulk(struct kv_ctx *c, const void *p, size_t n);
void kv_reply_str(struct kv_ctx *c, const struct kv_str *s);
void kv_reply_null(struct kv_ctx *c);
void kv_reply_array(struct kv_ctx *c, uint64_t n);
void kv_reply_null_array(struct kv_ctx *c);
void kv_reply_double(struct kv_ctx *c, double d);
void kv_reply_wrongtype(struct kv_ctx *c);
void kv_reply_syntax(struct kv_ctx *c);
void kv_reply_oom(struct kv_ctx *c); /* marks the command failed */

#define KV_ERR_WRONGTYPE \
  "WRONGTYPE Operation against a key holding the wrong kind of value"
#define KV_ERR_NOTINT "ERR value is not an integer or out of range"
#define KV_ERR_SYNTAX "ERR syntax error"
#define KV_ERR_POSITIVE "ERR value is out of range, must be positive"
#define KV_ERR_NOTFLOAT "ERR value is not a valid float"

/* ------------------------------------------------------------------------
 * Commands (cmd_*.c) */

void kv_cmd_set(struct kv_ctx *c);
void kv_cmd_setnx(struct kv_ctx *c);
void kv_cmd_get(struct kv_ctx *c);
void kv_cmd_incr(struct kv_ctx *c);
void kv_cmd_incrby(struct kv_ctx *c);
void kv_cmd_decr(struct kv_ctx *c);
void kv_cmd_decrby(struct kv_ctx *c);
void kv_cmd_append(struct kv_ctx *c);
void kv_cmd_strlen(struct kv_ctx *c);
void kv_cmd_mget(struct kv_ctx *c);
void kv_cmd_mset(struct kv_ctx *c);
void kv_cmd_msetnx(struct kv_ctx *c);

void kv_cmd_lpush(struct kv_ctx *c);
void kv_cmd_rpush(struct kv_ctx *c);
void kv_cmd_lpop(struct kv_ctx *c);
void kv_cmd_rpop(struct kv_ctx *c);
void kv_cmd_lrange(struct kv_ctx *c);
void kv_cmd_llen(struct kv_ctx *c);
void kv_cmd_lindex(struct kv_ctx *c);

void kv_cmd_sadd(struct kv_ctx *c);
void kv_cmd_srem(struct kv_ctx *c);
void kv_cmd_smembers(struct kv_ctx *c);
void kv_cmd_scard(struct kv_ctx *c);
void kv_cmd_sismember(struct kv_ctx *c);
void kv_cmd_spop(struct kv_ctx *c);

void kv_cmd_hset(struct kv_ctx *c);
void kv_cmd_hmset(struct kv_ctx *c);
void kv_cmd_hget(struct kv_ctx *c);
void kv_cmd_hmget(struct kv_ctx *c);
void kv_cmd_hdel(struct kv_ctx *c);
void kv_cmd_hgetall(struct kv_ctx *c);
void kv_cmd_hlen(struct kv_ctx *c);
void kv_cmd_hexists(struct kv_ctx *c);

void kv_cmd_zadd(struct kv_ctx *c);
void kv_cmd_zincrby(struct kv_ctx *c);
void kv_cmd_zrem(struct kv_ctx *c);
void kv_cmd_zpopmin(struct kv_ctx *c);
void kv_cmd_zpopmax(struct kv_ctx *c);
void kv_cmd_zrange(struct kv_ctx *c);
void kv_cmd_zrevrange(struct kv_ctx *c);
void kv_cmd_zcard(struct kv_ctx *c);
void kv_cmd_zscore(struct kv_ctx *c);
void kv_cmd_zrank(struct kv_ctx *c);

/* String objects: store value v[0..n) at key argv[argi] (SET semantics:
 * replaces any value; keeps the expiry time only if keepttl). */
int kv_set_string(struct kv_ctx *c, size_t argi, const void *v, size_t n,
                  int keepttl);

#endif
