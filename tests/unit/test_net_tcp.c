/* test_net_tcp.c -- the TCP transport (smr/net/tcp.c) on loopback.
 *
 * Members are real transports on one libev loop (two loops where one side
 * must stop reading), talking over 127.0.0.1 or ::1 on ephemeral ports
 * (listen on port 0, read it back with smr_net_port()).  A throwaway PKI is
 * made at group setup with the OpenSSL C API (tests/net/pki.c): the group
 * CA "ca1" with members n1..n4, a second CA "ca2" with its own "n2", an
 * expired n3, and n5 named only by its SAN.  Misbehaving peers are raw
 * sockets or raw TLS clients (tests/net/rawpeer.c).
 *
 * Frames are real wire frames (smr_wire_encode) carrying a sequence
 * number; receivers decode every frame and check the sender and the order.
 * Nothing waits by sleeping: each test drives the loop until its condition
 * holds, under a deadline (RUN_UNTIL), and fails with the condition's text
 * if the deadline passes.  SIGPIPE is left at its default, so a transport
 * that raised it would kill the test.
 *
 * kind = rdma: on a machine without an RDMA device (the host) the tests
 * check that opening says so, and that rdma_fallback keeps members on TCP.
 * With SMR_TEST_RDMA_HOSTS=ip1,ip2,ip3 (addresses of RDMA devices, e.g.
 * soft-RoCE in the VM: tests/vm/guest_rxe.sh) only the RDMA tests run, with
 * members on those addresses: frames over links, links lost and made
 * again, and a member without RDMA refused.
 *
 * SMR_TEST_VERBOSE=1 prints every transport log line. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "../net/pki.h"
#include "../net/rawpeer.h"
#include "net.h"
#include "tcp_proto.h"
#include "wire.h"

#define MAXP 8
#define MAXLOG 256
#define DEADLINE 20.0 /* seconds any wait may take before the test fails */

/* ------------------------------------------------------------ fixture */

static char dir[PATH_MAX];
static struct tpki_ca ca1, ca2;

static const char *pem_in(const char *d, const char *file, const char *ext) {
  static char buf[8][PATH_MAX];
  static int k;
  k = (k + 1) % 8;
  return tpki_path(buf[k], d, file, ext);
}

static const char *pem(const char *file, const char *ext) {
  return pem_in(dir, file, ext);
}

static int group_setup(void **state) {
  (void)state;
  if (tpki_mkdir(dir) < 0) return -1;
  if (tpki_ca(&ca1, dir, "ca1") < 0 || tpki_ca(&ca2, dir, "ca2") < 0)
    return -1;
  const char *ids[] = {"n1", "n2", "n3", "n4"};
  for (int i = 0; i < 4; i++)
    if (tpki_issue(&ca1, dir, ids[i], ids[i], ids[i], -60, 86400) < 0)
      return -1;
  if (tpki_issue(&ca2, dir, "other-n2", "n2", "n2", -60, 86400) < 0 ||
      tpki_issue(&ca1, dir, "expired-n3", "n3", "n3", -7200, -3600) < 0 ||
      tpki_issue(&ca1, dir, "san-n5", "someone", "n5", -60, 86400) < 0)
    return -1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  tpki_ca_free(&ca1);
  tpki_ca_free(&ca2);
  tpki_rmdir(dir);
  return 0;
}

/* ------------------------------------------------------- the loop driver */

struct deadline {
  struct ev_loop *loop;
  ev_timer t;
  int expired;
};

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  struct deadline *d = w->data;
  (void)loop;
  (void)revents;
  d->expired = 1;
}

static void deadline_start(struct deadline *d, struct ev_loop *loop,
                           double secs) {
  d->loop = loop;
  d->expired = 0;
  ev_timer_init(&d->t, deadline_cb, secs, 0.);
  d->t.data = d;
  ev_timer_start(loop, &d->t);
}

static void deadline_stop(struct deadline *d) { ev_timer_stop(d->loop, &d->t); }

/* Runs the loop until cond holds; fails the test after secs. */
#define RUN_UNTIL(loop, secs, cond)                                     \
  do {                                                                  \
    struct deadline dl_;                                                \
    deadline_start(&dl_, (loop), (secs));                               \
    while (!(cond) && !dl_.expired) ev_run((loop), EVRUN_ONCE);        \
    deadline_stop(&dl_);                                                \
    if (!(cond)) fail_msg("timed out waiting for: %s", #cond);          \
  } while (0)

/* Runs the loop for secs (to see that nothing more happens). */
static void run_for(struct ev_loop *loop, double secs) {
  struct deadline d;
  deadline_start(&d, loop, secs);
  while (!d.expired) ev_run(loop, EVRUN_ONCE);
  deadline_stop(&d);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)w;
  (void)revents;
}

/* Two loops at once: la blocks at most a tick, lb is polled after it. */
#define RUN2_UNTIL(la, lb, secs, cond)                                  \
  do {                                                                  \
    ev_timer tick_;                                                     \
    double end_ = ev_time() + (secs);                                   \
    ev_timer_init(&tick_, tick_cb, 0.001, 0.001);                       \
    ev_timer_start((la), &tick_);                                       \
    while (!(cond) && ev_time() < end_) {                               \
      ev_run((la), EVRUN_ONCE);                                        \
      ev_run((lb), EVRUN_NOWAIT);                                      \
    }                                                                   \
    ev_timer_stop((la), &tick_);                                        \
    if (!(cond)) fail_msg("timed out waiting for: %s", #cond);          \
  } while (0)

/* -------------------------------------------------------------- frames */

static uint8_t pattern_byte(uint64_t seq, size_t i) {
  return (uint8_t)(i * 7u + seq);
}

/* A frame from `from` with sequence number seq: a HEARTBEAT (60 bytes or
 * so) if payload is 0, else a SUBMIT of one entry of payload bytes. */
static size_t make_frame(uint8_t *buf, size_t cap, const char *from,
                         uint64_t seq, size_t payload) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry e;
  uint8_t *data = NULL;
  size_t len;

  memset(&h, 0, sizeof h);
  memset(&m, 0, sizeof m);
  snprintf(h.from, sizeof h.from, "%s", from);
  h.group = 7;
  h.epoch = 1;
  h.incarnation = 1;
  if (payload == 0) {
    h.type = SMR_MSG_HEARTBEAT;
    m.u.hb.received = seq;
  } else {
    data = malloc(payload);
    assert_non_null(data);
    for (size_t i = 0; i < payload; i++) data[i] = pattern_byte(seq, i);
    memset(&e, 0, sizeof e);
    e.sender_seq = seq;
    e.len = (uint32_t)payload;
    e.data = data;
    h.type = SMR_MSG_SUBMIT;
    m.u.submit.entries = &e;
    m.u.submit.count = 1;
  }
  len = smr_wire_encode(buf, cap, &h, &m);
  free(data);
  return len;
}

/* ---------------------------------------------------------------- nodes */

struct rx {
  char peer[SMR_ID_MAX];
  uint64_t got, next;
  int lost;
};

struct node {
  struct ev_loop *loop;
  struct smr_net *net;
  char id[SMR_ID_MAX];
  char addr[64];
  int port;
  struct rx rx[MAXP];
  int bad;     /* frames undecodable, from the wrong sender, out of order */
  int gaps_ok; /* a frame may be lost across a reconnection */
  int lost;    /* on_peer_lost calls */
  int writable;
  uint64_t frames;
  uint64_t close_at; /* smr_net_close from on_frame at this many frames */
  int close_on_lost;
  int calls_after_close;
  char log[MAXLOG][512];
  int nlog;
};

struct opts {
  int insecure;
  const char *cert; /* file base name of cert and key (default: the id) */
  const char *ca;   /* CA file base name (default ca1) */
  const char *dir;  /* where the files are (default: the fixture's) */
  const char *listen;
  size_t max_queue;
  uint32_t reconnect_ms, timeout_ms;
  int rdma, rdma_fallback;
};

static struct rx *rx_of(struct node *nd, const char *peer) {
  for (int i = 0; i < MAXP; i++) {
    if (strcmp(nd->rx[i].peer, peer) == 0) return &nd->rx[i];
    if (nd->rx[i].peer[0] == '\0') {
      snprintf(nd->rx[i].peer, sizeof nd->rx[i].peer, "%s", peer);
      return &nd->rx[i];
    }
  }
  fail_msg("too many peers");
  return NULL;
}

static uint64_t got(struct node *nd, const char *peer) {
  return rx_of(nd, peer)->got;
}

static void on_frame(void *ctx, const char *peer, const uint8_t *f,
                     size_t len) {
  struct node *nd = ctx;
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  uint64_t seq = 0;

  if (nd->net == NULL) nd->calls_after_close++;
  if (smr_wire_decode(f, len, &h, &m) != 0 || strcmp(h.from, peer) != 0) {
    nd->bad++;
    return;
  }
  if (h.type == SMR_MSG_HEARTBEAT) {
    seq = m.u.hb.received;
  } else if (h.type == SMR_MSG_SUBMIT) {
    struct smr_wire_entry e;
    if (!smr_wire_entries_next(&m.u.submit.it, &e)) {
      nd->bad++;
      return;
    }
    seq = e.sender_seq;
    for (size_t i = 0; i < e.len; i++)
      if (e.data[i] != pattern_byte(seq, i)) {
        nd->bad++;
        return;
      }
  }
  struct rx *r = rx_of(nd, peer);
  if (seq < r->next || (seq != r->next && !nd->gaps_ok)) nd->bad++;
  r->next = seq + 1;
  r->got++;
  nd->frames++;
  if (nd->close_at != 0 && nd->frames == nd->close_at) {
    smr_net_close(nd->net);
    nd->net = NULL;
  }
}

static void on_peer_lost(void *ctx, const char *peer) {
  struct node *nd = ctx;
  if (nd->net == NULL) nd->calls_after_close++;
  nd->lost++;
  rx_of(nd, peer)->lost++;
  if (nd->close_on_lost) {
    smr_net_close(nd->net);
    nd->net = NULL;
  }
}

static void on_writable(void *ctx) {
  struct node *nd = ctx;
  if (nd->net == NULL) nd->calls_after_close++;
  nd->writable++;
}

static void on_log(void *ctx, const char *line) {
  struct node *nd = ctx;
  if (getenv("SMR_TEST_VERBOSE") != NULL)
    fprintf(stderr, "[%s] %s\n", nd->id, line);
  if (nd->nlog < MAXLOG)
    snprintf(nd->log[nd->nlog++], sizeof nd->log[0], "%s", line);
}

static int has_log(const struct node *nd, const char *needle) {
  for (int i = 0; i < nd->nlog; i++)
    if (strstr(nd->log[i], needle) != NULL) return 1;
  return 0;
}

static void dump_log(const struct node *nd) {
  for (int i = 0; i < nd->nlog; i++)
    fprintf(stderr, "  [%s] %s\n", nd->id, nd->log[i]);
}

static struct smr_net_stats stats(const struct node *nd) {
  struct smr_net_stats st;
  smr_net_stats(nd->net, &st);
  return st;
}

/* Opens a member; returns smr_net_open()'s result, err in errbuf. */
static int node_try(struct node *nd, struct ev_loop *loop, const char *id,
                    const struct opts *o, char *errbuf, size_t errlen) {
  static const struct opts none;
  struct smr_net_config cfg;

  if (o == NULL) o = &none;
  memset(nd, 0, sizeof *nd);
  nd->loop = loop;
  snprintf(nd->id, sizeof nd->id, "%s", id);
  memset(&cfg, 0, sizeof cfg);
  cfg.loop = loop;
  cfg.self_id = id;
  cfg.listen_addr = o->listen ? o->listen : "127.0.0.1:0";
  if (!o->insecure) {
    const char *base = o->cert ? o->cert : id, *d = o->dir ? o->dir : dir;
    cfg.tls_ca = pem_in(d, o->ca ? o->ca : "ca1", "pem");
    cfg.tls_cert = pem_in(d, base, "pem");
    cfg.tls_key = pem_in(d, base, "key");
  }
  cfg.insecure = o->insecure;
  cfg.max_queue_bytes = o->max_queue;
  cfg.reconnect_ms = o->reconnect_ms ? o->reconnect_ms : 10;
  cfg.timeout_ms = o->timeout_ms;
  cfg.rdma = o->rdma;
  cfg.rdma_fallback = o->rdma_fallback;
  cfg.ctx = nd;
  cfg.on_frame = on_frame;
  cfg.on_peer_lost = on_peer_lost;
  cfg.on_writable = on_writable;
  cfg.log = on_log;
  int r = smr_net_open(&cfg, &nd->net, errbuf, errlen);
  if (r == 0) {
    nd->port = smr_net_port(nd->net);
    /* The listening host, with the port it got. */
    const char *colon = strrchr(cfg.listen_addr, ':');
    snprintf(nd->addr, sizeof nd->addr, "%.*s:%d",
             (int)(colon - cfg.listen_addr), cfg.listen_addr, nd->port);
  }
  return r;
}

static void node_open(struct node *nd, struct ev_loop *loop, const char *id,
                      const struct opts *o) {
  char err[256];
  int r = node_try(nd, loop, id, o, err, sizeof err);
  if (r != 0) fail_msg("smr_net_open(%s): %d %s", id, r, err);
  assert_true(nd->port > 0);
}

static void node_close(struct node *nd) {
  smr_net_close(nd->net);
  nd->net = NULL;
}

/* Sends frame number seq from a to b; returns smr_net_send()'s result. */
static int send_seq(struct node *a, struct node *b, uint64_t seq,
                    size_t payload) {
  static uint8_t small[256];
  uint8_t *buf = small;
  size_t cap = sizeof small, len;
  int r;

  if (payload > 0) {
    cap = SMR_WIRE_HDR_FIXED + SMR_ID_MAX + 64 + payload;
    buf = malloc(cap);
    assert_non_null(buf);
  }
  len = make_frame(buf, cap, a->id, seq, payload);
  assert_true(len > 0);
  r = smr_net_send(a->net, b->id, b->addr, buf, len);
  if (buf != small) free(buf);
  return r;
}

/* ------------------------------------------------------- configuration */

static void test_open_errors(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct smr_net_config cfg;
  struct smr_net *n = NULL;
  struct node a, b;
  struct opts o;
  char err[256];

  (void)state;
  memset(&cfg, 0, sizeof cfg);
  assert_int_equal(smr_net_open(NULL, &n, err, sizeof err), -EINVAL);
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  cfg.loop = loop;
  cfg.on_frame = on_frame;
  cfg.self_id = "bad id";
  cfg.insecure = 1;
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "member id"));
  cfg.self_id = "n1";
  cfg.listen_addr = "localhost:7000";
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "localhost:7000"));
  cfg.listen_addr = "127.0.0.1:70000";
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  cfg.insecure = 0;
  cfg.listen_addr = "127.0.0.1:0";
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "insecure"));
  cfg.tls_ca = pem("ca1", "pem");
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "all three"));
  cfg.tls_cert = pem("n1", "pem");
  cfg.tls_key = pem("n1", "key");
  cfg.insecure = 1;
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "choose one"));
  assert_null(n);

  /* The own certificate is checked at open. */
  memset(&o, 0, sizeof o);
  o.cert = "missing";
  assert_int_equal(node_try(&a, loop, "n1", &o, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "missing.pem"));
  o.cert = "other-n2";
  assert_int_equal(node_try(&a, loop, "n2", &o, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "unable to get local issuer certificate"));
  o.cert = "expired-n3";
  assert_int_equal(node_try(&a, loop, "n3", &o, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "certificate has expired"));
  o.cert = "n2";
  assert_int_equal(node_try(&a, loop, "n1", &o, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "names n2, not this member (n1)"));
  o.cert = "ca1"; /* a CA certificate, with its key not on disk */
  assert_int_equal(node_try(&a, loop, "n1", &o, err, sizeof err), -ENOENT);
  cfg.insecure = 0;
  cfg.tls_cert = pem("n1", "pem");
  cfg.tls_key = pem("n2", "key");
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "does not match tls_cert"));
  cfg.tls_ca = pem("n1", "key"); /* not a certificate at all */
  cfg.tls_key = pem("n1", "key");
  assert_int_equal(smr_net_open(&cfg, &n, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "tls_ca"));

  /* A port in use. */
  node_open(&a, loop, "n1", NULL);
  memset(&o, 0, sizeof o);
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", a.port);
  o.listen = listen;
  assert_int_equal(node_try(&b, loop, "n2", &o, err, sizeof err),
                   -EADDRINUSE);
  assert_non_null(strstr(err, listen));
  node_close(&a);

  /* The SAN alone may name the member. */
  memset(&o, 0, sizeof o);
  o.cert = "san-n5";
  node_open(&a, loop, "n5", &o);
  node_close(&a);
  ev_loop_destroy(loop);
}

static void test_send_errors(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, b;
  uint8_t f[256];
  size_t len;

  (void)state;
  node_open(&a, loop, "n1", NULL);
  node_open(&b, loop, "n2", NULL);
  len = make_frame(f, sizeof f, "n1", 0, 0);
  assert_int_equal(smr_net_send(a.net, "bad id", b.addr, f, len), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n1", b.addr, f, len), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, 0), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, NULL, len), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, len - 1), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", "n2.example:7000", f, len),
                   -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", "127.0.0.1:0", f, len), -EINVAL);
  assert_int_equal(smr_net_send(a.net, "n2", "::1:7000", f, len), -EINVAL);
  assert_int_equal(
      smr_net_send(a.net, "n2", b.addr, f, SMR_WIRE_FRAME_LEN_MAX + 1),
      -EMSGSIZE);
  /* Two frames at once, and a frame in someone else's name. */
  memcpy(f + len, f, len);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, 2 * len), -EINVAL);
  len = make_frame(f, sizeof f, "n3", 0, 0);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, len), -EINVAL);
  memset(f, 0x55, sizeof f);
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, 100), -EINVAL);
  /* A header announcing a body over SMR_FRAME_MAX. */
  len = make_frame(f, sizeof f, "n1", 0, 0);
  f[4] = 0xff, f[5] = 0xff, f[6] = 0xff, f[7] = 0x7f;
  assert_int_equal(smr_net_send(a.net, "n2", b.addr, f, len), -EMSGSIZE);
  /* None of it left anything queued or dialled. */
  assert_int_equal(smr_net_queued(a.net, "n2"), 0);
  run_for(loop, 0.05);
  assert_int_equal(stats(&b).connects, 0);
  assert_int_equal(smr_net_port(NULL), 0);
  assert_int_equal(smr_net_queued(NULL, "n2"), 0);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* ---------------------------------------------------------- exchanging */

/* Every member sends count frames to every other, all at once, then the
 * loop runs until everyone has everything. */
/* Every member sends count frames to every other: heartbeats (payload 0)
 * or, with kind = rdma, where a newer heartbeat may replace an older one,
 * data frames of `payload` bytes. */
static void exchange_frames(struct node *nodes, int nn, uint64_t count,
                            size_t payload) {
  for (uint64_t s = 0; s < count; s++)
    for (int i = 0; i < nn; i++)
      for (int j = 0; j < nn; j++)
        if (i != j)
          assert_int_equal(send_seq(&nodes[i], &nodes[j], s, payload), 0);
  for (int i = 0; i < nn; i++)
    for (int j = 0; j < nn; j++)
      if (i != j) RUN_UNTIL(nodes[0].loop, DEADLINE, got(&nodes[i], nodes[j].id) >= count);
  for (int i = 0; i < nn; i++) {
    struct smr_net_stats st = stats(&nodes[i]);
    if (nodes[i].bad != 0 || st.refused != 0) dump_log(&nodes[i]);
    assert_int_equal(nodes[i].bad, 0);
    assert_int_equal(nodes[i].lost, 0);
    assert_int_equal(st.refused, 0);
    assert_int_equal(st.frames_in, count * (uint64_t)(nn - 1));
    assert_int_equal(st.peers_up, nn - 1);
    for (int j = 0; j < nn; j++)
      if (i != j) assert_int_equal(smr_net_queued(nodes[i].net, nodes[j].id), 0);
  }
}

static void exchange(struct node *nodes, int nn, uint64_t count) {
  exchange_frames(nodes, nn, count, 0);
}

static void test_two_members_tls(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node m[2];

  (void)state;
  node_open(&m[0], loop, "n1", NULL);
  node_open(&m[1], loop, "n2", NULL);
  exchange(m, 2, 20000);
  /* And more on the standing connection, now with bigger frames. */
  for (uint64_t s = 20000; s < 20200; s++) {
    assert_int_equal(send_seq(&m[0], &m[1], s, 3000 + (size_t)s % 5000), 0);
    assert_int_equal(send_seq(&m[1], &m[0], s, 1 + (size_t)s % 100), 0);
  }
  RUN_UNTIL(loop, DEADLINE, got(&m[1], "n1") == 20200 && got(&m[0], "n2") == 20200);
  assert_int_equal(m[0].bad + m[1].bad, 0);
  assert_int_equal(stats(&m[0]).connects + stats(&m[1]).connects, 2);
  assert_int_equal(stats(&m[0]).frames_out, 20200);
  assert_true(has_log(&m[0], "up n2 at"));
  node_close(&m[0]);
  node_close(&m[1]);
  ev_loop_destroy(loop);
}

static void test_three_members_tls(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node m[3];

  (void)state;
  node_open(&m[0], loop, "n1", NULL);
  node_open(&m[1], loop, "n2", NULL);
  node_open(&m[2], loop, "n3", NULL);
  exchange(m, 3, 3000);
  for (int i = 0; i < 3; i++) {
    /* One connection per pair, whoever dialled. */
    assert_int_equal(stats(&m[i]).connects, 2);
    node_close(&m[i]);
  }
  ev_loop_destroy(loop);
}

static void test_insecure(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = 1};
  struct node m[3];

  (void)state;
  node_open(&m[0], loop, "n1", &o);
  node_open(&m[1], loop, "n2", &o);
  node_open(&m[2], loop, "n3", &o);
  exchange(m, 3, 3000);
  for (int i = 0; i < 3; i++) node_close(&m[i]);
  ev_loop_destroy(loop);
}

static void test_ipv6(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.listen = "[::1]:0"};
  struct node m[2];
  char err[256];

  (void)state;
  if (node_try(&m[0], loop, "n1", &o, err, sizeof err) != 0) {
    ev_loop_destroy(loop);
    skip(); /* no IPv6 loopback here */
  }
  node_open(&m[1], loop, "n2", &o);
  exchange(m, 2, 500);
  assert_true(has_log(&m[0], "[::1]:"));
  node_close(&m[0]);
  node_close(&m[1]);
  ev_loop_destroy(loop);
}

/* Small frames one way as fast as the loop takes them: the number the
 * report quotes.  Prints frames/s for TLS and plain TCP. */
static void throughput(int insecure) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = insecure, .max_queue = 1u << 20};
  const uint64_t count = 300000;
  struct node a, b;
  uint64_t sent = 0;
  struct deadline dl;

  node_open(&a, loop, "n1", &o);
  node_open(&b, loop, "n2", &o);
  assert_int_equal(send_seq(&a, &b, sent++, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 1);
  double t0 = ev_time();
  deadline_start(&dl, loop, 60.0);
  while (got(&b, "n1") < count && !dl.expired) {
    while (sent < count && send_seq(&a, &b, sent, 0) == 0) sent++;
    ev_run(loop, EVRUN_ONCE);
  }
  deadline_stop(&dl);
  double secs = ev_time() - t0;
  assert_int_equal(got(&b, "n1"), count);
  assert_int_equal(b.bad, 0);
  struct smr_net_stats st = stats(&b);
  printf("    throughput %s: %.0f frames/s of %.0f bytes (%.1f MB/s)\n",
         insecure ? "plain TCP" : "TLS 1.3", (double)(count - 1) / secs,
         (double)st.bytes_in / (double)st.frames_in,
         (double)st.bytes_in / secs / 1e6);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

static void test_throughput(void **state) {
  (void)state;
  throughput(0);
  throughput(1);
}

static void test_big_frame(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, b;
  size_t payload = SMR_FRAME_MAX - 64; /* a body of nearly SMR_FRAME_MAX */

  (void)state;
  node_open(&a, loop, "n1", NULL);
  node_open(&b, loop, "n2", NULL);
  assert_int_equal(send_seq(&a, &b, 0, 10), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 1);
  /* Larger than max_queue_bytes, but the queue is empty: accepted.  It
   * then blocks the queue until it has drained. */
  assert_int_equal(send_seq(&a, &b, 1, payload), 0);
  assert_int_equal(send_seq(&a, &b, 2, 10), -EAGAIN);
  RUN_UNTIL(loop, DEADLINE, a.writable == 1);
  assert_int_equal(send_seq(&a, &b, 2, 10), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 3);
  assert_int_equal(b.bad, 0);
  assert_true(stats(&b).bytes_in > payload);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* The certificates smr-mkcerts makes work as they are. */
static void test_mkcerts(void **state) {
  struct ev_loop *loop;
  struct opts o = {.ca = "ca"};
  struct node m[3];
  char cmd[2 * PATH_MAX], d[PATH_MAX];

  (void)state;
  if (system("openssl version >/dev/null 2>&1") != 0) skip();
  assert_int_equal(tpki_mkdir(d), 0);
  snprintf(cmd, sizeof cmd, "%s %s/certs n1 n2 n3 >/dev/null", SMR_MKCERTS,
           d);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof cmd, "%s/certs", d);
  o.dir = cmd;
  loop = ev_loop_new(EVFLAG_AUTO);
  node_open(&m[0], loop, "n1", &o);
  node_open(&m[1], loop, "n2", &o);
  node_open(&m[2], loop, "n3", &o);
  exchange(m, 3, 100);
  for (int i = 0; i < 3; i++) node_close(&m[i]);
  ev_loop_destroy(loop);
  tpki_rmdir(cmd);
  tpki_rmdir(d);
}

/* ------------------------------------------------ one connection per pair */

static void simultaneous(int insecure) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = insecure};
  struct node a, b;
  char want[128];

  for (int round = 0; round < 5; round++) {
    node_open(&a, loop, "n1", &o);
    node_open(&b, loop, "n2", &o);
    /* Both dial before either runs. */
    for (uint64_t s = 0; s < 50; s++) {
      assert_int_equal(send_seq(&a, &b, s, 0), 0);
      assert_int_equal(send_seq(&b, &a, s, 0), 0);
    }
    RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 50 && got(&b, "n1") == 50);
    run_for(loop, 0.1); /* let a losing attempt's retry play out */
    struct smr_net_stats sa = stats(&a), sb = stats(&b);
    if (sa.connects != 1 || sb.connects != 1) {
      dump_log(&a);
      dump_log(&b);
    }
    assert_int_equal(sa.connects, 1);
    assert_int_equal(sb.connects, 1);
    assert_int_equal(sa.disconnects + sb.disconnects, 0);
    assert_int_equal(sa.refused + sb.refused, 0);
    assert_int_equal(a.lost + b.lost, 0);
    assert_int_equal(a.bad + b.bad, 0);
    /* The survivor is the connection n1 (the smaller id) dialled. */
    snprintf(want, sizeof want, "up n2 at %s (outbound)", b.addr);
    assert_true(has_log(&a, want));
    assert_true(has_log(&b, "up n1 at 127.0.0.1:"));
    assert_true(has_log(&b, "(inbound)"));
    node_close(&a);
    node_close(&b);
  }
  ev_loop_destroy(loop);
}

static void test_simultaneous_connect(void **state) {
  (void)state;
  simultaneous(0);
  simultaneous(1);
}

/* ------------------------------------------------------------- refusals */

/* A raw client (TLS with the given certificate, NULL: none; or plain)
 * sends bytes to n1; waits until n1 refuses it, and checks the log says
 * why. */
static void raw_refused(int tls, const char *cert, const uint8_t *bytes,
                        size_t len, const char *why) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a;
  struct rawpeer r;

  node_open(&a, loop, "n1", NULL);
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, tls,
                                cert ? pem(cert, "pem") : NULL,
                                cert ? pem(cert, "key") : NULL),
                   0);
  if (len > 0) rawpeer_send(&r, bytes, len);
  RUN_UNTIL(loop, DEADLINE, stats(&a).refused == 1 && r.closed);
  assert_true(has_log(&a, "refused "));
  if (!has_log(&a, why)) {
    dump_log(&a);
    fail_msg("no log line with \"%s\"", why);
  }
  assert_int_equal(stats(&a).connects, 0);
  assert_int_equal(a.frames, 0);
  rawpeer_close(&r);
  node_close(&a);
  ev_loop_destroy(loop);
}

static size_t hello(uint8_t *buf, uint8_t kind, const char *from,
                    const char *to) {
  struct smr_net_hello h;
  memset(&h, 0, sizeof h);
  h.kind = kind;
  snprintf(h.from, sizeof h.from, "%s", from);
  snprintf(h.to, sizeof h.to, "%s", to);
  size_t n = smr_net_hello_encode(buf, SMR_NET_HELLO_MAX, &h);
  assert_true(n > 0);
  return n;
}

static void test_refuse_certificates(void **state) {
  uint8_t b[SMR_NET_HELLO_MAX];
  size_t n = hello(b, SMR_NET_HELLO, "n3", "n1");

  (void)state;
  raw_refused(1, "other-n2", b, n,
              "refused 127.0.0.1:");
  raw_refused(1, "other-n2", b, n,
              ": certificate verify failed (unable to get local issuer "
              "certificate)");
  raw_refused(1, NULL, b, n, ": peer did not return a certificate");
  raw_refused(1, "expired-n3", b, n,
              ": certificate verify failed (certificate has expired)");
  /* A good certificate, but the hello names someone else. */
  n = hello(b, SMR_NET_HELLO, "n2", "n1");
  raw_refused(1, "n3", b, n, "refused n2 at 127.0.0.1:");
  raw_refused(1, "n3", b, n, "certificate names n3, not n2");
  /* Plain bytes where TLS is expected: an insecure member's hello, and
   * noise. */
  raw_refused(0, NULL, b, n, "refused 127.0.0.1:");
  for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(i * 131 + 7);
  raw_refused(0, NULL, b, sizeof b, "refused 127.0.0.1:");
}

/* Both members under different CAs: each side refuses the other. */
static void test_refuse_other_ca_member(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts other = {.cert = "other-n2", .ca = "ca2"};
  struct node a, b;

  (void)state;
  node_open(&a, loop, "n1", NULL);
  node_open(&b, loop, "n2", &other);
  assert_int_equal(send_seq(&b, &a, 0, 0), 0); /* n2 dials n1 */
  assert_int_equal(send_seq(&a, &b, 0, 0), 0); /* n1 dials n2 */
  RUN_UNTIL(loop, DEADLINE, stats(&a).refused >= 2 && stats(&b).refused >= 2);
  /* n1's client verification of n2's server certificate: */
  assert_true(has_log(&a, "refused n2 at"));
  assert_true(has_log(&a, "certificate verify failed"));
  assert_true(has_log(&b, "refused n1 at"));
  assert_int_equal(a.frames + b.frames, 0);
  assert_int_equal(stats(&a).connects + stats(&b).connects, 0);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* n1 dials "n2" at an address where n3 listens: n3's certificate does not
 * name n2, so n1 refuses it. */
static void test_refuse_wrong_member(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, c;
  uint8_t f[256];

  (void)state;
  node_open(&a, loop, "n1", NULL);
  node_open(&c, loop, "n3", NULL);
  size_t len = make_frame(f, sizeof f, "n1", 0, 0);
  assert_int_equal(smr_net_send(a.net, "n2", c.addr, f, len), 0);
  RUN_UNTIL(loop, DEADLINE, stats(&a).refused >= 1);
  assert_true(has_log(&a, "certificate names n3, not n2"));
  assert_int_equal(c.frames, 0);
  node_close(&a);
  node_close(&c);
  ev_loop_destroy(loop);
}

/* A peer authenticated as n3 whose frame claims to be from n2. */
static void test_refuse_forged_sender(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a;
  struct rawpeer r;
  uint8_t b[512];

  (void)state;
  node_open(&a, loop, "n1", NULL);
  size_t n = hello(b, SMR_NET_HELLO, "n3", "n1");
  n += make_frame(b + n, sizeof b - n, "n3", 0, 0);
  n += make_frame(b + n, sizeof b - n, "n2", 1, 0);
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 1,
                                pem("n3", "pem"), pem("n3", "key")),
                   0);
  rawpeer_send(&r, b, n);
  RUN_UNTIL(loop, DEADLINE, a.lost == 1 && r.closed);
  /* The first frame was n3's own and got through; the forged one broke
   * the connection, counted as a refusal and as a lost peer. */
  assert_int_equal(got(&a, "n3"), 1);
  assert_int_equal(rx_of(&a, "n3")->lost, 1);
  assert_int_equal(stats(&a).refused, 1);
  assert_true(has_log(&a, "refused n3 at 127.0.0.1:"));
  assert_true(has_log(&a, "frame claims to be from n2"));
  rawpeer_close(&r);
  node_close(&a);
  ev_loop_destroy(loop);
}

/* An insecure n1 and raw plain-TCP peers sending each kind of bad input;
 * each is refused with its reason, and n1 keeps working. */
static void test_insecure_hello_and_garbage(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = 1};
  struct node a, b;
  uint8_t buf[512];
  size_t n;
  struct {
    const char *why;
    int lost; /* the bad bytes came after an accepted hello */
  } cases[] = {
      {"not an smr hello", 0},
      {"a TLS client, but this member is insecure", 0},
      {"frames before the hello", 0},
      {"unsupported hello version", 0},
      {"hello is for another member (n9)", 0},
      {"peer claims this member's own id", 0},
      {"expected a hello, got verdict 2", 0},
      {"not an smr hello", 0}, /* invalid id characters */
      {"bad frame header", 1},
      {"frame too long", 1},
      {"frame claims to be from n4", 1},
  };

  (void)state;
  node_open(&a, loop, "n1", &o);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    struct rawpeer r;
    switch (k) {
      case 0:
        n = (size_t)snprintf((char *)buf, sizeof buf, "GET / HTTP/1.0\r\n\r\n");
        break;
      case 1:
        memcpy(buf, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
        n = 11;
        break;
      case 2:
        n = make_frame(buf, sizeof buf, "n2", 0, 0);
        break;
      case 3:
        n = hello(buf, SMR_NET_HELLO, "n2", "n1");
        buf[4] = 2;
        break;
      case 4:
        n = hello(buf, SMR_NET_HELLO, "n2", "n9");
        break;
      case 5:
        n = hello(buf, SMR_NET_HELLO, "n1", "n1");
        break;
      case 6:
        n = hello(buf, SMR_NET_ACCEPT, "n2", "n1");
        break;
      case 7:
        n = hello(buf, SMR_NET_HELLO, "n2", "n1");
        buf[8] = '/';
        break;
      case 8:
        n = hello(buf, SMR_NET_HELLO, "n2", "n1");
        memcpy(buf + n, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 44);
        n += 44;
        break;
      case 9: {
        n = hello(buf, SMR_NET_HELLO, "n2", "n1");
        size_t f = make_frame(buf + n, sizeof buf - n, "n2", 0, 0);
        buf[n + 4] = 0x01, buf[n + 5] = 0x00, buf[n + 6] = 0x10,
        buf[n + 7] = 0x01; /* body of 17 MiB */
        n += f;
        break;
      }
      default:
        n = hello(buf, SMR_NET_HELLO, "n2", "n1");
        n += make_frame(buf + n, sizeof buf - n, "n4", 0, 0);
        break;
    }
    assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 0, NULL, NULL),
                     0);
    rawpeer_send(&r, buf, n);
    RUN_UNTIL(loop, DEADLINE, stats(&a).refused == k + 1 && r.closed);
    if (!has_log(&a, cases[k].why)) {
      dump_log(&a);
      fail_msg("case %zu: no log line with \"%s\"", k, cases[k].why);
    }
    assert_int_equal(a.lost, (int)(k >= 8 ? k - 7 : 0));
    if (k == 4 || k == 5) {
      /* Refused hellos get a REFUSE verdict before the close. */
      struct smr_net_hello h;
      assert_true(smr_net_hello_parse(r.in, r.inlen, &h) > 0);
      assert_int_equal(h.kind, SMR_NET_REFUSE);
    }
    rawpeer_close(&r);
  }
  assert_int_equal(a.frames, 0);
  assert_int_equal(stats(&a).connects, 3);
  assert_int_equal(stats(&a).disconnects, 3);
  assert_int_equal(stats(&a).peers_up, 0);
  /* Still serving. */
  node_open(&b, loop, "n2", &o);
  assert_int_equal(send_seq(&b, &a, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 1);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* A TLS peer that sends garbage after a good hello. */
static void test_tls_garbage_after_hello(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a;
  struct rawpeer r;
  uint8_t b[256];

  (void)state;
  node_open(&a, loop, "n1", NULL);
  size_t n = hello(b, SMR_NET_HELLO, "n3", "n1");
  for (size_t i = 0; i < 100; i++) b[n + i] = (uint8_t)(i * 37 + 11);
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 1,
                                pem("n3", "pem"), pem("n3", "key")),
                   0);
  rawpeer_send(&r, b, n + 100);
  RUN_UNTIL(loop, DEADLINE, a.lost == 1 && r.closed);
  assert_int_equal(stats(&a).refused, 1);
  assert_true(has_log(&a, "refused n3 at 127.0.0.1:"));
  assert_true(has_log(&a, "bad frame header"));
  rawpeer_close(&r);
  node_close(&a);
  ev_loop_destroy(loop);
}

/* Connections that never come up time out, both ways. */
static void test_timeouts(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.timeout_ms = 200};
  struct node a;
  struct rawpeer r;
  struct sockaddr_in sa;
  socklen_t sl = sizeof sa;
  char addr[64];
  uint8_t f[256];

  (void)state;
  node_open(&a, loop, "n1", &o);
  /* Inbound: connects and says nothing. */
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 0, NULL, NULL),
                   0);
  RUN_UNTIL(loop, DEADLINE, stats(&a).refused == 1);
  assert_true(has_log(&a, "timed out in the TLS handshake"));
  rawpeer_close(&r);
  /* Outbound: a listener whose kernel accepts but that never answers. */
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(lfd, 16), 0);
  assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
  size_t len = make_frame(f, sizeof f, "n1", 0, 0);
  assert_int_equal(smr_net_send(a.net, "n2", addr, f, len), 0);
  RUN_UNTIL(loop, DEADLINE, has_log(&a, "timed out in the TLS handshake (attempt 2)"));
  assert_true(has_log(&a, "connect to n2 at 127.0.0.1:"));
  assert_int_equal(smr_net_queued(a.net, "n2"), len); /* kept for later */
  close(lfd);
  node_close(&a);
  ev_loop_destroy(loop);
}

/* ------------------------------------------------ loss and reconnection */

static void test_peer_lost_and_back(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.reconnect_ms = 20};
  struct node a, b;
  char listen[64];
  uint64_t s = 0;

  (void)state;
  node_open(&a, loop, "n1", &o);
  node_open(&b, loop, "n2", &o);
  a.gaps_ok = 1;
  for (; s < 2000; s++) assert_int_equal(send_seq(&a, &b, s, 100), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") > 0);
  /* n2 goes away mid-stream; n1 keeps sending. */
  node_close(&b);
  for (; s < 3000; s++) assert_int_equal(send_seq(&a, &b, s, 100), 0);
  RUN_UNTIL(loop, DEADLINE, a.lost == 1);
  assert_int_equal(rx_of(&a, "n2")->lost, 1);
  assert_true(has_log(&a, "lost n2 at"));
  /* Nobody listens: the retries fail, quietly for the caller. */
  RUN_UNTIL(loop, DEADLINE, has_log(&a, "failed: Connection refused (attempt 2)"));
  assert_true(smr_net_queued(a.net, "n2") > 0);
  /* n2 comes back on the same port and gets the rest, in order. */
  snprintf(listen, sizeof listen, "127.0.0.1:%d", b.port);
  o.listen = listen;
  node_open(&b, loop, "n2", &o);
  b.gaps_ok = 1;
  RUN_UNTIL(loop, DEADLINE, rx_of(&b, "n1")->next == 3000);
  assert_int_equal(b.bad, 0);
  assert_int_equal(a.lost, 1);
  struct smr_net_stats st = stats(&a);
  assert_int_equal(st.connects, 2);
  assert_int_equal(st.disconnects, 1);
  assert_int_equal(smr_net_queued(a.net, "n2"), 0);
  /* And the other way round on the new connection. */
  assert_int_equal(send_seq(&b, &a, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 1);
  assert_int_equal(stats(&b).connects, 1);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

static void test_forget(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, b;

  (void)state;
  node_open(&a, loop, "n1", NULL);
  node_open(&b, loop, "n2", NULL);
  assert_int_equal(send_seq(&a, &b, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 1);
  smr_net_forget(a.net, "n2");
  smr_net_forget(a.net, "n2"); /* twice is harmless */
  smr_net_forget(a.net, "nobody");
  RUN_UNTIL(loop, DEADLINE, b.lost == 1);
  assert_int_equal(a.lost, 0); /* forgetting is silent */
  assert_int_equal(stats(&a).peers_up, 0);
  assert_int_equal(smr_net_queued(a.net, "n2"), 0);
  /* Sending again makes a new peer and a new connection. */
  assert_int_equal(send_seq(&a, &b, 1, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 2);
  assert_int_equal(stats(&a).connects, 2);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* ------------------------------------------------------- back-pressure */

static void back_pressure(int insecure) {
  struct ev_loop *la = ev_loop_new(EVFLAG_AUTO);
  struct ev_loop *lb = ev_loop_new(EVFLAG_AUTO);
  const size_t max = 256u << 10, payload = 16u << 10;
  struct opts o = {.max_queue = max, .insecure = insecure};
  struct node a, b;
  uint64_t sent = 0;
  int r = 0;

  node_open(&a, la, "n1", &o);
  node_open(&b, lb, "n2", &o);
  assert_int_equal(send_seq(&a, &b, sent++, payload), 0);
  RUN2_UNTIL(la, lb, DEADLINE, got(&b, "n1") == 1);
  /* n2's loop stops: n2 reads nothing.  n1 fills the kernel's buffers,
   * then its own queue, and is told to wait. */
  for (int i = 0; i < 100000; i++) {
    r = send_seq(&a, &b, sent, payload);
    if (r != 0) break;
    sent++;
    ev_run(la, EVRUN_NOWAIT);
  }
  assert_int_equal(r, -EAGAIN);
  size_t queued = smr_net_queued(a.net, "n2");
  assert_true(queued > max / 2 && queued <= max);
  assert_int_equal(send_seq(&a, &b, sent, payload), -EAGAIN);
  run_for(la, 0.05);
  assert_int_equal(a.writable, 0);
  assert_int_equal(smr_net_queued(a.net, "n2"), queued);
  /* n2 reads again: the queue drains, on_writable fires once. */
  RUN2_UNTIL(la, lb, DEADLINE, a.writable > 0);
  assert_true(smr_net_queued(a.net, "n2") <= max / 2);
  assert_int_equal(send_seq(&a, &b, sent++, payload), 0);
  RUN2_UNTIL(la, lb, DEADLINE, got(&b, "n1") == sent);
  assert_int_equal(a.writable, 1);
  assert_int_equal(b.bad, 0);
  printf("    back-pressure (%s) after %llu frames of 16 KiB\n",
         insecure ? "plain TCP" : "TLS", (unsigned long long)sent);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(la);
  ev_loop_destroy(lb);
}

static void test_back_pressure(void **state) {
  (void)state;
  back_pressure(0);
  back_pressure(1);
}

/* A second hello from a peer whose connection is up gets DUPLICATE; the
 * standing connection carries on (rule a). */
static void test_duplicate_hello(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = 1};
  struct node a, b;
  struct rawpeer r;
  struct smr_net_hello h;
  uint8_t buf[SMR_NET_HELLO_MAX];

  (void)state;
  node_open(&a, loop, "n1", &o);
  node_open(&b, loop, "n2", &o);
  assert_int_equal(send_seq(&b, &a, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 1);
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 0, NULL, NULL),
                   0);
  rawpeer_send(&r, buf, hello(buf, SMR_NET_HELLO, "n2", "n1"));
  RUN_UNTIL(loop, DEADLINE, r.closed);
  assert_true(smr_net_hello_parse(r.in, r.inlen, &h) > 0);
  assert_int_equal(h.kind, SMR_NET_DUPLICATE);
  rawpeer_close(&r);
  assert_int_equal(stats(&a).refused, 0);
  assert_int_equal(a.lost + b.lost, 0);
  assert_int_equal(send_seq(&b, &a, 1, 0), 0);
  assert_int_equal(send_seq(&a, &b, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 2 && got(&b, "n1") == 1);
  assert_int_equal(stats(&a).connects, 1);
  assert_int_equal(stats(&b).connects, 1);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* Out of descriptors: the listener pauses instead of spinning, and
 * resumes. */
static void test_listener_pause(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.insecure = 1};
  struct node a;
  struct rawpeer r;
  struct rlimit old, low;
  uint8_t buf[SMR_NET_HELLO_MAX];

  (void)state;
  node_open(&a, loop, "n1", &o);
  assert_int_equal(rawpeer_open(&r, loop, "127.0.0.1", a.port, 0, NULL, NULL),
                   0);
  rawpeer_send(&r, buf, hello(buf, SMR_NET_HELLO, "n2", "n1"));
  /* The connection waits in the backlog; no descriptor is left for it. */
  int probe = dup(0);
  assert_true(probe >= 0);
  close(probe);
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = (rlim_t)probe;
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
  RUN_UNTIL(loop, DEADLINE, has_log(&a, "pausing the listener"));
  assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
  RUN_UNTIL(loop, DEADLINE, stats(&a).connects == 1);
  assert_true(has_log(&a, "Too many open files"));
  rawpeer_close(&r);
  node_close(&a);
  ev_loop_destroy(loop);
}

/* Connections that never finish coming up are capped. */
static void test_pending_cap(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, b;
  struct sockaddr_in sa;
  int fds[140];

  (void)state;
  node_open(&a, loop, "n1", NULL);
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((uint16_t)a.port);
  for (int i = 0; i < 140; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fds[i] >= 0);
    assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof sa), 0);
    ev_run(loop, EVRUN_NOWAIT); /* accept what is there, without waiting */
  }
  RUN_UNTIL(loop, DEADLINE, stats(&a).refused >= 12);
  assert_true(has_log(&a, "too many connections coming up"));
  for (int i = 0; i < 140; i++) close(fds[i]);
  /* The silent ones go away; a member gets in. */
  node_open(&b, loop, "n2", NULL);
  assert_int_equal(send_seq(&b, &a, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 1);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* --------------------------------------------------- closing from inside */

static void test_close_in_callbacks(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct node a, b;

  (void)state;
  /* on_frame closes its own transport halfway through a batch. */
  node_open(&a, loop, "n1", NULL);
  node_open(&b, loop, "n2", NULL);
  b.close_at = 10;
  for (uint64_t s = 0; s < 100; s++) {
    assert_int_equal(send_seq(&a, &b, s, 0), 0);
    assert_int_equal(send_seq(&b, &a, s, 0), 0);
  }
  RUN_UNTIL(loop, DEADLINE, b.net == NULL && a.lost == 1);
  assert_int_equal(b.frames, 10);
  run_for(loop, 0.05);
  assert_int_equal(b.calls_after_close, 0);
  assert_int_equal(b.frames, 10);
  /* on_peer_lost closes its transport. */
  a.close_on_lost = 1;
  node_open(&b, loop, "n2", NULL);
  assert_int_equal(send_seq(&a, &b, 100, 0), 0); /* to the new n2 */
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") >= 1);
  node_close(&b);
  RUN_UNTIL(loop, DEADLINE, a.net == NULL);
  run_for(loop, 0.05);
  assert_int_equal(a.calls_after_close, 0);
  smr_net_close(NULL);
  ev_loop_destroy(loop);
}

/* ------------------------------------------------------------- kind = rdma */

static int rdma_device_missing(int r, const char *err) {
  return r == -ENODEV && (strstr(err, "no RDMA device") != NULL ||
                          strstr(err, "this build has no RDMA") != NULL);
}

/* Without a device (or in a build without RDMA) kind = rdma is refused
 * with the reason, unless it may fall back to TCP. */
static void test_rdma_without_device(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.rdma = 1};
  struct node m[2];
  char err[256];

  (void)state;
  int r = node_try(&m[0], loop, "n1", &o, err, sizeof err);
  if (r == 0) { /* a machine with a device: refused only on loopback */
    node_close(&m[0]);
    ev_loop_destroy(loop);
    skip();
  }
  if (!rdma_device_missing(r, err)) fail_msg("open: %d %s", r, err);
  assert_non_null(strstr(err, "[transport] kind = rdma: "));
  /* With fallback: a log line, then plain TCP; a TCP-only member talks to
   * it either way. */
  o.rdma_fallback = 1;
  node_open(&m[0], loop, "n1", &o);
  assert_true(has_log(&m[0], "falling back to TCP"));
  node_open(&m[1], loop, "n2", NULL);
  exchange(m, 2, 500);
  assert_int_equal(stats(&m[0]).rdma_links, 0);
  assert_int_equal(stats(&m[0]).rdma_bytes_out, 0);
  node_close(&m[0]);
  node_close(&m[1]);
  ev_loop_destroy(loop);
}

static char rdma_hosts[3][40];

static int rdma_hosts_parse(void) {
  const char *e = getenv("SMR_TEST_RDMA_HOSTS");
  if (e == NULL || e[0] == '\0') return 0;
  int n = 0;
  while (n < 3 && *e) {
    size_t l = strcspn(e, ",");
    snprintf(rdma_hosts[n++], sizeof rdma_hosts[0], "%.*s", (int)l, e);
    e += l + (e[l] == ',');
  }
  return n == 3;
}

static void rdma_open(struct node *nd, struct ev_loop *loop, int i,
                      struct opts *o, int port) {
  char listen[160];
  snprintf(listen, sizeof listen, "%s:%d", rdma_hosts[i], port);
  o->listen = listen;
  char id[8];
  snprintf(id, sizeof id, "n%d", i + 1);
  node_open(nd, loop, id, o);
  o->listen = NULL;
}

static int all_links(struct node *m, int nn) {
  for (int i = 0; i < nn; i++)
    if (stats(&m[i]).rdma_links != (uint64_t)(nn - 1)) return 0;
  return 1;
}

/* Three members over RDMA: every pair's frames move to its link; small
 * and large frames arrive whole and in order, both ways. */
static void test_rdma_three_members(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.rdma = 1, .max_queue = 64u << 20};
  struct node m[3];

  (void)state;
  for (int i = 0; i < 3; i++) rdma_open(&m[i], loop, i, &o, 0);
  /* Data frames only (heartbeats take the SST slot once a link is up, and
   * a newer one may replace an older: test_rdma_sst). */
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      if (i != j) assert_int_equal(send_seq(&m[i], &m[j], 0, 1), 0);
  RUN_UNTIL(loop, DEADLINE, all_links(m, 3));
  for (uint64_t s = 1; s < 2000; s++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        if (i != j) assert_int_equal(send_seq(&m[i], &m[j], s, 1 + s % 200), 0);
  /* Then frames up to 600 KB (several records each). */
  for (uint64_t s = 2000; s < 2300; s++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        if (i != j)
          assert_int_equal(
              send_seq(&m[i], &m[j], s, (s % 50 == 0) ? 600000 : 1 + (size_t)s % 3000),
              0);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      if (i != j) RUN_UNTIL(loop, DEADLINE, got(&m[i], m[j].id) == 2300);
  for (int i = 0; i < 3; i++) {
    struct smr_net_stats st = stats(&m[i]);
    if (m[i].bad) dump_log(&m[i]);
    assert_int_equal(m[i].bad, 0);
    assert_int_equal(m[i].lost, 0);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.rdma_links, 2);
    assert_true(st.rdma_bytes_out > 2 * 6 * 600000);
    assert_true(st.rdma_bytes_in > 2 * 6 * 600000);
    assert_true(has_log(&m[i], "rdma link to"));
  }
  for (int i = 0; i < 3; i++) node_close(&m[i]);
  ev_loop_destroy(loop);
}

/* Heartbeats take the SST slot once the link is up: each arrives exactly
 * at its place in the stream (after the frames sent before it, before
 * those sent after), or is replaced by a newer one; never out of order. */
static void test_rdma_sst(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.rdma = 1, .max_queue = 64u << 20};
  struct node a, b;

  (void)state;
  rdma_open(&a, loop, 0, &o, 0);
  rdma_open(&b, loop, 1, &o, 0);
  b.gaps_ok = 1; /* a replaced heartbeat is a gap */
  assert_int_equal(send_seq(&a, &b, 0, 10), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 1 && stats(&a).rdma_links == 1);
  uint64_t s = 1;
  for (int round = 0; round < 200; round++) {
    for (int k = 0; k < 20; k++, s++)
      assert_int_equal(send_seq(&a, &b, s, 1 + (size_t)(s % 3000)), 0);
    assert_int_equal(send_seq(&a, &b, s++, 0), 0); /* a heartbeat */
    if (round % 50 == 0) run_for(loop, 0.01);
  }
  assert_int_equal(send_seq(&a, &b, s, 5), 0);
  for (int i = 0; i < 40 && rx_of(&b, "n1")->next != s + 1; i++)
    run_for(loop, 0.5);
  if (rx_of(&b, "n1")->next != s + 1) {
    struct smr_net_stats sa = stats(&a), sb = stats(&b);
    fprintf(stderr, "want %" PRIu64 ", next %" PRIu64 " got %" PRIu64
            "; a queued %zu out %" PRIu64 " rdma_out %" PRIu64 " sst_out %"
            PRIu64 "; b in %" PRIu64 " rdma_in %" PRIu64 " sst_in %" PRIu64
            "\n", s + 1, rx_of(&b, "n1")->next, got(&b, "n1"),
            smr_net_queued(a.net, "n2"), sa.frames_out, sa.rdma_bytes_out,
            sa.rdma_sst_out, sb.frames_in, sb.rdma_bytes_in, sb.rdma_sst_in);
    dump_log(&a);
    dump_log(&b);
  }
  RUN_UNTIL(loop, DEADLINE, rx_of(&b, "n1")->next == s + 1);
  if (b.bad) dump_log(&b);
  assert_int_equal(b.bad, 0);
  struct smr_net_stats sa = stats(&a), sb = stats(&b);
  assert_true(sa.rdma_sst_out >= 1);
  assert_true(sb.rdma_sst_in >= 1);
  assert_true(sb.rdma_sst_in <= sa.rdma_sst_out);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* A member goes away: its link breaks, the others report it lost; it
 * comes back on the same port and gets a new link and the rest. */
static void test_rdma_lost_and_back(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.rdma = 1, .reconnect_ms = 20};
  struct node a, b;
  uint64_t s = 0;

  (void)state;
  rdma_open(&a, loop, 0, &o, 0);
  rdma_open(&b, loop, 1, &o, 0);
  a.gaps_ok = 1;
  for (; s < 2000; s++) assert_int_equal(send_seq(&a, &b, s, 100), 0);
  RUN_UNTIL(loop, DEADLINE, got(&b, "n1") == 2000 && stats(&a).rdma_links == 1);
  int port = b.port;
  node_close(&b);
  /* Posted to a link whose peer is gone: lost, as the contract allows. */
  for (; s < 3000; s++) assert_int_equal(send_seq(&a, &b, s, 100), 0);
  RUN_UNTIL(loop, DEADLINE, a.lost == 1);
  assert_int_equal(stats(&a).rdma_links, 0);
  /* Queued while n2 is away: they wait for the next connection. */
  for (; s < 4000; s++) assert_int_equal(send_seq(&a, &b, s, 100), 0);
  rdma_open(&b, loop, 1, &o, port);
  b.gaps_ok = 1;
  RUN_UNTIL(loop, DEADLINE, rx_of(&b, "n1")->next == 4000);
  RUN_UNTIL(loop, DEADLINE, stats(&a).rdma_links == 1 && stats(&b).rdma_links == 1);
  assert_int_equal(b.bad, 0);
  assert_int_equal(send_seq(&b, &a, 0, 0), 0);
  RUN_UNTIL(loop, DEADLINE, got(&a, "n2") == 1);
  assert_int_equal(stats(&a).connects, 2);
  node_close(&a);
  node_close(&b);
  ev_loop_destroy(loop);
}

/* A member that closes right after its last frames were handed to its
 * link loses none of them: closing waits until the link has executed what
 * it posted, and the peer takes what its link brought before it acts on
 * the socket's end or the link's disconnection, whichever its loop sees
 * first.  Here the peer's loop does not run between the first member's
 * sends and its close, so all of it is waiting at once.  The last frame is
 * a heartbeat, in the SST slot: what a member that leaves owes the others
 * is its last acknowledgement. */
static void test_rdma_close_delivers(void **state) {
  struct ev_loop *la = ev_loop_new(EVFLAG_AUTO), *lb = ev_loop_new(EVFLAG_AUTO);
  struct opts o = {.rdma = 1, .max_queue = 64u << 20};
  struct node a, b;

  (void)state;
  for (int round = 0; round < 3; round++) {
    rdma_open(&a, la, 0, &o, 0);
    rdma_open(&b, lb, 1, &o, 0);
    b.gaps_ok = 1; /* (heartbeats may replace each other) */
    uint64_t s = 0;
    assert_int_equal(send_seq(&a, &b, s++, 10), 0);
    RUN2_UNTIL(la, lb, DEADLINE,
               got(&b, "n1") == 1 && stats(&a).rdma_links == 1 &&
                   stats(&b).rdma_links == 1);
    for (int k = 0; k < 100; k++, s++)
      assert_int_equal(send_seq(&a, &b, s, (k % 20 == 0) ? 200000 : 1 + (size_t)k), 0);
    assert_int_equal(send_seq(&a, &b, s, 0), 0); /* the last: a heartbeat */
    RUN_UNTIL(la, DEADLINE, smr_net_queued(a.net, "n2") == 0);
    node_close(&a);
    RUN_UNTIL(lb, DEADLINE, b.lost == 1);
    if (rx_of(&b, "n1")->next != s + 1) dump_log(&b);
    assert_int_equal(rx_of(&b, "n1")->next, s + 1);
    assert_int_equal(b.bad, 0);
    node_close(&b);
  }
  ev_loop_destroy(la);
  ev_loop_destroy(lb);
}

/* Without fallback, an RDMA member refuses a TCP-only one, and says why;
 * with fallback it keeps that pair on TCP while its other pair uses
 * RDMA. */
static void test_rdma_mixed(void **state) {
  struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
  struct opts r = {.rdma = 1, .reconnect_ms = 20}, t = {.reconnect_ms = 20};
  struct node m[3];

  (void)state;
  rdma_open(&m[0], loop, 0, &r, 0);
  rdma_open(&m[1], loop, 1, &t, 0);
  assert_int_equal(send_seq(&m[1], &m[0], 0, 0), 0);
  assert_int_equal(send_seq(&m[0], &m[1], 0, 0), 0);
  /* Whichever dials first: n1 refuses n2's hello, or n2's verdict. */
  RUN_UNTIL(loop, DEADLINE, has_log(&m[0], "connects without RDMA") ||
                                has_log(&m[0], "does not offer RDMA"));
  assert_int_equal(got(&m[0], "n2") + got(&m[1], "n1"), 0);
  node_close(&m[0]);
  node_close(&m[1]);
  r.rdma_fallback = 1;
  rdma_open(&m[0], loop, 0, &r, 0);
  rdma_open(&m[1], loop, 1, &t, 0);
  rdma_open(&m[2], loop, 2, &r, 0);
  exchange_frames(m, 3, 300, 16);
  RUN_UNTIL(loop, DEADLINE, stats(&m[0]).rdma_links == 1 && stats(&m[2]).rdma_links == 1);
  assert_int_equal(stats(&m[1]).rdma_links, 0);
  assert_true(has_log(&m[0], "stays on TCP"));
  for (int i = 0; i < 3; i++) node_close(&m[i]);
  ev_loop_destroy(loop);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test(test_send_errors),
      cmocka_unit_test(test_two_members_tls),
      cmocka_unit_test(test_three_members_tls),
      cmocka_unit_test(test_insecure),
      cmocka_unit_test(test_ipv6),
      cmocka_unit_test(test_big_frame),
      cmocka_unit_test(test_mkcerts),
      cmocka_unit_test(test_simultaneous_connect),
      cmocka_unit_test(test_refuse_certificates),
      cmocka_unit_test(test_refuse_other_ca_member),
      cmocka_unit_test(test_refuse_wrong_member),
      cmocka_unit_test(test_refuse_forged_sender),
      cmocka_unit_test(test_insecure_hello_and_garbage),
      cmocka_unit_test(test_tls_garbage_after_hello),
      cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_peer_lost_and_back),
      cmocka_unit_test(test_forget),
      cmocka_unit_test(test_back_pressure),
      cmocka_unit_test(test_duplicate_hello),
      cmocka_unit_test(test_listener_pause),
      cmocka_unit_test(test_pending_cap),
      cmocka_unit_test(test_close_in_callbacks),
      cmocka_unit_test(test_throughput),
      cmocka_unit_test(test_rdma_without_device),
  };
  const struct CMUnitTest rdma_tests[] = {
      cmocka_unit_test(test_rdma_three_members),
      cmocka_unit_test(test_rdma_sst),
      cmocka_unit_test(test_rdma_lost_and_back),
      cmocka_unit_test(test_rdma_close_delivers),
      cmocka_unit_test(test_rdma_mixed),
  };
  if (rdma_hosts_parse())
    return cmocka_run_group_tests(rdma_tests, group_setup, group_teardown);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
