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
  int (*allow_close)(void *st, uint32_t caddr, uint16_t cport);
  int (*conn_close)(void *st, uint32_t caddr, uint16_t cport);
  int (*stats)(void *st, struct tcpr_gate_stats *out);
  void (*close)(void *st);
};

/* The tc-BPF backend: loads and attaches the program on dev's egress,
 * fenced.  On success *ops and *st are set. */
int tcpr_gate_bpf_open(const char *dev, uint32_t vip, uint16_t port,
                       const struct tcpr_gate_ops **ops, void **st,
                       char *err, size_t errlen);

/* Removes the tc-BPF gate's filters from dev (both hooks), if any. */
void tcpr_gate_bpf_detach(const char *dev);

#endif
