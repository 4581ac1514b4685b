/* zset.c -- the sorted set: a skiplist with rank spans plus a member index
 * (see ds.h).
 *
 * The skiplist is ordered by (score, member bytes), so ties in score are
 * broken by member and the order of a sorted set is a function of its
 * content alone.  Each forward link carries a span, the number of level-0
 * steps it jumps, which gives rank lookups (ZRANGE by index) in O(log n).
 *
 * A node's height is drawn from a private xorshift generator seeded when
 * the set is created: heights decide speed, never order or replies, so
 * they need not agree across replicas (a restored set draws new heights).
 *
 * Negative zero is stored as zero: Redis 7.0's small sorted sets (the
 * listpack encoding) print a score of -0 as "0", and one canonical zero
 * keeps digests independent of how a zero was written. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "ds.h"

/* ------------------------------------------------------------------------
 * Nodes and order */

static struct kv_znode *node_new(int level, double score,
                                 struct kv_str *member) {
  struct kv_znode *x =
      malloc(sizeof *x + (size_t)level * sizeof(struct kv_zlevel));
  if (!x) return NULL;
  x->member = member;
  x->score = score;
  x->backward = NULL;
  for (int i = 0; i < level; i++) {
    x->level[i].fwd = NULL;
    x->level[i].span = 0;
  }
  return x;
}

/* (score, member) of x is below (s, m[0..n)). */
static int node_lt(const struct kv_znode *x, double s, const uint8_t *m,
                   size_t n) {
  if (x->score != s) return x->score < s;
  return kv_str_cmp(x->member->data, x->member->len, m, n) < 0;
}

static int random_level(struct kv_zset *z) {
  int level = 1;
  /* xorshift64: P(level > k) = 4^-k. */
  z->rng ^= z->rng << 13;
  z->rng ^= z->rng >> 7;
  z->rng ^= z->rng << 17;
  for (uint64_t r = z->rng; (r & 3) == 0 && level < KV_ZSL_MAXLEVEL; r >>= 2)
    level++;
  return level;
}

/* ------------------------------------------------------------------------
 * Setup */

int kv_zset_init(struct kv_zset *z, uint64_t seed) {
  memset(z, 0, sizeof *z);
  kv_dict_init(&z->dict, seed);
  z->header = node_new(KV_ZSL_MAXLEVEL, 0, NULL);
  if (!z->header) return -ENOMEM;
  z->level = 1;
  z->rng = (seed ^ 0x2545f4914f6cdd1dULL) | 1;
  return 0;
}

void kv_zset_free(struct kv_zset *z) {
  struct kv_znode *x = z->header ? z->header->level[0].fwd : NULL;
  while (x) {
    struct kv_znode *next = x->level[0].fwd;
    free(x->member);
    free(x);
    x = next;
  }
  free(z->header);
  kv_dict_free(&z->dict);
  memset(z, 0, sizeof *z);
}

/* ------------------------------------------------------------------------
 * Skiplist surgery */

/* Links node x of the given height where (x->score, x->member) belongs. */
static void sl_link(struct kv_zset *z, struct kv_znode *x, int level) {
  struct kv_znode *update[KV_ZSL_MAXLEVEL], *y = z->header;
  size_t rank[KV_ZSL_MAXLEVEL];
  for (int i = z->level - 1; i >= 0; i--) {
    rank[i] = i == z->level - 1 ? 0 : rank[i + 1];
    while (y->level[i].fwd &&
           node_lt(y->level[i].fwd, x->score, x->member->data, x->member->len)) {
      rank[i] += y->level[i].span;
      y = y->level[i].fwd;
    }
    update[i] = y;
  }
  if (level > z->level) {
    for (int i = z->level; i < level; i++) {
      rank[i] = 0;
      update[i] = z->header;
      update[i]->level[i].span = z->len;
    }
    z->level = level;
  }
  for (int i = 0; i < level; i++) {
    x->level[i].fwd = update[i]->level[i].fwd;
    update[i]->level[i].fwd = x;
    x->level[i].span = update[i]->level[i].span - (rank[0] - rank[i]);
    update[i]->level[i].span = rank[0] - rank[i] + 1;
  }
  for (int i = level; i < z->level; i++) update[i]->level[i].span++;
  x->backward = update[0] == z->header ? NULL : update[0];
  if (x->level[0].fwd)
    x->level[0].fwd->backward = x;
  else
    z->tail = x;
  z->len++;
}

/* A new node for (score, member), linked. */
static struct kv_znode *sl_insert(struct kv_zset *z, double score,
                                  struct kv_str *member) {
  int level = random_level(z);
  struct kv_znode *x = node_new(level, score, member);
  if (x) sl_link(z, x, level);
  return x;
}

/* Unlinks node x (not freed); returns its height. */
static int sl_unlink(struct kv_zset *z, struct kv_znode *x) {
  int height = 0;
  struct kv_znode *update[KV_ZSL_MAXLEVEL], *y = z->header;
  for (int i = z->level - 1; i >= 0; i--) {
    while (y->level[i].fwd && y->level[i].fwd != x &&
           node_lt(y->level[i].fwd, x->score, x->member->data, x->member->len))
      y = y->level[i].fwd;
    update[i] = y;
  }
  smr_assert(update[0]->level[0].fwd == x);
  for (int i = 0; i < z->level; i++) {
    if (update[i]->level[i].fwd == x) {
      height++;
      update[i]->level[i].span += x->level[i].span - 1;
      update[i]->level[i].fwd = x->level[i].fwd;
    } else {
      update[i]->level[i].span--;
    }
  }
  if (x->level[0].fwd)
    x->level[0].fwd->backward = x->backward;
  else
    z->tail = x->backward;
  while (z->level > 1 && !z->header->level[z->level - 1].fwd) z->level--;
  z->len--;
  return height;
}

/* ------------------------------------------------------------------------
 * Members */

struct kv_znode *kv_zset_find(const struct kv_zset *z, const void *m,
                              size_t n) {
  uint32_t e = kv_dict_find(&z->dict, m, n);
  return e == KV_DICT_NONE ? NULL : z->dict.ent[e].val;
}

int kv_zset_add(struct kv_zset *z, const void *m, size_t n, double score) {
  struct kv_str *member;
  struct kv_znode *x;
  smr_assert(!isnan(score));
  if (score == 0) score = 0; /* -0 -> 0 */
  member = kv_str_new(m, n);
  if (!member) return -ENOMEM;
  x = sl_insert(z, score, member);
  if (!x) {
    free(member);
    return -ENOMEM;
  }
  if (kv_dict_add(&z->dict, member, x, NULL)) {
    sl_unlink(z, x);
    free(x);
    free(member);
    return -ENOMEM;
  }
  return 0;
}

void kv_zset_rescore(struct kv_zset *z, struct kv_znode *x, double score) {
  int height;
  smr_assert(!isnan(score));
  if (score == 0) score = 0;
  /* In place when the order stays the same. */
  if ((!x->backward || x->backward->score < score ||
       (x->backward->score == score &&
        kv_str_cmp(x->backward->member->data, x->backward->member->len,
                   x->member->data, x->member->len) < 0)) &&
      (!x->level[0].fwd || x->level[0].fwd->score > score ||
       (x->level[0].fwd->score == score &&
        kv_str_cmp(x->level[0].fwd->member->data, x->level[0].fwd->member->len,
                   x->member->data, x->member->len) > 0))) {
    x->score = score;
    return;
  }
  /* Else relink the same node (no allocation, so no failure). */
  height = sl_unlink(z, x);
  x->score = score;
  sl_link(z, x, height);
}

void kv_zset_delete(struct kv_zset *z, struct kv_znode *x) {
  uint32_t e = kv_dict_find(&z->dict, x->member->data, x->member->len);
  smr_assert(e != KV_DICT_NONE && z->dict.ent[e].val == x);
  sl_unlink(z, x);
  kv_dict_del_swap(&z->dict, e);
  free(x->member);
  free(x);
}

/* ------------------------------------------------------------------------
 * Ranks */

struct kv_znode *kv_zset_at(const struct kv_zset *z, size_t r) {
  struct kv_znode *x = z->header;
  size_t traversed = 0, want = r + 1;
  smr_assert(r < z->len);
  for (int i = z->level - 1; i >= 0; i--) {
    while (x->level[i].fwd && traversed + x->level[i].span <= want) {
      traversed += x->level[i].span;
      x = x->level[i].fwd;
    }
    if (traversed == want) return x;
  }
  smr_assert(0 && "unreachable");
  return NULL;
}

size_t kv_zset_rank(const struct kv_zset *z, const struct kv_znode *x) {
  const struct kv_znode *y = z->header;
  size_t rank = 0;
  for (int i = z->level - 1; i >= 0; i--) {
    while (y->level[i].fwd &&
           (y->level[i].fwd == x ||
            node_lt(y->level[i].fwd, x->score, x->member->data,
                    x->member->len))) {
      rank += y->level[i].span;
      y = y->level[i].fwd;
      if (y == x) return rank - 1;
    }
  }
  smr_assert(0 && "unreachable");
  return 0;
}

/* ------------------------------------------------------------------------
 * Ranges */

struct kv_znode *kv_zset_first_score(const struct kv_zset *z, double min,
                                     int ex) {
  struct kv_znode *x = z->header;
  for (int i = z->level - 1; i >= 0; i--)
    while (x->level[i].fwd &&
           (ex ? x->level[i].fwd->score <= min : x->level[i].fwd->score < min))
      x = x->level[i].fwd;
  return x->level[0].fwd;
}

struct kv_znode *kv_zset_last_score(const struct kv_zset *z, double max,
                                    int ex) {
  struct kv_znode *x = z->header;
  for (int i = z->level - 1; i >= 0; i--)
    while (x->level[i].fwd &&
           (ex ? x->level[i].fwd->score < max : x->level[i].fwd->score <= max))
      x = x->level[i].fwd;
  return x == z->header ? NULL : x;
}

int kv_lex_gte_min(const uint8_t *m, size_t n, const struct kv_lexbound *min) {
  switch (min->kind) {
    case '-': return 1;
    case '+': return 0;
    case '[': return kv_str_cmp(m, n, min->b, min->n) >= 0;
    default: return kv_str_cmp(m, n, min->b, min->n) > 0;
  }
}

int kv_lex_lte_max(const uint8_t *m, size_t n, const struct kv_lexbound *max) {
  switch (max->kind) {
    case '-': return 0;
    case '+': return 1;
    case '[': return kv_str_cmp(m, n, max->b, max->n) <= 0;
    default: return kv_str_cmp(m, n, max->b, max->n) < 0;
  }
}

struct kv_znode *kv_zset_first_lex(const struct kv_zset *z,
                                   const struct kv_lexbound *min) {
  struct kv_znode *x = z->header;
  for (int i = z->level - 1; i >= 0; i--)
    while (x->level[i].fwd &&
           !kv_lex_gte_min(x->level[i].fwd->member->data,
                           x->level[i].fwd->member->len, min))
      x = x->level[i].fwd;
  return x->level[0].fwd;
}

struct kv_znode *kv_zset_last_lex(const struct kv_zset *z,
                                  const struct kv_lexbound *max) {
  struct kv_znode *x = z->header;
  for (int i = z->level - 1; i >= 0; i--)
    while (x->level[i].fwd &&
           kv_lex_lte_max(x->level[i].fwd->member->data,
                          x->level[i].fwd->member->len, max))
      x = x->level[i].fwd;
  return x == z->header ? NULL : x;
}

/* ------------------------------------------------------------------------
 * Checks */

int kv_zset_check(const struct kv_zset *z) {
  const struct kv_znode *x, *prev = NULL;
  size_t n = 0;
  if (kv_dict_check(&z->dict) || kv_dict_size(&z->dict) != z->len) return -1;
  for (x = z->header->level[0].fwd; x; prev = x, x = x->level[0].fwd) {
    if (x->backward != prev) return -1;
    if (isnan(x->score) || (x->score == 0 && signbit(x->score))) return -1;
    if (prev && !node_lt(prev, x->score, x->member->data, x->member->len))
      return -1;
    if (kv_zset_find(z, x->member->data, x->member->len) != x) return -1;
    if (kv_zset_rank(z, x) != n) return -1;
    n++;
  }
  if (n != z->len || z->tail != prev) return -1;
  /* Spans: each link at each level jumps exactly its span in ranks. */
  for (int i = 0; i < z->level; i++) {
    size_t r = 0;
    const struct kv_znode *y = z->header;
    while (y->level[i].fwd) {
      r += y->level[i].span;
      if (kv_zset_rank(z, y->level[i].fwd) + 1 != r) return -1;
      y = y->level[i].fwd;
    }
  }
  return 0;
}
