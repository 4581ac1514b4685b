/* group_bench.c -- throughput and latency of the whole ordered, stable
 * multicast (libsmr: smr/include/smr/smr.h), kind tcp or rdma, one process
 * per member.  net_bench.c measures the transport alone; this measures
 * what a service sees: a request submitted, ordered by the primary,
 * received by every member, stable, applied everywhere, and its reply.
 *
 *   smr_group_bench --id n1 --members n1=IP:PORT,n2=IP:PORT,n3=IP:PORT
 *                   --kind tcp|rdma [--relay chain|off]
 *                   (--insecure | --tls DIR) [--send]
 *                   --size BYTES --count N [--pingpong M] [--timeout S]
 *                   [--data DIR] [--heartbeat-ms MS] [--suspect-ms MS]
 *                   [--window W] [--busy-poll-us US] [--verbose]
 *
 * Every member gets the same options but --id; exactly one gets --send
 * (the submitter).  List the submitter first in --members and start it
 * first or with the others: the first view keeps that order, so it is
 * the initial primary (rank 0) and its requests are ordered where they
 * are submitted.  If it is in a view with every member but not at rank 0
 * (it came up late and joined a view the others had formed) it still
 * submits, with a warning on stderr: the primary orders its requests, so
 * the figures then include one more hop.  --kind rdma sets the
 * configuration's rdma (the [transport] kind = rdma of smrd), --relay
 * chain its relay (the primary sends each ordered batch to the next
 * member only, and each member passes it on).  --tls DIR takes
 * DIR/ca.pem, DIR/ID.pem and DIR/ID.key, the files smr/net/smr-mkcerts
 * makes.  The group runs with durability off (no fsync) and no
 * checkpoints during the run; the log still records every request, so
 * each member's data directory grows by about count x size.  --data
 * defaults to a fresh directory made with mkdtemp under /tmp, removed at
 * exit; a directory given must be new or empty too (with durability off,
 * a group whose members all come back with state waits for a running
 * member that is not there: state "recovering").  --heartbeat-ms and
 * --suspect-ms default to smrd's defaults (20 and 200).
 *
 * The service is trivial and deterministic.  Its state: requests applied,
 * their bytes, a chain hash (FNV-1a 64 over the first 16 bytes of each
 * request and its length, chained from one request to the next), and a
 * few counters the checks below need; snapshot and restore copy it (a
 * member that joins late gets it), and the digest is the state (applied,
 * bytes, hash, errors).  Each reply is 8 bytes: the count of requests
 * applied after this one.  The first byte of a request is its kind:
 *
 *   DATA  'D', u64 index, then a pattern from the index to SIZE bytes;
 *   LAST  'L', u64 count, u64 size: the end of the bandwidth phase;
 *   PING  'P', one byte (the ping's number): 2 bytes in all;
 *   BYE   'B', u64 pings: the end of the run.
 *
 * Applying checks them: DATA in index order from 0 with its pattern (every
 * 512th byte and the last; the frames' CRC32C covers the rest), LAST
 * after exactly `count` DATA of `size` bytes, PINGs numbered in order, BYE
 * after `pings` of them; each failed check counts one error in the state
 * (so every member counts the same ones).  Numbers are little-endian.
 *
 * The submitter starts once it holds the state in a view with every
 * configured member (with kind rdma also once smr_status counts an RDMA
 * link to each of them).  Then three phases, each of which (like the wait
 * for the view) must end within --timeout seconds (default 60; else exit
 * 1 with one line on stderr saying what it was waiting for):
 *
 *   bandwidth  N DATA requests of SIZE bytes, then LAST.  As many are
 *              outstanding as smr_submit accepts (it says -EAGAIN when
 *              too many are; more go from on_reply), or with --window W
 *              at most W requests (submitted, not yet replied to).  The
 *              clock runs from the first submit to the reply of LAST.
 *              (libsmr takes 100,000 outstanding requests, so without a
 *              window the whole run is queued at once: the primary orders
 *              it in batches of 1 MiB and the transport queues them all,
 *              up to 64 MiB per member; a member whose acknowledgement
 *              the primary has not seen move for 3 heartbeat intervals
 *              once nothing for it is queued any more is sent everything
 *              it lacks again: order_repairs below);
 *   pingpong   (with --pingpong M) M PINGs one at a time, the next
 *              submitted from the previous one's reply; the latency is
 *              submit to reply: ordered, stable at every member and
 *              applied here (a whole round, not ib_send_lat's half);
 *   bye        BYE; on its reply the submitter prints one line on stdout
 *              and exits 0 (1 if errors > 0):
 *
 *   GROUP_BENCH role=send id=n1 kind=tcp tls=1 relay=off members=3
 *     size=65536 count=500 window=0 secs=0.246 MBps=133.26
 *     MBps_total=266.53 pingpong=200 lat_us_p50=72.7 lat_us_p99=144.9
 *     views=1 suspicions=0 relayed=0 order_repairs=41 rdma_links=0
 *     rdma_bytes_out=0 errors=0
 *
 * (on one line).  MBps is N * SIZE / secs / 1e6, the payload delivered to
 * each member; MBps_total that times (members - 1), what the group moved
 * from the primary's point of view.  The lat_* fields only with
 * --pingpong.  views counts the views installed from the first one with
 * every member (that one included): 1 unless a member was suspected or
 * left (or a view change installed the same members again); suspicions is
 * smr_status's count when BYE was submitted (not at the end: the others
 * leave as soon as they applied BYE).  relayed, order_repairs (ORDER
 * frames sent again to a member that lagged), rdma_links and
 * rdma_bytes_out are this member's smr_status counters at the end
 * (smr_status gives no byte count for kind tcp).  errors: replies that
 * were not the count expected (each request's reply is the count before
 * the run plus its number in the run), plus the errors this member's copy
 * of the service counted.  A request dropped
 * (on_dropped) or the member leaving the group fails the run.
 *
 * Every other member prints, once it has applied BYE,
 *
 *   GROUP_BENCH role=recv id=n2 applied=702 bytes=32768426
 *     digest=HEX views=1 relayed=0 order_repairs=0 errors=0
 *
 * (applied and bytes: the service's counts, over the group's whole
 * history; digest: the service digest after BYE, equal on every member;
 * views as above, counted from this member's first view with every
 * member) and exits 0 (1 if errors > 0) at once: a member applies only
 * what it has acknowledged to the others, so the primary gets what it
 * needs to apply BYE from this member before it applies it here (the
 * process stops in the next loop iteration, once the transport has
 * written what the last one queued).  It exits
 * 1 once --timeout seconds pass without a request applied (from the
 * start: without the first one), or if it leaves or is excluded from the
 * group (smr_role NONE after it was in a view) before it applied BYE.
 * Receivers ignore --size, --count and --pingpong.  So every process
 * stops by itself.
 *
 * Exit status 0 success, 1 failure (one line on stderr saying why), 2 bad
 * usage.  libsmr's warnings and errors go to stderr; --verbose adds its
 * other log lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "bench_util.h"
#include "le.h"
#include "smr/smr.h"

#define GROUP_NAME "smr_group_bench"
#define MAX_MEMBERS 16    /* smr_status reports 16 */
#define ID_MAX 32         /* ids are 1..31 bytes */
#define ADDR_MAX 64
#define HDR_LEN 9         /* kind, u64 */
#define LAST_LEN 17       /* kind, u64 count, u64 size */
#define PING_LEN 2
#define BYE_LEN 9
#define REPLY_LEN 8
#define MAX_SIZE (SMR_MAX_REQUEST - 1) /* libsmr adds a 1-byte envelope */
#define CHECK_STRIDE 512  /* DATA: pattern bytes checked */
#define HASH_PREFIX 16    /* request bytes in the chain hash */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define IMG_MAGIC "SMRGB001"
#define IMG_WORDS 7
#define IMG_LEN (8 + 8 * IMG_WORDS)
#define START_TICK_S 0.01 /* kind rdma: how often the link count is read */
#define DEFAULT_HEARTBEAT_MS 20  /* smrd's defaults (smr/smrd/config.c) */
#define DEFAULT_SUSPECT_MS 200

static const char *usage_text =
    "usage: smr_group_bench --id ID --members ID=HOST:PORT,...\n"
    "                       --kind tcp|rdma [--relay chain|off]\n"
    "                       (--insecure | --tls DIR) [--send]\n"
    "                       [--size BYTES --count N] [--pingpong M]\n"
    "                       [--timeout SECS] [--data DIR]\n"
    "                       [--heartbeat-ms MS] [--suspect-ms MS]\n"
    "                       [--window W] [--busy-poll-us US] [--verbose]\n"
    "  --members    every member, the same list for all; the submitter first\n"
    "  --send       this member submits (one member only; needs --size and\n"
    "               --count): N DATA requests of SIZE bytes (9..1048575),\n"
    "               then M ping-pongs, then BYE\n"
    "  --tls DIR    DIR holds ca.pem, ID.pem and ID.key (smr-mkcerts)\n"
    "  --timeout    seconds each phase may take (a receiver: without a\n"
    "               request applied); default 60\n"
    "  --data DIR   the member's data directory (default: a fresh one in\n"
    "               /tmp, removed at exit)\n"
    "  --window W   at most W requests outstanding in the bandwidth phase\n"
    "               (default 0: as many as smr_submit accepts)\n"
    "  --heartbeat-ms, --suspect-ms  failure detection (default 20, 200)\n"
    "  --busy-poll-us  kind rdma: poll each link this long after its last\n"
    "               work before sleeping (default 0, as smrd)\n";

enum kind { K_DATA = 'D', K_LAST = 'L', K_PING = 'P', K_BYE = 'B' };

enum phase { PH_GROUP, PH_BANDWIDTH, PH_PINGPONG, PH_BYE, PH_END };
static const char *phase_name[] = {"group", "bandwidth", "pingpong", "bye",
                                   "end"};

struct bench;

/* The replicated state.  Every field is derived from the requests alone,
 * in order, so every member holds the same values. */
struct state {
  uint64_t applied, bytes, hash, errors;
  uint64_t data_next;  /* the next DATA index expected */
  uint64_t data_bytes; /* bytes of DATA since the last LAST */
  uint64_t pings;      /* PINGs since the last BYE */
};

struct service {
  struct state s;
  uint8_t img[IMG_LEN]; /* a restore under way */
  size_t img_len;
  struct bench *b;
};

struct member {
  char id[ID_MAX];
  char addr[ADDR_MAX];
};

struct bench {
  struct ev_loop *loop;
  struct smr *g;
  struct service svc;
  /* options */
  const char *id, *self_addr, *tls_dir, *data_opt;
  struct member members[MAX_MEMBERS];
  int n_members;
  int rdma, relay, insecure, sender, verbose;
  uint32_t busy_poll_us; /* --busy-poll-us: [transport] rdma_busy_poll_us */
  size_t size;
  uint64_t count, pingpong, window;
  double timeout;
  uint32_t heartbeat_ms, suspect_ms;
  char data_dir[256];
  int data_tmp; /* data_dir was made here: remove it at exit */
  /* the view, as on_view last told */
  uint64_t epoch;
  uint32_t view_n, rank;
  int needs_state, in_view, full_seen;
  char view_ids[MAX_MEMBERS * ID_MAX];
  uint64_t views; /* from the first view with every member on */
  /* the submitter */
  enum phase phase;
  ev_timer deadline; /* the phase's (submitter); idle (receiver) */
  ev_timer tick;     /* kind rdma: waits for the links before starting */
  ev_prepare finish_w; /* the end: stop in the next prepare phase */
  ev_signal sigint_w, sigterm_w;
  uint8_t *req;      /* request buffer (DATA) */
  uint8_t *pattern;  /* pattern bytes, size + 256 */
  uint64_t req_idx;  /* the DATA index built in req, or UINT64_MAX */
  uint64_t base;     /* the service's count before our first request */
  uint64_t submitted, replied, data_submitted;
  int last_submitted;
  double t_start, t_end;
  double *lat;       /* pingpong: seconds, submit to reply */
  uint64_t pings_done;
  double ping_at;
  uint64_t reply_errors;
  uint64_t suspicions; /* smr_status's, when BYE was submitted */
  /* a receiver */
  double last_apply;
  int bye_applied;
  struct state at_bye;
  uint8_t digest_at_bye[SMR_DIGEST_LEN];
  /* outcome */
  int finished, failed;
  char why[1280];
  char last_log[256];
};

/* Records the first failure and stops the loop; main() reports it. */
static void fail(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(struct bench *b, const char *fmt, ...) {
  if (!b->failed && !b->finished) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof b->why, fmt, ap);
    va_end(ap);
    b->failed = 1;
  }
  ev_break(b->loop, EVBREAK_ALL);
}

/* The run is over: report and stop in the next loop iteration's prepare
 * phase, after the transport's own prepare watcher (this one has the
 * lowest priority) has written what was queued before: our
 * acknowledgements.  libsmr may start that watcher only during the
 * current prepare phase (group.c, on_prepare), so a zero timer, which
 * fires before the next one, could stop the process with a receiver's
 * acknowledgement of BYE still queued; the others then applied BYE only
 * after suspecting it (views=2 in an early run). */
static void finish_soon(struct bench *b) {
  if (ev_is_active(&b->finish_w) || b->finished || b->failed) return;
  ev_prepare_start(b->loop, &b->finish_w);
}

/* ------------------------------------------------------------ service */

/* Byte i of DATA request idx (i >= HDR_LEN).  It depends on idx + i only,
 * so the submitter copies each request's pattern out of one buffer. */
static uint8_t pattern_byte(uint64_t idx, size_t i) {
  return (uint8_t)((idx + i) * 7u);
}

static int pattern_ok(const uint8_t *req, size_t len, uint64_t idx) {
  for (size_t i = HDR_LEN; i < len; i += CHECK_STRIDE)
    if (req[i] != pattern_byte(idx, i)) return 0;
  return len == HDR_LEN || req[len - 1] == pattern_byte(idx, len - 1);
}

static uint64_t fnv_chain(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= FNV_PRIME;
  }
  return h;
}

/* Checks a request against the state and advances the counters the checks
 * use; returns the errors found (0 or 1). */
static uint64_t check_request(struct state *s, const uint8_t *req,
                              size_t len) {
  int bad = 1;
  if (len == 0) return 1;
  switch (req[0]) {
    case K_DATA: {
      if (len < HDR_LEN) break;
      uint64_t idx = smr_le_get64(req + 1);
      bad = idx != s->data_next || !pattern_ok(req, len, idx);
      s->data_next = idx + 1;
      s->data_bytes += len;
      break;
    }
    case K_LAST:
      if (len != LAST_LEN) break;
      bad = s->data_next != smr_le_get64(req + 1) ||
            s->data_bytes != smr_le_get64(req + 1) * smr_le_get64(req + 9);
      s->data_next = 0;
      s->data_bytes = 0;
      break;
    case K_PING:
      if (len != PING_LEN) break;
      bad = req[1] != (uint8_t)s->pings;
      s->pings++;
      break;
    case K_BYE:
      if (len != BYE_LEN) break;
      bad = smr_le_get64(req + 1) != s->pings;
      s->pings = 0;
      break;
  }
  return bad ? 1 : 0;
}

static void state_digest(const struct state *s, uint8_t out[SMR_DIGEST_LEN]) {
  memset(out, 0, SMR_DIGEST_LEN);
  smr_le_put64(out, s->applied);
  smr_le_put64(out + 8, s->bytes);
  smr_le_put64(out + 16, s->hash);
  smr_le_put64(out + 24, s->errors);
}

static void request_applied(struct bench *b, const uint8_t *req, size_t len);

static int svc_apply(void *ctx, uint64_t pos, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  struct service *v = ctx;
  struct state *s = &v->s;
  uint8_t lenb[8], r[REPLY_LEN];
  (void)pos;
  s->errors += check_request(s, req, len);
  s->applied++;
  s->bytes += len;
  smr_le_put64(lenb, len);
  s->hash = fnv_chain(s->hash, req, len < HASH_PREFIX ? len : HASH_PREFIX);
  s->hash = fnv_chain(s->hash, lenb, sizeof lenb);
  request_applied(v->b, req, len);
  smr_le_put64(r, s->applied);
  return smr_buf_append(reply, r, sizeof r);
}

static void state_encode(const struct state *s, uint8_t img[IMG_LEN]) {
  const uint64_t w[IMG_WORDS] = {s->applied,   s->bytes,     s->hash,
                                 s->errors,    s->data_next, s->data_bytes,
                                 s->pings};
  memcpy(img, IMG_MAGIC, 8);
  for (int i = 0; i < IMG_WORDS; i++) smr_le_put64(img + 8 + 8 * i, w[i]);
}

static int svc_snap_open(void *ctx, void **snap) {
  struct service *v = ctx;
  uint8_t *img = malloc(IMG_LEN);
  if (img == NULL) return -ENOMEM;
  state_encode(&v->s, img);
  *snap = img;
  return 0;
}

static long svc_snap_read(void *ctx, void *snap, uint64_t off, uint8_t *buf,
                          size_t len) {
  (void)ctx;
  if (off >= IMG_LEN) return 0;
  size_t n = IMG_LEN - (size_t)off < len ? IMG_LEN - (size_t)off : len;
  memcpy(buf, (const uint8_t *)snap + off, n);
  return (long)n;
}

static void svc_snap_close(void *ctx, void *snap) {
  (void)ctx;
  free(snap);
}

static void state_reset(struct state *s) {
  memset(s, 0, sizeof *s);
  s->hash = FNV_OFFSET;
}

static int svc_restore_begin(void *ctx) {
  struct service *v = ctx;
  v->img_len = 0;
  return 0;
}

static int svc_restore_chunk(void *ctx, uint64_t off, const uint8_t *buf,
                             size_t len) {
  struct service *v = ctx;
  if (off != v->img_len || len > IMG_LEN - v->img_len) {
    state_reset(&v->s);
    return -EINVAL;
  }
  memcpy(v->img + v->img_len, buf, len);
  v->img_len += len;
  return 0;
}

static int svc_restore_end(void *ctx) {
  struct service *v = ctx;
  state_reset(&v->s);
  if (v->img_len != IMG_LEN || memcmp(v->img, IMG_MAGIC, 8) != 0)
    return -EINVAL;
  const uint8_t *p = v->img + 8;
  v->s.applied = smr_le_get64(p);
  v->s.bytes = smr_le_get64(p + 8);
  v->s.hash = smr_le_get64(p + 16);
  v->s.errors = smr_le_get64(p + 24);
  v->s.data_next = smr_le_get64(p + 32);
  v->s.data_bytes = smr_le_get64(p + 40);
  v->s.pings = smr_le_get64(p + 48);
  return 0;
}

static void svc_digest(void *ctx, uint8_t out[SMR_DIGEST_LEN]) {
  state_digest(&((struct service *)ctx)->s, out);
}

static const struct smr_service_ops service_ops = {
    .name = "group_bench",
    .apply = svc_apply,
    .snapshot_open = svc_snap_open,
    .snapshot_read = svc_snap_read,
    .snapshot_close = svc_snap_close,
    .restore_begin = svc_restore_begin,
    .restore_chunk = svc_restore_chunk,
    .restore_end = svc_restore_end,
    .digest = svc_digest,
};

/* ---------------------------------------------------------- submitter */

static void phase_start(struct bench *b, enum phase ph) {
  b->phase = ph;
  ev_timer_stop(b->loop, &b->deadline);
  if (ph == PH_END) return;
  ev_timer_set(&b->deadline, b->timeout, 0.);
  ev_timer_start(b->loop, &b->deadline);
}

/* Submits one request; its cookie is its number in the run (from 1), and
 * its reply must be base + that number.  0, -EAGAIN, or the run failed. */
static int submit(struct bench *b, const uint8_t *req, size_t len,
                  const char *what) {
  if (b->submitted == 0) {
    b->base = b->svc.s.applied;
    b->t_start = bench_now_s();
  }
  int rc = smr_submit(b->g, req, len, (void *)(uintptr_t)(b->submitted + 1));
  if (rc == 0) {
    b->submitted++;
  } else if (rc != -EAGAIN) {
    fail(b, "smr_submit of %s (%zu bytes): %s", what, len, strerror(-rc));
  }
  return rc;
}

/* Bandwidth: DATA requests, then LAST, until smr_submit says -EAGAIN. */
static void feed(struct bench *b) {
  while (!b->failed && b->data_submitted < b->count) {
    uint64_t idx = b->data_submitted;
    if (b->window > 0 && b->submitted - b->replied >= b->window) return;
    if (b->req_idx != idx) {
      b->req[0] = K_DATA;
      smr_le_put64(b->req + 1, idx);
      memcpy(b->req + HDR_LEN, b->pattern + idx % 256 + HDR_LEN,
             b->size - HDR_LEN);
      b->req_idx = idx;
    }
    if (submit(b, b->req, b->size, "a DATA request") != 0) return;
    b->data_submitted++;
  }
  if (!b->failed && !b->last_submitted &&
      (b->window == 0 || b->submitted - b->replied < b->window)) {
    uint8_t last[LAST_LEN] = {K_LAST};
    smr_le_put64(last + 1, b->count);
    smr_le_put64(last + 9, b->size);
    if (submit(b, last, sizeof last, "LAST") == 0) b->last_submitted = 1;
  }
}

static void send_ping(struct bench *b) {
  uint8_t ping[PING_LEN] = {K_PING, (uint8_t)b->pings_done};
  b->ping_at = bench_now_s();
  if (submit(b, ping, sizeof ping, "a PING") == -EAGAIN)
    fail(b, "smr_submit of a PING: -EAGAIN with nothing outstanding");
}

static void send_bye(struct bench *b) {
  uint8_t bye[BYE_LEN] = {K_BYE};
  struct smr_status st;
  /* (Not at the end: the others leave as soon as they applied BYE.) */
  smr_status(b->g, &st);
  b->suspicions = st.suspicions;
  smr_le_put64(bye + 1, b->pingpong);
  phase_start(b, PH_BYE);
  if (submit(b, bye, sizeof bye, "BYE") == -EAGAIN)
    fail(b, "smr_submit of BYE: -EAGAIN with nothing outstanding");
}

/* The submitter starts in a view with every member, holding the state,
 * and with kind rdma once there is an RDMA link to each of the others. */
static void maybe_start(struct bench *b) {
  if (!b->sender || b->phase != PH_GROUP || b->g == NULL || b->failed)
    return;
  if (b->view_n != (uint32_t)b->n_members || b->needs_state) return;
  enum smr_role role = smr_role(b->g, NULL);
  if (role != SMR_ROLE_PRIMARY && role != SMR_ROLE_BACKUP) return;
  if (b->rdma) {
    struct smr_status st;
    smr_status(b->g, &st);
    if (st.rdma_links < (uint64_t)(b->n_members - 1)) return;
  }
  ev_timer_stop(b->loop, &b->tick);
  if (b->rank != 0)
    fprintf(stderr, "smr_group_bench: %s: warning: not the primary (rank "
            "%u in view %" PRIu64 ": %s): the primary orders our requests, "
            "so the figures include one more hop; list the submitter first "
            "in --members and start it first\n", b->id, b->rank, b->epoch,
            b->view_ids);
  phase_start(b, PH_BANDWIDTH);
  feed(b);
}

static void bandwidth_done(struct bench *b) {
  b->t_end = bench_now_s();
  if (b->pingpong == 0) {
    send_bye(b);
    return;
  }
  phase_start(b, PH_PINGPONG);
  send_ping(b);
}

static void on_reply(void *ctx, void *cookie, const uint8_t *reply,
                     size_t len) {
  struct bench *b = ctx;
  uint64_t n = (uint64_t)(uintptr_t)cookie;
  double t = bench_now_s();

  if (b->failed || b->finished) return;
  if (!b->sender || n == 0 || n > b->submitted) {
    fail(b, "a reply to a request we did not submit (cookie %" PRIu64 ")", n);
    return;
  }
  if (n != b->replied + 1 || len != REPLY_LEN ||
      smr_le_get64(reply) != b->base + n) {
    if (b->reply_errors++ < 5)
      fprintf(stderr, "smr_group_bench: %s: request %" PRIu64 ": reply %s%"
              PRIu64 " (%zu bytes) after %" PRIu64 " replies; expected %"
              PRIu64 "\n", b->id, n, len == REPLY_LEN ? "" : "length ",
              len == REPLY_LEN ? smr_le_get64(reply) : (uint64_t)len, len,
              b->replied, b->base + n);
  }
  b->replied++;
  switch (b->phase) {
    case PH_BANDWIDTH:
      if (n == b->count + 1) /* LAST */
        bandwidth_done(b);
      else
        feed(b);
      return;
    case PH_PINGPONG:
      b->lat[b->pings_done++] = t - b->ping_at;
      if (b->pings_done == b->pingpong)
        send_bye(b);
      else
        send_ping(b);
      return;
    case PH_BYE:
      phase_start(b, PH_END);
      finish_soon(b);
      return;
    case PH_GROUP:
    case PH_END:
      break;
  }
  fail(b, "a reply (request %" PRIu64 ") in the %s phase", n,
       phase_name[b->phase]);
}

static void on_dropped(void *ctx, void *cookie) {
  struct bench *b = ctx;
  fail(b, "request %" PRIu64 " was dropped (this member was excluded from "
       "the group before it could tell whether it was applied)",
       (uint64_t)(uintptr_t)cookie);
}

/* ----------------------------------------------------------- receiver */

/* Called from the service's apply (so: nothing of libsmr in here). */
static void request_applied(struct bench *b, const uint8_t *req, size_t len) {
  if (b->g == NULL) return; /* the log replayed at smr_open */
  b->last_apply = ev_now(b->loop);
  if (b->sender || b->bye_applied || len != BYE_LEN || req[0] != K_BYE)
    return;
  b->bye_applied = 1;
  b->at_bye = b->svc.s;
  state_digest(&b->svc.s, b->digest_at_bye);
  finish_soon(b);
}

/* ---------------------------------------------------------- callbacks */

static void on_view(void *ctx, const struct smr_view_info *v) {
  struct bench *b = ctx;
  size_t o = 0;
  b->epoch = v->epoch;
  b->view_n = v->n;
  b->rank = v->rank;
  b->needs_state = v->needs_state;
  b->view_ids[0] = '\0';
  for (uint32_t i = 0; i < v->n && o < sizeof b->view_ids; i++) {
    int k = snprintf(b->view_ids + o, sizeof b->view_ids - o, "%s%s",
                     i ? "," : "", v->ids[i]);
    if (k > 0) o += (size_t)k;
  }
  if (!v->needs_state) b->in_view = 1;
  if (b->full_seen)
    b->views++;
  else if (v->n == (uint32_t)b->n_members)
    b->full_seen = 1, b->views = 1;
  maybe_start(b);
}

/* Left or excluded (a failure unless the run is over), or the state
 * arrived (the submitter may start). */
static void on_standing(void *ctx) {
  struct bench *b = ctx;
  if (b->g == NULL) return; /* during smr_open */
  enum smr_role role = smr_role(b->g, NULL);
  if (role != SMR_ROLE_NONE) {
    b->in_view = 1;
    maybe_start(b);
    return;
  }
  if (!b->in_view || b->finished || b->failed) return;
  if (b->sender ? b->phase != PH_END : !b->bye_applied) {
    struct smr_status st;
    smr_status(b->g, &st);
    fail(b, "this member is out of the group (state %s, view %" PRIu64
         ") before %s", st.state, st.epoch,
         b->sender ? "the reply to BYE" : "BYE was applied");
  }
}

static void on_log(void *ctx, int level, const char *line) {
  struct bench *b = ctx;
  if (level <= SMR_LOG_WARN)
    snprintf(b->last_log, sizeof b->last_log, "%s", line);
  if (level <= SMR_LOG_WARN || b->verbose)
    fprintf(stderr, "smr_group_bench: %s: %s\n", b->id, line);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop, (void)revents;
  maybe_start(w->data);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
  (void)loop, (void)revents;
  fail(w->data, "stopped by signal %d", w->signum);
}

/* What the submitter's phase still waits for, for the timeout's line. */
static void waiting_for(struct bench *b, char *buf, size_t len) {
  struct smr_status st;
  smr_status(b->g, &st);
  switch (b->phase) {
    case PH_GROUP:
      if (b->view_n != (uint32_t)b->n_members || b->needs_state)
        snprintf(buf, len, "a view with all %d members holding the state "
                 "(now: state %s, view %" PRIu64 " of %u: %s%s)",
                 b->n_members, st.state, b->epoch, b->view_n,
                 b->view_n ? b->view_ids : "none",
                 b->needs_state ? ", receiving the state" : "");
      else
        snprintf(buf, len, "an RDMA link to each of the %d others (%" PRIu64
                 " up)", b->n_members - 1, st.rdma_links);
      break;
    case PH_BANDWIDTH:
      snprintf(buf, len, "%" PRIu64 " of %" PRIu64 " replies (%" PRIu64
               " DATA of %" PRIu64 " submitted%s; %" PRIu64 " pending, "
               "applied %" PRIu64 ", stable lag %" PRIu64 ")",
               b->replied, b->count + 1, b->data_submitted, b->count,
               b->last_submitted ? ", and LAST" : "", st.pending, st.applied,
               st.stable_lag);
      break;
    case PH_PINGPONG:
      snprintf(buf, len, "the reply to PING %" PRIu64 " of %" PRIu64
               " (state %s, view %" PRIu64 ")", b->pings_done + 1,
               b->pingpong, st.state, st.epoch);
      break;
    case PH_BYE:
    case PH_END:
      snprintf(buf, len, "the reply to BYE (state %s, view %" PRIu64
               ", %" PRIu64 " pending)", st.state, st.epoch, st.pending);
      break;
  }
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) {
  struct bench *b = w->data;
  char what[1024];
  (void)revents;
  if (b->sender) {
    waiting_for(b, what, sizeof what);
    fail(b, "timed out after %g s in the %s phase, waiting for %s",
         b->timeout, phase_name[b->phase], what);
    return;
  }
  double left = b->last_apply + b->timeout - ev_now(loop);
  if (left > 0.) {
    ev_timer_set(w, left, 0.);
    ev_timer_start(loop, w);
    return;
  }
  struct smr_status st;
  smr_status(b->g, &st);
  fail(b, "timed out: no request applied for %g s, waiting for BYE (%"
       "" PRIu64 " applied; state %s, view %" PRIu64 " of %u: %s)",
       b->timeout, b->svc.s.applied, st.state, st.epoch, b->view_n,
       b->view_n ? b->view_ids : "none");
}

/* -------------------------------------------------------------- report */

static int sender_report(struct bench *b) {
  struct smr_status st;
  double secs = b->t_end - b->t_start;
  double mbps = (double)b->count * (double)b->size / secs / 1e6;
  uint64_t errors = b->reply_errors + b->svc.s.errors;

  smr_status(b->g, &st);
  printf("GROUP_BENCH role=send id=%s kind=%s tls=%d relay=%s members=%d "
         "size=%zu count=%" PRIu64 " window=%" PRIu64 " secs=%.3f MBps=%.2f "
         "MBps_total=%.2f pingpong=%" PRIu64, b->id,
         b->rdma ? "rdma" : "tcp", !b->insecure, b->relay ? "chain" : "off",
         b->n_members, b->size, b->count, b->window, secs, mbps,
         mbps * (b->n_members - 1), b->pingpong);
  if (b->pingpong > 0) {
    double p50, p99;
    bench_percentiles(b->lat, b->pingpong, &p50, &p99);
    printf(" lat_us_p50=%.1f lat_us_p99=%.1f", p50 * 1e6, p99 * 1e6);
  }
  printf(" views=%" PRIu64 " suspicions=%" PRIu64 " relayed=%" PRIu64
         " order_repairs=%" PRIu64 " rdma_links=%" PRIu64 " rdma_bytes_out=%"
         PRIu64 " errors=%" PRIu64 "\n", b->views, b->suspicions, st.relayed,
         st.order_repairs, st.rdma_links, st.rdma_bytes_out, errors);
  if (errors > 0) {
    fail(b, "%" PRIu64 " errors (%" PRIu64 " replies not as expected, %"
         PRIu64 " counted by the service)", errors, b->reply_errors,
         b->svc.s.errors);
    return -1;
  }
  return 0;
}

static int receiver_report(struct bench *b) {
  struct smr_status st;
  char hex[2 * SMR_DIGEST_LEN + 1];

  smr_status(b->g, &st);
  for (int i = 0; i < SMR_DIGEST_LEN; i++)
    snprintf(hex + 2 * i, 3, "%02x", b->digest_at_bye[i]);
  printf("GROUP_BENCH role=recv id=%s applied=%" PRIu64 " bytes=%" PRIu64
         " digest=%s views=%" PRIu64 " relayed=%" PRIu64 " order_repairs=%"
         PRIu64 " errors=%" PRIu64 "\n", b->id, b->at_bye.applied,
         b->at_bye.bytes, hex, b->views, st.relayed, st.order_repairs,
         b->at_bye.errors);
  if (b->at_bye.errors > 0) {
    fail(b, "the service counted %" PRIu64 " errors", b->at_bye.errors);
    return -1;
  }
  return 0;
}

static void on_finish(struct ev_loop *loop, ev_prepare *w, int revents) {
  struct bench *b = w->data;
  (void)revents;
  ev_prepare_stop(loop, w);
  if (b->failed) return;
  int rc = b->sender ? sender_report(b) : receiver_report(b);
  if (rc == 0) b->finished = 1;
  ev_break(b->loop, EVBREAK_ALL);
}

/* ------------------------------------------------------------- options */

/* 1..31 bytes of [A-Za-z0-9._-], starting with a letter or digit. */
static int id_valid(const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= ID_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return 0;
  }
  return 1;
}

/* A numeric IPv4 "a.b.c.d:port" or "[v6]:port". */
static int addr_valid(const char *addr) {
  char host[ADDR_MAX];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || strlen(addr) >= ADDR_MAX) return 0;
  size_t hl = (size_t)(colon - addr);
  memcpy(host, addr, hl);
  host[hl] = '\0';
  char *end;
  errno = 0;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno != 0 ||
      port == 0 || port > 65535)
    return 0;
  uint8_t a[16];
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    return inet_pton(AF_INET6, host + 1, a) == 1;
  }
  return inet_pton(AF_INET, host, a) == 1;
}

/* "n1=10.0.0.1:7700,n2=10.0.0.2:7700" */
static void parse_members(struct bench *b, const char *arg) {
  char *copy = strdup(arg), *save = NULL;
  if (copy == NULL) bench_usage_exit("out of memory");
  for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL)
      bench_usage_exit("--members: '%s' is not ID=HOST:PORT", tok);
    *eq = '\0';
    if (!id_valid(tok)) bench_usage_exit("--members: bad member id '%s'", tok);
    if (!addr_valid(eq + 1))
      bench_usage_exit("--members: bad address '%s' (a numeric HOST:PORT)",
                       eq + 1);
    for (int i = 0; i < b->n_members; i++)
      if (strcmp(b->members[i].id, tok) == 0)
        bench_usage_exit("--members: %s twice", tok);
    if (b->n_members == MAX_MEMBERS)
      bench_usage_exit("--members: more than %d", MAX_MEMBERS);
    struct member *m = &b->members[b->n_members++];
    snprintf(m->id, sizeof m->id, "%s", tok);
    snprintf(m->addr, sizeof m->addr, "%s", eq + 1);
  }
  free(copy);
}

static void parse_args(struct bench *b, int argc, char **argv) {
  static const struct option opts[] = {
      {"id", required_argument, NULL, 'i'},
      {"members", required_argument, NULL, 'm'},
      {"kind", required_argument, NULL, 'k'},
      {"relay", required_argument, NULL, 'r'},
      {"insecure", no_argument, NULL, 'I'},
      {"tls", required_argument, NULL, 'T'},
      {"send", no_argument, NULL, 'S'},
      {"size", required_argument, NULL, 's'},
      {"count", required_argument, NULL, 'c'},
      {"pingpong", required_argument, NULL, 'P'},
      {"timeout", required_argument, NULL, 't'},
      {"data", required_argument, NULL, 'd'},
      {"heartbeat-ms", required_argument, NULL, 'H'},
      {"suspect-ms", required_argument, NULL, 'U'},
      {"window", required_argument, NULL, 'W'},
      {"busy-poll-us", required_argument, NULL, 'B'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *kind = NULL, *relay = NULL, *members = NULL;
  int have_size = 0, have_count = 0, c;
  char *end;

  b->timeout = 60.;
  b->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
  b->suspect_ms = DEFAULT_SUSPECT_MS;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'i': b->id = optarg; break;
      case 'm': members = optarg; break;
      case 'k': kind = optarg; break;
      case 'r': relay = optarg; break;
      case 'I': b->insecure = 1; break;
      case 'T': b->tls_dir = optarg; break;
      case 'S': b->sender = 1; break;
      case 's':
        b->size = bench_parse_u64("size", optarg, HDR_LEN, MAX_SIZE);
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
      case 'd':
        if (optarg[0] == '\0' || strlen(optarg) >= sizeof b->data_dir)
          bench_usage_exit("--data: a directory (under %zu bytes) is required",
                     sizeof b->data_dir);
        b->data_opt = optarg;
        break;
      case 'H':
        b->heartbeat_ms = (uint32_t)bench_parse_u64("heartbeat-ms", optarg, 1,
                                              60000);
        break;
      case 'U':
        b->suspect_ms =
            (uint32_t)bench_parse_u64("suspect-ms", optarg, 2, 600000);
        break;
      case 'W': b->window = bench_parse_u64("window", optarg, 0, 100000); break;
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
  if (b->id == NULL || !id_valid(b->id))
    bench_usage_exit("--id: a member id of [A-Za-z0-9._-] is required");
  if (members == NULL) bench_usage_exit("--members is required");
  parse_members(b, members);
  if (b->n_members < 2) bench_usage_exit("--members: at least two members");
  for (int i = 0; i < b->n_members; i++)
    if (strcmp(b->members[i].id, b->id) == 0) b->self_addr = b->members[i].addr;
  if (b->self_addr == NULL)
    bench_usage_exit("--members does not name %s", b->id);
  if (kind == NULL || (strcmp(kind, "tcp") != 0 && strcmp(kind, "rdma") != 0))
    bench_usage_exit("--kind: tcp or rdma");
  b->rdma = strcmp(kind, "rdma") == 0;
  if (relay != NULL && strcmp(relay, "chain") != 0 && strcmp(relay, "off"))
    bench_usage_exit("--relay: chain or off");
  b->relay = relay != NULL && strcmp(relay, "chain") == 0;
  if (b->insecure == (b->tls_dir != NULL))
    bench_usage_exit("one of --insecure and --tls DIR is required");
  if (b->suspect_ms <= b->heartbeat_ms)
    bench_usage_exit("--suspect-ms %u must be greater than --heartbeat-ms %u",
               b->suspect_ms, b->heartbeat_ms);
  if (b->sender && (!have_size || !have_count))
    bench_usage_exit("--send needs --size and --count");
}

/* ---------------------------------------------------------------- main */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  if (remove(path) < 0)
    fprintf(stderr, "smr_group_bench: cannot remove %s: %s\n", path,
            strerror(errno));
  return 0;
}

int main(int argc, char **argv) {
  static struct bench bench;
  struct bench *b = &bench;
  struct smr_member_cfg mcfg[MAX_MEMBERS];
  char ca[4096], cert[4096], key[4096], err[512];
  int rc = 1;

  bench_init("smr_group_bench", usage_text);
  parse_args(b, argc, argv);
  b->loop = ev_default_loop(0);
  if (b->loop == NULL) {
    fprintf(stderr, "smr_group_bench: no event loop\n");
    return 1;
  }
  state_reset(&b->svc.s);
  b->svc.b = b;
  b->req_idx = UINT64_MAX;
  b->phase = PH_GROUP;
  if (b->sender) {
    b->req = malloc(b->size);
    b->pattern = malloc(b->size + 256);
    b->lat = calloc(b->pingpong > 0 ? b->pingpong : 1, sizeof *b->lat);
    if (b->req == NULL || b->pattern == NULL || b->lat == NULL) {
      fprintf(stderr, "smr_group_bench: out of memory\n");
      return 1;
    }
    for (size_t i = 0; i < b->size + 256; i++)
      b->pattern[i] = pattern_byte(0, i);
  }
  if (b->data_opt != NULL) {
    snprintf(b->data_dir, sizeof b->data_dir, "%s", b->data_opt);
  } else {
    snprintf(b->data_dir, sizeof b->data_dir, "/tmp/smr_group_bench.%s.XXXXXX",
             b->id);
    if (mkdtemp(b->data_dir) == NULL) {
      fprintf(stderr, "smr_group_bench: mkdtemp %s: %s\n", b->data_dir,
              strerror(errno));
      return 1;
    }
    b->data_tmp = 1;
  }

  struct smr_config cfg;
  memset(&cfg, 0, sizeof cfg);
  for (int i = 0; i < b->n_members; i++) {
    mcfg[i].id = b->members[i].id;
    mcfg[i].addr = b->members[i].addr;
  }
  cfg.loop = b->loop;
  cfg.group = GROUP_NAME;
  cfg.self_id = b->id;
  cfg.self_addr = b->self_addr;
  cfg.members = mcfg;
  cfg.n_members = (size_t)b->n_members;
  cfg.data_dir = b->data_dir;
  cfg.durable = 0;
  cfg.checkpoint_every = UINT64_MAX; /* none during the run */
  cfg.heartbeat_ms = b->heartbeat_ms;
  cfg.suspect_ms = b->suspect_ms;
  cfg.insecure = b->insecure;
  if (b->tls_dir != NULL) {
    snprintf(ca, sizeof ca, "%s/ca.pem", b->tls_dir);
    snprintf(cert, sizeof cert, "%s/%s.pem", b->tls_dir, b->id);
    snprintf(key, sizeof key, "%s/%s.key", b->tls_dir, b->id);
    cfg.tls_ca = ca;
    cfg.tls_cert = cert;
    cfg.tls_key = key;
  }
  cfg.rdma = b->rdma;
  cfg.rdma_busy_poll_us = b->busy_poll_us;
  cfg.relay = b->relay;
  cfg.service = &service_ops;
  cfg.service_ctx = &b->svc;
  cfg.ctx = b;
  cfg.on_view = on_view;
  cfg.on_reply = on_reply;
  cfg.on_dropped = on_dropped;
  cfg.on_standing = on_standing;
  cfg.log = on_log;

  ev_timer_init(&b->deadline, on_deadline, b->timeout, 0.);
  b->deadline.data = b;
  ev_timer_init(&b->tick, on_tick, START_TICK_S, START_TICK_S);
  b->tick.data = b;
  ev_prepare_init(&b->finish_w, on_finish);
  ev_set_priority(&b->finish_w, EV_MINPRI);
  b->finish_w.data = b;
  ev_signal_init(&b->sigint_w, on_signal, SIGINT);
  b->sigint_w.data = b;
  ev_signal_init(&b->sigterm_w, on_signal, SIGTERM);
  b->sigterm_w.data = b;
  ev_signal_start(b->loop, &b->sigint_w);
  ev_signal_start(b->loop, &b->sigterm_w);

  err[0] = '\0';
  struct smr *g = NULL;
  int orc = smr_open(&cfg, &g, err, sizeof err);
  if (orc < 0) {
    fprintf(stderr, "smr_group_bench: %s: cannot open the member on %s: %s%s"
            "%s\n", b->id, b->self_addr, strerror(-orc), err[0] ? ": " : "",
            err);
  } else {
    b->g = g;
    b->last_apply = ev_now(b->loop);
    ev_timer_start(b->loop, &b->deadline);
    if (b->sender && b->rdma) ev_timer_start(b->loop, &b->tick);
    maybe_start(b);
    if (!b->failed) ev_run(b->loop, 0);

    if (b->failed) {
      fprintf(stderr, "smr_group_bench: %s: %s", b->id, b->why);
      if (b->last_log[0] != '\0')
        fprintf(stderr, " (last libsmr warning: %s)", b->last_log);
      fprintf(stderr, "\n");
    } else if (!b->finished) {
      fprintf(stderr, "smr_group_bench: %s: the loop stopped early\n", b->id);
    } else {
      rc = 0;
    }
    fflush(stdout);
    ev_timer_stop(b->loop, &b->deadline);
    ev_timer_stop(b->loop, &b->tick);
    ev_prepare_stop(b->loop, &b->finish_w);
    b->g = NULL;
    smr_close(g);
  }
  ev_signal_stop(b->loop, &b->sigint_w);
  ev_signal_stop(b->loop, &b->sigterm_w);
  if (b->data_tmp) nftw(b->data_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(b->req);
  free(b->pattern);
  free(b->lat);
  return rc;
}
