/* gate_int.h -- between the gate's front (gate.c) and its backends
 * (gate_bpf.c; the kernel module's later).  Not part of the public API. */
#ifndef SMR_TCPR_GATE_INT_H
#define SMR_TCPR_GATE_INT_H

#include "tcpr.h"

/* One backend.  Every call gets the backend's own state; every call
 * returns 0 or a negative errno.  close fences, then frees the state. */
struct tcpr_gate_ops {
  const char *name;
  int (*fence)(void *st, int fenced);
  int (*conn_open)(void *st, uint32_t caddr, uint16_t cport,
                   uint32_t released, uint8_t rcv_wscale, uint32_t snd_nxt);
  int (*release)(void *st, uint32_t caddr, uint16_t cport,
                 uint32_t released);
  /* Optional: release and acknowledge at once (NULL: release). */
  int (*release_now)(void *st, uint32_t caddr, uint16_t cport,
                     uint32_t released);
  /* Optional: send what release/release_now queued (NULL: nothing is). */
  int (*flush)(void *st);
  int (*allow_close)(void *st, uint32_t caddr, uint16_t cport);
  int (*conn_close)(void *st, uint32_t caddr, uint16_t cport);
  int (*stats)(void *st, struct tcpr_gate_stats *out);
  void (*close)(void *st);
};

/* The backends' open functions get arguments the front (gate.c) checked:
 * dev a device name of this namespace, ifindex its index, vip and port
 * not zero. */

/* The tc-BPF backend: loads and attaches the program on dev's egress,
 * fenced.  On success *ops and *st are set. */
int tcpr_gate_bpf_open(const char *dev, unsigned ifindex, uint32_t vip,
                       uint16_t port,
                       const struct tcpr_gate_ops **ops, void **st,
                       char *err, size_t errlen);

/* The kernel-module backend (gate_kmod.c): configures the namespace's
 * gate in smr_tcpr.ko, fenced. */
int tcpr_gate_kmod_open(unsigned ifindex, uint32_t vip, uint16_t port,
                        const struct tcpr_gate_ops **ops, void **st,
                        char *err, size_t errlen);
/* Unconfigures this namespace's module gate (nothing gated or fenced);
 * 0 also when the module is not loaded. */
int tcpr_gate_kmod_reset(void);

/* Removes the tc-BPF gate's filters from dev (both hooks), if any. */
void tcpr_gate_bpf_detach(const char *dev);

/* ---- release slots (gate_slots.c) ----
 * Which slot of the bpf gate's release array a connection has.  Slots are
 * 1..nslots-1; 0 means none (or none free). */
struct gate_slot_ent {
  uint32_t addr;
  uint16_t port;
  uint16_t used;
  uint32_t slot;
};

struct gate_slots {
  uint32_t nslots, nbuckets; /* powers of two; nbuckets = 2 * nslots */
  struct gate_slot_ent *index;
  uint32_t *fifo; /* free slots, oldest first, from head */
  uint32_t head, nfree;
};

/* nslots: a power of two >= 2.  0, -EINVAL or -ENOMEM. */
int gate_slots_init(struct gate_slots *s, uint32_t nslots);
void gate_slots_free(struct gate_slots *s);
/* The connection's slot, or 0. */
uint32_t gate_slots_find(const struct gate_slots *s, uint32_t addr,
                         uint16_t port);
/* The connection's slot, a new one if it has none; 0 if none is free. */
uint32_t gate_slots_get(struct gate_slots *s, uint32_t addr, uint16_t port);
/* Frees the connection's slot, if it has one. */
void gate_slots_put(struct gate_slots *s, uint32_t addr, uint16_t port);

#endif
