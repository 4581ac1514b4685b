/* cmd_string.c -- string commands: SET GET SETNX INCR INCRBY DECR DECRBY
 * APPEND STRLEN MGET MSET MSETNX.
 *
 * Values are kept as bytes; INCR and friends parse them with Redis's strict
 * integer rules on every use (Redis's integer encoding is an optimisation
 * a client cannot see).  Like Redis, INCR and APPEND keep a key's expiry
 * time while SET and MSET clear it (unless SET ... KEEPTTL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * SET */

#define SET_NX 0x01u
#define SET_XX 0x02u
#define SET_GET 0x04u
#define SET_KEEPTTL 0x08u
#define SET_EX 0x10u
#define SET_PX 0x20u
#define SET_EXAT 0x40u
#define SET_PXAT 0x80u

/* Turns the expire argument into an absolute time; replies the error and
 * returns -1 if it is invalid. */
static int set_expire_time(struct kv_ctx *c, size_t argi, unsigned flags,
                           int64_t *when) {
  int64_t ms;
  int seconds = (flags & (SET_EX | SET_EXAT)) != 0;
  if (kv_arg_ll(c, argi, &ms)) return -1;
  if (ms <= 0 || (seconds && ms > INT64_MAX / 1000)) goto invalid;
  if (seconds) ms *= 1000;
  if (flags & (SET_EX | SET_PX)) {
    if (ms > INT64_MAX - c->now) goto invalid;
    ms += c->now;
  }
  *when = ms;
  return 0;
invalid:
  kv_reply_errorf(c, "ERR invalid expire time in '%s' command",
                  c->cmd->fullname);
  return -1;
}

void kv_cmd_set(struct kv_ctx *c) {
  unsigned flags = 0;
  size_t exp = 0;
  int64_t when = 0;
  struct kv_obj *o;
  for (size_t j = 3; j < c->argc; j++) {
    int next = j + 1 < c->argc;
    if (kv_arg_is(c, j, "nx") && !(flags & SET_XX)) {
      flags |= SET_NX;
    } else if (kv_arg_is(c, j, "xx") && !(flags & SET_NX)) {
      flags |= SET_XX;
    } else if (kv_arg_is(c, j, "get")) {
      flags |= SET_GET;
    } else if (kv_arg_is(c, j, "keepttl") &&
               !(flags & (SET_EX | SET_PX | SET_EXAT | SET_PXAT))) {
      flags |= SET_KEEPTTL;
    } else if (kv_arg_is(c, j, "ex") && next &&
               !(flags & (SET_KEEPTTL | SET_PX | SET_EXAT | SET_PXAT))) {
      flags |= SET_EX;
      exp = ++j;
    } else if (kv_arg_is(c, j, "px") && next &&
               !(flags & (SET_KEEPTTL | SET_EX | SET_EXAT | SET_PXAT))) {
      flags |= SET_PX;
      exp = ++j;
    } else if (kv_arg_is(c, j, "exat") && next &&
               !(flags & (SET_KEEPTTL | SET_EX | SET_PX | SET_PXAT))) {
      flags |= SET_EXAT;
      exp = ++j;
    } else if (kv_arg_is(c, j, "pxat") && next &&
               !(flags & (SET_KEEPTTL | SET_EX | SET_PX | SET_EXAT))) {
      flags |= SET_PXAT;
      exp = ++j;
    } else {
      kv_reply_syntax(c);
      return;
    }
  }
  if (exp && set_expire_time(c, exp, flags, &when)) return;
  o = kv_lookup(c, 1);
  if (flags & SET_GET) {
    if (o && o->type != KV_STRING) {
      kv_reply_wrongtype(c);
      return;
    }
    if (o)
      kv_reply_str(c, o->u.str);
    else
      kv_reply_null(c);
  }
  if (((flags & SET_NX) && o) || ((flags & SET_XX) && !o)) {
    if (!(flags & SET_GET)) kv_reply_null(c);
    return;
  }
  if (kv_set_string(c, 1, c->argv[2], c->argl[2], flags & SET_KEEPTTL)) return;
  if (exp) {
    o = kv_db_find(c->s, c->argv[1], c->argl[1]);
    if (!ALWAYS(o) || kv_db_set_expire(c->s, o, when)) {
      kv_reply_oom(c);
      return;
    }
  }
  if (!(flags & SET_GET)) kv_reply_ok(c);
}

void kv_cmd_setnx(struct kv_ctx *c) {
  if (kv_lookup(c, 1)) {
    kv_reply_int(c, 0);
    return;
  }
  if (kv_set_string(c, 1, c->argv[2], c->argl[2], 0)) return;
  kv_reply_int(c, 1);
}

/* ------------------------------------------------------------------------
 * GET, STRLEN, MGET */

void kv_cmd_get(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_STRING, &wrong);
  if (wrong) return;
  if (o)
    kv_reply_str(c, o->u.str);
  else
    kv_reply_null(c);
}

void kv_cmd_strlen(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_STRING, &wrong);
  if (wrong) return;
  kv_reply_int(c, o ? (int64_t)o->u.str->len : 0);
}

void kv_cmd_mget(struct kv_ctx *c) {
  kv_reply_array(c, c->argc - 1);
  for (size_t i = 1; i < c->argc; i++) {
    struct kv_obj *o = kv_lookup(c, i);
    if (o && o->type == KV_STRING)
      kv_reply_str(c, o->u.str);
    else
      kv_reply_null(c);
  }
}

/* ------------------------------------------------------------------------
 * MSET, MSETNX */

static int mset_args_ok(struct kv_ctx *c) {
  if (c->argc % 2 == 0) {
    kv_reply_errorf(c, "ERR wrong number of arguments for '%s' command",
                    c->cmd->fullname);
    return 0;
  }
  return 1;
}

static void mset_all(struct kv_ctx *c) {
  for (size_t i = 1; i < c->argc; i += 2) {
    kv_lookup(c, i); /* drops an expired key */
    if (kv_set_string(c, i, c->argv[i + 1], c->argl[i + 1], 0)) return;
  }
}

void kv_cmd_mset(struct kv_ctx *c) {
  if (!mset_args_ok(c)) return;
  mset_all(c);
  if (!c->err) kv_reply_ok(c);
}

void kv_cmd_msetnx(struct kv_ctx *c) {
  if (!mset_args_ok(c)) return;
  for (size_t i = 1; i < c->argc; i += 2) {
    if (kv_lookup(c, i)) {
      kv_reply_int(c, 0);
      return;
    }
  }
  mset_all(c);
  if (!c->err) kv_reply_int(c, 1);
}

/* ------------------------------------------------------------------------
 * INCR, INCRBY, DECR, DECRBY */

static void incr_generic(struct kv_ctx *c, int64_t incr) {
  int wrong;
  int64_t v = 0;
  char buf[24];
  int n;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_STRING, &wrong);
  if (wrong) return;
  if (o && !resp_str2ll(o->u.str->data, o->u.str->len, &v)) {
    kv_reply_error(c, KV_ERR_NOTINT);
    return;
  }
  if ((incr < 0 && v < 0 && incr < INT64_MIN - v) ||
      (incr > 0 && v > 0 && incr > INT64_MAX - v)) {
    kv_reply_error(c, "ERR increment or decrement would overflow");
    return;
  }
  v += incr;
  n = snprintf(buf, sizeof buf, "%lld", (long long)v);
  if (o) {
    /* In place: the expiry time stays, as in Redis. */
    struct kv_str *str = kv_str_new(buf, (size_t)n);
    if (!str) {
      kv_reply_oom(c);
      return;
    }
    free(o->u.str);
    o->u.str = str;
  } else if (kv_set_string(c, 1, buf, (size_t)n, 0)) {
    return;
  }
  kv_reply_int(c, v);
}

void kv_cmd_incr(struct kv_ctx *c) { incr_generic(c, 1); }
void kv_cmd_decr(struct kv_ctx *c) { incr_generic(c, -1); }

void kv_cmd_incrby(struct kv_ctx *c) {
  int64_t incr;
  if (kv_arg_ll(c, 2, &incr)) return;
  incr_generic(c, incr);
}

void kv_cmd_decrby(struct kv_ctx *c) {
  int64_t incr;
  if (kv_arg_ll(c, 2, &incr)) return;
  if (incr == INT64_MIN) {
    kv_reply_error(c, "ERR decrement would overflow");
    return;
  }
  incr_generic(c, -incr);
}

/* ------------------------------------------------------------------------
 * APPEND */

void kv_cmd_append(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_STRING, &wrong);
  size_t total;
  if (wrong) return;
  if (!o) {
    if (kv_set_string(c, 1, c->argv[2], c->argl[2], 0)) return;
    kv_reply_int(c, (int64_t)c->argl[2]);
    return;
  }
  total = (size_t)o->u.str->len + c->argl[2];
  if (total > KV_STR_MAX) {
    kv_reply_error(c, "ERR string exceeds maximum allowed size "
                      "(proto-max-bulk-len)");
    return;
  }
  if (kv_str_append(&o->u.str, c->argv[2], c->argl[2])) {
    kv_reply_oom(c);
    return;
  }
  kv_reply_int(c, (int64_t)total);
}
