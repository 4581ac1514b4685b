/* counter.c -- the smallest complete libsmr program: a replicated counter.
 *
 * Every member keeps a 64-bit counter.  A request "add N" is multicast in
 * total order and applied by every member; the member that submitted it
 * gets the new value back.  Run three of these (each in its own terminal)
 * and the primary counts to 10:
 *
 *   smr-example-counter n1 /tmp/c1
 *   smr-example-counter n2 /tmp/c2
 *   smr-example-counter n3 /tmp/c3
 *
 * The members talk plain TCP on 127.0.0.1:7201-7203 (insecure: an example
 * only; smrd shows the TLS setup).  Kill one and start it again: it comes
 * back from its data directory with the same count.
 *
 * What a service must give libsmr (smr/service.h): apply, snapshot and
 * restore (so that a joining member gets the state), and a digest. */
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smr/smr.h"

struct counter {
  uint64_t value;
  uint8_t img[8];
  size_t img_len;
};

static int apply(void *svc, uint64_t pos, const uint8_t *req, size_t len,
                 struct smr_buf *reply) {
  struct counter *c = svc;
  (void)pos;
  char text[32];
  snprintf(text, sizeof(text), "%.*s", (int)(len < 31 ? len : 31),
           (const char *)req);
  unsigned long long n;
  if (sscanf(text, "add %llu", &n) == 1) c->value += n;
  int k = snprintf(text, sizeof(text), "%" PRIu64, c->value);
  return smr_buf_append(reply, text, (size_t)k);
}

static int snap_open(void *svc, void **snap) {
  uint64_t *copy = malloc(sizeof(*copy));
  if (copy == NULL) return -1;
  *copy = ((struct counter *)svc)->value;
  *snap = copy;
  return 0;
}

static long snap_read(void *svc, void *snap, uint64_t off, uint8_t *buf,
                      size_t len) {
  (void)svc;
  if (off >= 8 || len == 0) return 0;
  size_t n = 8 - off < len ? 8 - off : len;
  memcpy(buf, (uint8_t *)snap + off, n);
  return (long)n;
}

static void snap_close(void *svc, void *snap) {
  (void)svc;
  free(snap);
}

static int restore_begin(void *svc) {
  struct counter *c = svc;
  c->img_len = 0;
  return 0;
}

static int restore_chunk(void *svc, uint64_t off, const uint8_t *buf,
                         size_t len) {
  struct counter *c = svc;
  if (off != c->img_len || off + len > 8) return -1;
  memcpy(c->img + off, buf, len);
  c->img_len += len;
  return 0;
}

static int restore_end(void *svc) {
  struct counter *c = svc;
  if (c->img_len != 8) return -1;
  memcpy(&c->value, c->img, 8);
  return 0;
}

static void digest(void *svc, uint8_t out[SMR_DIGEST_LEN]) {
  memset(out, 0, SMR_DIGEST_LEN);
  memcpy(out, &((struct counter *)svc)->value, 8);
}

static const struct smr_service_ops counter_ops = {
    .name = "counter",
    .apply = apply,
    .snapshot_open = snap_open,
    .snapshot_read = snap_read,
    .snapshot_close = snap_close,
    .restore_begin = restore_begin,
    .restore_chunk = restore_chunk,
    .restore_end = restore_end,
    .digest = digest,
};

static struct smr *group;
static int sent, replies;

/* On becoming primary, count to ten. */
static void on_view(void *ctx, const struct smr_view_info *v) {
  (void)ctx;
  printf("view %" PRIu64 ": %u members, primary %s%s\n", v->epoch, v->n,
         v->ids[0], v->rank == 0 ? " (us)" : "");
  for (; v->rank == 0 && sent < 10; sent++)
    smr_submit(group, "add 1", 5, NULL);
}

static void on_reply(void *ctx, void *cookie, const uint8_t *r, size_t len) {
  (void)ctx;
  (void)cookie;
  printf("counter = %.*s\n", (int)len, (const char *)r);
  if (++replies == 10) ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void log_line(void *ctx, int level, const char *line) {
  (void)ctx;
  if (level <= SMR_LOG_WARN) fprintf(stderr, "%s\n", line);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s n1|n2|n3 DATA_DIR\n", argv[0]);
    return 2;
  }
  static const struct smr_member_cfg members[] = {
      {"n1", "127.0.0.1:7201"}, {"n2", "127.0.0.1:7202"},
      {"n3", "127.0.0.1:7203"}};
  const char *self = argv[1], *addr = NULL;
  for (int i = 0; i < 3; i++)
    if (!strcmp(members[i].id, self)) addr = members[i].addr;
  if (addr == NULL) {
    fprintf(stderr, "%s: member must be n1, n2 or n3\n", argv[0]);
    return 2;
  }
  struct counter counter = {0};
  struct smr_config cfg = {
      .loop = EV_DEFAULT,
      .group = "counter",
      .self_id = self,
      .self_addr = addr,
      .members = members,
      .n_members = 3,
      .data_dir = argv[2],
      .durable = 1,
      .insecure = 1,
      .service = &counter_ops,
      .service_ctx = &counter,
      .on_view = on_view,
      .on_reply = on_reply,
      .log = log_line,
  };
  char err[256];
  if (smr_open(&cfg, &group, err, sizeof(err)) < 0) {
    fprintf(stderr, "%s: %s\n", argv[0], err);
    return 1;
  }
  ev_run(EV_DEFAULT, 0); /* until ten replies, or forever on a backup */
  smr_close(group);
  return 0;
}
