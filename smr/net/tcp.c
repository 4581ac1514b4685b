/* tcp.c -- the TCP transport: one connection per member pair, mutual TLS
 * under the group CA, on the caller's libev loop (interface in net.h).
 *
 * Objects.  A peer (struct peer) is another member as this one knows it:
 * its id, the address we last heard for it, its outgoing queue and
 * reconnection backoff, and at most two connections: `up`, the
 * established connection of the pair, and `out`, an outbound attempt
 * still coming up.  A connection (struct conn) is one socket (and SSL)
 * with a read buffer and a few bytes of control output (the hello).
 * Inbound connections belong to no peer until their hello is accepted.
 *
 * A connection's life:
 *
 *   outbound:  CONNECTING -> [HANDSHAKE] -> HELLO -> UP
 *   inbound:                 [HANDSHAKE] -> HELLO -> UP, or -> CLOSING
 *
 * HANDSHAKE is TLS only.  In HELLO the initiator has sent its hello
 * (tcp_proto.h) and waits for the verdict; the acceptor waits for the
 * hello.  The acceptor checks it (addressed to us, a valid id that is not
 * ours, and with TLS named by the peer's certificate; the initiator checked
 * the acceptor's certificate names the member it dialled) and answers
 * ACCEPT (UP at once; frames may follow the verdict in the same write),
 * DUPLICATE or REFUSE (CLOSING: the verdict is written, our side shut
 * down, and the socket closed on the peer's EOF or after a short linger).
 * The initiator sends no frame before ACCEPT, so a connection that loses
 * the race below never carried one.  Every connection must be UP within
 * timeout_ms of its start.
 *
 * One connection per pair.  Both members may dial at once.  The acceptor
 * decides, on a hello from P:
 *   a. P's connection is already UP: DUPLICATE (the established one stays;
 *      P only dials when it has none, so ours is stale and will break on
 *      our next write or keepalive, after which P's retry gets through.
 *      A crashed process's kernel closes its sockets, so only a crashed
 *      host leaves such a connection, and keepalive finds it within about
 *      timeout_ms);
 *   b. our own attempt to P is under way: the connection initiated by the
 *      lexically smaller id wins.  If we are smaller, DUPLICATE; otherwise
 *      we drop our attempt (it never carried a frame) and ACCEPT;
 *   c. otherwise ACCEPT.
 * Both ends apply the same rule to the same two connections, so a pair
 * converges on one connection that carries both directions: `up` and
 * `out` are never both set.  A dropped or refused attempt is retried with
 * exponential backoff (reconnect_ms doubling up to SMR_NET_RECONNECT_CAP_MS,
 * plus up to 25% jitter) while frames are queued for the peer.
 *
 * Identities.  Frames reach on_frame with the peer's authenticated id, and
 * only if their header's sender id is that same id: a frame claiming to
 * come from anyone else, and bytes that are no frame (smr_wire_frame_len()
 * < 0, too long included), break the connection and count as refused.
 *
 * Queues and back-pressure.  Each peer has one contiguous byte queue of
 * whole frames: qframe..qhead is the part of the head frame already
 * written, qhead..qlen is unwritten.  Writes take as many bytes as the
 * kernel (or TLS, in 16 KiB records) accepts, so many small frames cost one
 * syscall (up to a budget per loop iteration, so that a peer that takes
 * everything cannot keep the loop from its timers).  smr_net_send()
 * returns -EAGAIN once the unwritten bytes would pass max_queue_bytes,
 * and marks the peer blocked; on_writable fires once
 * when a blocked queue drains to half.  When a connection breaks, the
 * queue rewinds to the start of its partly written frame, so the next
 * connection resends it whole.  Writes are deferred to an ev_prepare
 * watcher (run before the loop sleeps), so everything sent during one
 * loop iteration goes out together.  Reads take everything the socket has
 * (up to a budget per loop iteration, then the writes go first and the
 * event is fed again) and hand every complete frame up before reading
 * more.
 *
 * Re-entrancy.  Callbacks may call anything, including smr_net_forget()
 * and smr_net_close().  So nothing is freed while a callback may be on the
 * stack: every libev callback runs between net_enter() and net_leave(),
 * closing only marks connections, peers or the whole transport dead, and
 * net_leave() frees them when the outermost callback returns.  After every
 * user callback the code checks whether its connection died or the
 * transport closed, and returns if so.  Calls from outside any callback
 * free at once.
 *
 * Sockets are non-blocking and close-on-exec, with TCP_NODELAY, SO_KEEPALIVE
 * and keepalive/TCP_USER_TIMEOUT derived from timeout_ms, so a dead peer is
 * noticed within about timeout_ms even when idle.  Sends use MSG_NOSIGNAL
 * (and TLS goes through tls.c's socket BIO for the same reason), so a
 * vanished peer never raises SIGPIPE. */
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "assert.h"
#include "le.h"
#include "net.h"
#include "rdma.h"
#include "rdma_ring.h"
#include "tcp_proto.h"
#include "tls.h"
#include "wire.h"

#define RBUF_MIN (64u << 10)     /* read buffer of a connection */
#define RBUF_HELLO 256u          /* before it is up: the hello only */
#define BUF_KEEP (1u << 20)      /* larger buffers are shrunk when idle */
#define WRITE_CHUNK (256u << 10) /* bytes offered per write call */
#define READ_BUDGET (1u << 20)   /* bytes read per loop iteration */
#define WRITE_BUDGET (4u << 20)  /* bytes written to a peer per iteration */
#define MAX_PENDING 128          /* inbound connections not yet up */
#define MAX_PEERS 1024
#define LOG_BURST 50             /* log lines per second, then suppressed */
#define LINGER_S 1.0             /* CLOSING: wait this long for the EOF */
#define LISTEN_PAUSE_S 0.1       /* out of descriptors: retry accept */
#define PREPARE_ROUNDS 16
#define RDMA_DIRECT_MIN (8u << 10) /* frames this large skip the queue */
#define RDMA_DRAIN_MS 1000 /* at close, for the links to send what they hold */
#define TAKE_ROUNDS 64     /* polls of a link that ends, at most */

/* ------------------------------------------------------------- objects */

enum conn_state {
  C_CONNECTING, /* outbound: connect() in progress */
  C_HANDSHAKE,  /* TLS handshake */
  C_HELLO,      /* initiator: awaiting the verdict; acceptor: the hello */
  C_UP,         /* the pair's connection: frames both ways */
  C_CLOSING     /* acceptor: verdict going out, then close */
};

struct peer;

struct conn {
  struct smr_net *n;
  struct conn *next;
  struct peer *peer; /* outbound: whom we dial; inbound: set when UP */
  enum conn_state state;
  unsigned outbound : 1, dead : 1, pending : 1, shut : 1;
  unsigned hs_wants_write : 1; /* handshake: waiting for EV_WRITE */
  unsigned wblocked : 1;       /* a write would block: waiting for EV_WRITE */
  unsigned wr_wants_read : 1;  /* TLS write waits for EV_READ */
  unsigned rd_wants_write : 1; /* TLS read waits for EV_WRITE */
  unsigned read_more : 1;      /* read budget spent: read on after writes */
  unsigned write_more : 1;     /* write budget spent: on in the next round */
  int fd;
  int events; /* what io watches */
  SSL *ssl;
  struct smr_tls_sock sock;
  ev_io io;
  ev_timer timer; /* deadline to come up; linger in CLOSING */
  char addr[SMR_NET_ADDRSTR_MAX];
  uint8_t ctl[SMR_NET_HELLO_MAX]; /* hello or verdict, written first */
  size_t ctl_len, ctl_off;
  uint8_t *rbuf;
  size_t rlen, rcap;
  size_t rneed; /* length of the frame being received, once known */
  /* kind = rdma (rdma.h): the link of this connection, and the switch. */
  struct smr_rdma_path *rp;
  unsigned rdma_tx : 1;     /* our frames go over rp now */
  unsigned rdma_rx : 1;     /* the peer's switch record came: switch_at */
  unsigned rdma_bad : 1;    /* a record broke the rules (or no memory) */
  unsigned tls_retry : 1;   /* a TCP/TLS write must be retried as it was */
  unsigned rdma_counted : 1;
  uint64_t tls_out, tls_in; /* stream bytes after the hello, over TCP */
  uint64_t switch_at;       /* the peer's stream bytes over TCP, in all */
  uint8_t *pend;            /* link bytes before TCP reached switch_at */
  size_t pend_len, pend_cap;
  /* The SST slot: heartbeats go there instead of the stream once we
   * switched, each with the stream position it was sent at; the peer's
   * latest waits here until our stream has reached its position. */
  uint64_t sent_total, rcvd_total; /* stream bytes of this connection */
  uint8_t sst_row[SMR_SST_DATA_MAX];
  uint32_t sst_len;
  uint64_t sst_pos; /* the waiting row's stream position */
  unsigned sst_pending : 1;
};

struct peer {
  struct smr_net *n;
  struct peer *next;
  char id[SMR_ID_MAX];
  char addr[SMR_ADDR_MAX]; /* "" while unknown */
  struct conn *up, *out;
  uint8_t *q;
  size_t qcap, qlen, qhead, qframe;
  unsigned dead : 1, blocked : 1;
  uint32_t delay;    /* next backoff, ms */
  uint32_t attempts; /* failed attempts since the last UP */
  ev_timer retry;
};

struct smr_net {
  struct smr_net_config cfg; /* strings not kept: see self */
  struct ev_loop *loop;
  char self[SMR_ID_MAX];
  size_t self_len;
  size_t max_queue;
  uint32_t reconnect_ms, reconnect_cap_ms;
  double timeout_s;
  int secure;
  struct smr_tls tls;
  int lfd, port;
  ev_io lio;
  ev_timer lpause;
  ev_prepare prep; /* flushes queues before the loop sleeps */
  ev_idle kick;    /* keeps the loop from sleeping on unflushed data */
  struct peer *peers;
  struct conn *conns;
  unsigned npeers, npending;
  int depth, closing;
  uint64_t rng;
  double log_window;
  unsigned log_count;
  unsigned long log_dropped;
  struct smr_net_stats st;
  struct smr_rdma_ep *rdma; /* kind = rdma */
  ev_tstamp drain_until;    /* closing: until when links may drain */
  int rdma_fallback;
  /* A listen address with a specific host is also the source of outbound
   * connections (port 0), so a multi-homed member speaks from the address
   * its peers know (and, with RDMA, the link leaves from its device). */
  struct sockaddr_storage src;
  socklen_t srclen;
};

/* ------------------------------------------------------------- helpers */

static void net_log(struct smr_net *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void net_log(struct smr_net *n, const char *fmt, ...) {
  char line[512];
  va_list ap;
  double now;

  if (n->cfg.log == NULL || n->closing) return;
  now = ev_now(n->loop);
  if (now - n->log_window >= 1.0) {
    if (n->log_dropped > 0) {
      snprintf(line, sizeof line, "(%lu transport log lines suppressed)",
               n->log_dropped);
      n->cfg.log(n->cfg.ctx, line);
    }
    n->log_window = now;
    n->log_count = 0;
    n->log_dropped = 0;
  }
  if (n->log_count >= LOG_BURST) {
    n->log_dropped++;
    return;
  }
  n->log_count++;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  n->cfg.log(n->cfg.ctx, line);
}

static uint64_t net_rand(struct smr_net *n) {
  /* xorshift64*: jitter only, no need for quality. */
  n->rng ^= n->rng >> 12;
  n->rng ^= n->rng << 25;
  n->rng ^= n->rng >> 27;
  return n->rng * 0x2545f4914f6cdd1du;
}

/* Printable copy of an untrusted id of len bytes, for log lines. */
static void show_id(char *buf, const uint8_t *p, size_t len) {
  size_t k;

  if (len > SMR_ID_MAX - 1) len = SMR_ID_MAX - 1;
  for (k = 0; k < len; k++)
    buf[k] = (p[k] > 0x20 && p[k] < 0x7f) ? (char)p[k] : '?';
  buf[k] = '\0';
}

static int set_sockopts(int fd, uint32_t timeout_ms) {
  int one = 1;
  int idle = (int)(timeout_ms / 2000), intvl = (int)(timeout_ms / 6000),
      cnt = 3;
  unsigned int user_timeout = timeout_ms;

  if (idle < 1) idle = 1;
  if (intvl < 1) intvl = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout,
                 sizeof user_timeout) < 0)
    return -errno;
  return 0;
}

/* --------------------------------------------------------------- queue */

static size_t peer_queued(const struct peer *p) { return p->qlen - p->qhead; }

/* Appends one whole frame; 0 or -ENOMEM. */
static int queue_append(struct peer *p, const uint8_t *f, size_t len) {
  if (p->qcap - p->qlen < len && p->qframe > 0) {
    /* Compact.  A TLS write waiting to be retried may move with its bytes:
     * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
    memmove(p->q, p->q + p->qframe, p->qlen - p->qframe);
    p->qlen -= p->qframe;
    p->qhead -= p->qframe;
    p->qframe = 0;
  }
  if (p->qcap - p->qlen < len) {
    size_t cap = p->qcap ? p->qcap : RBUF_MIN;
    while (cap - p->qlen < len) cap *= 2;
    uint8_t *q = realloc(p->q, cap);
    if (q == NULL) return -ENOMEM;
    p->q = q;
    p->qcap = cap;
  }
  memcpy(p->q + p->qlen, f, len);
  p->qlen += len;
  return 0;
}

/* r more bytes were written: move the head, count whole frames out. */
static void queue_advance(struct smr_net *n, struct peer *p, size_t r) {
  smr_assert(r <= peer_queued(p));
  p->qhead += r;
  while (p->qframe < p->qhead) {
    long fl = smr_wire_frame_len(p->q + p->qframe, p->qlen - p->qframe);
    /* Only whole frames checked by smr_net_send() are queued. */
    if (NEVER(fl <= 0)) fl = (long)(p->qhead - p->qframe);
    if (p->qframe + (size_t)fl > p->qhead) break;
    p->qframe += (size_t)fl;
    n->st.frames_out++;
    n->st.bytes_out += (uint64_t)fl;
  }
  if (p->qframe == p->qlen) {
    p->qframe = p->qhead = p->qlen = 0;
    if (p->qcap > BUF_KEEP) {
      free(p->q);
      p->q = NULL;
      p->qcap = 0;
    }
  }
}

static void queue_free(struct peer *p) {
  free(p->q);
  p->q = NULL;
  p->qcap = p->qlen = p->qhead = p->qframe = 0;
}

/* --------------------------------------------------------------- peers */

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents);

static struct peer *peer_find(struct smr_net *n, const char *id) {
  for (struct peer *p = n->peers; p != NULL; p = p->next)
    if (!p->dead && strcmp(p->id, id) == 0) return p;
  return NULL;
}

/* The peer of that id, created if new; NULL if out of memory or there are
 * too many. */
static struct peer *peer_get(struct smr_net *n, const char *id) {
  struct peer *p = peer_find(n, id);

  if (p != NULL) return p;
  if (n->npeers >= MAX_PEERS) return NULL;
  p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->n = n;
  snprintf(p->id, sizeof p->id, "%s", id);
  p->delay = n->reconnect_ms;
  ev_timer_init(&p->retry, on_retry, 0., 0.);
  p->retry.data = p;
  p->next = n->peers;
  n->peers = p;
  n->npeers++;
  return p;
}

/* A peer that holds nothing: no connection, frames, retry or address. */
static int peer_idle(const struct peer *p) {
  return p->up == NULL && p->out == NULL && p->qlen == 0 && !p->blocked &&
         !ev_is_active(&p->retry) && p->addr[0] == '\0';
}

static void peer_retry_later(struct peer *p) {
  struct smr_net *n = p->n;
  double d;

  if (p->dead || n->closing || p->up || p->out || ev_is_active(&p->retry))
    return;
  if (p->addr[0] == '\0' || peer_queued(p) == 0) return;
  d = p->delay / 1000.0;
  d += d * (double)(net_rand(n) % 1000) / 4000.0;
  ev_timer_set(&p->retry, d, 0.);
  ev_timer_start(n->loop, &p->retry);
  p->delay = p->delay > n->reconnect_cap_ms / 2 ? n->reconnect_cap_ms
                                                 : p->delay * 2;
}

/* ---------------------------------------------------------- connections */

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents);
static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void conn_write(struct conn *c);
static void conn_read(struct conn *c);

static void net_want_flush(struct smr_net *n) {
  if (!n->closing && !ev_is_active(&n->prep))
    ev_prepare_start(n->loop, &n->prep);
}

/* A read or write that spent its budget goes on in the next loop
 * iteration: on_prepare runs then, and the kick keeps the loop from
 * sleeping until it does. */
static void net_next_round(struct smr_net *n) {
  net_want_flush(n);
  ev_idle_start(n->loop, &n->kick);
}

static struct conn *conn_new(struct smr_net *n, int fd, int outbound,
                             const char *addr) {
  struct conn *c = calloc(1, sizeof *c);

  if (c == NULL) return NULL;
  c->n = n;
  c->fd = fd;
  c->sock.fd = fd;
  c->outbound = outbound != 0;
  snprintf(c->addr, sizeof c->addr, "%s", addr);
  ev_io_init(&c->io, on_conn_io, fd, EV_READ);
  c->io.data = c;
  ev_timer_init(&c->timer, on_conn_timer, n->timeout_s, 0.);
  c->timer.data = c;
  ev_timer_start(n->loop, &c->timer);
  c->next = n->conns;
  n->conns = c;
  return c;
}

/* Watches what the connection's state needs. */
static void conn_update(struct conn *c) {
  int ev;

  if (c->dead) return;
  switch (c->state) {
    case C_CONNECTING:
      ev = EV_WRITE;
      break;
    case C_HANDSHAKE:
      ev = EV_READ | (c->hs_wants_write ? EV_WRITE : 0);
      break;
    default:
      ev = EV_READ | (c->wblocked || c->rd_wants_write ? EV_WRITE : 0);
      break;
  }
  if (ev == c->events) return;
  ev_io_stop(c->n->loop, &c->io);
  ev_io_set(&c->io, c->fd, ev);
  ev_io_start(c->n->loop, &c->io);
  c->events = ev;
}

static void conn_unpend(struct conn *c) {
  if (!c->pending) return;
  c->pending = 0;
  smr_assert(c->n->npending > 0);
  c->n->npending--;
}

/* Closes the socket and detaches the connection from its peer; the memory
 * goes at the next reap.  graceful: say goodbye in TLS (close_notify). */
static void conn_close(struct conn *c, int graceful) {
  struct smr_net *n = c->n;
  struct peer *p = c->peer;

  if (c->dead) return;
  ev_io_stop(n->loop, &c->io);
  ev_timer_stop(n->loop, &c->timer);
  if (c->ssl != NULL && graceful && c->state == C_UP) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
  if (graceful && n->closing && c->rdma_tx) {
    /* Our last frames (a LEAVE, the acknowledgements of what we applied)
     * may be posted but not yet executed: the link would drop them, where
     * a socket still delivers what it holds.  Shutdown only, and bounded:
     * RDMA_DRAIN_MS for all the links together (smr_net_close).  A peer
     * that posts no receives (its loop stalled) cannot take writes with
     * an immediate, and then they are flushed after all. */
    int ms = (int)((n->drain_until - ev_time()) * 1000);
    int e = smr_rdma_path_drain(c->rp, ms > 0 ? ms : 0);
    if (e < 0)
      net_log(n, "rdma link to %s: closing with frames unsent (%s)",
              p != NULL ? p->id : "?", strerror(-e));
  }
  conn_unpend(c);
  close(c->fd);
  c->fd = c->sock.fd = -1;
  c->dead = 1;
  smr_rdma_path_close(c->rp);
  c->rp = NULL;
  if (c->rdma_counted) n->st.rdma_links--;
  c->rdma_counted = 0;
  if (p != NULL && p->out == c) p->out = NULL;
  if (p != NULL && p->up == c) {
    p->up = NULL;
    p->qhead = p->qframe; /* resend the partly written frame whole */
    n->st.disconnects++;
    n->st.peers_up--;
  }
}

static void conn_fail(struct conn *c, int refused, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The connection failed: close it, log why, count it, schedule a retry if
 * it was ours, and if it was up tell the caller (on_peer_lost), last. */
static void conn_fail(struct conn *c, int refused, const char *fmt, ...) {
  struct smr_net *n = c->n;
  struct peer *p = c->peer;
  int was_up = c->state == C_UP;
  char why[320];
  va_list ap;

  if (c->dead) return;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  if (!c->outbound && !was_up) refused = 1; /* an inbound that never made it */
  if (refused) n->st.refused++;
  conn_close(c, 0);
  if (was_up) {
    net_log(n, "%s %s at %s: %s", refused ? "refused" : "lost", p->id,
            c->addr, why);
    peer_retry_later(p);
    if (n->cfg.on_peer_lost != NULL) n->cfg.on_peer_lost(n->cfg.ctx, p->id);
    return;
  }
  if (c->outbound) {
    smr_assert(p != NULL);
    p->attempts++;
    if (refused)
      net_log(n, "refused %s at %s: %s", p->id, c->addr, why);
    else if ((p->attempts & (p->attempts - 1)) == 0) /* 1, 2, 4, 8, ... */
      net_log(n, "connect to %s at %s failed: %s (attempt %u)", p->id,
              c->addr, why, p->attempts);
    peer_retry_later(p);
    return;
  }
  net_log(n, "refused %s: %s", c->addr, why);
}

/* The hello or verdict to write before anything else (ACCEPT_RDMA: with
 * the port and token of offer). */
static int conn_set_ctl_offer(struct conn *c, uint8_t kind, const char *to,
                              uint16_t port, const uint8_t *token) {
  struct smr_net_hello h;

  memset(&h, 0, sizeof h);
  h.kind = kind;
  snprintf(h.from, sizeof h.from, "%s", c->n->self);
  snprintf(h.to, sizeof h.to, "%s", to);
  h.rdma_port = port;
  if (token != NULL) memcpy(h.token, token, sizeof h.token);
  c->ctl_len = smr_net_hello_encode(c->ctl, sizeof c->ctl, &h);
  c->ctl_off = 0;
  net_want_flush(c->n);
  return ALWAYS(c->ctl_len > 0) ? 0 : -EINVAL;
}

static int conn_set_ctl(struct conn *c, uint8_t kind, const char *to) {
  return conn_set_ctl_offer(c, kind, to, 0, NULL);
}

/* The initiator's hello: HELLO_RDMA when this member runs RDMA. */
static uint8_t hello_kind(const struct smr_net *n) {
  return n->rdma != NULL ? SMR_NET_HELLO_RDMA : SMR_NET_HELLO;
}

/* Acceptor: answer DUPLICATE or REFUSE, then close. */
static void conn_closing(struct conn *c, uint8_t kind, const char *to) {
  conn_unpend(c);
  c->state = C_CLOSING;
  c->rlen = 0;
  if (conn_set_ctl(c, kind, to) < 0) {
    conn_close(c, 0);
    return;
  }
  ev_timer_stop(c->n->loop, &c->timer);
  ev_timer_set(&c->timer,
               c->n->timeout_s < LINGER_S ? c->n->timeout_s : LINGER_S, 0.);
  ev_timer_start(c->n->loop, &c->timer);
}

static void conn_up(struct conn *c, struct peer *p) {
  struct smr_net *n = c->n;

  smr_assert(p->up == NULL);
  if (c->outbound) {
    smr_assert(p->out == c);
    p->out = NULL;
  }
  conn_unpend(c);
  c->state = C_UP;
  c->peer = p;
  p->up = c;
  ev_timer_stop(n->loop, &c->timer);
  ev_timer_stop(n->loop, &p->retry);
  p->delay = n->reconnect_ms;
  p->attempts = 0;
  n->st.connects++;
  n->st.peers_up++;
  net_log(n, "up %s at %s (%s)", p->id, c->addr,
          c->outbound ? "outbound" : "inbound");
  if (peer_queued(p) > 0) net_want_flush(n);
}

/* ------------------------------------------------------------ raw I/O */

/* Reads into buf: > 0 bytes, 0 would block, -1 failed (reason in why). */
static long io_read(struct conn *c, uint8_t *buf, size_t len, char *why,
                    size_t wlen) {
  if (c->ssl != NULL) {
    size_t got = 0;
    ERR_clear_error();
    int r = SSL_read_ex(c->ssl, buf, len, &got);
    if (r == 1) return (long)got;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_WANT_WRITE) {
      c->rd_wants_write = 1;
      return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      ERR_clear_error();
      snprintf(why, wlen, "closed by peer");
      return -1;
    }
    smr_tls_describe(c->ssl, &c->sock, e, why, wlen);
    return -1;
  }
  ssize_t r;
  do {
    r = recv(c->fd, buf, len, 0);
  } while (r < 0 && errno == EINTR);
  if (r > 0) return (long)r;
  if (r == 0) {
    snprintf(why, wlen, "closed by peer");
    return -1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
  snprintf(why, wlen, "%s", strerror(errno));
  return -1;
}

/* Writes from buf: > 0 bytes, 0 would block (flags say on what), -1
 * failed.  A TLS write that would block must be retried with the same
 * bytes and at least the same length; the callers guarantee both. */
static long io_write(struct conn *c, const uint8_t *buf, size_t len,
                     char *why, size_t wlen) {
  if (c->ssl != NULL) {
    size_t put = 0;
    ERR_clear_error();
    int r = SSL_write_ex(c->ssl, buf, len, &put);
    if (r == 1) return (long)put;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_WRITE) {
      c->wblocked = 1;
      return 0;
    }
    if (e == SSL_ERROR_WANT_READ) {
      c->wr_wants_read = 1;
      return 0;
    }
    smr_tls_describe(c->ssl, &c->sock, e, why, wlen);
    return -1;
  }
  ssize_t r;
  do {
    r = send(c->fd, buf, len, MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) return (long)r;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    c->wblocked = 1;
    return 0;
  }
  snprintf(why, wlen, "%s", strerror(errno));
  return -1;
}

/* -------------------------------------------------------------- writing */

/* CLOSING, verdict written: shut our side and wait for the peer's EOF. */
static void conn_shut(struct conn *c) {
  if (c->shut) return;
  c->shut = 1;
  if (c->ssl != NULL) {
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    ERR_clear_error();
  }
  shutdown(c->fd, SHUT_WR);
}

/* The link is up and our side has not switched yet; TLS owes no retry. */
static int conn_switch_due(const struct conn *c) {
  return c->state == C_UP && c->rp != NULL && !c->rdma_tx && !c->tls_retry &&
         smr_rdma_path_is_up(c->rp);
}

/* Writes the control bytes, then (UP) the peer's queue, until done or the
 * socket is full.  May call on_writable: callers check c->dead and
 * n->closing after. */
static void conn_write(struct conn *c) {
  struct smr_net *n = c->n;
  struct peer *p;
  char why[256];
  long r;

  if (c->dead) return;
  size_t budget = WRITE_BUDGET;
  c->wblocked = c->wr_wants_read = 0;
  while (c->ctl_off < c->ctl_len) {
    r = io_write(c, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off, why,
                 sizeof why);
    if (r == 0) return;
    if (r < 0) {
      if (c->state == C_CLOSING)
        conn_close(c, 0);
      else
        conn_fail(c, 0, "%s", why);
      return;
    }
    c->ctl_off += (size_t)r;
  }
  if (c->state == C_CLOSING) {
    conn_shut(c);
    return;
  }
  if (c->state != C_UP) return;
  p = c->peer;
  for (;;) {
    if (conn_switch_due(c)) {
      /* Nothing is owed to TLS (no write to retry): the stream moves to
       * the link here, after tls_out bytes (rdma.h). */
      uint8_t rec[SMR_RDMA_SWITCH_LEN] = {'S', 'M', 'R', 'S'};
      smr_le_put64(rec + 8, c->tls_out);
      int e = smr_rdma_path_send(c->rp, rec, sizeof rec);
      if (e < 0 && e != -EAGAIN) {
        conn_fail(c, 0, "rdma: cannot switch: %s", strerror(-e));
        return;
      }
      if (e == 0) c->rdma_tx = 1;
    }
    if (c->rdma_tx || peer_queued(p) == 0) break;
    /* A link being made: frames wait for it (all of the stream goes over
     * RDMA), unless TLS owes a retry of bytes it already took.  If the
     * link fails, with fallback they go over TCP after all. */
    if (c->rp != NULL && !c->tls_retry) break;
    /* One chunk over TCP, then look at the switch again. */
    size_t len = peer_queued(p);
    if (len > WRITE_CHUNK) len = WRITE_CHUNK;
    r = io_write(c, p->q + p->qhead, len, why, sizeof why);
    if (r == 0) {
      c->tls_retry = c->ssl != NULL; /* TLS must retry the same bytes */
      break;
    }
    if (r < 0) {
      conn_fail(c, 0, "%s", why);
      return;
    }
    c->tls_retry = 0;
    c->tls_out += (uint64_t)r;
    c->sent_total += (uint64_t)r;
    queue_advance(n, p, (size_t)r);
    if ((size_t)r >= budget) {
      /* Enough for one loop iteration: a peer that reads as fast as we
       * encrypt never fills the socket, and the whole queue went out in
       * one call (20 MB over TLS under TCG: 3 s without a heartbeat, and
       * the members excluded the primary).  The rest goes next time
       * round (on_prepare). */
      c->write_more = 1;
      net_next_round(n);
      break;
    }
    budget -= (size_t)r;
  }
  if (c->rdma_tx) {
    uint32_t max = smr_rdma_path_max_record(c->rp);
    while (peer_queued(p) > 0) {
      size_t len = peer_queued(p);
      if (len > max) len = max;
      int e = smr_rdma_path_send(c->rp, p->q + p->qhead, (uint32_t)len);
      if (e == -EAGAIN) break; /* on_rdma_input writes on */
      if (e < 0) {
        conn_fail(c, 0, "rdma: %s", strerror(-e));
        return;
      }
      n->st.rdma_bytes_out += len;
      c->sent_total += len;
      queue_advance(n, p, len);
    }
  }
  if (p->blocked && peer_queued(p) <= n->max_queue / 2) {
    p->blocked = 0;
    if (n->cfg.on_writable != NULL) n->cfg.on_writable(n->cfg.ctx);
  }
}

/* -------------------------------------------------------------- reading */

/* Describes a refused stream's first bytes, for the log. */
static const char *hello_error(long r, const uint8_t *b, size_t len) {
  if (len > 0 && b[0] == 0x16)
    return "not an smr hello: a TLS client, but this member is insecure";
  if (len >= 2 && b[0] == SMR_WIRE_MAGIC0 && b[1] == SMR_WIRE_MAGIC1)
    return "not an smr hello: frames before the hello";
  if (r == -EPROTO) return "unsupported hello version";
  return "not an smr hello";
}

static const char *frame_error(long r) {
  switch (r) {
    case -EMSGSIZE:
      return "frame too long";
    case -EPROTO:
      return "frame of another protocol version";
    default:
      return "bad frame header";
  }
}

static void on_rdma_up(void *ctx);
static void on_rdma_input(void *ctx);
static void on_rdma_failed(void *ctx, const char *why);
static void conn_rdma_deadline(struct conn *c);
static void conn_rdma_merge(struct conn *c);
static int conn_rdma_take(struct conn *c);
static int conn_rdma_take_all(struct conn *c);
static void conn_sst_deliver(struct conn *c);
static void conn_rdma_lost(struct conn *c, const char *why);
static void dial_rdma(struct conn *c, const struct smr_net_hello *h);

/* Acceptor: the hello h from an inbound connection. */
static void accept_hello(struct conn *c, const struct smr_net_hello *h) {
  struct smr_net *n = c->n;
  struct peer *p;
  char name[SMR_ID_MAX + 16];

  if (h->kind != SMR_NET_HELLO && h->kind != SMR_NET_HELLO_RDMA) {
    conn_fail(c, 1, "expected a hello, got verdict %u", h->kind);
    return;
  }
  const char *bad = NULL;
  if (strcmp(h->to, n->self) != 0)
    bad = "hello is for another member";
  else if (strcmp(h->from, n->self) == 0)
    bad = "peer claims this member's own id";
  else if (n->secure &&
           !smr_tls_cert_names(SSL_get0_peer_certificate(c->ssl), h->from)) {
    smr_tls_cert_name(SSL_get0_peer_certificate(c->ssl), name, sizeof name);
    n->st.refused++;
    net_log(n, "refused %s at %s: certificate names %s, not %s", h->from,
            c->addr, name, h->from);
    conn_closing(c, SMR_NET_REFUSE, h->from);
    return;
  }
  if (bad != NULL) {
    n->st.refused++;
    net_log(n, "refused %s at %s: %s (%s)", h->from, c->addr, bad, h->to);
    conn_closing(c, SMR_NET_REFUSE, h->from);
    return;
  }
  p = peer_find(n, h->from);
  if (p != NULL &&
      (p->up != NULL || (p->out != NULL && strcmp(n->self, h->from) < 0))) {
    conn_closing(c, SMR_NET_DUPLICATE, h->from); /* rules a and b */
    return;
  }
  if (p == NULL && (p = peer_get(n, h->from)) == NULL) {
    n->st.refused++;
    net_log(n, "refused %s at %s: too many peers or out of memory", h->from,
            c->addr);
    conn_closing(c, SMR_NET_REFUSE, h->from);
    return;
  }
  int rdma = n->rdma != NULL && h->kind == SMR_NET_HELLO_RDMA;
  if (n->rdma != NULL && !rdma && !n->rdma_fallback) {
    n->st.refused++;
    net_log(n, "refused %s at %s: it connects without RDMA, and this member "
            "runs [transport] kind = rdma without fallback", h->from,
            c->addr);
    conn_closing(c, SMR_NET_REFUSE, h->from);
    return;
  }
  uint8_t token[SMR_NET_TOKEN_LEN];
  if (rdma) {
    struct smr_rdma_path_cb cb = {c, on_rdma_up, on_rdma_input,
                                  on_rdma_failed};
    int r = smr_rdma_path_expect(n->rdma, &cb, token, &c->rp);
    if (r < 0 && !n->rdma_fallback) {
      conn_fail(c, 0, "cannot offer an RDMA link: %s", strerror(-r));
      return;
    }
    if (r < 0) {
      net_log(n, "cannot offer %s an RDMA link (%s): its connection stays "
              "on TCP", h->from, strerror(-r));
      c->rp = NULL;
      rdma = 0;
    }
  }
  if (p->out != NULL) conn_close(p->out, 0); /* rule b: ours loses */
  if (conn_set_ctl_offer(c, rdma ? SMR_NET_ACCEPT_RDMA : SMR_NET_ACCEPT,
                         h->from, (uint16_t)smr_rdma_ep_port(n->rdma),
                         rdma ? token : NULL) < 0) {
    conn_fail(c, 0, "cannot encode the verdict");
    return;
  }
  conn_up(c, p);
  if (rdma)
    conn_rdma_deadline(c);
  else if (n->rdma != NULL && h->kind != SMR_NET_HELLO_RDMA)
    net_log(n, "%s runs without RDMA: its connection stays on TCP", p->id);
}

/* Initiator: the verdict h on our connection to c->peer. */
static void dial_verdict(struct conn *c, const struct smr_net_hello *h) {
  struct smr_net *n = c->n;
  struct peer *p = c->peer;

  if (h->kind == SMR_NET_HELLO || h->kind == SMR_NET_HELLO_RDMA) {
    conn_fail(c, 1, "peer sent a hello instead of a verdict");
    return;
  }
  if (strcmp(h->from, p->id) != 0) {
    conn_fail(c, 1, "reached %s instead", h->from);
    return;
  }
  if (strcmp(h->to, n->self) != 0) {
    conn_fail(c, 1, "verdict addressed to %s", h->to);
    return;
  }
  switch (h->kind) {
    case SMR_NET_ACCEPT:
      if (n->rdma != NULL && !n->rdma_fallback) {
        conn_fail(c, 0, "%s does not offer RDMA, and this member runs "
                  "[transport] kind = rdma without fallback", p->id);
        return;
      }
      conn_up(c, p);
      if (n->rdma != NULL)
        net_log(n, "%s does not offer RDMA: its connection stays on TCP",
                p->id);
      return;
    case SMR_NET_ACCEPT_RDMA:
      if (n->rdma == NULL) {
        conn_fail(c, 1, "%s offered RDMA to a hello without it", p->id);
        return;
      }
      conn_up(c, p);
      dial_rdma(c, h);
      return;
    case SMR_NET_DUPLICATE:
      /* The pair keeps another connection: no failure, no log. */
      conn_close(c, 0);
      peer_retry_later(p);
      return;
    default:
      conn_fail(c, 0, "refused by %s (reason in its log)", p->id);
      return;
  }
}

/* Hands up the complete frames in the read buffer (and first, in HELLO,
 * the hello).  Calls on_frame: callers check c->dead and n->closing. */
static void conn_consume(struct conn *c) {
  struct smr_net *n = c->n;
  size_t off = 0;

  if (c->state == C_CLOSING) {
    c->rlen = 0;
    return;
  }
  if (c->state == C_HELLO) {
    struct smr_net_hello h;
    long r = smr_net_hello_parse(c->rbuf, c->rlen, &h);
    if (r == 0) return;
    if (r < 0) {
      conn_fail(c, 1, "%s", hello_error(r, c->rbuf, c->rlen));
      return;
    }
    off = (size_t)r;
    if (c->outbound)
      dial_verdict(c, &h);
    else
      accept_hello(c, &h);
    if (c->dead || n->closing) return;
    if (c->state != C_UP) {
      c->rlen = 0;
      return;
    }
    c->tls_in = c->rlen - off; /* stream bytes that followed the hello */
  }
  smr_assert(c->state == C_UP);
  struct peer *p = c->peer;
  c->rneed = 0;
  while (off < c->rlen) {
    const uint8_t *f = c->rbuf + off;
    long fl = smr_wire_frame_len(f, c->rlen - off);
    if (fl < 0) {
      conn_fail(c, 1, "%s", frame_error(fl));
      return;
    }
    if (fl == 0 || (size_t)fl > c->rlen - off) {
      c->rneed = (size_t)fl;
      break;
    }
    /* smr_wire_frame_len() checked the id length byte (1..SMR_ID_MAX-1). */
    size_t idlen = f[SMR_WIRE_HDR_FIXED - 1];
    if (idlen != strlen(p->id) ||
        memcmp(f + SMR_WIRE_HDR_FIXED, p->id, idlen) != 0) {
      char claimed[SMR_ID_MAX];
      show_id(claimed, f + SMR_WIRE_HDR_FIXED, idlen);
      conn_fail(c, 1, "frame claims to be from %s", claimed);
      return;
    }
    if (c->sst_pending) { /* an SST row sent just before this frame */
      conn_sst_deliver(c);
      if (c->dead || n->closing) return;
    }
    n->st.frames_in++;
    n->st.bytes_in += (uint64_t)fl;
    c->rcvd_total += (uint64_t)fl;
    n->cfg.on_frame(n->cfg.ctx, p->id, f, (size_t)fl);
    if (c->dead || n->closing) return;
    off += (size_t)fl;
  }
  if (off > 0) {
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
  }
}

/* Makes room to read: the whole frame being received, or some free space;
 * shrinks a big buffer again once it is idle.  0 or -ENOMEM. */
static int conn_rbuf(struct conn *c) {
  size_t want = c->rneed > RBUF_MIN ? c->rneed : RBUF_MIN;

  /* An unauthenticated peer gets no more than its hello needs. */
  if (c->state != C_UP) want = RBUF_HELLO;

  if (c->rcap > BUF_KEEP && want <= RBUF_MIN && c->rlen <= RBUF_MIN / 2) {
    uint8_t *b = realloc(c->rbuf, RBUF_MIN);
    if (b != NULL) {
      c->rbuf = b;
      c->rcap = RBUF_MIN;
    }
  }
  if (c->rcap >= want && c->rlen < c->rcap) return 0;
  if (want <= c->rlen) want = c->rlen + RBUF_MIN; /* not expected */
  uint8_t *b = realloc(c->rbuf, want);
  if (b == NULL) return -ENOMEM;
  c->rbuf = b;
  c->rcap = want;
  return 0;
}

/* Reads what the socket has and hands it up.  May call back. */
static void conn_read(struct conn *c) {
  struct smr_net *n = c->n;
  size_t budget = READ_BUDGET;
  char why[256];

  c->rd_wants_write = 0;
  for (;;) {
    if (conn_rbuf(c) < 0) {
      conn_fail(c, 0, "out of memory for a %zu-byte frame", c->rneed);
      return;
    }
    long r = io_read(c, c->rbuf + c->rlen, c->rcap - c->rlen, why,
                     sizeof why);
    if (r == 0) return;
    if (r < 0) {
      if (c->state == C_CLOSING) {
        conn_close(c, 0);
        return;
      }
      /* A peer that closes waits until its link has executed what it
       * posted (conn_close), so its last frames are in our memory; the
       * socket's end may still be seen before their completions. */
      if (c->state == C_UP && c->rp != NULL &&
          (conn_rdma_take_all(c) < 0 || n->closing))
        return;
      conn_fail(c, 0, "%s", why);
      return;
    }
    int was_up = c->state == C_UP;
    c->rlen += (size_t)r;
    if (was_up) {
      c->tls_in += (uint64_t)r;
      conn_rdma_merge(c);
      if (c->dead) return;
    }
    conn_consume(c);
    if (c->dead || n->closing) return;
    if (c->sst_pending) { /* an SST row waiting for these bytes */
      conn_sst_deliver(c);
      if (c->dead || n->closing) return;
    }
    if ((size_t)r >= budget) {
      /* Let the writes in first: a fed event would run again before the
       * prepare watcher, so a member that passes a stream on (the relay
       * chain) read all of it before it wrote any (its successor, quiet
       * for 100 ms, was repaired by the leader with the whole stream).
       * on_prepare writes, then feeds the event (TLS may hold bytes the
       * socket no longer signals). */
      c->read_more = 1;
      net_next_round(n);
      return;
    }
    budget -= (size_t)r;
  }
}

/* ------------------------------------------------------ handshake, I/O */

/* TLS handshake step; on completion, the hello exchange begins. */
static void conn_handshake(struct conn *c) {
  char why[320];

  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  if (r != 1) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      c->hs_wants_write = e == SSL_ERROR_WANT_WRITE;
      return;
    }
    /* The acceptor refuses whatever fails; the initiator refuses when its
     * own verification of the acceptor's certificate failed. */
    int refused = !c->outbound || SSL_get_verify_result(c->ssl) != X509_V_OK;
    smr_tls_describe(c->ssl, &c->sock, e, why, sizeof why);
    conn_fail(c, refused, "%s", why);
    return;
  }
  c->hs_wants_write = 0;
  c->state = C_HELLO;
  if (c->outbound) {
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    if (!smr_tls_cert_names(cert, c->peer->id)) {
      char name[SMR_ID_MAX + 16];
      smr_tls_cert_name(cert, name, sizeof name);
      conn_fail(c, 1, "certificate names %s, not %s", name, c->peer->id);
      return;
    }
    if (conn_set_ctl(c, hello_kind(c->n), c->peer->id) < 0) {
      conn_fail(c, 0, "cannot encode the hello");
      return;
    }
  }
  /* The peer's first bytes may already sit in OpenSSL's buffer. */
  conn_read(c);
}

/* The socket is connected (outbound) or accepted (inbound): start TLS or
 * the hello. */
static void conn_start(struct conn *c) {
  struct smr_net *n = c->n;

  if (n->secure) {
    c->ssl = smr_tls_new(&n->tls, &c->sock, c->outbound);
    if (c->ssl == NULL) {
      conn_fail(c, 0, "out of memory for TLS");
      return;
    }
    c->state = C_HANDSHAKE;
    if (c->outbound) conn_handshake(c); /* the ClientHello goes out now */
    return;
  }
  c->state = C_HELLO;
  if (c->outbound && conn_set_ctl(c, hello_kind(n), c->peer->id) < 0)
    conn_fail(c, 0, "cannot encode the hello");
}

static void conn_connected(struct conn *c) {
  int err = 0;
  socklen_t len = sizeof err;

  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == EINPROGRESS) return;
  if (err != 0) {
    conn_fail(c, 0, "%s", strerror(err));
    return;
  }
  conn_start(c);
}

static void net_enter(struct smr_net *n) { n->depth++; }
static void net_leave(struct smr_net *n);

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents) {
  struct conn *c = w->data;
  struct smr_net *n = c->n;

  (void)loop;
  net_enter(n);
  switch (c->state) {
    case C_CONNECTING:
      conn_connected(c);
      break;
    case C_HANDSHAKE:
      conn_handshake(c);
      break;
    default:
      if ((revents & EV_READ) || (c->rd_wants_write && (revents & EV_WRITE)))
        conn_read(c);
      if (c->dead || n->closing) break;
      if ((revents & EV_WRITE) || (c->wr_wants_read && (revents & EV_READ)))
        conn_write(c);
      break;
  }
  if (!n->closing) conn_update(c);
  net_leave(n);
}

static void on_conn_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  static const char *const what[] = {"connecting", "in the TLS handshake",
                                     "in the hello exchange", "", ""};
  struct conn *c = w->data;
  struct smr_net *n = c->n;

  (void)loop;
  (void)revents;
  net_enter(n);
  if (c->state == C_CLOSING) {
    conn_close(c, 0);
  } else if (c->state == C_UP) {
    /* Only the RDMA link's deadline runs on an UP connection. */
    char why[96];
    snprintf(why, sizeof why, "no RDMA link within %u ms",
             n->cfg.timeout_ms);
    if (ALWAYS(c->rp != NULL)) conn_rdma_lost(c, why);
  } else {
    conn_fail(c, 0, "timed out %s", what[c->state]);
  }
  net_leave(n);
}

/* ------------------------------------------------------------ RDMA path */

/* kind = rdma (rdma.h): the link of an UP connection must come up within
 * timeout_ms, like the connection itself. */
static void conn_rdma_deadline(struct conn *c) {
  ev_timer_stop(c->n->loop, &c->timer);
  ev_timer_set(&c->timer, c->n->timeout_s, 0.);
  ev_timer_start(c->n->loop, &c->timer);
}

/* The link failed or never came: with fallback, and while it never came
 * up (so neither side switched), the connection stays on TCP; else it
 * breaks (and is made again, link and all). */
static void conn_rdma_lost(struct conn *c, const char *why) {
  struct smr_net *n = c->n;

  if (c->dead) return;
  if (n->rdma_fallback && !c->rdma_counted && !c->rdma_tx && !c->rdma_rx) {
    net_log(n, "rdma link to %s failed (%s): the connection stays on TCP",
            c->peer->id, why);
    ev_timer_stop(n->loop, &c->timer);
    smr_rdma_path_close(c->rp);
    c->rp = NULL;
    net_want_flush(n); /* what waited for the link goes over TCP */
    if (c->rdma_counted) n->st.rdma_links--;
    c->rdma_counted = 0;
    return;
  }
  conn_fail(c, 0, "%s", why);
}

/* Initiator: connect the link the verdict offered, from the address this
 * connection's socket has (which picks the device). */
static void dial_rdma(struct conn *c, const struct smr_net_hello *h) {
  struct smr_net *n = c->n;
  struct sockaddr_storage dst, src;
  socklen_t dlen, slen = sizeof src;
  char why[256];

  if (smr_net_addr_parse(c->addr, 0, &dst, &dlen) < 0 ||
      getsockname(c->fd, (struct sockaddr *)&src, &slen) < 0 ||
      src.ss_family != dst.ss_family) {
    conn_rdma_lost(c, "rdma: no address to connect the link from");
    return;
  }
  if (dst.ss_family == AF_INET6) {
    ((struct sockaddr_in6 *)&dst)->sin6_port = htons(h->rdma_port);
    ((struct sockaddr_in6 *)&src)->sin6_port = 0;
  } else {
    ((struct sockaddr_in *)&dst)->sin_port = htons(h->rdma_port);
    ((struct sockaddr_in *)&src)->sin_port = 0;
  }
  struct smr_rdma_path_cb cb = {c, on_rdma_up, on_rdma_input, on_rdma_failed};
  int r = smr_rdma_path_connect(n->rdma, (struct sockaddr *)&dst,
                                (struct sockaddr *)&src, h->token, &cb,
                                &c->rp, why, sizeof why);
  if (r < 0) {
    c->rp = NULL;
    conn_rdma_lost(c, why);
    return;
  }
  conn_rdma_deadline(c);
}

static int buf_append(uint8_t **b, size_t *len, size_t *cap,
                      const uint8_t *p, size_t n) {
  if (*cap - *len < n) {
    size_t want = *cap ? *cap : RBUF_MIN;
    while (want - *len < n) want *= 2;
    uint8_t *nb = realloc(*b, want);
    if (nb == NULL) return -ENOMEM;
    *b = nb;
    *cap = want;
  }
  memcpy(*b + *len, p, n);
  *len += n;
  return 0;
}

/* One record from the link: first the switch record, then stream bytes,
 * kept aside until TCP has delivered everything before the switch. */
static void on_rdma_record(void *ctx, const uint8_t *rec, uint32_t len) {
  static const uint8_t magic[8] = {'S', 'M', 'R', 'S', 0, 0, 0, 0};
  struct conn *c = ctx;

  if (c->rdma_bad) return;
  if (!c->rdma_rx) {
    if (len != SMR_RDMA_SWITCH_LEN || memcmp(rec, magic, 8) != 0) {
      c->rdma_bad = 1;
      return;
    }
    c->switch_at = smr_le_get64(rec + 8);
    c->rdma_rx = 1;
    return;
  }
  c->n->st.rdma_bytes_in += len;
  int r = c->tls_in < c->switch_at
              ? buf_append(&c->pend, &c->pend_len, &c->pend_cap, rec, len)
              : buf_append(&c->rbuf, &c->rlen, &c->rcap, rec, len);
  if (r < 0) c->rdma_bad = 1;
}

/* After TCP bytes or link records came: TCP must not pass the switch
 * point, and once it reaches it the link's bytes follow in the buffer. */
static void conn_rdma_merge(struct conn *c) {
  if (!c->rdma_rx) return;
  if (c->tls_in > c->switch_at) {
    conn_fail(c, 1, "stream bytes over TCP after the switch to RDMA");
    return;
  }
  if (c->tls_in == c->switch_at && c->pend_len > 0) {
    if (buf_append(&c->rbuf, &c->rlen, &c->rcap, c->pend, c->pend_len) < 0) {
      conn_fail(c, 0, "out of memory for the RDMA stream");
      return;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
  }
}

/* The peer's SST row, once our stream has reached the position it was
 * sent at: conn_consume() calls this before every frame, so the row comes
 * exactly where it was sent, neither before a frame sent ahead of it nor
 * after one sent behind it (unless a newer row replaced it: only the
 * latest heartbeat matters). */
static void conn_sst_deliver(struct conn *c) {
  struct smr_net *n = c->n;

  if (!c->sst_pending || c->rcvd_total < c->sst_pos) return;
  c->sst_pending = 0;
  n->st.frames_in++;
  n->st.bytes_in += c->sst_len - 8;
  n->st.rdma_sst_in++;
  n->cfg.on_frame(n->cfg.ctx, c->peer->id, c->sst_row + 8, c->sst_len - 8);
}

/* A new SST row from the peer replaces the one waiting (only the latest
 * matters); it must be one heartbeat frame from that peer. */
static void conn_sst_check(struct conn *c) {
  uint8_t row[SMR_SST_DATA_MAX];
  uint32_t len;

  if (c->dead || c->rp == NULL || !c->rdma_rx) return;
  int r = smr_rdma_path_sst_get(c->rp, row, &len);
  if (r == -ENOTCONN) r = 0; /* (the link failed: its failure follows) */
  if (r < 0) {
    conn_fail(c, 1, "rdma: a malformed SST slot");
    return;
  }
  if (r == 1) {
    const uint8_t *f = row + 8;
    size_t fl = len >= 8 ? len - 8 : 0;
    size_t idlen = fl > SMR_WIRE_HDR_FIXED ? f[SMR_WIRE_HDR_FIXED - 1] : 0;
    if (fl == 0 || smr_wire_frame_len(f, fl) != (long)fl ||
        f[3] != SMR_MSG_HEARTBEAT || idlen != strlen(c->peer->id) ||
        memcmp(f + SMR_WIRE_HDR_FIXED, c->peer->id, idlen) != 0) {
      conn_fail(c, 1, "rdma: the SST slot holds no heartbeat of %s",
                c->peer->id);
      return;
    }
    uint64_t pos = smr_le_get64(row);
    if (pos >= c->rcvd_total) { /* (an honest peer's never lies behind) */
      memcpy(c->sst_row, row, len);
      c->sst_len = len;
      c->sst_pos = pos;
      c->sst_pending = 1;
    }
  }
  conn_sst_deliver(c);
}

static void on_rdma_up(void *ctx) {
  struct conn *c = ctx;
  struct smr_net *n = c->n;

  net_enter(n);
  if (!c->dead && ALWAYS(c->state == C_UP)) {
    ev_timer_stop(n->loop, &c->timer);
    c->rdma_counted = 1;
    n->st.rdma_links++;
    net_log(n, "rdma link to %s up on %s", c->peer->id,
            smr_rdma_path_device(c->rp));
    net_want_flush(n); /* switch at the next write */
  }
  net_leave(n);
}

/* Takes what the link brought: records (into the stream), the SST row,
 * credit.  1 if the poll stopped at its budget (there is more), 0, or -1
 * if the connection failed. */
static int conn_rdma_take(struct conn *c) {
  struct smr_net *n = c->n;
  int r = smr_rdma_path_poll(c->rp, on_rdma_record, c);
  if (r == -ENOTCONN) return 0; /* (a link that failed: nothing to take) */
  if (r < 0) {
    /* The records this poll took before the error arrived whole and in
     * order (the ring checked them): hand them up first.  Not after a
     * protocol violation. */
    if (r != -EPROTO && !c->rdma_bad) {
      conn_rdma_merge(c);
      if (!c->dead && !n->closing) conn_consume(c);
      if (c->dead || n->closing) return -1;
    }
    conn_fail(c, 0, "rdma: the link broke (%s)", strerror(-r));
    return -1;
  }
  if (c->rdma_bad) {
    conn_fail(c, 1, "rdma: a record out of order, or no memory for it");
    return -1;
  }
  conn_rdma_merge(c);
  /* The slot before the records: a row was placed before any record
   * posted after it (one RC queue pair), so it is seen in time to be
   * delivered at its stream position. */
  if (!c->dead) conn_sst_check(c);
  if (!c->dead && !n->closing) conn_consume(c);
  if (!c->dead && !n->closing && c->sst_pending) conn_sst_deliver(c);
  if (c->dead) return -1;
  return smr_rdma_path_more(c->rp);
}

/* Before the connection ends: takes what the link brought, budget after
 * budget, but at most TAKE_ROUNDS of them (a peer whose socket failed may
 * still be writing).  0, or -1 if the connection failed or the net is
 * closing. */
static int conn_rdma_take_all(struct conn *c) {
  int t = 1;
  for (int i = 0; i < TAKE_ROUNDS && t > 0 && !c->n->closing; i++)
    t = conn_rdma_take(c);
  return t < 0 || c->n->closing ? -1 : 0;
}

static void on_rdma_input(void *ctx) {
  struct conn *c = ctx;
  struct smr_net *n = c->n;

  net_enter(n);
  if (!c->dead && conn_rdma_take(c) >= 0 && !n->closing &&
      c->state == C_UP &&
      (peer_queued(c->peer) > 0 || conn_switch_due(c))) {
    conn_write(c); /* credit may have come back */
    if (!n->closing) conn_update(c);
  }
  net_leave(n);
}

static void on_rdma_failed(void *ctx, const char *why) {
  struct conn *c = ctx;
  struct smr_net *n = c->n;

  net_enter(n);
  /* A peer that disconnects waits until its link has executed what it
   * posted (conn_close): its last frames are in our memory, even if the
   * disconnection is seen before their completions. */
  if (!c->dead && c->state == C_UP && c->rp != NULL)
    (void)conn_rdma_take_all(c);
  if (!c->dead && !n->closing) conn_rdma_lost(c, why);
  net_leave(n);
}

/* ------------------------------------------------------------- dialling */

static void peer_connect(struct peer *p) {
  struct smr_net *n = p->n;
  struct sockaddr_storage ss;
  socklen_t sslen;
  struct conn *c;
  int fd, r;

  if (p->dead || n->closing || p->up || p->out || p->addr[0] == '\0') return;
  ev_timer_stop(n->loop, &p->retry);
  if (smr_net_addr_parse(p->addr, 0, &ss, &sslen) < 0) return; /* checked */
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || (r = set_sockopts(fd, n->cfg.timeout_ms)) < 0 ||
      (c = conn_new(n, fd, 1, p->addr)) == NULL) {
    int e = fd < 0 ? errno : ENOMEM;
    if (fd >= 0) close(fd);
    p->attempts++;
    net_log(n, "connect to %s at %s failed: %s", p->id, p->addr, strerror(e));
    peer_retry_later(p);
    return;
  }
  c->peer = p;
  p->out = c;
  c->state = C_CONNECTING;
  if (n->srclen > 0 && n->src.ss_family == ss.ss_family &&
      bind(fd, (struct sockaddr *)&n->src, n->srclen) < 0) {
    conn_fail(c, 0, "bind to the listen address: %s", strerror(errno));
    return;
  }
  r = connect(fd, (struct sockaddr *)&ss, sslen);
  if (r < 0 && errno != EINPROGRESS) {
    conn_fail(c, 0, "%s", strerror(errno));
    return;
  }
  conn_update(c); /* completion (even immediate) shows as EV_WRITE */
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents) {
  struct peer *p = w->data;
  struct smr_net *n = p->n;

  (void)loop;
  (void)revents;
  net_enter(n);
  if (peer_queued(p) > 0) peer_connect(p);
  net_leave(n);
}

/* ------------------------------------------------------------ accepting */

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  struct smr_net *n = w->data;

  (void)loop;
  (void)revents;
  net_enter(n);
  for (int i = 0; i < 64 && !n->closing; i++) {
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    char addr[SMR_NET_ADDRSTR_MAX];
    int fd = accept4(n->lfd, (struct sockaddr *)&ss, &sslen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      /* Out of descriptors or memory: the listener would stay readable
       * and spin the loop, so pause it. */
      net_log(n, "accept: %s (pausing the listener)", strerror(errno));
      ev_io_stop(n->loop, &n->lio);
      ev_timer_start(n->loop, &n->lpause);
      break;
    }
    smr_net_addr_format((struct sockaddr *)&ss, sslen, addr, sizeof addr);
    if (n->npending >= MAX_PENDING) {
      close(fd);
      n->st.refused++;
      net_log(n, "refused %s: too many connections coming up", addr);
      continue;
    }
    struct conn *c;
    int r = set_sockopts(fd, n->cfg.timeout_ms);
    if (r < 0 || (c = conn_new(n, fd, 0, addr)) == NULL) {
      close(fd);
      n->st.refused++;
      net_log(n, "refused %s: %s", addr, strerror(r < 0 ? -r : ENOMEM));
      continue;
    }
    c->pending = 1;
    n->npending++;
    conn_start(c);
    conn_update(c);
  }
  net_leave(n);
}

static void on_listen_pause(struct ev_loop *loop, ev_timer *w, int revents) {
  struct smr_net *n = w->data;

  (void)revents;
  if (!n->closing) ev_io_start(loop, &n->lio);
}

/* ------------------------------------------------------ flush, lifetime */

static void on_kick(struct ev_loop *loop, ev_idle *w, int revents) {
  (void)revents;
  ev_idle_stop(loop, w); /* the loop did not sleep: prepare runs again */
}

/* Before the loop sleeps: write what was queued during this iteration. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
  struct smr_net *n = w->data;

  (void)revents;
  net_enter(n);
  for (int round = 0; round < PREPARE_ROUNDS && ev_is_active(&n->prep);
       round++) {
    ev_prepare_stop(loop, &n->prep);
    for (struct conn *c = n->conns; c != NULL && !n->closing; c = c->next) {
      if (c->dead || c->wblocked || c->wr_wants_read || c->write_more)
        continue;
      if (c->ctl_off < c->ctl_len || conn_switch_due(c) ||
          (c->state == C_UP && peer_queued(c->peer) > 0)) {
        conn_write(c); /* on_writable may send more: prep restarts */
        if (!n->closing) conn_update(c);
      }
    }
  }
  /* Still more after many rounds (on_writable keeps sending): make sure
   * the loop comes round again without sleeping. */
  if (!n->closing && ev_is_active(&n->prep)) ev_idle_start(loop, &n->kick);
  /* Reads that spent their budget go on now that the writes are out;
   * writes that spent theirs, in the next iteration (prep is active). */
  for (struct conn *c = n->conns; c != NULL && !n->closing; c = c->next) {
    if (c->write_more) {
      c->write_more = 0;
      net_next_round(n);
    }
    if (c->read_more && !c->dead) {
      c->read_more = 0;
      ev_feed_event(loop, &c->io, EV_READ);
    }
  }
  net_leave(n);
}

static void conn_free(struct conn *c) {
  smr_assert(c->dead);
  if (c->ssl != NULL) SSL_free(c->ssl);
  free(c->rbuf);
  free(c->pend);
  free(c);
}

static void peer_free(struct smr_net *n, struct peer *p) {
  ev_timer_stop(n->loop, &p->retry);
  queue_free(p);
  free(p);
}

/* Frees what died, and peers that hold nothing any more. */
static void net_reap(struct smr_net *n) {
  struct conn **cp = &n->conns;
  while (*cp != NULL) {
    struct conn *c = *cp;
    if (c->dead) {
      *cp = c->next;
      conn_free(c);
    } else {
      cp = &c->next;
    }
  }
  struct peer **pp = &n->peers;
  while (*pp != NULL) {
    struct peer *p = *pp;
    if (p->dead || peer_idle(p)) {
      *pp = p->next;
      n->npeers--;
      peer_free(n, p);
    } else {
      pp = &p->next;
    }
  }
}

static void net_free(struct smr_net *n) {
  while (n->conns != NULL) {
    struct conn *c = n->conns;
    n->conns = c->next;
    conn_close(c, 0);
    conn_free(c);
  }
  while (n->peers != NULL) {
    struct peer *p = n->peers;
    n->peers = p->next;
    peer_free(n, p);
  }
  smr_rdma_ep_close(n->rdma);
  smr_tls_free(&n->tls);
  free(n);
}

static void net_leave(struct smr_net *n) {
  smr_assert(n->depth > 0);
  if (--n->depth > 0) return;
  if (n->closing)
    net_free(n);
  else
    net_reap(n);
}

/* ------------------------------------------------------------ interface */

static int open_listener(struct smr_net *n, const char *addr, char *err,
                         size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sslen;
  int one = 1, fd;

  if (smr_net_addr_parse(addr, 1, &ss, &sslen) < 0) {
    snprintf(err, errlen, "listen_addr %s: not a numeric host:port", addr);
    return -EINVAL;
  }
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "listen_addr %s: socket: %s", addr, strerror(e));
    return -e;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&ss, sslen) < 0 ||
      listen(fd, SOMAXCONN) < 0) {
    int e = errno;
    close(fd);
    snprintf(err, errlen, "listen_addr %s: %s", addr, strerror(e));
    return -e;
  }
  sslen = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
    int e = errno;
    close(fd);
    snprintf(err, errlen, "listen_addr %s: getsockname: %s", addr,
             strerror(e));
    return -e;
  }
  n->port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    if (!IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) {
      n->src = ss;
      ((struct sockaddr_in6 *)&n->src)->sin6_port = 0;
      n->srclen = sslen;
    }
  } else if (((struct sockaddr_in *)&ss)->sin_addr.s_addr != htonl(INADDR_ANY)) {
    n->src = ss;
    ((struct sockaddr_in *)&n->src)->sin_port = 0;
    n->srclen = sslen;
  }
  n->lfd = fd;
  ev_io_init(&n->lio, on_accept, fd, EV_READ);
  n->lio.data = n;
  ev_io_start(n->loop, &n->lio);
  return 0;
}

static void net_rdma_log(void *ctx, const char *line) {
  net_log(ctx, "%s", line);
}

/* kind = rdma: the endpoint listens at the member's address, on rdma_port
 * or the TCP port, in the connection manager's port space.  Without a
 * device: an error, or with fallback a log line and plain TCP. */
static int open_rdma(struct smr_net *n, const struct smr_net_config *cfg,
                     char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sslen;
  const struct sockaddr *la = NULL;
  char why[256];

  n->rdma_fallback = cfg->rdma_fallback;
  if (cfg->listen_addr != NULL &&
      ALWAYS(smr_net_addr_parse(cfg->listen_addr, 1, &ss, &sslen) == 0)) {
    uint16_t port = htons(cfg->rdma_port ? cfg->rdma_port : (uint16_t)n->port);
    if (ss.ss_family == AF_INET6)
      ((struct sockaddr_in6 *)&ss)->sin6_port = port;
    else
      ((struct sockaddr_in *)&ss)->sin_port = port;
    la = (struct sockaddr *)&ss;
  }
  int r = smr_rdma_ep_open(n->loop, la, cfg->rdma_ring_bytes,
                           (int)n->cfg.timeout_ms, cfg->rdma_busy_poll_us,
                           net_rdma_log, n, &n->rdma, why, sizeof why);
  if (r == 0) return 0;
  n->rdma = NULL;
  if (!cfg->rdma_fallback || r == -EINVAL) {
    snprintf(err, errlen, "[transport] kind = rdma: %s", why);
    return r;
  }
  net_log(n, "[transport] kind = rdma: %s; falling back to TCP", why);
  return 0;
}

int smr_net_open(const struct smr_net_config *cfg, struct smr_net **out,
                 char *err, size_t errlen) {
  char dummy[1];
  struct smr_net *n;
  int tls_files, r;

  if (err == NULL || errlen == 0) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (out != NULL) *out = NULL;
  if (cfg == NULL || out == NULL || cfg->loop == NULL ||
      cfg->on_frame == NULL) {
    snprintf(err, errlen, "config needs a loop and on_frame");
    return -EINVAL;
  }
  if (!smr_net_id_valid(cfg->self_id)) {
    snprintf(err, errlen, "self_id is not a valid member id");
    return -EINVAL;
  }
  tls_files = (cfg->tls_ca != NULL) + (cfg->tls_cert != NULL) +
              (cfg->tls_key != NULL);
  if (tls_files != 0 && tls_files != 3) {
    snprintf(err, errlen, "tls_ca, tls_cert, tls_key: all three, or none");
    return -EINVAL;
  }
  if (tls_files == 0 && !cfg->insecure) {
    snprintf(err, errlen, "no TLS files: set insecure to run without TLS");
    return -EINVAL;
  }
  if (tls_files == 3 && cfg->insecure) {
    snprintf(err, errlen, "insecure with TLS files: choose one");
    return -EINVAL;
  }
  n = calloc(1, sizeof *n);
  if (n == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  n->cfg = *cfg;
  n->cfg.self_id = n->cfg.listen_addr = NULL;
  n->cfg.tls_ca = n->cfg.tls_cert = n->cfg.tls_key = NULL;
  n->loop = cfg->loop;
  snprintf(n->self, sizeof n->self, "%s", cfg->self_id);
  n->self_len = strlen(n->self);
  n->max_queue =
      cfg->max_queue_bytes ? cfg->max_queue_bytes : SMR_NET_DEFAULT_QUEUE_BYTES;
  n->reconnect_ms =
      cfg->reconnect_ms ? cfg->reconnect_ms : SMR_NET_DEFAULT_RECONNECT_MS;
  n->reconnect_cap_ms = n->reconnect_ms > SMR_NET_RECONNECT_CAP_MS
                            ? n->reconnect_ms
                            : SMR_NET_RECONNECT_CAP_MS;
  if (n->cfg.timeout_ms == 0) n->cfg.timeout_ms = SMR_NET_DEFAULT_TIMEOUT_MS;
  n->timeout_s = n->cfg.timeout_ms / 1000.0;
  n->secure = tls_files == 3;
  n->lfd = -1;
  n->rng = 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)n ^
           ((uint64_t)getpid() << 32) ^ (uint64_t)(ev_time() * 1e6);
  if (n->rng == 0) n->rng = 1;
  ev_prepare_init(&n->prep, on_prepare);
  n->prep.data = n;
  ev_idle_init(&n->kick, on_kick);
  ev_timer_init(&n->lpause, on_listen_pause, LISTEN_PAUSE_S, 0.);
  n->lpause.data = n;
  if (n->secure &&
      (r = smr_tls_init(&n->tls, cfg->tls_ca, cfg->tls_cert, cfg->tls_key,
                        n->self, err, errlen)) < 0) {
    free(n);
    return r;
  }
  if (cfg->listen_addr != NULL &&
      (r = open_listener(n, cfg->listen_addr, err, errlen)) < 0) {
    smr_tls_free(&n->tls);
    free(n);
    return r;
  }
  if (cfg->rdma && (r = open_rdma(n, cfg, err, errlen)) < 0) {
    if (n->lfd >= 0) {
      ev_io_stop(n->loop, &n->lio);
      close(n->lfd);
    }
    smr_tls_free(&n->tls);
    free(n);
    return r;
  }
  *out = n;
  return 0;
}

void smr_net_close(struct smr_net *n) {
  if (n == NULL || n->closing) return;
  n->closing = 1;
  n->drain_until = ev_time() + RDMA_DRAIN_MS / 1000.;
  if (n->lfd >= 0) {
    ev_io_stop(n->loop, &n->lio);
    close(n->lfd);
    n->lfd = -1;
  }
  ev_timer_stop(n->loop, &n->lpause);
  ev_prepare_stop(n->loop, &n->prep);
  ev_idle_stop(n->loop, &n->kick);
  for (struct conn *c = n->conns; c != NULL; c = c->next) conn_close(c, 1);
  for (struct peer *p = n->peers; p != NULL; p = p->next)
    ev_timer_stop(n->loop, &p->retry);
  if (n->depth == 0) net_free(n);
}

int smr_net_send(struct smr_net *n, const char *peer, const char *addr,
                 const uint8_t *frame, size_t len) {
  struct peer *p;
  int r;

  if (n == NULL || n->closing || frame == NULL || len == 0 ||
      !smr_net_id_valid(peer) || strcmp(peer, n->self) == 0)
    return -EINVAL;
  if (len > SMR_WIRE_FRAME_LEN_MAX) return -EMSGSIZE;
  long fl = smr_wire_frame_len(frame, len);
  if (fl == -EMSGSIZE) return -EMSGSIZE;
  if (fl <= 0 || (size_t)fl != len) return -EINVAL;
  if (frame[SMR_WIRE_HDR_FIXED - 1] != n->self_len ||
      memcmp(frame + SMR_WIRE_HDR_FIXED, n->self, n->self_len) != 0)
    return -EINVAL;
  if (addr != NULL && !smr_net_addr_valid(addr)) return -EINVAL;
  if (addr != NULL && strlen(addr) >= SMR_ADDR_MAX) return -EINVAL;
  p = peer_get(n, peer);
  if (p == NULL) return -ENOMEM;
  if (addr != NULL && strcmp(p->addr, addr) != 0)
    snprintf(p->addr, sizeof p->addr, "%s", addr);
  size_t queued = peer_queued(p);
  if (queued > 0 && queued + len > n->max_queue) {
    p->blocked = 1;
    return -EAGAIN;
  }
  struct conn *c = p->up;
  if (c != NULL && c->rdma_tx && frame[3] == SMR_MSG_HEARTBEAT &&
      len + 8 <= SMR_SST_DATA_MAX) {
    /* SST: the heartbeat (this member's received and delivered counters)
     * overwrites our row at the peer, with the stream position it belongs
     * at; a later one replaces it (rdma_ring.h).  While the previous row
     * is still being written, this one goes in the stream. */
    uint8_t row[SMR_SST_DATA_MAX];
    smr_le_put64(row, c->sent_total + queued);
    memcpy(row + 8, frame, len);
    if (smr_rdma_path_sst_put(c->rp, row, (uint32_t)(len + 8)) == 0) {
      n->st.frames_out++;
      n->st.bytes_out += len;
      n->st.rdma_sst_out++;
      if (n->depth == 0) net_reap(n);
      return 0;
    }
  }
  if (c != NULL && c->rdma_tx && queued == 0 && len >= RDMA_DIRECT_MIN &&
      smr_rdma_path_send_whole(c->rp, frame, len) == 0) {
    /* A large frame with nothing waiting before it: straight into the
     * link's staging buffer, as one record or (an ORDER batch of 1 MiB)
     * several, one copy fewer than through the queue (small frames still
     * gather in the queue, one record for many).  All or nothing: the
     * queue holds whole frames only.  Anything but success leaves it to
     * the queue, and a dead link to the loop. */
    n->st.frames_out++;
    n->st.bytes_out += len;
    n->st.rdma_bytes_out += len;
    c->sent_total += len;
    if (n->depth == 0) net_reap(n);
    return 0;
  }
  if ((r = queue_append(p, frame, len)) < 0) {
    if (n->depth == 0) net_reap(n);
    return r;
  }
  if (p->up != NULL)
    net_want_flush(n);
  else if (p->out == NULL && !ev_is_active(&p->retry))
    peer_connect(p);
  if (n->depth == 0) net_reap(n);
  return 0;
}

size_t smr_net_queued(const struct smr_net *n, const char *peer) {
  if (n == NULL || peer == NULL) return 0;
  for (const struct peer *p = n->peers; p != NULL; p = p->next)
    if (!p->dead && strcmp(p->id, peer) == 0) return peer_queued(p);
  return 0;
}

void smr_net_forget(struct smr_net *n, const char *peer) {
  struct peer *p;

  if (n == NULL || n->closing || peer == NULL) return;
  p = peer_find(n, peer);
  if (p == NULL) return;
  if (p->up != NULL) conn_close(p->up, 1);
  if (p->out != NULL) conn_close(p->out, 0);
  ev_timer_stop(n->loop, &p->retry);
  queue_free(p);
  p->blocked = 0;
  p->dead = 1;
  if (n->depth == 0) net_reap(n);
}

void smr_net_stats(const struct smr_net *n, struct smr_net_stats *st) {
  if (st == NULL) return;
  if (n == NULL) {
    memset(st, 0, sizeof *st);
    return;
  }
  *st = n->st;
}

int smr_net_port(const struct smr_net *n) { return n != NULL ? n->port : 0; }
