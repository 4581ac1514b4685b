/* gen_wire_corpus.c -- writes the seed corpus of fuzz_wire.
 *
 *   gen_wire_corpus DIR
 *
 * Writes one valid frame per message type (plus variants: a PROMISE with
 * and without a proposal, SUBMIT and ORDER with several entries, each XFER
 * kind) as DIR/<name>, and all of them back to back as DIR/stream.  The
 * contents are fixed, so rerunning it after a deliberate change of the
 * wire format regenerates the committed corpus (tests/fuzz/corpus/wire)
 * reproducibly. */
#include <stdio.h>
#include <string.h>

#include "wire.h"

static uint8_t all[1 << 16];
static size_t all_len;

static int emit(const char *dir, const char *name,
                const struct smr_wire_hdr *h, const struct smr_wire_msg *m) {
  uint8_t buf[8192];
  char path[4096];
  size_t len = smr_wire_encode(buf, sizeof buf, h, m);
  FILE *f;

  if (len == 0 || len > sizeof all - all_len) {
    fprintf(stderr, "gen_wire_corpus: cannot encode %s\n", name);
    return -1;
  }
  memcpy(all + all_len, buf, len);
  all_len += len;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  f = fopen(path, "wb");
  if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
    fprintf(stderr, "gen_wire_corpus: cannot write %s\n", path);
    return -1;
  }
  return 0;
}

static void view(struct smr_wire_view *v, uint32_t n) {
  memset(v, 0, sizeof *v);
  v->epoch = 4;
  v->start_pos = 120;
  v->start_hash = 0x1122334455667788u;
  v->n = n;
  for (uint32_t i = 0; i < n; i++) {
    snprintf(v->m[i].id, sizeof v->m[i].id, "n%u", i + 1);
    snprintf(v->m[i].addr, sizeof v->m[i].addr, "10.77.0.%u:7000", i + 1);
    v->m[i].incarnation = i + 1;
    v->m[i].flags = i == n - 1 ? SMR_MEMBER_NEEDS_STATE : 0;
  }
}

int main(int argc, char **argv) {
  static const uint8_t payload[] = "SET key value";
  struct smr_wire_hdr h;
  struct smr_wire_msg m;
  struct smr_wire_entry e[3];
  const char *dir;
  int rc = 0;
  FILE *f;
  char path[4096];

  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  dir = argv[1];
  memset(&h, 0, sizeof h);
  h.group = smr_wire_group_hash("kv");
  h.epoch = 4;
  h.incarnation = 2;
  strcpy(h.from, "n2");
  for (int i = 0; i < 3; i++) {
    e[i].sender = (uint8_t)i;
    e[i].sender_seq = 10 + (uint64_t)i;
    e[i].len = (uint32_t)(sizeof payload - 1 - 4 * (size_t)i);
    e[i].data = payload;
  }

#define EMIT(t, name)                            \
  do {                                           \
    h.type = (t);                                \
    if (emit(dir, (name), &h, &m) != 0) rc = 1; \
  } while (0)

  memset(&m, 0, sizeof m);
  m.u.hb.received = 130;
  m.u.hb.delivered = 128;
  m.u.hb.suspects = 0x4;
  m.u.hb.flags = SMR_HB_WEDGED;
  EMIT(SMR_MSG_HEARTBEAT, "heartbeat");

  memset(&m, 0, sizeof m);
  m.u.submit.entries = e;
  m.u.submit.count = 1;
  EMIT(SMR_MSG_SUBMIT, "submit-1");
  m.u.submit.count = 3;
  EMIT(SMR_MSG_SUBMIT, "submit-3");

  memset(&m, 0, sizeof m);
  m.u.order.first_seq = 131;
  m.u.order.entries = e;
  m.u.order.count = 3;
  EMIT(SMR_MSG_ORDER, "order-3");

  memset(&m, 0, sizeof m);
  m.u.prepare.ballot = 0x500000001u;
  EMIT(SMR_MSG_PREPARE, "prepare");

  memset(&m, 0, sizeof m);
  m.u.promise.ballot = 0x500000001u;
  m.u.promise.received = 131;
  m.u.promise.pos = 128;
  m.u.promise.hash = 0xabcdef;
  EMIT(SMR_MSG_PROMISE, "promise-empty");
  m.u.promise.accepted_ballot = 0x400000002u;
  m.u.promise.has_value = 1;
  view(&m.u.promise.value.next, 3);
  m.u.promise.value.trim = 131;
  EMIT(SMR_MSG_PROMISE, "promise-value");

  memset(&m, 0, sizeof m);
  m.u.nack.ballot = 3;
  m.u.nack.promised = 9;
  EMIT(SMR_MSG_NACK, "nack");

  memset(&m, 0, sizeof m);
  m.u.accept.ballot = 0x500000001u;
  view(&m.u.accept.value.next, 4);
  m.u.accept.value.trim = 131;
  EMIT(SMR_MSG_ACCEPT, "accept");

  memset(&m, 0, sizeof m);
  m.u.accepted.ballot = 0x500000001u;
  EMIT(SMR_MSG_ACCEPTED, "accepted");

  memset(&m, 0, sizeof m);
  view(&m.u.decide.value.next, 2);
  m.u.decide.value.trim = 7;
  EMIT(SMR_MSG_DECIDE, "decide");

  memset(&m, 0, sizeof m);
  strcpy(m.u.join.addr, "10.77.0.9:7000");
  m.u.join.flags = SMR_JOIN_HAS_STATE;
  m.u.join.pos = 100;
  m.u.join.hash = 0x99;
  EMIT(SMR_MSG_JOIN, "join");

  memset(&m, 0, sizeof m);
  view(&m.u.viewinfo.view, SMR_MAX_MEMBERS);
  EMIT(SMR_MSG_VIEWINFO, "viewinfo");

  memset(&m, 0, sizeof m);
  m.u.hello.flags = SMR_HELLO_RECOVERING;
  EMIT(SMR_MSG_HELLO, "hello");

  memset(&m, 0, sizeof m);
  m.u.xfer.boundary = 128;
  m.u.xfer.kind = SMR_XFER_SNAP;
  m.u.xfer.offset = 4096;
  m.u.xfer.data = payload;
  m.u.xfer.len = sizeof payload - 1;
  EMIT(SMR_MSG_XFER, "xfer-snap");
  m.u.xfer.kind = SMR_XFER_LOG;
  m.u.xfer.offset = 129;
  EMIT(SMR_MSG_XFER, "xfer-log");
  m.u.xfer.kind = SMR_XFER_END;
  m.u.xfer.offset = 8192;
  m.u.xfer.len = 8;
  EMIT(SMR_MSG_XFER, "xfer-end");

  memset(&m, 0, sizeof m);
  m.u.xfer_ack.boundary = 128;
  m.u.xfer_ack.offset = 4096;
  EMIT(SMR_MSG_XFER_ACK, "xfer-ack");

  memset(&m, 0, sizeof m);
  EMIT(SMR_MSG_LEAVE, "leave");

  snprintf(path, sizeof path, "%s/stream", dir);
  f = fopen(path, "wb");
  if (!f || fwrite(all, 1, all_len, f) != all_len || fclose(f) != 0) {
    fprintf(stderr, "gen_wire_corpus: cannot write %s\n", path);
    rc = 1;
  }
  return rc;
}
