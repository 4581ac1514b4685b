/* gate.c -- the front of the TCP-R ACK gate (the "Gate" part of tcpr.h):
 * picks a backend and forwards every call to it.
 *
 *   TCPR_GATE_OFF   a handle whose calls all succeed and do nothing (kind
 *                   "off"): for services run without TCP-R;
 *   TCPR_GATE_BPF   the tc-BPF program (gate_bpf.c, gate_bpf.bpf.c);
 *   TCPR_GATE_KMOD  the smr_tcpr kernel module (gate_kmod.c,
 *                   kernel-module/);
 *   TCPR_GATE_AUTO  kmod if the module is loaded (its generic netlink
 *                   family answers in this namespace), else bpf.
 *
 * Design: a handle is an ops table and the backend's state; the front
 * checks arguments, the backends do the work.  Nothing here keeps threads
 * or hidden state, so a forked child (the keeper) can use an inherited
 * handle.
 *
 * Deviation from the feasibility probe (tcp-takeover.md): of the gates
 * the probe found working (tc-BPF, NFQUEUE, a kernel module), NFQUEUE is
 * not offered (twice the cost per request, and it needs iptables-legacy
 * on this kernel). */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gate_int.h"
#include "tcpr.h"

struct tcpr_gate {
  const struct tcpr_gate_ops *ops;
  void *st;
};

/* ---- TCPR_GATE_OFF ---- */

static int off_fence(void *st, int fenced) {
  (void)st;
  (void)fenced;
  return 0;
}
static int off_conn_open(void *st, uint32_t caddr, uint16_t cport,
                         uint32_t released, uint8_t rcv_wscale,
                         uint32_t snd_nxt) {
  (void)st;
  (void)snd_nxt;
  (void)caddr;
  (void)cport;
  (void)released;
  (void)rcv_wscale;
  return 0;
}
static int off_release(void *st, uint32_t caddr, uint16_t cport,
                       uint32_t released) {
  (void)st;
  (void)caddr;
  (void)cport;
  (void)released;
  return 0;
}
static int off_conn(void *st, uint32_t caddr, uint16_t cport) {
  (void)st;
  (void)caddr;
  (void)cport;
  return 0;
}
static int off_stats(void *st, struct tcpr_gate_stats *out) {
  (void)st;
  memset(out, 0, sizeof(*out));
  return 0;
}
static void off_close(void *st) { (void)st; }

static const struct tcpr_gate_ops gate_off_ops = {
    .name = "off",
    .fence = off_fence,
    .conn_open = off_conn_open,
    .release = off_release,
    .allow_close = off_conn,
    .conn_close = off_conn,
    .stats = off_stats,
    .close = off_close,
};

/* ---- the API ---- */

/* What every backend needs: a device of this namespace (its index in
 * *ifindex), a VIP and a port. */
static int check_target(const char *dev, uint32_t vip, uint16_t port,
                        unsigned *ifindex, char *err, size_t errlen) {
  if (dev == NULL || dev[0] == '\0' || strlen(dev) >= IF_NAMESIZE) {
    snprintf(err, errlen, "gate: bad device name");
    return -EINVAL;
  }
  if (vip == 0 || port == 0) {
    snprintf(err, errlen, "gate: no VIP or port");
    return -EINVAL;
  }
  *ifindex = if_nametoindex(dev);
  if (*ifindex == 0) {
    int e = -errno;
    snprintf(err, errlen,
             "gate: device %s not found in this network namespace: %s", dev,
             strerror(-e));
    return e;
  }
  return 0;
}

int tcpr_gate_open(enum tcpr_gate_kind kind, const char *dev, uint32_t vip,
                   uint16_t port, struct tcpr_gate **out, char *err,
                   size_t errlen) {
  char dummy[1];
  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof(dummy);
  }
  err[0] = '\0';
  if (out == NULL) {
    snprintf(err, errlen, "gate: no handle to return");
    return -EINVAL;
  }
  *out = NULL;

  const struct tcpr_gate_ops *ops = NULL;
  void *st = NULL;
  unsigned ifindex = 0;
  int rc;
  if (kind == TCPR_GATE_AUTO || kind == TCPR_GATE_BPF ||
      kind == TCPR_GATE_KMOD) {
    rc = check_target(dev, vip, port, &ifindex, err, errlen);
    if (rc < 0)
      return rc;
  }
  switch (kind) {
  case TCPR_GATE_OFF:
    /* A gate an earlier run left on the device (fenced: it would drop the
     * VIP's traffic) goes; errors here only mean there was none. */
    tcpr_gate_bpf_detach(dev);
    (void)tcpr_gate_kmod_reset(); /* and the module's, if it has one here */
    ops = &gate_off_ops;
    break;
  case TCPR_GATE_AUTO:
    /* The module when its family answers here, else bpf. */
    rc = tcpr_gate_kmod_open(ifindex, vip, port, &ops, &st, err, errlen);
    if (rc == -ENOENT)
      rc = tcpr_gate_bpf_open(dev, ifindex, vip, port, &ops, &st, err,
                              errlen);
    if (rc < 0)
      return rc;
    break;
  case TCPR_GATE_BPF:
    rc = tcpr_gate_bpf_open(dev, ifindex, vip, port, &ops, &st, err, errlen);
    if (rc < 0)
      return rc;
    break;
  case TCPR_GATE_KMOD:
    rc = tcpr_gate_kmod_open(ifindex, vip, port, &ops, &st, err, errlen);
    if (rc < 0)
      return rc;
    break;
  default:
    snprintf(err, errlen, "gate: unknown kind %d", (int)kind);
    return -EINVAL;
  }

  struct tcpr_gate *g = calloc(1, sizeof(*g));
  if (g == NULL) {
    if (ops->close != NULL)
      ops->close(st);
    snprintf(err, errlen, "gate: out of memory");
    return -ENOMEM;
  }
  g->ops = ops;
  g->st = st;
  *out = g;
  return 0;
}

void tcpr_gate_close(struct tcpr_gate *g) {
  if (g == NULL)
    return;
  g->ops->close(g->st);
  free(g);
}

const char *tcpr_gate_kind_name(const struct tcpr_gate *g) {
  return g != NULL ? g->ops->name : "none";
}

int tcpr_gate_fence(struct tcpr_gate *g, int fenced) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->fence(g->st, fenced);
}

int tcpr_gate_conn_open(struct tcpr_gate *g, uint32_t caddr, uint16_t cport,
                        uint32_t released, uint8_t rcv_wscale,
                        uint32_t snd_nxt) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->conn_open(g->st, caddr, cport, released, rcv_wscale,
                           snd_nxt);
}

int tcpr_gate_release(struct tcpr_gate *g, uint32_t caddr, uint16_t cport,
                      uint32_t released) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->release(g->st, caddr, cport, released);
}

int tcpr_gate_release_now(struct tcpr_gate *g, uint32_t caddr,
                          uint16_t cport, uint32_t released) {
  if (g == NULL)
    return -EINVAL;
  if (g->ops->release_now == NULL)
    return g->ops->release(g->st, caddr, cport, released);
  return g->ops->release_now(g->st, caddr, cport, released);
}

int tcpr_gate_flush(struct tcpr_gate *g) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->flush != NULL ? g->ops->flush(g->st) : 0;
}

int tcpr_gate_allow_close(struct tcpr_gate *g, uint32_t caddr,
                          uint16_t cport) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->allow_close(g->st, caddr, cport);
}

int tcpr_gate_conn_close(struct tcpr_gate *g, uint32_t caddr,
                         uint16_t cport) {
  if (g == NULL)
    return -EINVAL;
  return g->ops->conn_close(g->st, caddr, cport);
}

int tcpr_gate_stats(struct tcpr_gate *g, struct tcpr_gate_stats *st) {
  if (g == NULL || st == NULL)
    return -EINVAL;
  return g->ops->stats(g->st, st);
}
