/* test_runtime.c -- libsmr end to end in one process: three members on one
 * event loop, joined by an in-memory transport that implements
 * smr/net/net.h, each with its own data directory and a toy service.
 *
 * Checks: a group forms; submissions come back as replies in order; a
 * group checkpoint makes every member report the same digest; a member
 * closed and reopened from its data directory recovers and catches up;
 * a member that loses its data directory rejoins by state transfer;
 * a member asked to restart leaves and hands over (on_restart) with its
 * state on disk, and a new process of it catches up; a member whose copy
 * was changed behind the group's back finds its digest in the minority,
 * discards its files and is rebuilt from the group; two restarts asked at
 * once take one member away, and the second is refused at its position on
 * every member. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net.h"
#include "smr/smr.h"

/* ------------------------------------------------------------------------
 * An in-memory transport: frames are queued and delivered from a zero
 * timer, never from inside smr_net_send (no reentrancy).
 * --------------------------------------------------------------------- */

struct qframe {
  char to[32], from[32];
  uint8_t *data;
  size_t len;
};

struct smr_net {
  struct smr_net_config cfg;
  char id[32];
  int alive;
};

#define MAXNET 8
static struct smr_net *nets[MAXNET];
static struct qframe *queue;
static size_t qn, qcap;
static ev_timer pump;
static struct ev_loop *loop;
/* A member cut off from the others: frames to and from it are lost. */
static char isolated[32];

static void pump_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)l;
  (void)w;
  (void)revents;
  size_t n = qn;
  struct qframe *batch = malloc(n * sizeof(*batch));
  memcpy(batch, queue, n * sizeof(*batch));
  qn = 0;
  for (size_t i = 0; i < n; i++) {
    for (int k = 0; k < MAXNET; k++) {
      struct smr_net *t = nets[k];
      if (t != NULL && t->alive && !strcmp(t->id, batch[i].to) &&
          strcmp(batch[i].to, isolated) && strcmp(batch[i].from, isolated))
        t->cfg.on_frame(t->cfg.ctx, batch[i].from, batch[i].data,
                        batch[i].len);
    }
    free(batch[i].data);
  }
  free(batch);
  if (qn > 0) {
    ev_timer_set(&pump, 0., 0.);
    ev_timer_start(loop, &pump);
  }
}

int smr_net_open(const struct smr_net_config *cfg, struct smr_net **out,
                 char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  struct smr_net *n = calloc(1, sizeof(*n));
  n->cfg = *cfg;
  snprintf(n->id, sizeof(n->id), "%s", cfg->self_id);
  n->alive = 1;
  for (int k = 0; k < MAXNET; k++)
    if (nets[k] == NULL) {
      nets[k] = n;
      break;
    }
  *out = n;
  return 0;
}

void smr_net_close(struct smr_net *n) {
  if (n == NULL) return;
  for (int k = 0; k < MAXNET; k++)
    if (nets[k] == n) nets[k] = NULL;
  /* Frames already queued to it are dropped; tell the others the link
   * broke, as TCP would. */
  for (int k = 0; k < MAXNET; k++)
    if (nets[k] != NULL) nets[k]->cfg.on_peer_lost(nets[k]->cfg.ctx, n->id);
  free(n);
}

int smr_net_send(struct smr_net *n, const char *peer, const char *addr,
                 const uint8_t *frame, size_t len) {
  (void)addr;
  if (qn == qcap) {
    qcap = qcap ? qcap * 2 : 1024;
    queue = realloc(queue, qcap * sizeof(*queue));
  }
  struct qframe *q = &queue[qn++];
  snprintf(q->to, sizeof(q->to), "%s", peer);
  snprintf(q->from, sizeof(q->from), "%s", n->id);
  q->data = malloc(len);
  memcpy(q->data, frame, len);
  q->len = len;
  if (!ev_is_active(&pump)) {
    ev_timer_set(&pump, 0., 0.);
    ev_timer_start(loop, &pump);
  }
  return 0;
}

size_t smr_net_queued(const struct smr_net *n, const char *peer) {
  (void)n;
  (void)peer;
  return 0;
}

void smr_net_forget(struct smr_net *n, const char *peer) {
  (void)n;
  (void)peer;
}

void smr_net_stats(const struct smr_net *n, struct smr_net_stats *st) {
  (void)n;
  memset(st, 0, sizeof(*st));
}

/* ------------------------------------------------------------------------
 * A toy service: a running hash and count of the requests applied.
 * --------------------------------------------------------------------- */

struct toy {
  uint64_t count, sum;
  struct toy *img;
};

static int toy_apply(void *svc, uint64_t pos, const uint8_t *req, size_t len,
                     struct smr_buf *reply) {
  struct toy *t = svc;
  (void)pos;
  t->count++;
  for (size_t i = 0; i < len; i++) t->sum = t->sum * 131 + req[i];
  char r[64];
  int n = snprintf(r, sizeof(r), "ok %llu", (unsigned long long)t->count);
  return smr_buf_append(reply, r, (size_t)n);
}

static int toy_snap_open(void *svc, void **snap) {
  struct toy *copy = malloc(sizeof(*copy));
  *copy = *(struct toy *)svc;
  *snap = copy;
  return 0;
}

static long toy_snap_read(void *svc, void *snap, uint64_t off, uint8_t *buf,
                          size_t len) {
  (void)svc;
  uint8_t img[16];
  struct toy *t = snap;
  memcpy(img, &t->count, 8);
  memcpy(img + 8, &t->sum, 8);
  if (off >= 16) return 0;
  size_t n = 16 - off < len ? 16 - off : len;
  memcpy(buf, img + off, n);
  return (long)n;
}

static void toy_snap_close(void *svc, void *snap) {
  (void)svc;
  free(snap);
}

static uint8_t restore_buf[16];
static size_t restore_len;

static int toy_restore_begin(void *svc) {
  struct toy *t = svc;
  t->count = t->sum = 0;
  restore_len = 0;
  return 0;
}

static int toy_restore_chunk(void *svc, uint64_t off, const uint8_t *buf,
                             size_t len) {
  (void)svc;
  if (off != restore_len || off + len > 16) return -EINVAL;
  memcpy(restore_buf + off, buf, len);
  restore_len += len;
  return 0;
}

static int toy_restore_end(void *svc) {
  struct toy *t = svc;
  if (restore_len != 16) return -EINVAL;
  memcpy(&t->count, restore_buf, 8);
  memcpy(&t->sum, restore_buf + 8, 8);
  return 0;
}

static void toy_digest(void *svc, uint8_t out[SMR_DIGEST_LEN]) {
  struct toy *t = svc;
  memset(out, 0, SMR_DIGEST_LEN);
  memcpy(out, &t->count, 8);
  memcpy(out + 8, &t->sum, 8);
}

static const struct smr_service_ops toy_ops = {
    "toy",         toy_apply,     NULL,           toy_snap_open,
    toy_snap_read, toy_snap_close, toy_restore_begin, toy_restore_chunk,
    toy_restore_end, toy_digest};

/* ------------------------------------------------------------------------
 * The members
 * --------------------------------------------------------------------- */

struct member {
  char id[8], dir[96];
  struct smr *g;
  struct toy svc;
  uint64_t epoch;
  uint32_t view_n;
  uint64_t replies, last_reply_no;
  int restart_asked, rebuild;
};

static struct member mem[3];
static struct smr_member_cfg boot[3];
static char root[64];

static void on_view(void *ctx, const struct smr_view_info *v) {
  struct member *m = ctx;
  m->epoch = v->epoch;
  m->view_n = v->n;
}

static void on_reply(void *ctx, void *cookie, const uint8_t *reply,
                     size_t len) {
  struct member *m = ctx;
  char txt[64];
  snprintf(txt, sizeof(txt), "%.*s", (int)len, (const char *)reply);
  unsigned long long no = 0;
  assert_int_equal(sscanf(txt, "ok %llu", &no), 1);
  /* Replies come back in submission order. */
  assert_true((uintptr_t)cookie == m->replies + 1);
  m->replies++;
  m->last_reply_no = no;
}

static void on_restart(void *ctx, int rebuild) {
  struct member *m = ctx;
  assert_false(m->restart_asked); /* once per process */
  m->restart_asked = 1;
  m->rebuild = rebuild;
}

static void start(int i) {
  struct member *m = &mem[i];
  memset(&m->svc, 0, sizeof(m->svc));
  m->epoch = 0;
  m->view_n = 0;
  m->restart_asked = m->rebuild = 0;
  struct smr_config cfg = {
      .loop = loop,
      .group = "rt",
      .self_id = m->id,
      .self_addr = boot[i].addr,
      .members = boot,
      .n_members = 3,
      .data_dir = m->dir,
      .durable = 1,
      .checkpoint_every = 1000,
      .heartbeat_ms = 10,
      .suspect_ms = 100,
      .insecure = 1,
      .service = &toy_ops,
      .service_ctx = &m->svc,
      .ctx = m,
      .on_view = on_view,
      .on_reply = on_reply,
      .on_restart = on_restart,
  };
  char err[256];
  int rc = smr_open(&cfg, &m->g, err, sizeof(err));
  if (rc != 0) fail_msg("smr_open %s: %s", m->id, err);
}

static void stop(int i) {
  smr_close(mem[i].g);
  mem[i].g = NULL;
}

/* Runs the loop until cond() holds, for at most 10 s. */
static int (*cond)(void);
static ev_check check_w;
static void check_cb(struct ev_loop *l, ev_check *w, int revents) {
  (void)w;
  (void)revents;
  if (cond()) ev_break(l, EVBREAK_ALL);
}
static void timeout_cb(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(l, EVBREAK_ALL);
}
static void run_until(int (*c)(void), const char *what) {
  cond = c;
  if (cond()) return;
  ev_check_init(&check_w, check_cb);
  ev_check_start(loop, &check_w);
  ev_timer to;
  ev_timer_init(&to, timeout_cb, 10., 0.);
  ev_timer_start(loop, &to);
  ev_run(loop, 0);
  ev_timer_stop(loop, &to);
  ev_check_stop(loop, &check_w);
  if (!cond()) fail_msg("timed out waiting for: %s", what);
}

static int all_in_view(void) {
  for (int i = 0; i < 3; i++) {
    if (mem[i].g == NULL || mem[i].view_n != 3) return 0;
    struct smr_status st;
    smr_status(mem[i].g, &st);
    if (st.role != SMR_ROLE_PRIMARY && st.role != SMR_ROLE_BACKUP) return 0;
    if (st.epoch != mem[0].epoch) return 0;
  }
  return 1;
}

static uint64_t want_replies;
static int replies_done(void) { return mem[0].replies >= want_replies; }

static int same_state(void) {
  for (int i = 1; i < 3; i++)
    if (mem[i].g == NULL || mem[i].svc.count != mem[0].svc.count ||
        mem[i].svc.sum != mem[0].svc.sum)
      return 0;
  return 1;
}

static int digests_agree(void) {
  struct smr_digests d;
  if (smr_digests(mem[0].g, &d) != 0) return 0;
  return d.n == 3 && d.agree && d.position >= want_replies;
}

static int primary_index(void) {
  for (int i = 0; i < 3; i++) {
    struct smr_status st;
    smr_status(mem[i].g, &st);
    if (st.role == SMR_ROLE_PRIMARY) return i;
  }
  return -1;
}

static void submit_n(int i, int n) {
  for (int k = 0; k < n; k++) {
    char req[32];
    int len = snprintf(req, sizeof(req), "req-%d-%llu", i,
                       (unsigned long long)(mem[i].replies + 1 + (uint64_t)k));
    assert_int_equal(smr_submit(mem[i].g, req, (size_t)len,
                                (void *)(uintptr_t)(want_replies - (uint64_t)n +
                                                    (uint64_t)k + 1)),
                     0);
  }
}

static int setup(void **state) {
  (void)state;
  loop = EV_DEFAULT;
  ev_timer_init(&pump, pump_cb, 0., 0.);
  snprintf(root, sizeof(root), "/tmp/smr-rt-XXXXXX");
  assert_non_null(mkdtemp(root));
  static char addrs[3][32];
  memset(mem, 0, sizeof(mem));
  want_replies = 0;
  for (int i = 0; i < 3; i++) {
    snprintf(mem[i].id, sizeof(mem[i].id), "n%d", i + 1);
    snprintf(mem[i].dir, sizeof(mem[i].dir), "%s/n%d", root, i + 1);
    snprintf(addrs[i], sizeof(addrs[i]), "127.0.0.1:%d", 7001 + i);
    boot[i].id = mem[i].id;
    boot[i].addr = addrs[i];
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++)
    if (mem[i].g) stop(i);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
  assert_int_equal(system(cmd), 0);
  ev_timer_stop(loop, &pump); /* the next test initializes it again */
  for (size_t i = 0; i < qn; i++) free(queue[i].data);
  free(queue);
  queue = NULL;
  qn = qcap = 0;
  return 0;
}

static void test_group_end_to_end(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) start(i);
  run_until(all_in_view, "a view of three");
  int p = primary_index();
  assert_true(p >= 0);

  /* Submissions come back as replies, in order, applied everywhere. */
  want_replies = 100;
  submit_n(p, 100);
  run_until(replies_done, "100 replies");
  run_until(same_state, "the same state on all three");
  assert_int_equal(mem[p].last_reply_no, 100);

  /* A group checkpoint: every member reports the same digest there. */
  assert_int_equal(smr_checkpoint(mem[p].g), 0);
  run_until(digests_agree, "agreeing digests");

  /* A backup closed and reopened from its disk catches up. */
  int b = (p + 1) % 3;
  uint64_t before = mem[b].svc.count;
  struct smr_status st;
  smr_status(mem[b].g, &st);
  uint64_t inc = st.incarnation;
  stop(b);
  want_replies = 150;
  submit_n(p, 50);
  run_until(replies_done, "50 more replies");
  start(b);
  assert_int_equal(mem[b].svc.count, before); /* its own checkpoint + log */
  run_until(all_in_view, "the restarted member back in the view");
  run_until(same_state, "the restarted member caught up");
  smr_status(mem[b].g, &st);
  assert_true(st.incarnation > inc);

  /* A backup that loses its disk rejoins by state transfer. */
  b = (p + 2) % 3;
  stop(b);
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", mem[b].dir);
  assert_int_equal(system(cmd), 0);
  start(b);
  run_until(all_in_view, "the member without a disk back in the view");
  run_until(same_state, "the member without a disk has the state");
  want_replies = 160;
  submit_n(p, 10);
  run_until(replies_done, "10 more replies");
  run_until(same_state, "all three still agree");
}

static int watched;
static int restart_handed(void) { return mem[watched].restart_asked; }

static int file_exists(const char *dir, const char *name) {
  char path[160];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

static void test_restart_and_divergence(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) start(i);
  run_until(all_in_view, "a view of three");
  int p = primary_index();
  assert_true(p >= 0);
  want_replies = 50;
  submit_n(p, 50);
  run_until(replies_done, "50 replies");

  /* Bad requests: an error and no upcall. */
  assert_int_equal(smr_ask_restart(mem[p].g, "nobody", 0), -ENOENT);
  assert_int_equal(smr_ask_restart(mem[p].g, "", 0), -EINVAL);
  assert_int_equal(smr_ask_restart(mem[p].g, "n1", 0x80), -EINVAL);

  /* A restart asked through the primary: the backup leaves, has its state
   * on disk where it stopped, and hands over; its next process loads it. */
  int b = (p + 1) % 3;
  struct smr_status st;
  smr_status(mem[b].g, &st);
  uint64_t inc = st.incarnation;
  assert_int_equal(smr_ask_restart(mem[p].g, mem[b].id, 0), 0);
  watched = b;
  run_until(restart_handed, "the backup handing over for its restart");
  assert_int_equal(mem[b].rebuild, 0);
  uint64_t count = mem[b].svc.count;
  assert_true(count >= 50);
  stop(b);
  start(b);
  assert_int_equal(mem[b].svc.count, count); /* from its own disk */
  run_until(all_in_view, "the restarted member back in the view");
  run_until(same_state, "the restarted member caught up");
  smr_status(mem[b].g, &st);
  assert_true(st.incarnation > inc);

  /* A copy changed behind the group's back. */
  int c = (p + 2) % 3;
  mem[c].svc.sum ^= 0x5a5a;
  assert_int_equal(smr_checkpoint(mem[p].g), 0);
  watched = c;
  run_until(restart_handed, "the diverged member handing over to rebuild");
  assert_int_equal(mem[c].rebuild, 1);
  assert_false(file_exists(mem[c].dir, "checkpoint.smr"));
  smr_status(mem[c].g, &st);
  assert_int_equal(st.diverged, 1);
  smr_status(mem[p].g, &st);
  assert_int_equal(st.divergences_seen, 1);
  stop(c);
  start(c);
  assert_int_equal(mem[c].svc.count, 0); /* nothing of the bad copy */
  run_until(all_in_view, "the rebuilt member back in the view");
  run_until(same_state, "the rebuilt member holds the group's state");
  want_replies = 60;
  submit_n(p, 10);
  run_until(replies_done, "10 more replies");
  assert_int_equal(smr_checkpoint(mem[p].g), 0);
  run_until(digests_agree, "agreeing digests after the rebuild");
}

/* The digest a member reports after a checkpoint is a control message of
 * its own: if the member is excluded before it is ordered, it is dropped,
 * and the member sends it again once it is back (without, the position
 * never has every member's digest). */
static uint64_t ck_pos;
static int c_applied_ck(void) {
  struct smr_status st;
  smr_status(mem[watched].g, &st);
  return st.applied >= ck_pos;
}
static int c_out(void) {
  struct smr_status st;
  smr_status(mem[(watched + 1) % 3].g, &st);
  return st.n == 2;
}
static int digests_agree_at_ck(void) {
  struct smr_digests d;
  if (smr_digests(mem[0].g, &d) != 0) return 0;
  return d.n == 3 && d.agree && d.position >= ck_pos;
}

static void test_dropped_digest_sent_again(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) start(i);
  run_until(all_in_view, "a view of three");
  int p = primary_index();
  want_replies = 10;
  submit_n(p, 10);
  run_until(replies_done, "10 replies");
  int c = (p + 2) % 3;
  struct smr_status st;
  smr_status(mem[p].g, &st);
  ck_pos = st.applied + 1; /* where the checkpoint request lands */
  assert_int_equal(smr_checkpoint(mem[p].g), 0);
  /* Cut off as soon as it applied the request: its child is still
   * writing the checkpoint, and the report it then sends is lost. */
  watched = c;
  run_until(c_applied_ck, "the member applying the checkpoint request");
  snprintf(isolated, sizeof(isolated), "%s", mem[c].id);
  run_until(c_out, "the others going on without it");
  isolated[0] = 0;
  run_until(all_in_view, "the member back in the view");
  run_until(digests_agree_at_ck, "every digest at the checkpoint, agreeing");
}

static int others_refused(void) {
  for (int i = 0; i < 3; i++) {
    struct smr_status st;
    smr_status(mem[i].g, &st);
    if (st.restarts_refused != 1) return 0;
  }
  return 1;
}

static void test_two_restarts_at_once(void **state) {
  (void)state;
  for (int i = 0; i < 3; i++) start(i);
  run_until(all_in_view, "a view of three");
  int p = primary_index();
  assert_true(p >= 0);
  want_replies = 20;
  submit_n(p, 20);
  run_until(replies_done, "20 replies");
  /* Both asked before either request is delivered: each passes the
   * asker's check, but at the second one's position the first is under
   * way, and a group of three can spare one member only. */
  int b = (p + 1) % 3, c = (p + 2) % 3;
  assert_int_equal(smr_ask_restart(mem[p].g, mem[b].id, 0), 0);
  assert_int_equal(smr_ask_restart(mem[p].g, mem[c].id, 0), 0);
  watched = b;
  run_until(restart_handed, "the first member handing over");
  run_until(others_refused, "the second request refused everywhere");
  assert_false(mem[c].restart_asked);
  struct smr_status st;
  smr_status(mem[c].g, &st);
  char want[64];
  snprintf(want, sizeof(want), "restart of %s at position ", mem[c].id);
  assert_non_null(st.last_refusal);
  assert_memory_equal(st.last_refusal, want, strlen(want));
  /* While the first is away, a third request is refused at once. */
  assert_int_equal(smr_ask_restart(mem[p].g, mem[c].id, 0), -EBUSY);
  stop(b);
  start(b);
  run_until(all_in_view, "the restarted member back in the view");
  run_until(same_state, "the restarted member caught up");
  /* Back, it no longer counts as going: the second member may go now. */
  assert_int_equal(smr_ask_restart(mem[p].g, mem[c].id, 0), 0);
  watched = c;
  run_until(restart_handed, "the second member handing over");
  stop(c);
  start(c);
  run_until(all_in_view, "the second member back in the view");
  run_until(same_state, "the second member caught up");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_two_restarts_at_once, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dropped_digest_sent_again, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_group_end_to_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_restart_and_divergence, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
