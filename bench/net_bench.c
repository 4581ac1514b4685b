/* net_bench.c -- throughput and latency of the member transport
 * (smr/net/net.h), kind tcp or rdma, one process per member.
 *
 *   smr_net_bench --id n1 --listen 10.0.0.1:7100 --kind tcp|rdma
 *                 (--insecure | --tls DIR) --role send
 *                 --peers n2=10.0.0.2:7100,n3=10.0.0.3:7100
 *                 --size BYTES --count N [--pingpong M]
 *   smr_net_bench --id n2 --listen 10.0.0.2:7100 --kind tcp|rdma
 *                 (--insecure | --tls DIR) --role recv
 *
 * Frames are real wire frames (smr/core/wire.h), as the core sends them:
 * SUBMIT frames of one entry whose sender is this member.  The entry's
 * sender_seq is the frame's sequence number and the first payload byte
 * says what the frame is (enum kind); data frames are filled with a
 * pattern derived from the sequence number.
 *
 * The sender works in three phases, each of which must end within
 * --timeout seconds (else exit 1 saying what it was waiting for):
 *
 *   setup      a HELLO to every peer, answered by each (so connecting, the
 *              TLS handshake and with kind rdma the link setup are not
 *              timed); with kind rdma also until smr_net_stats() counts
 *              one RDMA link per peer;
 *   bandwidth  N data frames of SIZE payload bytes to every peer, as a
 *              multicast would: every queue is kept fed until the
 *              transport says -EAGAIN (the queue is bounded by --queue,
 *              net.h's max_queue_bytes), and fed again on on_writable.  The
 *              frames are made in sequence order and each is encoded once
 *              for all the peers that need it next.  The last frame is
 *              marked LAST; each receiver answers it with DONE (frames,
 *              bytes and order errors it counted).  The clock runs from the
 *              first send to the last DONE;
 *   pingpong   M round trips of a 2-byte-payload PING with the first peer,
 *              one at a time; latency is half the round trip (as
 *              ib_send_lat reports), p50 and p99.
 *
 * then prints one line on stdout and exits 0 (1 if any receiver counted
 * errors or a DONE disagrees with what was sent):
 *
 *   NET_BENCH kind=tcp tls=0 peers=2 size=65536 count=500 secs=0.41
 *     MBps_per_peer=79.9 MBps_total=159.8 pingpong=200 lat_us_p50=41.2
 *     lat_us_p99=80.3 errors=0 rdma_links=0 rdma_bytes_out=0
 *
 * (on one line; MBps_per_peer is N * SIZE / secs / 1e6, the payload
 * delivered to each receiver like perftest's per-connection figure, and
 * MBps_total that times the number of peers; the lat_* fields only with
 * --pingpong).  A connection lost after setup is a failure.
 *
 * A receiver counts frames and payload bytes per sender, checks the order
 * of data frames (and a few pattern bytes of each; the frame's CRC32C
 * covers the rest), answers HELLO and PING at once, and DONE after LAST.
 * It exits 0 with one line (NET_BENCH_RECV ...) on stdout when every
 * sender it heard from has finished and gone (its connection lost, as when
 * the sender exits), 1 if a sender's connection is lost before its LAST
 * frame, and after --timeout seconds without a frame: 0 if every sender
 * had finished, else 1.  So every process stops by itself.
 *
 * Exit status 0 success, 1 failure (one line on stderr saying why), 2 bad
 * usage.  --verbose prints the transport's log lines on stderr. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ev.h>

#include "bench_util.h"
#include "le.h"
#include "net.h"
#include "wire.h"

#define MAX_PEERS 64
#define SETUP_TICK_S 0.01 /* setup: how often rdma_links is looked at */
#define GROUP_NAME "smr_net_bench"
#define DONE_LEN 25       /* kind, u64 frames, u64 bytes, u64 errors */
#define PING_LEN 2
#define MAX_SIZE (SMR_FRAME_MAX - 4 - SMR_WIRE_SUBMIT_ENTRY_OVERHEAD)

static const char *usage_text =
    "usage: smr_net_bench --id ID --listen HOST:PORT --kind tcp|rdma\n"
    "                     (--insecure | --tls DIR) --role send|recv\n"
    "                     [--peers ID=HOST:PORT,...] [--size BYTES]\n"
    "                     [--count N] [--pingpong M] [--timeout SECS]\n"
    "                     [--queue BYTES] [--conn-timeout MS]\n"
    "                     [--busy-poll-us US] [--verbose]\n"
    "  --tls DIR      DIR holds ca.pem, ID.pem and ID.key (smr-mkcerts)\n"
    "  --role send    needs --peers, --size and --count: N frames of SIZE\n"
    "                 payload bytes to every peer, then M ping-pongs with\n"
    "                 the first peer\n"
    "  --role recv    counts, checks and answers until the sender is gone\n"
    "  --timeout      seconds each phase may take (receiver: without a\n"
    "                 frame); default 120\n"
    "  --queue        bytes queued per peer before -EAGAIN (default 4 MiB)\n"
    "  --conn-timeout the transport's timeout_ms (default 5000)\n"
    "  --busy-poll-us kind rdma: poll each link this long after its last\n"
    "                 work before sleeping (default 0, as smrd)\n";

enum kind {
  K_DATA = 'D',
  K_LAST = 'L',   /* the last data frame: answer DONE */
  K_HELLO = 'H',  /* answered with HELLO_ACK */
  K_HELLO_ACK = 'h',
  K_PING = 'P',   /* answered with PONG */
  K_PONG = 'p',
  K_DONE = 'F'
};

enum phase { PH_SETUP, PH_BANDWIDTH, PH_PINGPONG, PH_END };
static const char *phase_name[] = {"setup", "bandwidth", "pingpong", "end"};

struct peer {
  char id[SMR_ID_MAX];
  char addr[SMR_ADDR_MAX];
  /* sender */
  int hello_acked, blocked, done;
  uint64_t sent; /* data frames accepted by smr_net_send */
  /* both: what the receiver reported (sender) or counted (receiver) */
  uint64_t frames, bytes, errors;
  /* receiver */
  uint64_t next, pings;
  int finished, lost;
};

struct bench {
  struct ev_loop *loop;
  struct smr_net *net;
  /* options */
  const char *id, *listen, *tls_dir;
  int rdma, insecure, sender, verbose;
  uint32_t busy_poll_us; /* --busy-poll-us: rdma_busy_poll_us */
  size_t size, queue;
  uint64_t count, pingpong;
  double timeout;
  uint32_t conn_timeout_ms;
  /* peers: given (sender) or heard from (receiver) */
  struct peer peers[MAX_PEERS];
  int npeers;
  /* the sender */
  enum phase phase;
  ev_timer deadline; /* the phase's (sender), idle (receiver) */
  ev_timer tick;     /* setup: polls the RDMA link count */
  uint8_t *frame;    /* encode buffer */
  size_t frame_cap, frame_len;
  uint8_t *payload;  /* data payload, refilled per sequence number */
  uint64_t enc_seq;  /* the data frame in frame[], or UINT64_MAX */
  double t_start, t_end;
  double *rtt;       /* pingpong: seconds per round trip */
  uint64_t pings_done;
  double ping_sent_at;
  int ndone;
  /* the receiver */
  double last_frame_at;
  /* outcome */
  int finished, failed;
  char why[512];
  char last_log[256];
};

/* Records the first failure and stops the loop; main() reports it. */
static void fail(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(struct bench *b, const char *fmt, ...) {
  if (!b->failed) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    b->failed = 1;
  }
  ev_break(b->loop, EVBREAK_ALL);
}

static void finish(struct bench *b) {
  b->finished = 1;
  ev_break(b->loop, EVBREAK_ALL);
}

static struct peer *peer_find(struct bench *b, const char *id) {
  for (int i = 0; i < b->npeers; i++)
    if (strcmp(b->peers[i].id, id) == 0) return &b->peers[i];
  return NULL;
}

/* ------------------------------------------------------------- frames */

static uint8_t pattern_byte(uint64_t seq, size_t i) {
  return (uint8_t)(i * 7u + seq);
}

/* Encodes a SUBMIT of one entry (seq, payload) from this member into
 * b->frame; returns its length (0 only on a bug: the buffer is sized for
 * the largest frame this program makes). */
static size_t encode(struct bench *b, uint64_t seq, const uint8_t *payload,
                     size_t len) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry e;

  memset(&h, 0, sizeof h);
  memset(&m, 0, sizeof m);
  memset(&e, 0, sizeof e);
  snprintf(h.from, sizeof h.from, "%s", b->id);
  h.type = SMR_MSG_SUBMIT;
  h.group = smr_wire_group_hash(GROUP_NAME);
  h.epoch = 1;
  h.incarnation = 1;
  e.sender_seq = seq;
  e.len = (uint32_t)len;
  e.data = payload;
  m.u.submit.entries = &e;
  m.u.submit.count = 1;
  b->frame_len = smr_wire_encode(b->frame, b->frame_cap, &h, &m);
  return b->frame_len;
}

/* A small frame (anything but data) to one peer. */
static int send_small(struct bench *b, struct peer *p, uint64_t seq,
                      const uint8_t *payload, size_t len) {
  b->enc_seq = UINT64_MAX;
  if (encode(b, seq, payload, len) == 0) return -EINVAL;
  return smr_net_send(b->net, p->id, p->addr[0] ? p->addr : NULL, b->frame,
                      b->frame_len);
}

/* The one entry of a SUBMIT frame: 0, or -1 if the frame is not one. */
static int decode(const uint8_t *frame, size_t len, struct smr_wire_entry *e) {
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  if (smr_wire_decode(frame, len, &h, &m) < 0) return -1;
  if (h.type != SMR_MSG_SUBMIT || m.u.submit.it.count != 1) return -1;
  if (!smr_wire_entries_next(&m.u.submit.it, e) || e->len < 1) return -1;
  return 0;
}

/* ------------------------------------------------------------- sender */

static void phase_start(struct bench *b, enum phase ph) {
  b->phase = ph;
  ev_timer_stop(b->loop, &b->deadline);
  if (ph == PH_END) return;
  ev_timer_set(&b->deadline, b->timeout, 0.);
  ev_timer_start(b->loop, &b->deadline);
}

/* Queues data frames until every peer has all N or says -EAGAIN.  Frames
 * go out in sequence order: the lowest sequence number any unblocked peer
 * needs is encoded once and sent to all unblocked peers that need it. */
static void feed(struct bench *b) {
  for (;;) {
    uint64_t s = UINT64_MAX;
    for (int i = 0; i < b->npeers; i++) {
      struct peer *p = &b->peers[i];
      if (!p->blocked && p->sent < b->count && p->sent < s) s = p->sent;
    }
    if (s == UINT64_MAX) return;
    if (b->enc_seq != s) {
      uint8_t *d = b->payload;
      d[0] = s + 1 == b->count ? K_LAST : K_DATA;
      for (size_t i = 1; i < b->size; i++) d[i] = pattern_byte(s, i);
      if (encode(b, s, d, b->size) == 0) {
        fail(b, "cannot encode a frame of %zu bytes", b->size);
        return;
      }
      b->enc_seq = s;
    }
    for (int i = 0; i < b->npeers; i++) {
      struct peer *p = &b->peers[i];
      if (p->blocked || p->sent != s) continue;
      int rc = smr_net_send(b->net, p->id, p->addr, b->frame, b->frame_len);
      if (rc == 0) {
        p->sent++;
      } else if (rc == -EAGAIN) {
        p->blocked = 1;
      } else {
        fail(b, "send to %s: %s", p->id, strerror(-rc));
        return;
      }
    }
  }
}

static void send_ping(struct bench *b) {
  uint8_t d[PING_LEN] = {K_PING, (uint8_t)b->pings_done};
  b->ping_sent_at = bench_now_s();
  int rc = send_small(b, &b->peers[0], b->pings_done, d, sizeof d);
  if (rc < 0) fail(b, "ping to %s: %s", b->peers[0].id, strerror(-rc));
}

static void bandwidth_done(struct bench *b) {
  b->t_end = bench_now_s();
  if (b->pingpong == 0) {
    phase_start(b, PH_END);
    finish(b);
    return;
  }
  phase_start(b, PH_PINGPONG);
  send_ping(b);
}

/* Setup ends when every peer answered its HELLO and, with kind rdma,
 * every peer's connection runs on an RDMA link. */
static void setup_check(struct bench *b) {
  if (b->phase != PH_SETUP) return;
  for (int i = 0; i < b->npeers; i++)
    if (!b->peers[i].hello_acked) return;
  if (b->rdma) {
    struct smr_net_stats st;
    smr_net_stats(b->net, &st);
    if (st.rdma_links < (uint64_t)b->npeers) return;
  }
  ev_timer_stop(b->loop, &b->tick);
  phase_start(b, PH_BANDWIDTH);
  b->t_start = bench_now_s();
  feed(b);
}

static void send_hello(struct bench *b, struct peer *p) {
  uint8_t d[1] = {K_HELLO};
  int rc = send_small(b, p, 0, d, sizeof d);
  if (rc < 0) fail(b, "hello to %s: %s", p->id, strerror(-rc));
}

static void sender_frame(struct bench *b, struct peer *p,
                         const struct smr_wire_entry *e) {
  switch (e->data[0]) {
    case K_HELLO_ACK:
      p->hello_acked = 1;
      setup_check(b);
      return;
    case K_DONE:
      if (b->phase != PH_BANDWIDTH || p->done || e->len != DONE_LEN) break;
      p->done = 1;
      p->frames = smr_le_get64(e->data + 1);
      p->bytes = smr_le_get64(e->data + 9);
      p->errors = smr_le_get64(e->data + 17);
      if (p->frames != b->count || p->bytes != b->count * b->size) {
        fprintf(stderr, "smr_net_bench: %s received %" PRIu64 " frames, %"
                PRIu64 " bytes; sent %" PRIu64 ", %" PRIu64 "\n", p->id,
                p->frames, p->bytes, b->count, b->count * b->size);
        p->errors++;
      }
      if (++b->ndone == b->npeers) bandwidth_done(b);
      return;
    case K_PONG:
      if (b->phase != PH_PINGPONG || p != &b->peers[0] ||
          e->sender_seq != b->pings_done || e->len != PING_LEN)
        break;
      b->rtt[b->pings_done++] = bench_now_s() - b->ping_sent_at;
      if (b->pings_done == b->pingpong) {
        phase_start(b, PH_END);
        finish(b);
      } else {
        send_ping(b);
      }
      return;
  }
  fail(b, "unexpected frame '%c' (seq %" PRIu64 ", %u bytes) from %s in "
       "the %s phase", e->data[0], e->sender_seq, e->len, p->id,
       phase_name[b->phase]);
}

/* ----------------------------------------------------------- receiver */

static void reply(struct bench *b, struct peer *p, uint64_t seq,
                  const uint8_t *d, size_t len) {
  int rc = send_small(b, p, seq, d, len);
  if (rc < 0) {
    p->errors++;
    fprintf(stderr, "smr_net_bench: %s: answering %s: %s\n", b->id, p->id,
            strerror(-rc));
  }
}

static void receiver_frame(struct bench *b, struct peer *p,
                           const struct smr_wire_entry *e) {
  uint8_t d[DONE_LEN];
  switch (e->data[0]) {
    case K_DATA:
    case K_LAST:
      if (e->sender_seq != p->next) p->errors++;
      p->next = e->sender_seq + 1;
      p->frames++;
      p->bytes += e->len;
      /* A few pattern bytes (the CRC32C checked them all in transit). */
      if (e->len > 1 &&
          (e->data[1] != pattern_byte(e->sender_seq, 1) ||
           e->data[e->len / 2] != pattern_byte(e->sender_seq, e->len / 2) ||
           e->data[e->len - 1] != pattern_byte(e->sender_seq, e->len - 1)))
        p->errors++;
      if (e->data[0] == K_LAST) {
        p->finished = 1;
        d[0] = K_DONE;
        smr_le_put64(d + 1, p->frames);
        smr_le_put64(d + 9, p->bytes);
        smr_le_put64(d + 17, p->errors);
        reply(b, p, e->sender_seq, d, DONE_LEN);
      }
      return;
    case K_HELLO:
      d[0] = K_HELLO_ACK;
      reply(b, p, e->sender_seq, d, 1);
      return;
    case K_PING:
      p->pings++;
      d[0] = K_PONG;
      d[1] = e->len > 1 ? e->data[1] : 0;
      reply(b, p, e->sender_seq, d, PING_LEN);
      return;
  }
  p->errors++;
}

static void receiver_report(struct bench *b) {
  uint64_t frames = 0, bytes = 0, errors = 0, pings = 0;
  for (int i = 0; i < b->npeers; i++) {
    frames += b->peers[i].frames;
    bytes += b->peers[i].bytes;
    errors += b->peers[i].errors;
    pings += b->peers[i].pings;
  }
  printf("NET_BENCH_RECV id=%s kind=%s senders=%d frames=%" PRIu64
         " bytes=%" PRIu64 " errors=%" PRIu64 " pings=%" PRIu64 "\n",
         b->id, b->rdma ? "rdma" : "tcp", b->npeers, frames, bytes, errors,
         pings);
  if (errors > 0) fail(b, "%" PRIu64 " errors in what was received", errors);
}

/* ---------------------------------------------------------- callbacks */

static void on_frame(void *ctx, const char *from, const uint8_t *frame,
                     size_t len) {
  struct bench *b = ctx;
  struct smr_wire_entry e;
  struct peer *p = peer_find(b, from);

  if (b->finished || b->failed) return;
  if (!b->sender) {
    b->last_frame_at = ev_now(b->loop);
    if (p == NULL) {
      if (b->npeers == MAX_PEERS) {
        fail(b, "more than %d senders", MAX_PEERS);
        return;
      }
      p = &b->peers[b->npeers++];
      snprintf(p->id, sizeof p->id, "%s", from);
    }
    if (decode(frame, len, &e) < 0)
      p->errors++;
    else
      receiver_frame(b, p, &e);
    return;
  }
  if (p == NULL) {
    fail(b, "a frame from %s, which is not a peer", from);
    return;
  }
  if (decode(frame, len, &e) < 0) {
    fail(b, "a frame from %s that is no SUBMIT of one entry", from);
    return;
  }
  sender_frame(b, p, &e);
}

static void on_peer_lost(void *ctx, const char *id) {
  struct bench *b = ctx;
  struct peer *p = peer_find(b, id);

  if (b->finished || b->failed || p == NULL) return;
  if (!b->sender) {
    if (!p->finished) {
      fail(b, "the connection to %s was lost before its last frame (%" PRIu64
           " frames received)", id, p->frames);
      return;
    }
    p->lost = 1;
    for (int i = 0; i < b->npeers; i++)
      if (!b->peers[i].lost) return;
    receiver_report(b);
    finish(b);
    return;
  }
  switch (b->phase) {
    case PH_SETUP:
      /* Frames written to it may be lost: ask again, which also makes
       * the transport connect again. */
      if (!p->hello_acked) send_hello(b, p);
      return;
    case PH_BANDWIDTH:
      if (p->done) return;
      break;
    case PH_PINGPONG:
      if (p != &b->peers[0]) return;
      break;
    case PH_END:
      return;
  }
  fail(b, "the connection to %s was lost in the %s phase", id,
       phase_name[b->phase]);
}

static void on_writable(void *ctx) {
  struct bench *b = ctx;
  if (b->finished || b->failed || b->phase != PH_BANDWIDTH) return;
  for (int i = 0; i < b->npeers; i++) b->peers[i].blocked = 0;
  feed(b);
}

static void on_log(void *ctx, const char *line) {
  struct bench *b = ctx;
  snprintf(b->last_log, sizeof b->last_log, "%s", line);
  if (b->verbose) fprintf(stderr, "smr_net_bench: %s: %s\n", b->id, line);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop, (void)revents;
  setup_check(w->data);
}

/* What a sender's phase still waits for, for the timeout's message. */
static void waiting_for(struct bench *b, char *buf, size_t len) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < b->npeers && o < len; i++) {
    struct peer *p = &b->peers[i];
    int n = 0;
    if (b->phase == PH_SETUP && !p->hello_acked)
      n = snprintf(buf + o, len - o, "%s%s did not answer the hello",
                   o ? ", " : "", p->id);
    else if (b->phase == PH_BANDWIDTH && !p->done)
      n = snprintf(buf + o, len - o, "%s%s sent no DONE (%" PRIu64 " of %"
                   PRIu64 " frames queued, %zu bytes unwritten)",
                   o ? ", " : "", p->id, p->sent, b->count,
                   smr_net_queued(b->net, p->id));
    if (n > 0) o += (size_t)n;
  }
  if (b->phase == PH_SETUP && o == 0 && b->rdma) {
    struct smr_net_stats st;
    smr_net_stats(b->net, &st);
    snprintf(buf, len, "%" PRIu64 " of %d RDMA links up", st.rdma_links,
             b->npeers);
  } else if (b->phase == PH_PINGPONG) {
    snprintf(buf, len, "%" PRIu64 " of %" PRIu64 " round trips with %s done",
             b->pings_done, b->pingpong, b->peers[0].id);
  }
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
  struct bench *b = w->data;
  char what[400];
  (void)revents;
  if (b->sender) {
    waiting_for(b, what, sizeof what);
    fail(b, "timed out after %g s in the %s phase: %s", b->timeout,
         phase_name[b->phase], what);
    return;
  }
  /* The receiver: idle for --timeout seconds? */
  double left = b->last_frame_at + b->timeout - ev_now(loop);
  if (left > 0.) {
    ev_timer_set(w, left, 0.);
    ev_timer_start(loop, w);
    return;
  }
  if (b->npeers == 0) {
    fail(b, "timed out: no sender in %g s", b->timeout);
    return;
  }
  for (int i = 0; i < b->npeers; i++)
    if (!b->peers[i].finished) {
      fail(b, "timed out: nothing from %s for %g s (%" PRIu64 " frames "
           "received, no last frame)", b->peers[i].id, b->timeout,
           b->peers[i].frames);
      return;
    }
  fprintf(stderr, "smr_net_bench: %s: the senders stayed connected %g s "
          "after their test; stopping\n", b->id, b->timeout);
  receiver_report(b);
  finish(b);
}

/* -------------------------------------------------------------- report */

static int sender_report(struct bench *b) {
  struct smr_net_stats st;
  uint64_t errors = 0;
  double secs = b->t_end - b->t_start;
  double per_peer = (double)b->count * (double)b->size / secs / 1e6;

  smr_net_stats(b->net, &st);
  for (int i = 0; i < b->npeers; i++) errors += b->peers[i].errors;
  printf("NET_BENCH kind=%s tls=%d peers=%d size=%zu count=%" PRIu64
         " secs=%.3f MBps_per_peer=%.2f MBps_total=%.2f pingpong=%" PRIu64,
         b->rdma ? "rdma" : "tcp", !b->insecure, b->npeers, b->size, b->count,
         secs, per_peer, per_peer * b->npeers, b->pingpong);
  if (b->pingpong > 0) {
    double p50, p99;
    bench_percentiles(b->rtt, b->pingpong, &p50, &p99);
    printf(" lat_us_p50=%.1f lat_us_p99=%.1f", p50 / 2. * 1e6,
           p99 / 2. * 1e6);
  }
  printf(" errors=%" PRIu64 " rdma_links=%" PRIu64 " rdma_bytes_out=%" PRIu64
         "\n", errors, st.rdma_links, st.rdma_bytes_out);
  if (errors > 0) {
    fail(b, "the receivers counted %" PRIu64 " errors", errors);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------- options */

/* "n2=10.0.0.2:7100,n3=10.0.0.3:7100" */
static void parse_peers(struct bench *b, const char *arg) {
  char *copy = strdup(arg), *save = NULL;
  if (copy == NULL) bench_usage_exit("out of memory");
  for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL) bench_usage_exit("--peers: '%s' is not ID=HOST:PORT", tok);
    *eq = '\0';
    if (!smr_net_id_valid(tok))
      bench_usage_exit("--peers: bad member id '%s'", tok);
    if (!smr_net_addr_valid(eq + 1))
      bench_usage_exit("--peers: bad address '%s' (a numeric HOST:PORT)",
                       eq + 1);
    if (peer_find(b, tok) != NULL) bench_usage_exit("--peers: %s twice", tok);
    if (b->npeers == MAX_PEERS)
      bench_usage_exit("--peers: more than %d", MAX_PEERS);
    struct peer *p = &b->peers[b->npeers++];
    snprintf(p->id, sizeof p->id, "%s", tok);
    snprintf(p->addr, sizeof p->addr, "%s", eq + 1);
  }
  free(copy);
}

static void parse_args(struct bench *b, int argc, char **argv) {
  static const struct option opts[] = {
      {"id", required_argument, NULL, 'i'},
      {"listen", required_argument, NULL, 'l'},
      {"kind", required_argument, NULL, 'k'},
      {"insecure", no_argument, NULL, 'I'},
      {"tls", required_argument, NULL, 'T'},
      {"role", required_argument, NULL, 'r'},
      {"peers", required_argument, NULL, 'p'},
      {"size", required_argument, NULL, 's'},
      {"count", required_argument, NULL, 'c'},
      {"pingpong", required_argument, NULL, 'P'},
      {"timeout", required_argument, NULL, 't'},
      {"queue", required_argument, NULL, 'q'},
      {"conn-timeout", required_argument, NULL, 'C'},
      {"busy-poll-us", required_argument, NULL, 'B'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *kind = NULL, *role = NULL, *peers = NULL;
  int have_size = 0, have_count = 0, c;
  char *end;

  b->timeout = 120.;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'i': b->id = optarg; break;
      case 'l': b->listen = optarg; break;
      case 'k': kind = optarg; break;
      case 'I': b->insecure = 1; break;
      case 'T': b->tls_dir = optarg; break;
      case 'r': role = optarg; break;
      case 'p': peers = optarg; break;
      case 's':
        b->size = bench_parse_u64("size", optarg, 1, MAX_SIZE);
        have_size = 1;
        break;
      case 'c':
        b->count = bench_parse_u64("count", optarg, 1, UINT32_MAX);
        have_count = 1;
        break;
      case 'P':
        b->pingpong = bench_parse_u64("pingpong", optarg, 0, 10000000);
        break;
      case 't':
        b->timeout = strtod(optarg, &end);
        if (*end != '\0' || !(b->timeout > 0.) || b->timeout > 86400.)
          bench_usage_exit("--timeout %s: expected seconds (0 to 86400)",
                           optarg);
        break;
      case 'q':
        b->queue = bench_parse_u64("queue", optarg, 1, SIZE_MAX / 2);
        break;
      case 'C':
        b->conn_timeout_ms =
            (uint32_t)bench_parse_u64("conn-timeout", optarg, 1, 3600000);
        break;
      case 'B':
        b->busy_poll_us =
            (uint32_t)bench_parse_u64("busy-poll-us", optarg, 0, 1000000);
        break;
      case 'v': b->verbose = 1; break;
      case 'h': fputs(usage_text, stdout); exit(0);
      default: bench_usage_exit(NULL);
    }
  }
  if (optind != argc)
    bench_usage_exit("unexpected argument '%s'", argv[optind]);
  if (b->id == NULL || !smr_net_id_valid(b->id))
    bench_usage_exit("--id: a member id of [A-Za-z0-9._-] is required");
  if (b->listen == NULL || !smr_net_addr_valid(b->listen))
    bench_usage_exit("--listen: a numeric HOST:PORT is required");
  if (kind == NULL || (strcmp(kind, "tcp") != 0 && strcmp(kind, "rdma") != 0))
    bench_usage_exit("--kind: tcp or rdma");
  b->rdma = strcmp(kind, "rdma") == 0;
  if (b->insecure == (b->tls_dir != NULL))
    bench_usage_exit("one of --insecure and --tls DIR is required");
  if (role == NULL || (strcmp(role, "send") != 0 && strcmp(role, "recv") != 0))
    bench_usage_exit("--role: send or recv");
  b->sender = strcmp(role, "send") == 0;
  if (b->sender) {
    if (peers == NULL || !have_size || !have_count)
      bench_usage_exit("--role send needs --peers, --size and --count");
    parse_peers(b, peers);
    if (b->npeers == 0) bench_usage_exit("--peers: none given");
    if (peer_find(b, b->id) != NULL)
      bench_usage_exit("--peers: names %s", b->id);
  } else if (peers != NULL || have_size || have_count || b->pingpong) {
    bench_usage_exit(
        "--role recv takes no --peers, --size, --count, --pingpong");
  }
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
  static struct bench bench;
  struct bench *b = &bench;
  struct smr_net_config cfg;
  char ca[4096], cert[4096], key[4096], err[256];
  int rc = 1;

  bench_init("smr_net_bench", usage_text);
  parse_args(b, argc, argv);
  b->loop = ev_default_loop(0);
  b->enc_seq = UINT64_MAX;
  b->phase = PH_SETUP;
  /* The encode buffer fits the data frame and every small frame. */
  b->frame_cap = SMR_WIRE_HDR_FIXED + SMR_ID_MAX + 4 +
                 SMR_WIRE_SUBMIT_ENTRY_OVERHEAD +
                 (b->size > DONE_LEN ? b->size : DONE_LEN);
  b->frame = malloc(b->frame_cap);
  b->payload = malloc(b->size > 0 ? b->size : 1);
  b->rtt = calloc(b->pingpong > 0 ? b->pingpong : 1, sizeof *b->rtt);
  if (b->loop == NULL || b->frame == NULL || b->payload == NULL ||
      b->rtt == NULL) {
    fprintf(stderr, "smr_net_bench: out of memory\n");
    return 1;
  }

  memset(&cfg, 0, sizeof cfg);
  cfg.loop = b->loop;
  cfg.self_id = b->id;
  cfg.listen_addr = b->listen;
  cfg.insecure = b->insecure;
  if (b->tls_dir != NULL) {
    snprintf(ca, sizeof ca, "%s/ca.pem", b->tls_dir);
    snprintf(cert, sizeof cert, "%s/%s.pem", b->tls_dir, b->id);
    snprintf(key, sizeof key, "%s/%s.key", b->tls_dir, b->id);
    cfg.tls_ca = ca;
    cfg.tls_cert = cert;
    cfg.tls_key = key;
  }
  cfg.max_queue_bytes = b->queue;
  cfg.timeout_ms = b->conn_timeout_ms;
  cfg.rdma = b->rdma;
  cfg.rdma_busy_poll_us = b->busy_poll_us;
  cfg.ctx = b;
  cfg.on_frame = on_frame;
  cfg.on_peer_lost = on_peer_lost;
  cfg.on_writable = on_writable;
  cfg.log = on_log;
  err[0] = '\0';
  int orc = smr_net_open(&cfg, &b->net, err, sizeof err);
  if (orc < 0) {
    fprintf(stderr, "smr_net_bench: %s: cannot open the %s transport on %s: "
            "%s%s%s\n", b->id, b->rdma ? "rdma" : "tcp", b->listen,
            strerror(-orc), err[0] ? ": " : "", err);
    return 1;
  }

  ev_timer_init(&b->deadline, on_deadline, b->timeout, 0.);
  b->deadline.data = b;
  ev_timer_start(b->loop, &b->deadline);
  if (b->sender) {
    ev_timer_init(&b->tick, on_tick, SETUP_TICK_S, SETUP_TICK_S);
    b->tick.data = b;
    if (b->rdma) ev_timer_start(b->loop, &b->tick);
    for (int i = 0; i < b->npeers && !b->failed; i++)
      send_hello(b, &b->peers[i]);
  } else {
    b->last_frame_at = ev_now(b->loop);
  }
  if (!b->failed) ev_run(b->loop, 0);

  if (b->finished && !b->failed)
    rc = b->sender ? (sender_report(b) == 0 ? 0 : 1) : 0;
  if (b->failed) {
    fprintf(stderr, "smr_net_bench: %s: %s", b->id, b->why);
    if (b->last_log[0] != '\0')
      fprintf(stderr, " (last transport log: %s)", b->last_log);
    fprintf(stderr, "\n");
    rc = 1;
  } else if (!b->finished) {
    fprintf(stderr, "smr_net_bench: %s: the loop stopped early\n", b->id);
    rc = 1;
  }
  fflush(stdout);
  ev_timer_stop(b->loop, &b->deadline);
  ev_timer_stop(b->loop, &b->tick);
  smr_net_close(b->net);
  free(b->frame);
  free(b->payload);
  free(b->rtt);
  return rc;
}
