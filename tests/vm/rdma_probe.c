/* rdma_probe.c -- exercises one RDMA link (smr/net/rdma_link.c) for real,
 * on soft-RoCE in the VM (tests/vm/guest_rxe.sh runs it).
 *
 *   rdma_probe server HOST PORT N     accept one link, receive N records
 *   rdma_probe client HOST PORT N [SRC]  connect (from SRC), send N records
 *
 * Phase 1: the client sends N records of pseudo-random lengths (0 to the
 * largest, many small ones) whose every byte is derived from the record's
 * index; the server checks each one, in order, and answers one record
 * with the count and a checksum of everything it received.  The ring is
 * small (64 KiB) so that it wraps many times and the client has to wait
 * for credit.  Phase 2: 2000 round trips of an 8-byte record (the server
 * echoes), for the latency.  The client prints
 *
 *   RDMA_PROBE records=N bytes=B MBps=X rtt_us_p50=Y rtt_us_p99=Z
 *
 * and both exit 0 only if every check held.  Every wait is bounded (10 s
 * without progress is a failure). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rdma_link.h"

#define RING (64u * 1024)
#define MAXLEN (RING / 2 - 16)
#define PINGS 2000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *err) {
  fprintf(stderr, "rdma_probe: %s: %s\n", what, err);
  exit(1);
}

static uint32_t rnd(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static uint32_t len_of(uint32_t i) {
  uint32_t x = 2463534242u ^ (i * 2654435761u);
  rnd(&x);
  return (rnd(&x) % 4 == 0) ? rnd(&x) % MAXLEN : rnd(&x) % 64;
}

static uint8_t byte_of(uint32_t i, uint32_t j) {
  return (uint8_t)(i * 131u + j * 7u);
}

struct rx {
  uint32_t got;
  uint64_t bytes, sum;
  int bad;
  uint8_t last[64];
  uint32_t last_len;
};

static void on_bulk(void *ctx, const uint8_t *p, uint32_t len) {
  struct rx *r = ctx;
  if (len != len_of(r->got)) r->bad = 1;
  for (uint32_t j = 0; j < len && !r->bad; j++)
    if (p[j] != byte_of(r->got, j)) r->bad = 1;
  for (uint32_t j = 0; j < len; j++) r->sum = r->sum * 31 + p[j];
  r->bytes += len;
  r->got++;
}

static void on_small(void *ctx, const uint8_t *p, uint32_t len) {
  struct rx *r = ctx;
  r->last_len = len < sizeof(r->last) ? len : (uint32_t)sizeof(r->last);
  memcpy(r->last, p, r->last_len);
  r->got++;
}

/* Polls until cond holds (or 10 s without progress). */
#define POLL_UNTIL(k, cb, ctx, cond)                                          \
  do {                                                                        \
    double t_ = now_s();                                                      \
    while (!(cond)) {                                                         \
      int n_ = smr_rdma_link_poll((k), (cb), (ctx));                          \
      if (n_ < 0) die("poll", strerror(-n_));                                 \
      if (n_ > 0) t_ = now_s();                                               \
      if (now_s() - t_ > 10) die("poll", "no progress for 10 s");             \
    }                                                                         \
  } while (0)

static void send_one(struct smr_rdma_link *k, const void *b, uint32_t len,
                     smr_rdma_on_record cb, void *ctx) {
  double t = now_s();
  for (;;) {
    int rc = smr_rdma_link_send(k, b, len);
    if (rc == 0) return;
    if (rc != -EAGAIN) die("send", strerror(-rc));
    int n = smr_rdma_link_poll(k, cb, ctx); /* credit comes in here */
    if (n < 0) die("poll", strerror(-n));
    if (now_s() - t > 10) die("send", "no credit for 10 s");
  }
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: rdma_probe server|client HOST PORT N [SRC]\n");
    return 2;
  }
  uint32_t n = (uint32_t)strtoul(argv[4], NULL, 10);
  struct smr_rdma_link_opts o = {.ring_cap = RING, .max_len = MAXLEN,
                                 .timeout_ms = 10000,
                                 .src = argc == 6 ? argv[5] : NULL};
  char err[256] = "";
  struct smr_rdma_link *k = NULL;
  struct rx r;
  memset(&r, 0, sizeof(r));
  static uint8_t buf[MAXLEN];

  if (strcmp(argv[1], "server") == 0) {
    struct smr_rdma_listener *l;
    if (smr_rdma_listen(argv[2], argv[3], &l, err, sizeof(err)) < 0)
      die("listen", err);
    printf("listening\n");
    fflush(stdout);
    o.timeout_ms = 30000; /* the client may retry its resolution */
    if (smr_rdma_accept(l, &o, &k, err, sizeof(err)) < 0) die("accept", err);
    o.timeout_ms = 10000;
    POLL_UNTIL(k, on_bulk, &r, r.got >= n || r.bad);
    if (r.bad) die("bulk", "a record arrived wrong");
    char msg[64];
    int ml = snprintf(msg, sizeof(msg), "%" PRIu32 " %" PRIu64, r.got, r.sum);
    send_one(k, msg, (uint32_t)ml, on_bulk, &r);
    /* Echo the pings. */
    struct rx e;
    memset(&e, 0, sizeof(e));
    for (uint32_t i = 0; i < PINGS; i++) {
      POLL_UNTIL(k, on_small, &e, e.got > i);
      send_one(k, e.last, e.last_len, on_small, &e);
    }
    /* The client's last poll drains our echo; give it the chance. */
    POLL_UNTIL(k, on_small, &e, e.got >= PINGS);
    printf("server: %" PRIu32 " records, %" PRIu64 " bytes, checked; %d echoes\n",
           r.got, r.bytes, PINGS);
    smr_rdma_link_close(k);
    smr_rdma_listener_close(l);
    return 0;
  }
  if (strcmp(argv[1], "client") != 0) return 2;
  /* Retried for 20 s: the server may still be starting (refused), and on
   * freshly made soft-RoCE devices the first address resolution can time
   * out (its ARP went out before the new links passed traffic; the next
   * one resolves).  A transport reconnects the same way. */
  double t0 = now_s();
  int rc;
  o.timeout_ms = 2000;
  while ((rc = smr_rdma_link_connect(argv[2], argv[3], &o, &k, err,
                                     sizeof(err))) < 0 &&
         (rc == -ECONNREFUSED || rc == -ETIMEDOUT || rc == -EHOSTUNREACH) &&
         now_s() - t0 < 20) {
    fprintf(stderr, "rdma_probe: connect: %s (retrying)\n", err);
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  o.timeout_ms = 10000;
  if (rc < 0) die("connect", err);
  printf("client: link up on %s\n", smr_rdma_link_device(k));
  uint64_t bytes = 0, sum = 0;
  struct rx back;
  memset(&back, 0, sizeof(back));
  double t1 = now_s();
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len = len_of(i);
    for (uint32_t j = 0; j < len; j++) buf[j] = byte_of(i, j);
    for (uint32_t j = 0; j < len; j++) sum = sum * 31 + buf[j];
    send_one(k, buf, len, on_small, &back);
    bytes += len;
  }
  POLL_UNTIL(k, on_small, &back, back.got >= 1);
  double t2 = now_s();
  char want[64];
  int wl = snprintf(want, sizeof(want), "%" PRIu32 " %" PRIu64, n, sum);
  if (back.last_len != (uint32_t)wl || memcmp(back.last, want, (size_t)wl) != 0)
    die("bulk", "the server's count or checksum differs");
  static double rtt[PINGS];
  for (uint32_t i = 0; i < PINGS; i++) {
    uint8_t ping[8];
    memcpy(ping, &i, sizeof(i));
    memset(ping + 4, 0xa5, 4);
    uint32_t before = back.got;
    double s = now_s();
    send_one(k, ping, sizeof(ping), on_small, &back);
    POLL_UNTIL(k, on_small, &back, back.got > before);
    rtt[i] = (now_s() - s) * 1e6;
    if (back.last_len != 8 || memcmp(back.last, ping, 8) != 0)
      die("ping", "the echo differs");
  }
  qsort(rtt, PINGS, sizeof(rtt[0]), cmp_d);
  printf("RDMA_PROBE records=%" PRIu32 " bytes=%" PRIu64
         " MBps=%.1f rtt_us_p50=%.1f rtt_us_p99=%.1f\n",
         n, bytes, (double)bytes / (t2 - t1) / 1e6, rtt[PINGS / 2],
         rtt[PINGS * 99 / 100]);
  smr_rdma_link_close(k);
  return 0;
}
