/* rdma.c -- endpoints and paths of the RDMA data path on a libev loop
 * (design in rdma.h; the verbs themselves are in rdma_link.c).
 *
 * Watchers.  An endpoint watches its listener's connection manager
 * channel.  A path watches its link's own connection manager channel
 * (setup steps, then DISCONNECTED) and, once the link is up, its
 * completion channel.  Every fd is non-blocking and every handler takes
 * what is there and returns, so nothing here waits.
 *
 * Tokens.  An acceptor's path is on the endpoint's list of expected
 * paths, with its 16 random bytes (OpenSSL's RAND_bytes), until a request
 * carrying them arrives; the comparison is constant-time.  A request with
 * an unknown token is rejected and counted; it never reaches the caller.
 * A token is good for one link.
 *
 * Completions wake the loop through the completion channel, which stays
 * armed throughout; every write the peer makes that we must act on (a
 * record, a credit, an SST row) carries an immediate, so an event always
 * follows.  Busy polling is optional (busy_poll_us, [transport]
 * rdma_busy_poll_us): after a poll that found work, or a send, the path
 * then keeps polling once per loop iteration (an idle watcher: the loop
 * does not sleep meanwhile) until that long has passed without work.  It
 * saves the wake-up (system calls and a trip through the poller) on a
 * machine with a core to spare per member, as Derecho's polling thread
 * does.  It is off by default: where members share cores a spinning member
 * takes the CPU from the very members whose answer it waits for.  Under
 * TCG (3 members and rxe on 2 vCPUs) a round took 4.6 ms with 1 ms of
 * spinning and 2.6 ms without.
 *
 * Callbacks are the last thing a handler does, so the caller may close
 * the path (and free it) from inside one. */
#include "rdma.h"

#include <errno.h>
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <infiniband/verbs.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "assert.h"
#include "rdma_link.h"

#define MAX_RECORD (256u << 10)

struct smr_rdma_ep {
  struct ev_loop *loop;
  struct smr_rdma_listener *l;
  ev_io lio;
  struct smr_rdma_link_opts o;
  struct smr_rdma_path *expecting;
  ev_tstamp spin_s; /* busy polling lasts this long after the last work */
  void (*log)(void *ctx, const char *line);
  void *log_ctx;
  uint64_t refused;
};

struct smr_rdma_path {
  struct smr_rdma_ep *ep;
  struct smr_rdma_path *next; /* on ep->expecting */
  int expecting;
  uint8_t token[SMR_NET_TOKEN_LEN];
  struct smr_rdma_link *k;
  ev_io cmio, cqio;
  ev_idle spin;   /* busy mode: poll again next iteration */
  ev_tstamp last_work;
  struct smr_rdma_path_cb cb;
};

static void ep_log(struct smr_rdma_ep *ep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ep_log(struct smr_rdma_ep *ep, const char *fmt, ...) {
  char line[320];
  va_list ap;
  if (ep->log == NULL) return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  ep->log(ep->log_ctx, line);
}

static void unexpect(struct smr_rdma_path *p) {
  if (!p->expecting) return;
  for (struct smr_rdma_path **pp = &p->ep->expecting; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  p->expecting = 0;
  p->next = NULL;
}

static void path_stop(struct smr_rdma_path *p) {
  ev_io_stop(p->ep->loop, &p->cmio);
  ev_io_stop(p->ep->loop, &p->cqio);
  ev_idle_stop(p->ep->loop, &p->spin);
}

/* ------------------------------------------------------------ handlers */

static void on_path_cq(struct ev_loop *loop, ev_io *w, int revents) {
  struct smr_rdma_path *p = w->data;
  (void)loop;
  (void)revents;
  if (smr_rdma_link_arm(p->k) < 0) {
    path_stop(p);
    p->cb.failed(p->cb.ctx, "rdma: the completion queue failed");
    return;
  }
  p->cb.input(p->cb.ctx);
}

/* Poll again next iteration (the loop does not sleep meanwhile). */
static void path_spin(struct smr_rdma_path *p) {
  p->last_work = ev_now(p->ep->loop);
  ev_idle_start(p->ep->loop, &p->spin);
}

/* After a send: an answer or credit is likely soon; with busy polling,
 * look for it without sleeping. */
static void path_busy(struct smr_rdma_path *p) {
  if (p->ep->spin_s > 0) path_spin(p);
}

static void on_path_spin(struct ev_loop *loop, ev_idle *w, int revents) {
  struct smr_rdma_path *p = w->data;
  (void)loop;
  (void)revents;
  p->cb.input(p->cb.ctx);
}

static void on_path_cm(struct ev_loop *loop, ev_io *w, int revents) {
  struct smr_rdma_path *p = w->data;
  char why[256];
  (void)revents;
  int rc = smr_rdma_link_cm_step(p->k, why, sizeof why);
  if (rc < 0) {
    path_stop(p);
    p->cb.failed(p->cb.ctx, why);
    return;
  }
  if (rc == 1) {
    ev_io_set(&p->cqio, smr_rdma_link_cq_fd(p->k), EV_READ);
    ev_io_start(loop, &p->cqio);
    p->cb.up(p->cb.ctx);
  }
}

static void on_listen(struct ev_loop *loop, ev_io *w, int revents) {
  struct smr_rdma_ep *ep = w->data;
  (void)revents;
  for (;;) {
    struct smr_rdma_link *k = NULL;
    uint8_t extra[SMR_RDMA_EXTRA_MAX];
    size_t elen = 0;
    char why[256];
    int rc = smr_rdma_listener_next(ep->l, &ep->o, &k, extra, &elen, why,
                                    sizeof why);
    if (rc == 0) return;
    if (rc == -ENODEV) {
      ep_log(ep, "%s: this member accepts no more RDMA links", why);
      ev_io_stop(loop, &ep->lio);
      smr_rdma_listener_close(ep->l);
      ep->l = NULL;
      return;
    }
    if (rc < 0) {
      /* One request refused, or the channel failed: either way back to
       * the loop (a channel that keeps failing is not spun on here). */
      ep->refused++;
      ep_log(ep, "refused an RDMA link request: %s", why);
      return;
    }
    struct smr_rdma_path *p = NULL;
    /* (RoCE pads the private data of a request to its full size, so the
     * token is the first 16 of the extra bytes.) */
    if (elen >= SMR_NET_TOKEN_LEN)
      for (p = ep->expecting; p != NULL; p = p->next)
        if (CRYPTO_memcmp(p->token, extra, SMR_NET_TOKEN_LEN) == 0) break;
    if (p == NULL) {
      ep->refused++;
      ep_log(ep, "refused an RDMA link request: no such token");
      smr_rdma_link_reject(k);
      smr_rdma_link_close(k);
      continue;
    }
    unexpect(p);
    p->k = k;
    if (smr_rdma_link_accept(k, why, sizeof why) < 0) {
      /* The path stays without a link: its owner's deadline for the
       * link (timeout_ms) ends it. */
      ep_log(ep, "%s", why);
      smr_rdma_link_close(k);
      p->k = NULL;
      continue;
    }
    ev_io_init(&p->cmio, on_path_cm, smr_rdma_link_cm_fd(k), EV_READ);
    p->cmio.data = p;
    ev_io_start(loop, &p->cmio);
  }
}

/* ------------------------------------------------------------ interface */

int smr_rdma_ep_open(struct ev_loop *loop, const struct sockaddr *addr,
                     uint32_t ring_bytes, int timeout_ms,
                     uint32_t busy_poll_us,
                     void (*log)(void *ctx, const char *line), void *log_ctx,
                     struct smr_rdma_ep **out, char *err, size_t errlen) {
  int ndev = 0;
  struct ibv_device **devs = ibv_get_device_list(&ndev);
  if (devs != NULL) ibv_free_device_list(devs);
  if (ndev <= 0) {
    snprintf(err, errlen, "no RDMA device found (ibv_devices lists none; "
             "soft-RoCE: rdma link add rxe0 type rxe netdev IFACE)");
    return -ENODEV;
  }
  /* Checkpoints and snapshots are written by fork()ed children (store.c):
   * registered memory must stay the parent's across the fork.  Kernels
   * since 5.13 copy pinned pages for the child themselves (the call is
   * then a no-op); before them it makes the library mark registered
   * ranges MADV_DONTFORK.  It must precede every registration. */
  int frc = ibv_fork_init();
  if (frc != 0) {
    snprintf(err, errlen, "ibv_fork_init: %s (registered memory would not "
             "be safe across the checkpoint children's fork())",
             strerror(frc < 0 ? -frc : frc));
    return frc < 0 ? frc : -frc;
  }
  if (ring_bytes == 0) ring_bytes = SMR_RDMA_DEFAULT_RING;
  if (ring_bytes < 4 * MAX_RECORD || (ring_bytes & (ring_bytes - 1)) != 0) {
    snprintf(err, errlen, "rdma ring of %u bytes: must be a power of two of "
             "at least %u", ring_bytes, 4 * MAX_RECORD);
    return -EINVAL;
  }
  struct smr_rdma_ep *ep = calloc(1, sizeof *ep);
  if (ep == NULL) return -ENOMEM;
  ep->loop = loop;
  ep->o.ring_cap = ring_bytes;
  ep->o.max_len = MAX_RECORD;
  ep->o.timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
  ep->log = log;
  ep->log_ctx = log_ctx;
  ep->spin_s = busy_poll_us / 1e6;
  if (addr != NULL) {
    int rc = smr_rdma_listen_at(addr, &ep->l, err, errlen);
    if (rc < 0) {
      free(ep);
      return rc;
    }
    ev_io_init(&ep->lio, on_listen, smr_rdma_listener_fd(ep->l), EV_READ);
    ep->lio.data = ep;
    ev_io_start(loop, &ep->lio);
  }
  *out = ep;
  return 0;
}

void smr_rdma_ep_close(struct smr_rdma_ep *ep) {
  if (ep == NULL) return;
  /* Paths are closed by their owners first. */
  smr_assert(ep->expecting == NULL);
  if (ep->l != NULL) {
    ev_io_stop(ep->loop, &ep->lio);
    smr_rdma_listener_close(ep->l);
  }
  free(ep);
}

int smr_rdma_ep_port(const struct smr_rdma_ep *ep) {
  return ep != NULL && ep->l != NULL ? smr_rdma_listener_port(ep->l) : 0;
}

uint64_t smr_rdma_ep_refused(const struct smr_rdma_ep *ep) {
  return ep != NULL ? ep->refused : 0;
}

static struct smr_rdma_path *path_new(struct smr_rdma_ep *ep,
                                      const struct smr_rdma_path_cb *cb) {
  struct smr_rdma_path *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->ep = ep;
  p->cb = *cb;
  ev_io_init(&p->cmio, on_path_cm, -1, EV_READ);
  p->cmio.data = p;
  ev_io_init(&p->cqio, on_path_cq, -1, EV_READ);
  p->cqio.data = p;
  ev_idle_init(&p->spin, on_path_spin);
  p->spin.data = p;
  return p;
}

int smr_rdma_path_expect(struct smr_rdma_ep *ep,
                         const struct smr_rdma_path_cb *cb,
                         uint8_t token[SMR_NET_TOKEN_LEN],
                         struct smr_rdma_path **out) {
  if (ep->l == NULL) return -ENOTCONN;
  struct smr_rdma_path *p = path_new(ep, cb);
  if (p == NULL) return -ENOMEM;
  if (RAND_bytes(p->token, SMR_NET_TOKEN_LEN) != 1) {
    free(p);
    return -EIO;
  }
  memcpy(token, p->token, SMR_NET_TOKEN_LEN);
  p->next = ep->expecting;
  ep->expecting = p;
  p->expecting = 1;
  *out = p;
  return 0;
}

int smr_rdma_path_connect(struct smr_rdma_ep *ep, const struct sockaddr *dst,
                          const struct sockaddr *src,
                          const uint8_t token[SMR_NET_TOKEN_LEN],
                          const struct smr_rdma_path_cb *cb,
                          struct smr_rdma_path **out, char *err,
                          size_t errlen) {
  struct smr_rdma_path *p = path_new(ep, cb);
  if (p == NULL) return -ENOMEM;
  int rc = smr_rdma_link_start(dst, src, &ep->o, token, SMR_NET_TOKEN_LEN,
                               &p->k, err, errlen);
  if (rc < 0) {
    free(p);
    return rc;
  }
  ev_io_set(&p->cmio, smr_rdma_link_cm_fd(p->k), EV_READ);
  ev_io_start(ep->loop, &p->cmio);
  *out = p;
  return 0;
}

int smr_rdma_path_is_up(const struct smr_rdma_path *p) {
  return p != NULL && p->k != NULL && smr_rdma_link_is_up(p->k);
}

uint32_t smr_rdma_path_max_record(const struct smr_rdma_path *p) {
  return p->ep->o.max_len;
}

int smr_rdma_path_send(struct smr_rdma_path *p, const void *buf,
                       uint32_t len) {
  if (!smr_rdma_path_is_up(p)) return -ENOTCONN;
  /* On -EAGAIN the credit comes as a receive completion, which raises the
   * channel; send queue room as a send completion, whose CQ the link armed
   * before saying -EAGAIN.  Either way input follows. */
  int r = smr_rdma_link_send(p->k, buf, len);
  if (r == 0) path_busy(p); /* an answer or credit is likely soon */
  return r;
}

int smr_rdma_path_send_whole(struct smr_rdma_path *p, const void *buf,
                             size_t len) {
  if (!smr_rdma_path_is_up(p)) return -ENOTCONN;
  int r = smr_rdma_link_send_whole(p->k, buf, len);
  if (r == 0) path_busy(p);
  return r;
}

int smr_rdma_path_more(const struct smr_rdma_path *p) {
  return p != NULL && p->k != NULL && smr_rdma_link_more(p->k);
}

int smr_rdma_path_poll(struct smr_rdma_path *p,
                       void (*cb)(void *ctx, const uint8_t *rec, uint32_t len),
                       void *ctx) {
  if (p == NULL || p->k == NULL || !smr_rdma_link_can_poll(p->k))
    return -ENOTCONN;
  int r = smr_rdma_link_poll(p->k, cb, ctx);
  if (r < 0) return r;
  /* Work found (or left over at the budget, which the channel will not
   * announce again): keep polling each iteration; spin_s without work,
   * leave it to the channel.  Without busy polling, work left at the
   * budget still needs the next iteration. */
  if (smr_rdma_link_more(p->k) ||
      (p->ep->spin_s > 0 && smr_rdma_link_polled(p->k) > 0))
    path_spin(p);
  else if (p->ep->spin_s <= 0 ||
           ev_now(p->ep->loop) - p->last_work > p->ep->spin_s)
    ev_idle_stop(p->ep->loop, &p->spin);
  return r;
}

int smr_rdma_path_sst_put(struct smr_rdma_path *p, const void *data,
                          uint32_t len) {
  if (!smr_rdma_path_is_up(p)) return -ENOTCONN;
  int r = smr_rdma_link_sst_put(p->k, data, len);
  if (r == 0) path_busy(p); /* its completion, and likely an answer */
  return r;
}

int smr_rdma_path_sst_get(struct smr_rdma_path *p, uint8_t *data,
                          uint32_t *len) {
  if (p == NULL || p->k == NULL || !smr_rdma_link_can_poll(p->k))
    return -ENOTCONN;
  return smr_rdma_link_sst_get(p->k, data, len);
}

const char *smr_rdma_path_device(const struct smr_rdma_path *p) {
  return p != NULL && p->k != NULL ? smr_rdma_link_device(p->k) : "?";
}

int smr_rdma_path_drain(struct smr_rdma_path *p, int timeout_ms) {
  if (!smr_rdma_path_is_up(p)) return 0;
  return smr_rdma_link_drain(p->k, timeout_ms);
}

void smr_rdma_path_close(struct smr_rdma_path *p) {
  if (p == NULL) return;
  unexpect(p);
  path_stop(p);
  smr_rdma_link_close(p->k);
  free(p);
}
