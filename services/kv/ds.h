/* ds.h -- the KV store's data structures: byte strings, an ordered hash
 * table, a deque and a sorted set.
 *
 * Everything here is deterministic: no clocks, no randomness from the
 * outside world, no ordering by address.  Where an order can be seen by a
 * client it is a function of the operations applied, never of the hash
 * function, of the table's size or of the allocator:
 *
 *   kv_dict   entries live in a dense array in insertion order; a separate
 *             open-addressing table (linear probing, backward-shift
 *             deletion) maps hashes to array positions.  Iteration walks
 *             the array, so the order is the history of adds and deletes:
 *               kv_dict_del_stable  leaves a hole, keeping the order of the
 *                                   others (hashes: HGETALL keeps Redis's
 *                                   small-hash order); holes are squeezed
 *                                   out later without reordering
 *               kv_dict_del_swap    moves the last entry into the hole
 *                                   (sets, where SPOP needs an O(1) pick of
 *                                   the i-th member)
 *             The hash seed changes the probe table only, never an order,
 *             so replicas may use different seeds (and tests check that
 *             they can).
 *   kv_list   a ring buffer of strings (O(1) push/pop at both ends and
 *             index access).
 *   kv_zset   a skiplist ordered by (score, member bytes) with rank spans,
 *             plus a kv_dict from member to node.  Its level generator is
 *             a private PRNG; levels change performance, never an order.
 *
 * Functions that allocate return 0 or -ENOMEM and leave the structure as
 * it was on failure. */
#ifndef SMR_KV_DS_H
#define SMR_KV_DS_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Strings */

/* Longest string a value may grow to (Redis's proto-max-bulk-len default):
 * APPEND refuses to pass it. */
#define KV_STR_MAX ((size_t)512 * 1024 * 1024)

/* len bytes, followed by a NUL that is not part of the value. */
struct kv_str {
  uint32_t len;
  uint8_t data[];
};

/* A copy of p[0..n), n < UINT32_MAX; NULL when out of memory. */
struct kv_str *kv_str_new(const void *p, size_t n);
/* Appends p[0..n) to *s, which may move; 0 or -ENOMEM (*s untouched). */
int kv_str_append(struct kv_str **s, const void *p, size_t n);
/* memcmp order, a prefix first. */
int kv_str_cmp(const void *a, size_t an, const void *b, size_t bn);

/* The table's hash: 64 bits of p[0..n) under seed.  Not cryptographic. */
uint64_t kv_hash(uint64_t seed, const void *p, size_t n);

/* ------------------------------------------------------------------------
 * Ordered hash table */

#define KV_DICT_NONE UINT32_MAX

struct kv_dent {
  struct kv_str *key; /* NULL: a hole left by kv_dict_del_stable */
  uint64_t hash;
  void *val;
};

struct kv_dict {
  struct kv_dent *ent; /* dense, in order */
  uint32_t *slot;      /* 0 empty, else entry index + 1 */
  uint32_t nent;       /* used entries, holes included */
  uint32_t cap;        /* allocated entries */
  uint32_t live;       /* entries that are not holes */
  uint32_t nslot;      /* power of two, or 0 */
  uint64_t seed;
};

void kv_dict_init(struct kv_dict *d, uint64_t seed);
/* Frees the dict's own arrays (not keys or values). */
void kv_dict_free(struct kv_dict *d);

static inline uint32_t kv_dict_size(const struct kv_dict *d) { return d->live; }

/* The index of key p[0..n), or KV_DICT_NONE. */
uint32_t kv_dict_find(const struct kv_dict *d, const void *p, size_t n);

/* Adds key (which must not be present) with val at the end of the order;
 * the dict takes the key.  *idx (if not NULL) gets its index. */
int kv_dict_add(struct kv_dict *d, struct kv_str *key, void *val,
                uint32_t *idx);

/* Remove entry e (the caller frees its key and value, read them first).
 * Indices of other entries may change (squeezing holes, or the swap). */
void kv_dict_del_stable(struct kv_dict *d, uint32_t e);
void kv_dict_del_swap(struct kv_dict *d, uint32_t e);

/* The i-th live entry in order, 0 <= i < size, for a dict without holes
 * (one only ever changed by kv_dict_del_swap). */
uint32_t kv_dict_nth(const struct kv_dict *d, uint32_t i);

/* Checks the table's internal invariants (tests); 0 if they hold. */
int kv_dict_check(const struct kv_dict *d);

/* ------------------------------------------------------------------------
 * Deque */

struct kv_list {
  struct kv_str **a;
  size_t head, len, cap; /* cap is 0 or a power of two */
};

int kv_list_push(struct kv_list *l, struct kv_str *s, int front);
struct kv_str *kv_list_pop(struct kv_list *l, int front); /* len > 0 */
static inline struct kv_str *kv_list_at(const struct kv_list *l, size_t i) {
  return l->a[(l->head + i) & (l->cap - 1)];
}
/* Frees the elements and the array. */
void kv_list_free(struct kv_list *l);

/* ------------------------------------------------------------------------
 * Sorted set */

#define KV_ZSL_MAXLEVEL 32

struct kv_znode {
  struct kv_str *member; /* owned by the zset's dict entry */
  double score;
  struct kv_znode *backward;
  struct kv_zlevel {
    struct kv_znode *fwd;
    size_t span;
  } level[];
};

struct kv_zset {
  struct kv_dict dict; /* member -> node */
  struct kv_znode *header, *tail;
  size_t len;
  int level;
  uint64_t rng;
};

int kv_zset_init(struct kv_zset *z, uint64_t seed);
/* Frees every node and member. */
void kv_zset_free(struct kv_zset *z);

/* The node of member m[0..n), or NULL. */
struct kv_znode *kv_zset_find(const struct kv_zset *z, const void *m, size_t n);
/* Adds a member that is not present (copied); score is not NaN. */
int kv_zset_add(struct kv_zset *z, const void *m, size_t n, double score);
/* Moves an existing member to a new score (the node stays the same). */
void kv_zset_rescore(struct kv_zset *z, struct kv_znode *x, double score);
/* Removes (and frees) a member's node. */
void kv_zset_delete(struct kv_zset *z, struct kv_znode *x);

static inline struct kv_znode *kv_zset_first(const struct kv_zset *z) {
  return z->header->level[0].fwd;
}
/* The node of 0-based rank r < len. */
struct kv_znode *kv_zset_at(const struct kv_zset *z, size_t r);
/* The 0-based rank of a node. */
size_t kv_zset_rank(const struct kv_zset *z, const struct kv_znode *x);

/* First node with score >= min (> min if ex), last with score <= max
 * (< max if ex); NULL if none. */
struct kv_znode *kv_zset_first_score(const struct kv_zset *z, double min,
                                     int ex);
struct kv_znode *kv_zset_last_score(const struct kv_zset *z, double max,
                                    int ex);
/* The same by member only (meaningful when all scores are equal, as for
 * Redis's BYLEX).  A bound is kind '-' (below all), '+' (above all), '['
 * (inclusive) or '(' (exclusive) with bytes b[0..n). */
struct kv_lexbound {
  char kind;
  const uint8_t *b;
  size_t n;
};
struct kv_znode *kv_zset_first_lex(const struct kv_zset *z,
                                   const struct kv_lexbound *min);
struct kv_znode *kv_zset_last_lex(const struct kv_zset *z,
                                  const struct kv_lexbound *max);
/* Whether member m[0..n) is within min (as a lower bound) or max (as an
 * upper bound). */
int kv_lex_gte_min(const uint8_t *m, size_t n, const struct kv_lexbound *min);
int kv_lex_lte_max(const uint8_t *m, size_t n, const struct kv_lexbound *max);

/* Checks the skiplist's invariants (order, spans, backward links, dict
 * agreement); 0 if they hold.  Tests only: O(n). */
int kv_zset_check(const struct kv_zset *z);

#endif
