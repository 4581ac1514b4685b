/* ds.c -- strings, the ordered hash table and the deque (see ds.h).
 *
 * The hash table keeps two arrays:
 *
 *   ent[0..nent)   the entries in order; a deleted entry may leave a hole
 *                  (key NULL).  Holes at the end are dropped at once; the
 *                  others are squeezed out (order kept) when they outnumber
 *                  the live entries or the array must grow.
 *   slot[0..nslot) linear probing over the live entries: 0 is empty, i+1
 *                  points at ent[i].  Kept at most 3/4 full; deletion
 *                  shifts later members of the cluster back instead of
 *                  leaving tombstones, so lookups never degrade.
 *
 * Each entry keeps its full 64-bit hash, which makes rebuilding the probe
 * table cheap and most failed comparisons a single integer compare. */
#include "ds.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"

/* ------------------------------------------------------------------------
 * Strings and hashing */

struct kv_str *kv_str_new(const void *p, size_t n) {
  struct kv_str *s;
  if (n >= UINT32_MAX) return NULL;
  s = malloc(sizeof *s + n + 1);
  if (!s) return NULL;
  s->len = (uint32_t)n;
  if (n) memcpy(s->data, p, n);
  s->data[n] = 0;
  return s;
}

int kv_str_append(struct kv_str **s, const void *p, size_t n) {
  size_t len = (size_t)(*s)->len + n;
  struct kv_str *r;
  if (len >= UINT32_MAX) return -ENOMEM;
  /* realloc grows large blocks in place or by remapping, which keeps
   * repeated APPENDs far from quadratic. */
  r = realloc(*s, sizeof *r + len + 1);
  if (!r) return -ENOMEM;
  if (n) memcpy(r->data + r->len, p, n);
  r->len = (uint32_t)len;
  r->data[len] = 0;
  *s = r;
  return 0;
}

int kv_str_cmp(const void *a, size_t an, const void *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) return c;
  return an < bn ? -1 : an > bn;
}

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t fmix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

uint64_t kv_hash(uint64_t seed, const void *p, size_t n) {
  const uint8_t *s = p;
  uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
  uint64_t w;
  while (n >= 8) {
    memcpy(&w, s, 8);
    h ^= rotl64(w * 0x87c37b91114253d5ULL, 31) * 0x4cf5ad432745937fULL;
    h = rotl64(h, 27) * 5 + 0x52dce729;
    s += 8;
    n -= 8;
  }
  w = 0;
  memcpy(&w, s, n);
  h ^= rotl64(w * 0x87c37b91114253d5ULL, 31) * 0x4cf5ad432745937fULL;
  return fmix64(h);
}

/* ------------------------------------------------------------------------
 * Hash table: probe table */

#define SLOT_MIN 8u
#define ENT_MIN 4u

void kv_dict_init(struct kv_dict *d, uint64_t seed) {
  memset(d, 0, sizeof *d);
  d->seed = seed;
}

void kv_dict_free(struct kv_dict *d) {
  free(d->ent);
  free(d->slot);
  d->ent = NULL;
  d->slot = NULL;
  d->nent = d->cap = d->live = d->nslot = 0;
}

/* Rebuilds the probe table with n slots (a power of two > live). */
static int slots_rebuild(struct kv_dict *d, uint32_t n) {
  uint32_t *s = calloc(n, sizeof *s);
  if (!s) return -ENOMEM;
  for (uint32_t e = 0; e < d->nent; e++) {
    if (!d->ent[e].key) continue;
    uint32_t i = (uint32_t)d->ent[e].hash & (n - 1);
    while (s[i]) i = (i + 1) & (n - 1);
    s[i] = e + 1;
  }
  free(d->slot);
  d->slot = s;
  d->nslot = n;
  return 0;
}

/* The slot holding entry e. */
static uint32_t slot_of(const struct kv_dict *d, uint32_t e) {
  uint32_t mask = d->nslot - 1, i = (uint32_t)d->ent[e].hash & mask;
  while (d->slot[i] != e + 1) {
    smr_assert(d->slot[i] != 0);
    i = (i + 1) & mask;
  }
  return i;
}

/* Empties slot i, shifting back the entries of its cluster that may not
 * stay behind the gap. */
static void slot_remove(struct kv_dict *d, uint32_t i) {
  uint32_t mask = d->nslot - 1, j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!d->slot[j]) break;
    uint32_t k = (uint32_t)d->ent[d->slot[j] - 1].hash & mask;
    /* The entry at j may move to the gap at i unless its home k lies
     * cyclically in (i, j]. */
    int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      d->slot[i] = d->slot[j];
      i = j;
    }
  }
  d->slot[i] = 0;
}

uint32_t kv_dict_find(const struct kv_dict *d, const void *p, size_t n) {
  uint64_t h;
  uint32_t mask, i;
  if (d->live == 0) return KV_DICT_NONE;
  h = kv_hash(d->seed, p, n);
  mask = d->nslot - 1;
  i = (uint32_t)h & mask;
  while (d->slot[i]) {
    const struct kv_dent *x = &d->ent[d->slot[i] - 1];
    if (x->hash == h && x->key->len == n && memcmp(x->key->data, p, n) == 0)
      return d->slot[i] - 1;
    i = (i + 1) & mask;
  }
  return KV_DICT_NONE;
}

/* ------------------------------------------------------------------------
 * Hash table: the entry array */

/* Squeezes the holes out of ent[], keeping the order, and rebuilds the
 * probe table (sized for live, so this also shrinks it). */
static int compact(struct kv_dict *d) {
  uint32_t w = 0, n = SLOT_MIN;
  while (n / 4 * 3 < d->live + 1) n *= 2;
  for (uint32_t e = 0; e < d->nent; e++)
    if (d->ent[e].key) d->ent[w++] = d->ent[e];
  smr_assert(w == d->live);
  d->nent = w;
  /* Entries moved: the old probe table is garbage either way. */
  if (slots_rebuild(d, n)) {
    /* Keep a consistent table: rebuild in place at the old size, which
     * needs no memory (it held at least these entries). */
    memset(d->slot, 0, d->nslot * sizeof *d->slot);
    for (uint32_t e = 0; e < d->nent; e++) {
      uint32_t i = (uint32_t)d->ent[e].hash & (d->nslot - 1);
      while (d->slot[i]) i = (i + 1) & (d->nslot - 1);
      d->slot[i] = e + 1;
    }
  }
  return 0;
}

int kv_dict_add(struct kv_dict *d, struct kv_str *key, void *val,
                uint32_t *idx) {
  uint64_t h = kv_hash(d->seed, key->data, key->len);
  uint32_t e;
  smr_assert(kv_dict_find(d, key->data, key->len) == KV_DICT_NONE);
  if (d->live >= UINT32_MAX / 4) return -ENOMEM;
  /* Probe table: at most 3/4 full after the add. */
  if ((uint64_t)(d->live + 1) * 4 > (uint64_t)d->nslot * 3) {
    uint32_t n = d->nslot ? d->nslot * 2 : SLOT_MIN;
    if (slots_rebuild(d, n)) return -ENOMEM;
  }
  if (d->nent == d->cap) {
    if (d->nent - d->live >= d->nent / 2 && d->nent > 0) {
      compact(d); /* at least half holes: room without growing */
    } else {
      uint32_t cap = d->cap ? d->cap * 2 : ENT_MIN;
      struct kv_dent *ne = realloc(d->ent, (size_t)cap * sizeof *ne);
      if (!ne) return -ENOMEM;
      d->ent = ne;
      d->cap = cap;
    }
  }
  e = d->nent++;
  d->ent[e].key = key;
  d->ent[e].hash = h;
  d->ent[e].val = val;
  d->live++;
  {
    uint32_t mask = d->nslot - 1, i = (uint32_t)h & mask;
    while (d->slot[i]) i = (i + 1) & mask;
    d->slot[i] = e + 1;
  }
  if (idx) *idx = e;
  return 0;
}

/* After a delete: release memory of a table that became mostly empty. */
static void maybe_shrink(struct kv_dict *d) {
  if (d->live == 0) {
    kv_dict_free(d);
    return;
  }
  if (d->nslot > SLOT_MIN && d->live < d->nslot / 8) {
    if (d->nent != d->live) compact(d);
    else slots_rebuild(d, d->nslot / 4 >= SLOT_MIN ? d->nslot / 4 : SLOT_MIN);
  }
  if (d->cap > ENT_MIN && d->nent < d->cap / 4) {
    struct kv_dent *ne = realloc(d->ent, (size_t)(d->cap / 2) * sizeof *ne);
    if (ne) {
      d->ent = ne;
      d->cap /= 2;
    }
  }
}

void kv_dict_del_stable(struct kv_dict *d, uint32_t e) {
  smr_assert(e < d->nent && d->ent[e].key);
  slot_remove(d, slot_of(d, e));
  d->ent[e].key = NULL;
  d->ent[e].val = NULL;
  d->live--;
  while (d->nent && !d->ent[d->nent - 1].key) d->nent--;
  if (d->nent - d->live > d->live && d->nent > 16) compact(d);
  maybe_shrink(d);
}

void kv_dict_del_swap(struct kv_dict *d, uint32_t e) {
  uint32_t last;
  smr_assert(e < d->nent && d->ent[e].key);
  slot_remove(d, slot_of(d, e));
  d->live--;
  last = d->nent - 1;
  smr_assert(d->ent[last].key); /* trailing holes never stay */
  if (last != e) {
    uint32_t s = slot_of(d, last);
    d->ent[e] = d->ent[last];
    d->slot[s] = e + 1;
  }
  d->nent--;
  while (d->nent && !d->ent[d->nent - 1].key) d->nent--;
  maybe_shrink(d);
}

uint32_t kv_dict_nth(const struct kv_dict *d, uint32_t i) {
  smr_assert(d->nent == d->live && i < d->live);
  return i;
}

int kv_dict_check(const struct kv_dict *d) {
  uint32_t live = 0, used = 0;
  if (d->live == 0) return d->nent == 0 ? 0 : -1;
  if (d->nslot & (d->nslot - 1)) return -1;
  if ((uint64_t)d->live * 4 > (uint64_t)d->nslot * 3) return -1;
  if (d->nent > d->cap || !d->ent[d->nent - 1].key) return -1;
  for (uint32_t e = 0; e < d->nent; e++) {
    if (!d->ent[e].key) continue;
    live++;
    if (d->ent[e].hash != kv_hash(d->seed, d->ent[e].key->data,
                                  d->ent[e].key->len))
      return -1;
    if (kv_dict_find(d, d->ent[e].key->data, d->ent[e].key->len) != e)
      return -1;
  }
  for (uint32_t i = 0; i < d->nslot; i++) used += d->slot[i] != 0;
  return live == d->live && used == d->live ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * Deque */

static int list_resize(struct kv_list *l, size_t cap) {
  struct kv_str **a = malloc(cap * sizeof *a);
  if (!a) return -ENOMEM;
  for (size_t i = 0; i < l->len; i++) a[i] = kv_list_at(l, i);
  free(l->a);
  l->a = a;
  l->cap = cap;
  l->head = 0;
  return 0;
}

int kv_list_push(struct kv_list *l, struct kv_str *s, int front) {
  if (l->len == l->cap) {
    if (l->cap > SIZE_MAX / 2 / sizeof(void *)) return -ENOMEM;
    if (list_resize(l, l->cap ? l->cap * 2 : 4)) return -ENOMEM;
  }
  if (front) {
    l->head = (l->head - 1) & (l->cap - 1);
    l->a[l->head] = s;
  } else {
    l->a[(l->head + l->len) & (l->cap - 1)] = s;
  }
  l->len++;
  return 0;
}

struct kv_str *kv_list_pop(struct kv_list *l, int front) {
  struct kv_str *s;
  smr_assert(l->len > 0);
  if (front) {
    s = l->a[l->head];
    l->head = (l->head + 1) & (l->cap - 1);
  } else {
    s = kv_list_at(l, l->len - 1);
  }
  l->len--;
  /* Give memory back after mass pops (a failed shrink changes nothing). */
  if (l->cap > 16 && l->len < l->cap / 4) list_resize(l, l->cap / 2);
  return s;
}

void kv_list_free(struct kv_list *l) {
  for (size_t i = 0; i < l->len; i++) free(kv_list_at(l, i));
  free(l->a);
  memset(l, 0, sizeof *l);
}
