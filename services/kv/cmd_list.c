/* cmd_list.c -- list commands: LPUSH RPUSH LPOP RPOP LRANGE LLEN LINDEX.
 *
 * A list is a kv_list (ring buffer).  As in Redis, a list never exists
 * empty: the pop that takes its last element deletes the key. */
#include <stdlib.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * Push */

static void push_generic(struct kv_ctx *c, int front) {
  int wrong, created = 0;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_LIST, &wrong);
  if (wrong) return;
  if (!o) {
    o = kv_obj_new(c->s, KV_LIST);
    if (!o) {
      kv_reply_oom(c);
      return;
    }
    created = 1;
  }
  for (size_t i = 2; i < c->argc; i++) {
    struct kv_str *e = kv_str_new(c->argv[i], c->argl[i]);
    if (!e || kv_list_push(o->u.list, e, front)) {
      free(e);
      if (created) kv_obj_free(o);
      kv_reply_oom(c);
      return;
    }
  }
  if (created && kv_add_arg(c, 1, o)) return;
  kv_reply_int(c, (int64_t)o->u.list->len);
}

void kv_cmd_lpush(struct kv_ctx *c) { push_generic(c, 1); }
void kv_cmd_rpush(struct kv_ctx *c) { push_generic(c, 0); }

/* ------------------------------------------------------------------------
 * Pop */

static void pop_generic(struct kv_ctx *c, int front) {
  int wrong, hascount = c->argc == 3;
  int64_t count = 1;
  struct kv_obj *o;
  struct kv_list *l;
  if (c->argc > 3) {
    kv_reply_errorf(c, "ERR wrong number of arguments for '%s' command",
                    c->cmd->fullname);
    return;
  }
  if (hascount && kv_arg_positive(c, 2, &count)) return;
  o = kv_lookup_type(c, 1, KV_LIST, &wrong);
  if (wrong) return;
  if (!o) {
    if (hascount)
      kv_reply_null_array(c);
    else
      kv_reply_null(c);
    return;
  }
  l = o->u.list;
  if (!hascount) {
    struct kv_str *e = kv_list_pop(l, front);
    kv_reply_str(c, e);
    free(e);
  } else {
    size_t n = (uint64_t)count < l->len ? (size_t)count : l->len;
    kv_reply_array(c, n);
    for (size_t i = 0; i < n; i++) {
      struct kv_str *e = kv_list_pop(l, front);
      kv_reply_str(c, e);
      free(e);
    }
  }
  if (l->len == 0) kv_delete_arg(c, 1);
}

void kv_cmd_lpop(struct kv_ctx *c) { pop_generic(c, 1); }
void kv_cmd_rpop(struct kv_ctx *c) { pop_generic(c, 0); }

/* ------------------------------------------------------------------------
 * Reads */

void kv_cmd_lrange(struct kv_ctx *c) {
  int wrong;
  int64_t start, end, len;
  struct kv_obj *o;
  if (kv_arg_ll(c, 2, &start) || kv_arg_ll(c, 3, &end)) return;
  o = kv_lookup_type(c, 1, KV_LIST, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_array(c, 0);
    return;
  }
  len = (int64_t)o->u.list->len;
  if (start < 0) start = len + start;
  if (end < 0) end = len + end;
  if (start < 0) start = 0;
  if (start > end || start >= len) {
    kv_reply_array(c, 0);
    return;
  }
  if (end >= len) end = len - 1;
  kv_reply_array(c, (uint64_t)(end - start + 1));
  for (int64_t i = start; i <= end; i++)
    kv_reply_str(c, kv_list_at(o->u.list, (size_t)i));
}

void kv_cmd_llen(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_LIST, &wrong);
  if (wrong) return;
  kv_reply_int(c, o ? (int64_t)o->u.list->len : 0);
}

void kv_cmd_lindex(struct kv_ctx *c) {
  int wrong;
  int64_t i;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_LIST, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_null(c);
    return;
  }
  if (kv_arg_ll(c, 2, &i)) return;
  if (i < 0) i += (int64_t)o->u.list->len;
  if (i < 0 || i >= (int64_t)o->u.list->len)
    kv_reply_null(c);
  else
    kv_reply_str(c, kv_list_at(o->u.list, (size_t)i));
}
