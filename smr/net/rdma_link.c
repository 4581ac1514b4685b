/* rdma_link.c -- one RC link between two members over verbs (see
 * rdma_link.h for the design; rdma_ring.c keeps the ring's books).
 *
 * Verbs objects per link: its own rdma_cm id and event channel (a passive
 * side's id is migrated off the listener's channel), a protection domain,
 * two completion queues on one completion channel (receives, and sends),
 * an RC queue pair, and two registered buffers of ring_cap bytes: the ring
 * the peer writes into (remote write) and the mirror of the peer's ring
 * that records are staged in before they are written (local only).
 *
 * One send work request in SIGNAL_EVERY is signaled, and its wr_id says
 * how many it retires (an RC send queue completes in order), so the
 * completion queue sees a fraction of the sends; the send queue (256)
 * always holds a signaled one among its last SIGNAL_EVERY, so waiting for
 * room always ends.  A completion error of any kind kills the link (but
 * once the peer has disconnected, the flushed receives only mark the end
 * of what it sent).
 * Receives are zero-length: they only catch immediates.
 *
 * Only what the peer sends wakes the caller.  The receive queue's CQ is
 * always armed; the send queue's is looked at whenever the receive queue
 * is polled and before a send is refused for room, and armed only while a
 * send waits for room.  A retired send is no news: with one CQ for both,
 * every acknowledgement a member wrote (a signaled SST write) woke it once
 * more, a loop iteration per message that, under emulation, cost more
 * than the write. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "le.h"
#include "rdma_link.h"
#include "rdma_ring.h"

#define HELLO_MAGIC 0x52524d53u /* "SMRR" */
#define HELLO_VERSION 3u /* 3: SST writes carry an immediate */
#define HELLO_LEN 40 /* + SMR_RDMA_EXTRA_MAX: RoCE's 56 bytes of request */
#define SEND_DEPTH 256
#define RECV_DEPTH 256
#define IMM_CREDIT 1u
#define IMM_SST 2u /* the SST slot changed (no ring position has bit 1) */
#define SIGNAL_EVERY 32
#define POLL_BUDGET 128 /* completions per smr_rdma_link_poll() */
#define WR_SST (1ull << 63) /* wr_id of the (signaled) SST slot write */

struct smr_rdma_link {
  struct rdma_event_channel *ec;
  struct rdma_cm_id *id;
  struct ibv_pd *pd;
  struct ibv_comp_channel *cc;
  struct ibv_cq *cq;  /* receives: always armed */
  struct ibv_cq *scq; /* sends: armed only while one waits for room */
  struct ibv_mr *ring_mr, *mirror_mr;
  uint8_t *ring, *mirror;
  uint64_t peer_addr;
  uint32_t peer_rkey;
  struct smr_ring_tx tx;
  struct smr_ring_rx rx;
  unsigned sends_out;   /* posted, not yet known complete */
  unsigned unsignaled;  /* posted since the last signaled one */
  int dead;
  int gone; /* the peer disconnected the up link: nothing more is sent, but
             * what arrived before can still be polled */
  int flushed; /* gone, and the receive queue reached its flushed entries:
                * everything that came has been taken (the slot can still
                * be read) */
  int qp_made;
  enum { L_ADDR, L_ROUTE, L_CONNECT, L_REQUEST, L_ACCEPT, L_UP } st;
  struct smr_rdma_link_opts o;
  uint8_t extra[SMR_RDMA_EXTRA_MAX]; /* sent after the hello */
  size_t extra_len;
  uint8_t req[HELLO_LEN + SMR_RDMA_EXTRA_MAX]; /* passive: the request's */
  /* The SST slot (rdma_ring.h): ours that the peer writes, the source of
   * our writes to the peer's, and whether one of those is in flight. */
  uint8_t *sst_in, *sst_out;
  struct ibv_mr *sst_in_mr, *sst_out_mr;
  uint64_t peer_sst_addr;
  uint32_t peer_sst_rkey;
  uint64_t sst_seq, sst_last;
  int sst_busy;
  size_t req_len;
  int more;        /* the last poll stopped at its budget */
  int polled;      /* completions the last poll handled */
};

struct smr_rdma_listener {
  struct rdma_event_channel *ec;
  struct rdma_cm_id *id;
};

/* ---- hello ---- */

static void hello_encode(const struct smr_rdma_link *k, uint8_t *h) {
  memset(h, 0, HELLO_LEN);
  smr_le_put32(h, HELLO_MAGIC);
  smr_le_put32(h + 4, HELLO_VERSION);
  smr_le_put64(h + 8, (uint64_t)(uintptr_t)k->ring);
  smr_le_put32(h + 16, k->ring_mr->rkey);
  smr_le_put32(h + 20, k->rx.cap);
  smr_le_put64(h + 24, (uint64_t)(uintptr_t)k->sst_in);
  smr_le_put32(h + 32, k->sst_in_mr->rkey);
  smr_le_put32(h + 36, SMR_SST_SLOT);
}

/* The peer's hello: its ring must have our capacity (both sides are
 * configured alike). */
static int hello_decode(struct smr_rdma_link *k, const void *data,
                        size_t len, char *err, size_t errlen) {
  const uint8_t *h = data;
  if (h == NULL || len < HELLO_LEN || smr_le_get32(h) != HELLO_MAGIC) {
    snprintf(err, errlen, "rdma: the peer's connection data is not an smr hello");
    return -EPROTO;
  }
  if (smr_le_get32(h + 4) != HELLO_VERSION) {
    snprintf(err, errlen, "rdma: the peer speaks version %u, we %u",
             smr_le_get32(h + 4), HELLO_VERSION);
    return -EPROTO;
  }
  if (smr_le_get32(h + 20) != k->tx.cap) {
    snprintf(err, errlen, "rdma: the peer's ring is %u bytes, ours %u",
             smr_le_get32(h + 20), k->tx.cap);
    return -EPROTO;
  }
  if (smr_le_get32(h + 36) != SMR_SST_SLOT) {
    snprintf(err, errlen, "rdma: the peer's SST slot is %u bytes, ours %u",
             smr_le_get32(h + 36), SMR_SST_SLOT);
    return -EPROTO;
  }
  k->peer_addr = smr_le_get64(h + 8);
  k->peer_rkey = smr_le_get32(h + 16);
  k->peer_sst_addr = smr_le_get64(h + 24);
  k->peer_sst_rkey = smr_le_get32(h + 32);
  return 0;
}

/* ---- verbs objects ---- */

static int set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int post_recv(struct smr_rdma_link *k) {
  struct ibv_recv_wr wr, *bad;
  memset(&wr, 0, sizeof(wr));
  wr.wr_id = 0;
  wr.num_sge = 0; /* immediates only */
  return ibv_post_recv(k->id->qp, &wr, &bad) != 0 ? -errno : 0;
}

static int make_qp(struct smr_rdma_link *k, const struct smr_rdma_link_opts *o,
                   char *err, size_t errlen) {
  struct ibv_context *ctx = k->id->verbs;
  int e;
  if (smr_ring_tx_init(&k->tx, o->ring_cap, o->max_len) < 0 ||
      smr_ring_rx_init(&k->rx, o->ring_cap, o->max_len) < 0) {
    snprintf(err, errlen, "rdma: ring of %u bytes cannot take records of %u",
             o->ring_cap, o->max_len);
    return -EINVAL;
  }
  k->pd = ibv_alloc_pd(ctx);
  k->cc = k->pd ? ibv_create_comp_channel(ctx) : NULL;
  if (k->cc != NULL && set_nonblock(k->cc->fd) < 0) {
    ibv_destroy_comp_channel(k->cc);
    k->cc = NULL;
  }
  k->cq = k->cc ? ibv_create_cq(ctx, RECV_DEPTH, k, k->cc, 0) : NULL;
  k->scq = k->cq ? ibv_create_cq(ctx, SEND_DEPTH, k, k->cc, 0) : NULL;
  if (k->scq == NULL) {
    e = errno ? errno : ENOMEM;
    snprintf(err, errlen, "rdma: cannot make a protection domain and a "
             "completion queue on %s: %s", ibv_get_device_name(ctx->device),
             strerror(e));
    return -e;
  }
  /* Every registered buffer has whole pages to itself: where the library
   * makes registered memory MADV_DONTFORK (ibv_fork_init, on kernels that
   * do not copy pinned pages at fork), a page it shared with other heap
   * data would be missing in the checkpoint children, which died on it. */
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  if (page < 4096) page = 4096;
  size_t sst_bytes = (SMR_SST_SLOT + page - 1) / page * page;
  if (posix_memalign((void **)&k->ring, page, o->ring_cap) != 0 ||
      posix_memalign((void **)&k->mirror, page, o->ring_cap) != 0) {
    snprintf(err, errlen, "rdma: out of memory");
    return -ENOMEM;
  }
  memset(k->ring, 0, o->ring_cap);
  memset(k->mirror, 0, o->ring_cap);
  if (posix_memalign((void **)&k->sst_in, page, sst_bytes) != 0 ||
      posix_memalign((void **)&k->sst_out, page, sst_bytes) != 0) {
    snprintf(err, errlen, "rdma: out of memory");
    return -ENOMEM;
  }
  memset(k->sst_in, 0, SMR_SST_SLOT);
  memset(k->sst_out, 0, SMR_SST_SLOT);
  k->sst_in_mr = ibv_reg_mr(k->pd, k->sst_in, SMR_SST_SLOT,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  k->sst_out_mr = k->sst_in_mr ? ibv_reg_mr(k->pd, k->sst_out, SMR_SST_SLOT,
                                            IBV_ACCESS_LOCAL_WRITE)
                               : NULL;
  if (k->sst_out_mr == NULL) {
    e = errno ? errno : ENOMEM;
    snprintf(err, errlen, "rdma: cannot register the SST slot: %s",
             strerror(e));
    return -e;
  }
  k->ring_mr = ibv_reg_mr(k->pd, k->ring, o->ring_cap,
                          IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  k->mirror_mr = k->ring_mr ? ibv_reg_mr(k->pd, k->mirror, o->ring_cap,
                                         IBV_ACCESS_LOCAL_WRITE)
                            : NULL;
  if (k->mirror_mr == NULL) {
    e = errno ? errno : ENOMEM;
    snprintf(err, errlen, "rdma: cannot register %u bytes: %s", o->ring_cap,
             strerror(e));
    return -e;
  }
  struct ibv_qp_init_attr qa;
  memset(&qa, 0, sizeof(qa));
  qa.send_cq = k->scq;
  qa.recv_cq = k->cq;
  qa.qp_type = IBV_QPT_RC;
  qa.cap.max_send_wr = SEND_DEPTH;
  qa.cap.max_recv_wr = RECV_DEPTH;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  if (rdma_create_qp(k->id, k->pd, &qa) != 0) {
    e = errno;
    snprintf(err, errlen, "rdma: cannot make the queue pair: %s", strerror(e));
    return -e;
  }
  k->qp_made = 1;
  for (int i = 0; i < RECV_DEPTH; i++)
    if ((e = post_recv(k)) < 0) {
      snprintf(err, errlen, "rdma: cannot post receives: %s", strerror(-e));
      return e;
    }
  if (ibv_req_notify_cq(k->cq, 0) != 0) {
    e = errno;
    snprintf(err, errlen, "rdma: cannot arm the completion queue: %s",
             strerror(e));
    return -e;
  }
  return 0;
}

static void conn_param(struct rdma_conn_param *p, const uint8_t *hello,
                       size_t len) {
  memset(p, 0, sizeof(*p));
  p->private_data = hello;
  p->private_data_len = (uint8_t)len;
  p->retry_count = 7;
  p->rnr_retry_count = 7; /* 7: retry forever while receives are short */
}

/* ---- setup, step by step ---- */

static struct rdma_event_channel *channel_new(void) {
  struct rdma_event_channel *ec = rdma_create_event_channel();
  if (ec != NULL && set_nonblock(ec->fd) < 0) {
    rdma_destroy_event_channel(ec);
    return NULL;
  }
  return ec;
}

static size_t hello_with_extra(const struct smr_rdma_link *k, uint8_t *buf) {
  hello_encode(k, buf);
  memcpy(buf + HELLO_LEN, k->extra, k->extra_len);
  return HELLO_LEN + k->extra_len;
}

int smr_rdma_link_start(const struct sockaddr *dst, const struct sockaddr *src,
                        const struct smr_rdma_link_opts *o, const void *extra,
                        size_t extra_len, struct smr_rdma_link **out,
                        char *err, size_t errlen) {
  if (extra_len > SMR_RDMA_EXTRA_MAX) return -EINVAL;
  struct smr_rdma_link *k = calloc(1, sizeof(*k));
  if (k == NULL) return -ENOMEM;
  int rc;
  k->o = *o;
  k->o.src = NULL;
  if (extra_len > 0) memcpy(k->extra, extra, extra_len);
  k->extra_len = extra_len;
  k->ec = channel_new();
  if (k->ec == NULL || rdma_create_id(k->ec, &k->id, k, RDMA_PS_TCP) != 0) {
    rc = -errno;
    snprintf(err, errlen, "rdma: no connection manager (is an RDMA device "
             "configured? rdma_ucm loaded?): %s", strerror(-rc));
    goto fail;
  }
  if (rdma_resolve_addr(k->id, (struct sockaddr *)src, (struct sockaddr *)dst,
                        o->timeout_ms) != 0) {
    rc = -errno;
    snprintf(err, errlen, "rdma: resolving the peer's address: %s",
             strerror(-rc));
    goto fail;
  }
  k->st = L_ADDR;
  *out = k;
  return 0;
fail:
  smr_rdma_link_close(k);
  return rc;
}

int smr_rdma_link_cm_fd(const struct smr_rdma_link *k) { return k->ec->fd; }

/* One connection manager event of a link. */
static int link_event(struct smr_rdma_link *k, struct rdma_cm_event *ev,
                      char *err, size_t errlen) {
  uint8_t hello[HELLO_LEN + SMR_RDMA_EXTRA_MAX];
  struct rdma_conn_param cp;
  int rc;

  switch (ev->event) {
    case RDMA_CM_EVENT_ADDR_RESOLVED:
      if (k->st != L_ADDR) break;
      if (rdma_resolve_route(k->id, k->o.timeout_ms) != 0) {
        rc = -errno;
        snprintf(err, errlen, "rdma: resolving the route: %s", strerror(-rc));
        return rc;
      }
      k->st = L_ROUTE;
      return 0;
    case RDMA_CM_EVENT_ROUTE_RESOLVED:
      if (k->st != L_ROUTE) break;
      if ((rc = make_qp(k, &k->o, err, errlen)) < 0) return rc;
      conn_param(&cp, hello, hello_with_extra(k, hello));
      if (rdma_connect(k->id, &cp) != 0) {
        rc = -errno;
        snprintf(err, errlen, "rdma: connect: %s", strerror(-rc));
        return rc;
      }
      k->st = L_CONNECT;
      return 0;
    case RDMA_CM_EVENT_ESTABLISHED:
      if (k->st == L_CONNECT) {
        rc = hello_decode(k, ev->param.conn.private_data,
                          ev->param.conn.private_data_len, err, errlen);
        if (rc < 0) return rc;
      } else if (k->st != L_ACCEPT) {
        break;
      }
      k->st = L_UP;
      return 1;
    case RDMA_CM_EVENT_REJECTED:
      snprintf(err, errlen, "rdma: the peer rejected the connection");
      return -ECONNREFUSED;
    case RDMA_CM_EVENT_DISCONNECTED:
      snprintf(err, errlen, "rdma: disconnected");
      if (k->st == L_UP) k->gone = 1;
      return -ECONNRESET;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      snprintf(err, errlen, "rdma: the device was removed");
      return -ENODEV;
    case RDMA_CM_EVENT_TIMEWAIT_EXIT:
    case RDMA_CM_EVENT_ADDR_CHANGE:
      return 0;
    default:
      snprintf(err, errlen, "rdma: %s (status %d)", rdma_event_str(ev->event),
               ev->status);
      return ev->event == RDMA_CM_EVENT_UNREACHABLE ? -EHOSTUNREACH : -EPROTO;
  }
  snprintf(err, errlen, "rdma: %s out of turn", rdma_event_str(ev->event));
  return -EPROTO;
}

int smr_rdma_link_cm_step(struct smr_rdma_link *k, char *err, size_t errlen) {
  int up = 0;
  if (k->dead || k->gone) {
    snprintf(err, errlen, "rdma: the link is down");
    return -ECONNRESET;
  }
  for (;;) {
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(k->ec, &ev) != 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      int e = errno;
      snprintf(err, errlen, "rdma: rdma_get_cm_event: %s", strerror(e));
      k->dead = 1;
      return -e;
    }
    int rc = link_event(k, ev, err, errlen);
    rdma_ack_cm_event(ev);
    if (rc < 0) {
      if (!k->gone) k->dead = 1;
      return rc;
    }
    if (rc == 1) up = 1;
  }
  return up;
}

int smr_rdma_link_is_up(const struct smr_rdma_link *k) {
  return k->st == L_UP && !k->dead && !k->gone;
}

int smr_rdma_link_can_poll(const struct smr_rdma_link *k) {
  return k->st == L_UP && !k->dead;
}

int smr_rdma_listen_at(const struct sockaddr *addr,
                       struct smr_rdma_listener **out, char *err,
                       size_t errlen) {
  struct smr_rdma_listener *l = calloc(1, sizeof(*l));
  if (l == NULL) return -ENOMEM;
  l->ec = channel_new();
  if (l->ec == NULL || rdma_create_id(l->ec, &l->id, l, RDMA_PS_TCP) != 0 ||
      rdma_bind_addr(l->id, (struct sockaddr *)addr) != 0 ||
      rdma_listen(l->id, 16) != 0) {
    int rc = errno ? -errno : -ENODEV;
    snprintf(err, errlen, "rdma: cannot listen: %s%s", strerror(-rc),
             rc == -ENODEV || rc == -EADDRNOTAVAIL
                 ? " (no RDMA device has this address)"
                 : "");
    smr_rdma_listener_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

int smr_rdma_listener_fd(const struct smr_rdma_listener *l) {
  return l->ec->fd;
}

int smr_rdma_listener_port(const struct smr_rdma_listener *l) {
  return ntohs(rdma_get_src_port(l->id));
}

int smr_rdma_listener_next(struct smr_rdma_listener *l,
                           const struct smr_rdma_link_opts *o,
                           struct smr_rdma_link **out, uint8_t *extra,
                           size_t *extra_len, char *err, size_t errlen) {
  struct rdma_cm_event *ev;
  for (;;) {
    if (rdma_get_cm_event(l->ec, &ev) != 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
      int e = errno;
      snprintf(err, errlen, "rdma: rdma_get_cm_event: %s", strerror(e));
      return -e;
    }
    if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) break;
    int removed = ev->event == RDMA_CM_EVENT_DEVICE_REMOVAL;
    rdma_ack_cm_event(ev); /* nothing else is meant for the listener */
    if (removed) {
      /* The kernel waits for the listener to go before the device can. */
      snprintf(err, errlen, "rdma: the listener's device was removed");
      return -ENODEV;
    }
  }
  uint8_t pd[HELLO_LEN + SMR_RDMA_EXTRA_MAX];
  size_t plen = ev->param.conn.private_data_len;
  if (plen > sizeof(pd)) plen = sizeof(pd);
  if (ev->param.conn.private_data == NULL) plen = 0;
  memcpy(pd, ev->param.conn.private_data, plen);
  struct rdma_cm_id *id = ev->id;
  rdma_ack_cm_event(ev);

  struct smr_rdma_link *k = calloc(1, sizeof(*k));
  if (k == NULL) {
    rdma_reject(id, NULL, 0);
    rdma_destroy_id(id);
    snprintf(err, errlen, "rdma: out of memory");
    return -ENOMEM;
  }
  int rc;
  k->id = id;
  k->o = *o;
  k->o.src = NULL;
  /* The new id gets its own channel: the listener's serves the next. */
  k->ec = channel_new();
  if (k->ec == NULL || rdma_migrate_id(k->id, k->ec) != 0) {
    rc = -errno;
    snprintf(err, errlen, "rdma: cannot move the new connection to its own "
             "channel: %s", strerror(-rc));
    goto fail;
  }
  k->id->context = k;
  if (plen < HELLO_LEN) {
    snprintf(err, errlen, "rdma: a connection request without an smr hello");
    rc = -EPROTO;
    goto fail;
  }
  /* Nothing is allocated for the request until the caller has checked
   * its extra bytes (the token): smr_rdma_link_accept() does that. */
  memcpy(k->req, pd, plen);
  k->req_len = plen;
  *extra_len = plen - HELLO_LEN;
  memcpy(extra, pd + HELLO_LEN, *extra_len);
  k->st = L_REQUEST;
  *out = k;
  return 1;
fail:
  rdma_reject(k->id, NULL, 0);
  smr_rdma_link_close(k);
  return rc;
}

int smr_rdma_link_accept(struct smr_rdma_link *k, char *err, size_t errlen) {
  uint8_t hello[HELLO_LEN + SMR_RDMA_EXTRA_MAX];
  struct rdma_conn_param cp;
  int rc;
  if (k->st != L_REQUEST) return -EINVAL;
  if ((rc = make_qp(k, &k->o, err, errlen)) < 0 ||
      (rc = hello_decode(k, k->req, k->req_len, err, errlen)) < 0) {
    rdma_reject(k->id, NULL, 0);
    k->st = L_ADDR; /* (not a request any more) */
    k->dead = 1;
    return rc;
  }
  conn_param(&cp, hello, hello_with_extra(k, hello));
  if (rdma_accept(k->id, &cp) != 0) {
    rc = -errno;
    snprintf(err, errlen, "rdma: accept: %s", strerror(-rc));
    k->dead = 1;
    return rc;
  }
  k->st = L_ACCEPT;
  return 0;
}

void smr_rdma_link_reject(struct smr_rdma_link *k) {
  if (k->st == L_REQUEST) rdma_reject(k->id, NULL, 0);
  k->dead = 1;
}

void smr_rdma_listener_close(struct smr_rdma_listener *l) {
  if (l == NULL) return;
  if (l->id != NULL) rdma_destroy_id(l->id);
  if (l->ec != NULL) rdma_destroy_event_channel(l->ec);
  free(l);
}

int smr_rdma_link_cq_fd(const struct smr_rdma_link *k) { return k->cc->fd; }

int smr_rdma_link_arm(struct smr_rdma_link *k) {
  struct ibv_cq *cq;
  void *cctx;
  unsigned nr = 0, ns = 0;
  while (ibv_get_cq_event(k->cc, &cq, &cctx) == 0) {
    if (cq == k->scq)
      ns++;
    else
      nr++;
  }
  if (nr > 0) ibv_ack_cq_events(k->cq, nr);
  if (ns > 0) ibv_ack_cq_events(k->scq, ns); /* (re-armed when needed) */
  if (ibv_req_notify_cq(k->cq, 0) != 0) {
    k->dead = 1;
    return -ECONNRESET;
  }
  return 0;
}

/* ---- blocking setup (tools and tests) ---- */

static int resolve(const char *host, const char *port, struct addrinfo **ai,
                   char *err, size_t errlen) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  int g = getaddrinfo(host, port, &hints, ai);
  if (g != 0) {
    snprintf(err, errlen, "rdma: bad address %s:%s: %s", host, port,
             gai_strerror(g));
    return -EINVAL;
  }
  return 0;
}

/* Steps k's setup until it is up, within o->timeout_ms. */
static int wait_up(struct smr_rdma_link *k, int timeout_ms, char *err,
                   size_t errlen) {
  for (;;) {
    struct pollfd p = {.fd = k->ec->fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    if (n == 0) {
      snprintf(err, errlen, "rdma: no connection within %d ms", timeout_ms);
      return -ETIMEDOUT;
    }
    if (n < 0 && errno != EINTR) return -errno;
    int rc = smr_rdma_link_cm_step(k, err, errlen);
    if (rc != 0) return rc < 0 ? rc : 0;
  }
}

int smr_rdma_link_connect(const char *host, const char *port,
                          const struct smr_rdma_link_opts *o,
                          struct smr_rdma_link **out, char *err,
                          size_t errlen) {
  struct addrinfo *ai = NULL, *sai = NULL;
  int rc = resolve(host, port, &ai, err, errlen);
  if (rc < 0) return rc;
  if (o->src != NULL && (rc = resolve(o->src, "0", &sai, err, errlen)) < 0) {
    freeaddrinfo(ai);
    return rc;
  }
  struct smr_rdma_link *k = NULL;
  rc = smr_rdma_link_start(ai->ai_addr, sai != NULL ? sai->ai_addr : NULL, o,
                           NULL, 0, &k, err, errlen);
  freeaddrinfo(ai);
  if (sai != NULL) freeaddrinfo(sai);
  if (rc < 0) return rc;
  if ((rc = wait_up(k, o->timeout_ms, err, errlen)) < 0) {
    smr_rdma_link_close(k);
    return rc;
  }
  *out = k;
  return 0;
}

int smr_rdma_listen(const char *host, const char *port,
                    struct smr_rdma_listener **out, char *err,
                    size_t errlen) {
  struct addrinfo *ai = NULL;
  int rc = resolve(host, port, &ai, err, errlen);
  if (rc < 0) return rc;
  rc = smr_rdma_listen_at(ai->ai_addr, out, err, errlen);
  freeaddrinfo(ai);
  return rc;
}

int smr_rdma_accept(struct smr_rdma_listener *l,
                    const struct smr_rdma_link_opts *o,
                    struct smr_rdma_link **out, char *err, size_t errlen) {
  struct smr_rdma_link *k = NULL;
  uint8_t extra[SMR_RDMA_EXTRA_MAX];
  size_t elen = 0;
  int rc;
  for (;;) {
    struct pollfd p = {.fd = l->ec->fd, .events = POLLIN};
    int n = poll(&p, 1, o->timeout_ms);
    if (n == 0) {
      snprintf(err, errlen, "rdma: no connection request within %d ms",
               o->timeout_ms);
      return -ETIMEDOUT;
    }
    if (n < 0 && errno != EINTR) return -errno;
    rc = smr_rdma_listener_next(l, o, &k, extra, &elen, err, errlen);
    if (rc < 0) return rc;
    if (rc == 1) break;
  }
  if ((rc = smr_rdma_link_accept(k, err, errlen)) < 0 ||
      (rc = wait_up(k, o->timeout_ms, err, errlen)) < 0) {
    smr_rdma_link_close(k);
    return rc;
  }
  *out = k;
  return 0;
}

/* Posts wr, signaled if SIGNAL_EVERY-1 unsignaled ones went before it. */
static int post_send(struct smr_rdma_link *k, struct ibv_send_wr *wr) {
  struct ibv_send_wr *bad;
  k->unsignaled++;
  if (k->unsignaled >= SIGNAL_EVERY) {
    wr->send_flags |= IBV_SEND_SIGNALED;
    wr->wr_id = k->unsignaled; /* the sends this completion retires */
  }
  if (ibv_post_send(k->id->qp, wr, &bad) != 0) {
    k->unsignaled--;
    return -errno;
  }
  if (wr->send_flags & IBV_SEND_SIGNALED) k->unsignaled = 0;
  k->sends_out++;
  return 0;
}

static int post_write(struct smr_rdma_link *k, uint32_t off, uint32_t len,
                      int imm, uint32_t imm_data) {
  struct ibv_sge sge = {.addr = (uint64_t)(uintptr_t)(k->mirror + off),
                        .length = len,
                        .lkey = k->mirror_mr->lkey};
  struct ibv_send_wr wr;
  memset(&wr, 0, sizeof(wr));
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
  wr.imm_data = htonl(imm_data);
  wr.wr.rdma.remote_addr = k->peer_addr + off;
  wr.wr.rdma.rkey = k->peer_rkey;
  return post_send(k, &wr);
}

static int post_credit(struct smr_rdma_link *k) {
  struct ibv_send_wr wr;
  memset(&wr, 0, sizeof(wr));
  wr.num_sge = 0;
  wr.opcode = IBV_WR_SEND_WITH_IMM;
  wr.imm_data = htonl((uint32_t)k->rx.head | IMM_CREDIT);
  return post_send(k, &wr);
}

/* Writes our SST slot's source (k->sst_out, as it is) into the peer's
 * slot: one signaled WRITE, WITH IMMEDIATE if `wake`; it retires every
 * send before it too. */
static int post_slot(struct smr_rdma_link *k, int wake) {
  struct ibv_sge sge = {.addr = (uint64_t)(uintptr_t)k->sst_out,
                        .length = SMR_SST_SLOT,
                        .lkey = k->sst_out_mr->lkey};
  struct ibv_send_wr wr, *bad;
  memset(&wr, 0, sizeof(wr));
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = wake ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
  wr.imm_data = htonl(IMM_SST);
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = k->peer_sst_addr;
  wr.wr.rdma.rkey = k->peer_sst_rkey;
  k->unsignaled++;
  wr.wr_id = k->unsignaled | WR_SST; /* retires those before it too */
  if (ibv_post_send(k->id->qp, &wr, &bad) != 0) {
    k->unsignaled--;
    return -errno;
  }
  k->unsignaled = 0;
  k->sends_out++;
  k->sst_busy = 1;
  return 0;
}

/* Makes data the peer's SST row: the only slot write in flight
 * (rdma_ring.h).  The immediate wakes the peer: its member is waiting for
 * exactly this acknowledgement to deliver. */
static int post_sst(struct smr_rdma_link *k, const void *data, uint32_t len) {
  smr_sst_slot_fill(k->sst_out, ++k->sst_seq, data, len);
  return post_slot(k, 1);
}

/* Takes the send completions there are: each retires the sends its wr_id
 * counts (and the SST write, if it was that).  0, or -ECONNRESET. */
static int retire_sends(struct smr_rdma_link *k) {
  struct ibv_wc wc[16];
  int n;
  while ((n = ibv_poll_cq(k->scq, 16, wc)) > 0)
    for (int i = 0; i < n; i++) {
      if (wc[i].status != IBV_WC_SUCCESS) {
        k->dead = 1;
        return -ECONNRESET;
      }
      unsigned done = (unsigned)(wc[i].wr_id & ~WR_SST);
      k->sends_out = done < k->sends_out ? k->sends_out - done : 0;
      if (wc[i].wr_id & WR_SST) k->sst_busy = 0;
    }
  if (n < 0) {
    k->dead = 1;
    return -ECONNRESET;
  }
  return 0;
}

/* Room for `need` more sends: 0, or -EAGAIN with the send CQ armed (its
 * event wakes the caller when room is made), or -ECONNRESET. */
static int room_for(struct smr_rdma_link *k, unsigned need) {
  if (k->sends_out + need <= SEND_DEPTH) return 0;
  if (retire_sends(k) < 0) return -ECONNRESET;
  if (k->sends_out + need <= SEND_DEPTH) return 0;
  if (ibv_req_notify_cq(k->scq, 0) != 0) {
    k->dead = 1;
    return -ECONNRESET;
  }
  /* (A completion between the last look and the arming raises no event.) */
  if (retire_sends(k) < 0) return -ECONNRESET;
  return k->sends_out + need <= SEND_DEPTH ? 0 : -EAGAIN;
}

int smr_rdma_link_sst_put(struct smr_rdma_link *k, const void *data,
                          uint32_t len) {
  if (k->dead || k->gone) return -ECONNRESET;
  if (len > SMR_SST_DATA_MAX) return -EMSGSIZE;
  /* One write in flight, and posted at once or not at all: a write held
   * back would land after records posted behind it.  Nobody waits for the
   * slot (the caller sends that row another way), so no arming. */
  if ((k->sst_busy || k->sends_out + 2 > SEND_DEPTH) && retire_sends(k) < 0)
    return -ECONNRESET;
  if (k->sst_busy || k->sends_out + 2 > SEND_DEPTH) return -EBUSY;
  int rc = post_sst(k, data, len);
  if (rc < 0) k->dead = 1;
  return rc;
}

int smr_rdma_link_sst_get(struct smr_rdma_link *k, uint8_t *data,
                          uint32_t *len) {
  uint64_t seq;
  if (k->dead) return -ECONNRESET;
  int r = smr_sst_slot_read(k->sst_in, k->sst_last, &seq, data, len);
  if (r == -EAGAIN) return 0; /* landing now: the next look takes it */
  if (r < 0) {
    k->dead = 1;
    return r;
  }
  if (r == 1) k->sst_last = seq;
  return r;
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Sleeps until the completion channel has an event or `deadline` (a
 * now_ms() time) passes, then takes the events: 0, or -ETIMEDOUT, or
 * another negative errno. */
static int wait_completion(struct smr_rdma_link *k, int64_t deadline) {
  int64_t left = deadline - now_ms();
  if (left <= 0) return -ETIMEDOUT;
  struct pollfd pfd = {.fd = k->cc->fd, .events = POLLIN};
  if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) return -errno;
  return smr_rdma_link_arm(k);
}

int smr_rdma_link_drain(struct smr_rdma_link *k, int timeout_ms) {
  if (k->dead || k->gone || k->st != L_UP) return 0;
  if (retire_sends(k) < 0) return -ECONNRESET;
  if (k->sends_out == 0) return 0;
  int64_t deadline = now_ms() + timeout_ms;
  int rc;
  while ((rc = room_for(k, 1)) == -EAGAIN)
    if ((rc = wait_completion(k, deadline)) < 0) return rc;
  if (rc < 0) return rc;
  /* Unsignaled sends are only retired by a signaled one after them: post
   * one, our SST slot's source again, which changes no byte at the peer
   * (the same write number: not news) and wakes nobody. */
  if ((rc = post_slot(k, 0)) < 0) {
    k->dead = 1;
    return rc;
  }
  for (;;) {
    if (ibv_req_notify_cq(k->scq, 0) != 0 || retire_sends(k) < 0) {
      k->dead = 1;
      return -ECONNRESET;
    }
    if (k->sends_out == 0) return 0;
    if ((rc = wait_completion(k, deadline)) < 0) return rc;
  }
}

int smr_rdma_link_send(struct smr_rdma_link *k, const void *buf,
                       uint32_t len) {
  if (k->dead || k->gone) return -ECONNRESET;
  /* Room in the send queue for a WRAP and the record, and one slot kept
   * for a credit (post_credit never waits on our own records). */
  int rc = room_for(k, 3);
  if (rc < 0) return rc;
  struct smr_ring_place pl;
  rc = smr_ring_tx_place(&k->tx, len, &pl);
  if (rc < 0) return rc;
  if (pl.wrap_len > 0) {
    smr_ring_put_header(k->mirror + pl.wrap_off, SMR_RING_WRAP,
                        pl.pos - pl.wrap_len);
    if ((rc = post_write(k, pl.wrap_off, SMR_RING_HDR, 0, 0)) < 0) goto dead;
  }
  smr_ring_put_header(k->mirror + pl.off, len, pl.pos);
  memcpy(k->mirror + pl.off + SMR_RING_HDR, buf, len);
  rc = post_write(k, pl.off, (uint32_t)smr_ring_record_size(len), 1,
                  (uint32_t)pl.new_tail);
  if (rc < 0) goto dead;
  return 0;
dead:
  k->dead = 1;
  return rc;
}

int smr_rdma_link_send_whole(struct smr_rdma_link *k, const void *buf,
                             size_t len) {
  if (k->dead || k->gone) return -ECONNRESET;
  uint32_t max = k->tx.max_len;
  size_t nrec = (len + max - 1) / max;
  if (nrec == 0 || nrec > SEND_DEPTH / 4) return -EMSGSIZE;
  /* Room for every record and one WRAP (which fills the rest of a lap:
   * less than a largest record), and send queue room as link_send wants
   * it for the last one; then no send below can say -EAGAIN. */
  uint64_t need = nrec * smr_ring_record_size(max) + smr_ring_record_size(max);
  if (smr_ring_tx_room(&k->tx) < need) return -EAGAIN;
  int rc = room_for(k, (unsigned)(2 * nrec + 1));
  if (rc < 0) return rc;
  const uint8_t *p = buf;
  for (size_t off = 0; off < len; off += max) {
    uint32_t l = len - off < max ? (uint32_t)(len - off) : max;
    if ((rc = smr_rdma_link_send(k, p + off, l)) < 0) {
      k->dead = 1; /* (not -EAGAIN: room was checked) */
      return rc == -EAGAIN ? -EIO : rc;
    }
  }
  return 0;
}

int smr_rdma_link_poll(struct smr_rdma_link *k, smr_rdma_on_record cb,
                       void *ctx) {
  if (k->dead) return -ECONNRESET;
  struct ibv_wc wc[32];
  int delivered = 0, budget = POLL_BUDGET;
  k->more = 0;
  k->polled = 0;
  if (k->flushed) return 0;
  for (;;) {
    if (budget <= 0) {
      k->more = 1; /* the caller comes back after the loop's other work */
      break;
    }
    int n = ibv_poll_cq(k->cq, 32, wc);
    if (n < 0) {
      k->dead = 1;
      return -ECONNRESET;
    }
    if (n == 0) break;
    budget -= n;
    k->polled += n;
    for (int i = 0; i < n; i++) {
      if (wc[i].status == IBV_WC_WR_FLUSH_ERR && k->gone) {
        k->flushed = 1; /* the rest is flushed receives: all that came */
        return delivered;
      }
      if (wc[i].status != IBV_WC_SUCCESS) {
        k->dead = 1;
        return -ECONNRESET;
      }
      if (!(wc[i].opcode & IBV_WC_RECV) || (!k->gone && post_recv(k) < 0) ||
          !(wc[i].wc_flags & IBV_WC_WITH_IMM)) {
        k->dead = 1;
        return wc[i].wc_flags & IBV_WC_WITH_IMM ? -ECONNRESET : -EPROTO;
      }
      uint32_t imm = ntohl(wc[i].imm_data);
      if (imm == IMM_SST) continue; /* the caller looks at the slot next */
      if (imm & IMM_CREDIT) {
        uint32_t lo = imm & ~IMM_CREDIT;
        uint64_t head = k->tx.head + (uint32_t)(lo - (uint32_t)k->tx.head);
        if (smr_ring_tx_credit(&k->tx, head) < 0) {
          k->dead = 1;
          return -EPROTO;
        }
        continue;
      }
      if (smr_ring_rx_announce(&k->rx, imm) < 0) {
        k->dead = 1;
        return -EPROTO;
      }
      const uint8_t *p;
      uint32_t len;
      int r;
      while ((r = smr_ring_rx_next(&k->rx, k->ring, &p, &len)) == 1) {
        cb(ctx, p, len);
        delivered++;
      }
      if (r < 0) {
        k->dead = 1;
        return -EPROTO;
      }
    }
  }
  /* Sends retire after the receives are taken: a failed send (the peer is
   * gone) must not hide records that arrived before it. */
  if (!k->gone && retire_sends(k) < 0) return -ECONNRESET;
  /* One credit per poll, and only with room in the send queue; else it is
   * owed, and the send completions that make room (room_for arms their
   * CQ) bring us back here. */
  int room = smr_ring_rx_should_publish(&k->rx) && !k->gone ? room_for(k, 1)
                                                           : -EAGAIN;
  if (room == -ECONNRESET) return -ECONNRESET;
  if (room == 0) {
    if (post_credit(k) < 0) {
      k->dead = 1;
      return -ECONNRESET;
    }
    smr_ring_rx_published(&k->rx);
  }
  return delivered;
}

int smr_rdma_link_more(const struct smr_rdma_link *k) { return k->more; }
int smr_rdma_link_polled(const struct smr_rdma_link *k) { return k->polled; }

uint64_t smr_rdma_link_room(const struct smr_rdma_link *k) {
  return smr_ring_tx_room(&k->tx);
}

const char *smr_rdma_link_device(const struct smr_rdma_link *k) {
  return k->id != NULL && k->id->verbs != NULL
             ? ibv_get_device_name(k->id->verbs->device)
             : "?";
}

void smr_rdma_link_close(struct smr_rdma_link *k) {
  if (k == NULL) return;
  if (k->id != NULL && k->qp_made) {
    rdma_disconnect(k->id);
    rdma_destroy_qp(k->id);
  }
  if (k->sst_out_mr != NULL) ibv_dereg_mr(k->sst_out_mr);
  if (k->sst_in_mr != NULL) ibv_dereg_mr(k->sst_in_mr);
  if (k->mirror_mr != NULL) ibv_dereg_mr(k->mirror_mr);
  if (k->ring_mr != NULL) ibv_dereg_mr(k->ring_mr);
  if (k->scq != NULL) ibv_destroy_cq(k->scq);
  if (k->cq != NULL) ibv_destroy_cq(k->cq);
  if (k->cc != NULL) ibv_destroy_comp_channel(k->cc);
  if (k->pd != NULL) ibv_dealloc_pd(k->pd);
  if (k->id != NULL) rdma_destroy_id(k->id);
  if (k->ec != NULL) rdma_destroy_event_channel(k->ec);
  free(k->ring);
  free(k->mirror);
  free(k->sst_in);
  free(k->sst_out);
  free(k);
}
