/* cmd_zset.c -- sorted set commands: ZADD ZINCRBY ZREM ZPOPMIN ZPOPMAX
 * ZRANGE ZREVRANGE ZCARD ZSCORE ZRANK.
 *
 * A sorted set is a kv_zset: ordered by (score, member), ties in score by
 * member bytes, exactly Redis's order, so every reply matches Redis's.
 * Scores print as Redis 7.0 prints them ("%.17g", inf, -inf).
 *
 * ZRANGE takes Redis 6.2+'s unified form:
 *   ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count]
 *          [WITHSCORES]
 * with Redis's quirks kept: a negative LIMIT offset gives nothing, a
 * negative count means no limit, LIMIT 0 -1 is accepted with a rank range,
 * and score bounds are parsed with strtod as Redis does ("(" alone is
 * "greater than 0").  BYLEX is defined, as in Redis, for sets whose
 * members all have the same score; with mixed scores Redis's answer
 * depends on its internal encoding (a linear scan for small sets, a
 * skiplist descent for large ones) and ours is the skiplist descent's,
 * always (deterministic, but it may differ from a small Redis set's). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "store_int.h"

/* ------------------------------------------------------------------------
 * ZADD, ZINCRBY */

#define Z_NX 0x01u
#define Z_XX 0x02u
#define Z_GT 0x04u
#define Z_LT 0x08u
#define Z_CH 0x10u
#define Z_INCR 0x20u

static void zadd_generic(struct kv_ctx *c, unsigned flags) {
  size_t first = 2, pairs;
  int wrong, created = 0;
  int64_t added = 0, updated = 0, processed = 0;
  double *scores, newscore = 0;
  struct kv_obj *o = NULL;
  for (; first < c->argc; first++) {
    if (kv_arg_is(c, first, "nx")) flags |= Z_NX;
    else if (kv_arg_is(c, first, "xx")) flags |= Z_XX;
    else if (kv_arg_is(c, first, "ch")) flags |= Z_CH;
    else if (kv_arg_is(c, first, "incr")) flags |= Z_INCR;
    else if (kv_arg_is(c, first, "gt")) flags |= Z_GT;
    else if (kv_arg_is(c, first, "lt")) flags |= Z_LT;
    else break;
  }
  pairs = c->argc - first;
  if (pairs == 0 || pairs % 2) {
    kv_reply_syntax(c);
    return;
  }
  pairs /= 2;
  if ((flags & Z_NX) && (flags & Z_XX)) {
    kv_reply_error(c, "ERR XX and NX options at the same time are not "
                      "compatible");
    return;
  }
  if (((flags & Z_GT) && (flags & Z_NX)) || ((flags & Z_LT) && (flags & Z_NX)) ||
      ((flags & Z_GT) && (flags & Z_LT))) {
    kv_reply_error(c, "ERR GT, LT, and/or NX options at the same time are "
                      "not compatible");
    return;
  }
  if ((flags & Z_INCR) && pairs > 1) {
    kv_reply_error(c, "ERR INCR option supports a single increment-element "
                      "pair");
    return;
  }
  scores = malloc(pairs * sizeof *scores);
  if (!scores) {
    kv_reply_oom(c);
    return;
  }
  for (size_t i = 0; i < pairs; i++)
    if (kv_arg_double(c, first + 2 * i, &scores[i])) goto done;
  o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) goto done;
  if (!o) {
    if (flags & Z_XX) goto reply;
    o = kv_obj_new(c->s, KV_ZSET);
    if (!o) {
      kv_reply_oom(c);
      goto done;
    }
    if (kv_add_arg(c, 1, o)) goto done;
    created = 1;
  }
  for (size_t i = 0; i < pairs; i++) {
    const uint8_t *m = c->argv[first + 2 * i + 1];
    size_t mn = c->argl[first + 2 * i + 1];
    double score = scores[i];
    struct kv_znode *x = kv_zset_find(o->u.zset, m, mn);
    if (x) {
      if (flags & Z_NX) continue;
      if (flags & Z_INCR) {
        score += x->score;
        if (isnan(score)) {
          kv_reply_error(c, "ERR resulting score is not a number (NaN)");
          goto done;
        }
      }
      if (((flags & Z_LT) && score >= x->score) ||
          ((flags & Z_GT) && score <= x->score))
        continue;
      newscore = score;
      processed++;
      if (score != x->score) {
        kv_zset_rescore(o->u.zset, x, score);
        updated++;
      }
    } else if (!(flags & Z_XX)) {
      if (kv_zset_add(o->u.zset, m, mn, score)) {
        kv_reply_oom(c);
        goto done;
      }
      newscore = score;
      added++;
      processed++;
    }
  }
reply:
  if (flags & Z_INCR) {
    if (processed)
      kv_reply_double(c, newscore);
    else
      kv_reply_null(c);
  } else {
    kv_reply_int(c, (flags & Z_CH) ? added + updated : added);
  }
done:
  /* A set created by this command stays only if something went in. */
  if (created && o->u.zset->len == 0) kv_delete_arg(c, 1);
  free(scores);
}

void kv_cmd_zadd(struct kv_ctx *c) { zadd_generic(c, 0); }

void kv_cmd_zincrby(struct kv_ctx *c) {
  /* ZINCRBY key increment member is ZADD key INCR increment member. */
  zadd_generic(c, Z_INCR);
}

/* ------------------------------------------------------------------------
 * ZREM, ZPOPMIN, ZPOPMAX */

void kv_cmd_zrem(struct kv_ctx *c) {
  int wrong;
  int64_t removed = 0;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_int(c, 0);
    return;
  }
  for (size_t i = 2; i < c->argc; i++) {
    struct kv_znode *x = kv_zset_find(o->u.zset, c->argv[i], c->argl[i]);
    if (!x) continue;
    kv_zset_delete(o->u.zset, x);
    removed++;
  }
  if (o->u.zset->len == 0) kv_delete_arg(c, 1);
  kv_reply_int(c, removed);
}

static void zpop_generic(struct kv_ctx *c, int max) {
  int wrong;
  int64_t count = 1;
  size_t n;
  struct kv_obj *o;
  struct kv_zset *z;
  if (c->argc > 3) {
    kv_reply_syntax(c);
    return;
  }
  if (c->argc == 3 && kv_arg_positive(c, 2, &count)) return;
  o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  if (!o || count == 0) {
    kv_reply_array(c, 0);
    return;
  }
  z = o->u.zset;
  n = (uint64_t)count < z->len ? (size_t)count : z->len;
  kv_reply_array(c, 2 * (uint64_t)n);
  for (size_t i = 0; i < n; i++) {
    struct kv_znode *x = max ? z->tail : kv_zset_first(z);
    kv_reply_str(c, x->member);
    kv_reply_double(c, x->score);
    kv_zset_delete(z, x);
  }
  if (z->len == 0) kv_delete_arg(c, 1);
}

void kv_cmd_zpopmin(struct kv_ctx *c) { zpop_generic(c, 0); }
void kv_cmd_zpopmax(struct kv_ctx *c) { zpop_generic(c, 1); }

/* ------------------------------------------------------------------------
 * ZRANGE */

enum { BY_AUTO, BY_RANK, BY_SCORE, BY_LEX };
enum { DIR_AUTO, DIR_FWD, DIR_REV };

/* A score bound the way Redis parses it: strtod over the C string, with an
 * optional leading '(' for an exclusive bound. */
static int parse_score_bound(const uint8_t *s, double *v, int *ex) {
  char *end;
  const char *p = (const char *)s;
  *ex = 0;
  if (*p == '(') {
    *ex = 1;
    p++;
  }
  *v = strtod(p, &end);
  return *end == 0 && !isnan(*v) ? 0 : -1;
}

static int parse_lex_bound(const uint8_t *s, size_t n, struct kv_lexbound *b) {
  switch (s[0]) {
    case '+':
    case '-':
      if (s[1] != 0) return -1;
      b->kind = (char)s[0];
      b->b = NULL;
      b->n = 0;
      return 0;
    case '(':
    case '[':
      b->kind = (char)s[0];
      b->b = s + 1;
      b->n = n - 1;
      return 0;
    default:
      return -1;
  }
}

static void emit(struct kv_ctx *c, const struct kv_znode *x, int withscores) {
  kv_reply_str(c, x->member);
  if (withscores) kv_reply_double(c, x->score);
}

static void zrange_generic(struct kv_ctx *c, int by, int dir) {
  size_t minidx = 2, maxidx = 3;
  int withscores = 0, wrong;
  int64_t offset = 0, limit = -1;
  struct kv_obj *o;
  struct kv_zset *z;
  double smin = 0, smax = 0;
  int exmin = 0, exmax = 0;
  struct kv_lexbound lmin = {0, NULL, 0}, lmax = {0, NULL, 0};
  int64_t start = 0, end = 0;

  for (size_t j = 4; j < c->argc; j++) {
    size_t left = c->argc - j - 1;
    if (kv_arg_is(c, j, "withscores")) {
      withscores = 1;
    } else if (kv_arg_is(c, j, "limit") && left >= 2) {
      if (kv_arg_ll(c, j + 1, &offset) || kv_arg_ll(c, j + 2, &limit)) return;
      j += 2;
    } else if (dir == DIR_AUTO && kv_arg_is(c, j, "rev")) {
      dir = DIR_REV;
    } else if (by == BY_AUTO && kv_arg_is(c, j, "bylex")) {
      by = BY_LEX;
    } else if (by == BY_AUTO && kv_arg_is(c, j, "byscore")) {
      by = BY_SCORE;
    } else {
      kv_reply_syntax(c);
      return;
    }
  }
  if (dir == DIR_AUTO) dir = DIR_FWD;
  if (by == BY_AUTO) by = BY_RANK;
  if (limit != -1 && by == BY_RANK) {
    kv_reply_error(c, "ERR syntax error, LIMIT is only supported in "
                      "combination with either BYSCORE or BYLEX");
    return;
  }
  if (withscores && by == BY_LEX) {
    kv_reply_error(c, "ERR syntax error, WITHSCORES not supported in "
                      "combination with BYLEX");
    return;
  }
  if (dir == DIR_REV && by != BY_RANK) {
    minidx = 3;
    maxidx = 2;
  }
  switch (by) {
    case BY_RANK:
      if (kv_arg_ll(c, minidx, &start) || kv_arg_ll(c, maxidx, &end)) return;
      break;
    case BY_SCORE:
      if (parse_score_bound(c->argv[minidx], &smin, &exmin) ||
          parse_score_bound(c->argv[maxidx], &smax, &exmax)) {
        kv_reply_error(c, "ERR min or max is not a float");
        return;
      }
      break;
    default:
      if (parse_lex_bound(c->argv[minidx], c->argl[minidx], &lmin) ||
          parse_lex_bound(c->argv[maxidx], c->argl[maxidx], &lmax)) {
        kv_reply_error(c, "ERR min or max not valid string range item");
        return;
      }
      break;
  }
  o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  if (!o) {
    kv_reply_array(c, 0);
    return;
  }
  z = o->u.zset;

  if (by == BY_RANK) {
    int64_t len = (int64_t)z->len;
    const struct kv_znode *x;
    if (start < 0) start = len + start;
    if (end < 0) end = len + end;
    if (start < 0) start = 0;
    if (start > end || start >= len) {
      kv_reply_array(c, 0);
      return;
    }
    if (end >= len) end = len - 1;
    kv_reply_array(c, (uint64_t)(end - start + 1) * (withscores ? 2 : 1));
    x = kv_zset_at(z, dir == DIR_REV ? (size_t)(len - 1 - start)
                                     : (size_t)start);
    for (int64_t i = start; i <= end; i++) {
      emit(c, x, withscores);
      x = dir == DIR_REV ? x->backward : x->level[0].fwd;
    }
    return;
  }

  /* BYSCORE / BYLEX: find the first node, skip offset, take up to limit
   * while in range.  Two passes: count, then reply. */
  for (int pass = 0; pass < 2; pass++) {
    const struct kv_znode *x;
    int64_t skip = offset, take = limit;
    uint64_t n = 0;
    if (by == BY_SCORE)
      x = dir == DIR_REV ? kv_zset_last_score(z, smax, exmax)
                         : kv_zset_first_score(z, smin, exmin);
    else
      x = dir == DIR_REV ? kv_zset_last_lex(z, &lmax) : kv_zset_first_lex(z, &lmin);
    if (skip < 0) x = NULL; /* Redis's while (offset--) runs off the end */
    while (x && skip > 0) {
      x = dir == DIR_REV ? x->backward : x->level[0].fwd;
      skip--;
    }
    while (x && take != 0) {
      int in;
      if (by == BY_SCORE)
        in = dir == DIR_REV ? (exmin ? x->score > smin : x->score >= smin)
                            : (exmax ? x->score < smax : x->score <= smax);
      else
        in = dir == DIR_REV
                 ? kv_lex_gte_min(x->member->data, x->member->len, &lmin)
                 : kv_lex_lte_max(x->member->data, x->member->len, &lmax);
      if (!in) break;
      if (pass)
        emit(c, x, withscores);
      else
        n++;
      if (take > 0) take--;
      x = dir == DIR_REV ? x->backward : x->level[0].fwd;
    }
    if (!pass) kv_reply_array(c, n * (withscores ? 2 : 1));
  }
}

void kv_cmd_zrange(struct kv_ctx *c) { zrange_generic(c, BY_AUTO, DIR_AUTO); }
void kv_cmd_zrevrange(struct kv_ctx *c) { zrange_generic(c, BY_RANK, DIR_REV); }

/* ------------------------------------------------------------------------
 * ZCARD, ZSCORE, ZRANK */

void kv_cmd_zcard(struct kv_ctx *c) {
  int wrong;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  kv_reply_int(c, o ? (int64_t)o->u.zset->len : 0);
}

void kv_cmd_zscore(struct kv_ctx *c) {
  int wrong;
  struct kv_znode *x = NULL;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  if (o) x = kv_zset_find(o->u.zset, c->argv[2], c->argl[2]);
  if (x)
    kv_reply_double(c, x->score);
  else
    kv_reply_null(c);
}

void kv_cmd_zrank(struct kv_ctx *c) {
  int wrong;
  struct kv_znode *x = NULL;
  struct kv_obj *o = kv_lookup_type(c, 1, KV_ZSET, &wrong);
  if (wrong) return;
  if (o) x = kv_zset_find(o->u.zset, c->argv[2], c->argl[2]);
  if (x)
    kv_reply_int(c, (int64_t)kv_zset_rank(o->u.zset, x));
  else
    kv_reply_null(c);
}
