/* cmd_set.c -- set commands: SADD SREM SMEMBERS SCARD SISMEMBER SPOP.
 *
 * A set is a kv_dict whose order is its member array: SADD appends, and
 * every removal moves the last member into the hole (kv_dict_del_swap), so
 * the array never has holes and SPOP picks member i in O(1).  SMEMBERS
 * lists the array in order.  Redis's own order (a hash table's, or sorted
 * for small all-integer sets) differs and is not deterministic across
 * servers anyway; ours is deterministic across replicas.
 *
 * SPOP's randomness comes from the command's seed (the request's position
 * in the group's history, see kv.h) mixed with the key: the same history
 * pops the same members on every replica. */
#include <stdlib.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * Changes */

void kv_cmd_sadd(struct kv_ctx *c) {
  int wrong, created = 0;
  int64_t added = 0;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  if (!o) {
    o = kv_obj_new(c->s, KV_SET);
    if (!o) {
      kv_reply_oom(c);
      return;
    }
    created = 1;
  }
  for (size_t i = 2; i < c->argc; i++) {
    struct kv_str *m;
    if (kv_dict_find(o->u.set, c->argv[i], c->argl[i]) != KV_DICT_NONE)
      continue;
    m = kv_str_new(c->argv[i], c->argl[i]);
    if (!m || kv_dict_add(o->u.set, m, NULL, NULL)) {
      free(m);
      if (created) kv_obj_free(o);
      kv_reply_oom(c);
      return;
    }
    added++;
  }
  if (created && kv_add_arg(c, 1, o)) return;
  kv_reply_int(c, added);
}

/* Removes entry e of set o (freeing the member). */
static void set_remove(struct kv_obj *o, uint32_t e) {
  struct kv_str *m = o->u.set->ent[e].key;
  kv_dict_del_swap(o->u.set, e);
  free(m);
}

void kv_cmd_srem(struct kv_ctx *c) {
  int wrong;
  int64_t removed = 0;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_int(c, 0);
    return;
  }
  for (size_t i = 2; i < c->argc; i++) {
    uint32_t e = kv_dict_find(o->u.set, c->argv[i], c->argl[i]);
    if (e == KV_DICT_NONE) continue;
    set_remove(o, e);
    removed++;
    if (kv_dict_size(o->u.set) == 0) break;
  }
  if (kv_dict_size(o->u.set) == 0) kv_delete_arg(c, 1);
  kv_reply_int(c, removed);
}

/* ------------------------------------------------------------------------
 * Reads */

static void reply_members(struct kv_ctx *c, const struct kv_dict *d) {
  kv_reply_array(c, kv_dict_size(d));
  for (uint32_t i = 0; i < d->nent; i++)
    if (d->ent[i].key) kv_reply_str(c, d->ent[i].key);
}

void kv_cmd_smembers(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  if (!o)
    kv_reply_array(c, 0);
  else
    reply_members(c, o->u.set);
}

void kv_cmd_scard(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  kv_reply_int(c, o ? (int64_t)kv_dict_size(o->u.set) : 0);
}

void kv_cmd_sismember(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  kv_reply_int(c, o && kv_dict_find(o->u.set, c->argv[2], c->argl[2]) !=
                           KV_DICT_NONE);
}

/* ------------------------------------------------------------------------
 * SPOP */

void kv_cmd_spop(struct kv_ctx *c) {
  int wrong, hascount = c->argc == 3;
  int64_t count = 1;
  uint64_t rng;
  struct kv_obj *o;
  struct kv_dict *d;
  if (c->argc > 3) {
    kv_reply_syntax(c);
    return;
  }
  if (hascount && kv_arg_positive(c, 2, &count)) return;
  o = kv_lookup_type(c, 1, KV_SET, &wrong);
  if (wrong) return;
  if (!o) {
    if (hascount)
      kv_reply_array(c, 0);
    else
      kv_reply_null(c);
    return;
  }
  d = o->u.set;
  if (hascount && count == 0) {
    kv_reply_array(c, 0);
    return;
  }
  if (hascount && (uint64_t)count >= kv_dict_size(d)) {
    /* The whole set, in order. */
    reply_members(c, d);
    kv_delete_arg(c, 1);
    return;
  }
  rng = c->seed ^ kv_hash(0x5350u, c->argv[1], c->argl[1]);
  if (hascount) kv_reply_array(c, (uint64_t)count);
  for (int64_t k = 0; k < count; k++) {
    uint32_t e = kv_dict_nth(d, (uint32_t)(kv_rand(&rng) % kv_dict_size(d)));
    kv_reply_str(c, d->ent[e].key);
    set_remove(o, e);
  }
  if (kv_dict_size(d) == 0) kv_delete_arg(c, 1);
}
