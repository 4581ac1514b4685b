/* gate_slots.c -- which release slot a gated connection has (gate_int.h).
 *
 * The bpf gate keeps release points in a shared array so that a release is
 * a store, not a system call (gate_bpf.c); this is the bookkeeping beside
 * it: a map from the client's (address, port) to its slot, and the free
 * slots.
 *
 * Design.
 *   - The map is open addressing with linear probing over twice as many
 *     buckets as slots (so it is never more than half full), and deletion
 *     by backward shift: no tombstones, lookups stay short after any
 *     number of opens and closes.
 *   - Free slots wait in a FIFO: a freed slot is handed out again only
 *     after every other free one.  A packet of a connection being closed
 *     that the BPF program looked up just before the close therefore meets
 *     its own old point, not a new connection's.
 *   - Slot 0 is never handed out: an entry whose slot is 0 has none. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "gate_int.h"

static uint32_t slot_hash(const struct gate_slots *s, uint32_t addr,
                          uint16_t port) {
  uint32_t h = addr * 0x9e3779b1u ^ (uint32_t)port * 0x85ebca6bu;
  h ^= h >> 15;
  return h & (s->nbuckets - 1);
}

int gate_slots_init(struct gate_slots *s, uint32_t nslots) {
  if (nslots < 2 || (nslots & (nslots - 1)) != 0) return -EINVAL;
  s->nslots = nslots;
  s->nbuckets = 2 * nslots;
  s->index = calloc(s->nbuckets, sizeof(*s->index));
  s->fifo = calloc(nslots, sizeof(*s->fifo));
  if (s->index == NULL || s->fifo == NULL) {
    gate_slots_free(s);
    return -ENOMEM;
  }
  for (uint32_t i = 1; i < nslots; i++) s->fifo[i - 1] = i;
  s->head = 0;
  s->nfree = nslots - 1;
  return 0;
}

void gate_slots_free(struct gate_slots *s) {
  free(s->index);
  free(s->fifo);
  s->index = NULL;
  s->fifo = NULL;
  s->nfree = 0;
}

uint32_t gate_slots_find(const struct gate_slots *s, uint32_t addr,
                         uint16_t port) {
  if (s->index == NULL) return 0;
  for (uint32_t i = slot_hash(s, addr, port);;
       i = (i + 1) & (s->nbuckets - 1)) {
    const struct gate_slot_ent *e = &s->index[i];
    if (!e->used) return 0;
    if (e->addr == addr && e->port == port) return e->slot;
  }
}

uint32_t gate_slots_get(struct gate_slots *s, uint32_t addr, uint16_t port) {
  if (s->index == NULL) return 0;
  uint32_t i = slot_hash(s, addr, port);
  for (;; i = (i + 1) & (s->nbuckets - 1)) {
    struct gate_slot_ent *e = &s->index[i];
    if (!e->used) break;
    if (e->addr == addr && e->port == port) return e->slot;
  }
  if (s->nfree == 0) return 0;
  uint32_t slot = s->fifo[s->head];
  s->head = (s->head + 1) & (s->nslots - 1);
  s->nfree--;
  assert(slot != 0 && slot < s->nslots);
  s->index[i] = (struct gate_slot_ent){addr, port, 1, slot};
  return slot;
}

void gate_slots_put(struct gate_slots *s, uint32_t addr, uint16_t port) {
  if (s->index == NULL) return;
  uint32_t mask = s->nbuckets - 1;
  uint32_t hole = slot_hash(s, addr, port);
  for (;; hole = (hole + 1) & mask) {
    struct gate_slot_ent *e = &s->index[hole];
    if (!e->used) return; /* it had none */
    if (e->addr == addr && e->port == port) break;
  }
  uint32_t slot = s->index[hole].slot;
  /* Backward shift: an entry further along the run moves into the hole
   * unless its home bucket lies cyclically in (hole, j]. */
  for (uint32_t j = (hole + 1) & mask; s->index[j].used; j = (j + 1) & mask) {
    uint32_t home = slot_hash(s, s->index[j].addr, s->index[j].port);
    int stays = hole <= j ? (home > hole && home <= j)
                          : (home > hole || home <= j);
    if (stays) continue;
    s->index[hole] = s->index[j];
    hole = j;
  }
  s->index[hole].used = 0;
  assert(s->nfree < s->nslots - 1);
  s->fifo[(s->head + s->nfree) & (s->nslots - 1)] = slot;
  s->nfree++;
}
