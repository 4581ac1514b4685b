/* cmd_hash.c -- hash commands: HSET HMSET HGET HMGET HDEL HGETALL HLEN
 * HEXISTS.
 *
 * A hash is a kv_dict from field to value in insertion order: a new field
 * goes last, updating a field keeps its place, and HDEL keeps the order of
 * the others (kv_dict_del_stable).  That is the order Redis 7.0 shows for
 * small hashes (its listpack encoding), so HGETALL matches Redis for them;
 * Redis's large hashes use a hash table whose order is arbitrary. */
#include <stdlib.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * Changes */

/* HSET/HMSET: sets the pairs; returns the number of new fields, or -1
 * after replying an error. */
static int64_t hset_generic(struct kv_ctx *c) {
  int wrong, created = 0;
  int64_t added = 0;
  struct kv_obj *o;
  if (c->argc % 2 == 1) {
    kv_reply_errorf(c, "ERR wrong number of arguments for '%s' command",
                    c->cmd->fullname);
    return -1;
  }
  o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return -1;
  if (!o) {
    o = kv_obj_new(c->s, KV_HASH);
    if (!o) goto oom;
    created = 1;
  }
  for (size_t i = 2; i < c->argc; i += 2) {
    struct kv_dict *d = o->u.hash;
    struct kv_str *v = kv_str_new(c->argv[i + 1], c->argl[i + 1]);
    uint32_t e = kv_dict_find(d, c->argv[i], c->argl[i]);
    if (!v) goto oom_obj;
    if (e != KV_DICT_NONE) {
      free(d->ent[e].val);
      d->ent[e].val = v;
      continue;
    }
    struct kv_str *f = kv_str_new(c->argv[i], c->argl[i]);
    if (!f || kv_dict_add(d, f, v, NULL)) {
      free(f);
      free(v);
      goto oom_obj;
    }
    added++;
  }
  if (created && kv_add_arg(c, 1, o)) return -1;
  return added;
oom_obj:
  if (created) kv_obj_free(o);
oom:
  kv_reply_oom(c);
  return -1;
}

void kv_cmd_hset(struct kv_ctx *c) {
  int64_t added = hset_generic(c);
  if (added >= 0) kv_reply_int(c, added);
}

void kv_cmd_hmset(struct kv_ctx *c) {
  if (hset_generic(c) >= 0) kv_reply_ok(c);
}

void kv_cmd_hdel(struct kv_ctx *c) {
  int wrong;
  int64_t removed = 0;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_int(c, 0);
    return;
  }
  for (size_t i = 2; i < c->argc; i++) {
    struct kv_dict *d = o->u.hash;
    uint32_t e = kv_dict_find(d, c->argv[i], c->argl[i]);
    struct kv_str *f, *v;
    if (e == KV_DICT_NONE) continue;
    f = d->ent[e].key;
    v = d->ent[e].val;
    kv_dict_del_stable(d, e);
    free(f);
    free(v);
    removed++;
  }
  if (kv_dict_size(o->u.hash) == 0) kv_delete_arg(c, 1);
  kv_reply_int(c, removed);
}

/* ------------------------------------------------------------------------
 * Reads */

void kv_cmd_hget(struct kv_ctx *c) {
  int wrong;
  uint32_t e;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  if (!o || (e = kv_dict_find(o->u.hash, c->argv[2], c->argl[2])) ==
                KV_DICT_NONE) {
    kv_reply_null(c);
    return;
  }
  kv_reply_str(c, o->u.hash->ent[e].val);
}

void kv_cmd_hmget(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  kv_reply_array(c, c->argc - 2);
  for (size_t i = 2; i < c->argc; i++) {
    uint32_t e =
        o ? kv_dict_find(o->u.hash, c->argv[i], c->argl[i]) : KV_DICT_NONE;
    if (e == KV_DICT_NONE)
      kv_reply_null(c);
    else
      kv_reply_str(c, o->u.hash->ent[e].val);
  }
}

void kv_cmd_hgetall(struct kv_ctx *c) {
  int wrong;
  const struct kv_dict *d;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_array(c, 0);
    return;
  }
  d = o->u.hash;
  kv_reply_array(c, 2 * (uint64_t)kv_dict_size(d));
  for (uint32_t i = 0; i < d->nent; i++) {
    if (!d->ent[i].key) continue;
    kv_reply_str(c, d->ent[i].key);
    kv_reply_str(c, d->ent[i].val);
  }
}

void kv_cmd_hlen(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  kv_reply_int(c, o ? (int64_t)kv_dict_size(o->u.hash) : 0);
}

void kv_cmd_hexists(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_HASH, &wrong);
  if (wrong) return;
  kv_reply_int(c, o && kv_dict_find(o->u.hash, c->argv[2], c->argl[2]) !=
                           KV_DICT_NONE);
}
