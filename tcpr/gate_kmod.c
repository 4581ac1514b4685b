/* gate_kmod.c -- the kernel-module backend of the TCP-R gate: drives
 * smr_tcpr.ko (kernel-module/) over its generic netlink family
 * (kernel-module/uapi/smr_tcpr.h) with libmnl.
 *
 * Design.
 *   - One netlink socket per handle, bound in the member's network
 *     namespace (the module keeps one gate per namespace).  Opening
 *     resolves the family, then configures the namespace's gate (VIP,
 *     port, device), fenced; the module empties its table on that.
 *   - Every command but RELEASE is a request with an acknowledgement,
 *     waited for (a bounded receive timeout): the caller learns the
 *     module's errno.
 *   - Releases are batched: tcpr_gate_release only appends a CONN to a
 *     pending RELEASE message; tcpr_gate_flush (and any other command,
 *     so that order is kept) sends it, one system call and one
 *     acknowledgement per batch however many connections moved.  A
 *     release that should reach the client at once, with nothing else
 *     about to carry it (tcpr_gate_release_now), carries ACK_NOW: the
 *     module sends the acknowledgement through the connection's socket.
 *   - No threads and no state outside the socket and the pending batch:
 *     the keeper (a forked child) can fence through an inherited handle
 *     after the server died (nobody else reads the socket then).
 *   - Closing fences the namespace's gate and leaves it configured: as
 *     with the bpf gate, the host stays silent on the VIP until the next
 *     gate replaces it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/genetlink.h>

#include "gate_int.h"
#include "uapi/smr_tcpr.h"

/* A pending RELEASE is sent when it reaches this size; the buffer has
 * room for one more CONN beyond it. */
#define KMOD_BATCH_MAX 16384
#define KMOD_BATCH_BUF (KMOD_BATCH_MAX + 256)
/* Answers: acknowledgements, errors with their extack, the stats. */
#define KMOD_RECV_BUF 16384

struct gate_kmod_state {
  struct mnl_socket *nl;
  uint16_t family;
  uint32_t portid, seq;
  char *batch;   /* KMOD_BATCH_BUF bytes: the pending RELEASE */
  struct nlmsghdr *bh; /* its header, NULL when nothing is pending */
  unsigned nbatched;
};

/* ---- requests ---- */

static struct nlmsghdr *put_hdr(struct gate_kmod_state *s, char *buf,
                                uint8_t cmd, uint16_t flags) {
  struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
  nh->nlmsg_type = s->family;
  nh->nlmsg_flags = NLM_F_REQUEST | flags;
  nh->nlmsg_seq = ++s->seq;
  struct genlmsghdr *gh = mnl_nlmsg_put_extra_header(nh, sizeof(*gh));
  gh->cmd = cmd;
  gh->version = SMR_TCPR_GENL_VERSION;
  return nh;
}

/* Sends nh and runs the answers through cb until the acknowledgement (or
 * the end of a dump).  0 or the kernel's negative errno. */
static int transact(struct gate_kmod_state *s, struct nlmsghdr *nh,
                    mnl_cb_t cb, void *data) {
  char buf[KMOD_RECV_BUF];
  uint32_t seq = nh->nlmsg_seq;
  if (mnl_socket_sendto(s->nl, nh, nh->nlmsg_len) < 0) return -errno;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(s->nl, buf, sizeof(buf));
    if (n < 0) return errno == EAGAIN ? -ETIMEDOUT : -errno;
    int rc = mnl_cb_run(buf, (size_t)n, seq, s->portid, cb, data);
    if (rc < 0) return -errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

static void put_conn(struct nlmsghdr *nh, uint32_t caddr, uint16_t cport) {
  mnl_attr_put_u32(nh, SMR_TCPR_C_ADDR, caddr);
  mnl_attr_put_u16(nh, SMR_TCPR_C_PORT, htons(cport));
}

static int flush_batch(struct gate_kmod_state *s) {
  if (s->bh == NULL) return 0;
  struct nlmsghdr *nh = s->bh;
  s->bh = NULL;
  s->nbatched = 0;
  return transact(s, nh, NULL, NULL);
}

/* A one-connection command (ALLOW_CLOSE, FORGET, ORPHAN). */
static int conn_cmd(struct gate_kmod_state *s, uint8_t cmd, uint32_t caddr,
                    uint16_t cport) {
  char buf[256];
  int rc = flush_batch(s);
  if (rc < 0) return rc;
  struct nlmsghdr *nh = put_hdr(s, buf, cmd, NLM_F_ACK);
  struct nlattr *n = mnl_attr_nest_start(nh, SMR_TCPR_A_CONN);
  put_conn(nh, caddr, cport);
  mnl_attr_nest_end(nh, n);
  return transact(s, nh, NULL, NULL);
}

/* ---- the ops ---- */

static int kmod_fence(void *st, int fenced) {
  struct gate_kmod_state *s = st;
  char buf[128];
  int rc = flush_batch(s);
  if (rc < 0 && fenced == 0) return rc; /* fencing goes on regardless */
  struct nlmsghdr *nh = put_hdr(s, buf, SMR_TCPR_CMD_FENCE, NLM_F_ACK);
  mnl_attr_put_u8(nh, SMR_TCPR_A_FENCED, fenced ? 1 : 0);
  return transact(s, nh, NULL, NULL);
}

static int kmod_conn_open(void *st, uint32_t caddr, uint16_t cport,
                          uint32_t released, uint8_t rcv_wscale,
                          uint32_t snd_nxt) {
  struct gate_kmod_state *s = st;
  char buf[256];
  int rc = flush_batch(s);
  if (rc < 0) return rc;
  struct nlmsghdr *nh = put_hdr(s, buf, SMR_TCPR_CMD_OPEN, NLM_F_ACK);
  struct nlattr *n = mnl_attr_nest_start(nh, SMR_TCPR_A_CONN);
  put_conn(nh, caddr, cport);
  mnl_attr_put_u32(nh, SMR_TCPR_C_RELEASED, released);
  mnl_attr_put_u32(nh, SMR_TCPR_C_SND_NXT, snd_nxt);
  mnl_attr_put_u8(nh, SMR_TCPR_C_RCV_WSCALE, rcv_wscale);
  mnl_attr_nest_end(nh, n);
  return transact(s, nh, NULL, NULL);
}

static int release_flags(struct gate_kmod_state *s, uint32_t caddr,
                         uint16_t cport, uint32_t released, uint32_t flags) {
  if (s->bh != NULL && s->bh->nlmsg_len > KMOD_BATCH_MAX) {
    int rc = flush_batch(s);
    if (rc < 0) return rc;
  }
  if (s->bh == NULL)
    s->bh = put_hdr(s, s->batch, SMR_TCPR_CMD_RELEASE, NLM_F_ACK);
  struct nlattr *n = mnl_attr_nest_start(s->bh, SMR_TCPR_A_CONN);
  put_conn(s->bh, caddr, cport);
  mnl_attr_put_u32(s->bh, SMR_TCPR_C_RELEASED, released);
  if (flags) mnl_attr_put_u32(s->bh, SMR_TCPR_C_FLAGS, flags);
  mnl_attr_nest_end(s->bh, n);
  s->nbatched++;
  return 0;
}

static int kmod_release(void *st, uint32_t caddr, uint16_t cport,
                        uint32_t released) {
  return release_flags(st, caddr, cport, released, 0);
}

static int kmod_release_now(void *st, uint32_t caddr, uint16_t cport,
                            uint32_t released) {
  return release_flags(st, caddr, cport, released, SMR_TCPR_F_ACK_NOW);
}

static int kmod_flush(void *st) { return flush_batch(st); }

static int kmod_allow_close(void *st, uint32_t caddr, uint16_t cport) {
  return conn_cmd(st, SMR_TCPR_CMD_ALLOW_CLOSE, caddr, cport);
}

static int kmod_conn_close(void *st, uint32_t caddr, uint16_t cport) {
  return conn_cmd(st, SMR_TCPR_CMD_FORGET, caddr, cport);
}

struct stats_ctx {
  struct tcpr_gate_stats *out;
  int seen;
};

static int stats_attr(const struct nlattr *a, void *data) {
  struct stats_ctx *c = data;
  if (mnl_attr_validate(a, MNL_TYPE_U64) < 0) return MNL_CB_OK;
  uint64_t v = mnl_attr_get_u64(a);
  switch (mnl_attr_get_type(a)) {
  case SMR_TCPR_S_CLAMPED: c->out->clamped = v; break;
  case SMR_TCPR_S_SACK_STRIPPED: c->out->sack_stripped = v; break;
  case SMR_TCPR_S_FIN_DROPPED: c->out->fin_dropped = v; break;
  case SMR_TCPR_S_RST_DROPPED: c->out->rst_dropped = v; break;
  case SMR_TCPR_S_FENCED_DROPPED: c->out->fenced_dropped = v; break;
  case SMR_TCPR_S_ACKS_CLAMPED_IN: c->out->acks_clamped_in = v; break;
  case SMR_TCPR_S_ACKS_SENT: c->out->acks_sent = v; break;
  case SMR_TCPR_S_CONNS: c->out->conns = v; break;
  default: break;
  }
  return MNL_CB_OK;
}

static int stats_top(const struct nlattr *a, void *data) {
  struct stats_ctx *c = data;
  if (mnl_attr_get_type(a) == SMR_TCPR_A_STATS &&
      mnl_attr_validate(a, MNL_TYPE_NESTED) == 0) {
    c->seen = 1;
    mnl_attr_parse_nested(a, stats_attr, c);
  }
  return MNL_CB_OK;
}

static int stats_cb(const struct nlmsghdr *nh, void *data) {
  mnl_attr_parse(nh, sizeof(struct genlmsghdr), stats_top, data);
  return MNL_CB_OK;
}

static int kmod_stats(void *st, struct tcpr_gate_stats *out) {
  struct gate_kmod_state *s = st;
  char buf[128];
  int rc = flush_batch(s);
  if (rc < 0) return rc;
  memset(out, 0, sizeof(*out));
  struct stats_ctx c = {out, 0};
  struct nlmsghdr *nh = put_hdr(s, buf, SMR_TCPR_CMD_GET_STATS, NLM_F_ACK);
  rc = transact(s, nh, stats_cb, &c);
  if (rc < 0) return rc;
  return c.seen ? 0 : -EPROTO;
}

static void kmod_close(void *st) {
  struct gate_kmod_state *s = st;
  if (s == NULL) return;
  (void)kmod_fence(s, 1);
  mnl_socket_close(s->nl);
  free(s->batch);
  free(s);
}

static const struct tcpr_gate_ops gate_kmod_ops = {
    .name = "kmod",
    .fence = kmod_fence,
    .conn_open = kmod_conn_open,
    .release = kmod_release,
    .release_now = kmod_release_now,
    .flush = kmod_flush,
    .allow_close = kmod_allow_close,
    .conn_close = kmod_conn_close,
    .stats = kmod_stats,
    .close = kmod_close,
};

/* ---- open ---- */

static int family_attr(const struct nlattr *a, void *data) {
  if (mnl_attr_get_type(a) == CTRL_ATTR_FAMILY_ID &&
      mnl_attr_validate(a, MNL_TYPE_U16) == 0)
    *(uint16_t *)data = mnl_attr_get_u16(a);
  return MNL_CB_OK;
}

static int family_cb(const struct nlmsghdr *nh, void *data) {
  mnl_attr_parse(nh, sizeof(struct genlmsghdr), family_attr, data);
  return MNL_CB_OK;
}

static int sock_open(struct gate_kmod_state *s) {
  s->nl = mnl_socket_open2(NETLINK_GENERIC, SOCK_CLOEXEC);
  if (s->nl == NULL) return -errno;
  if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) return -errno;
  s->portid = mnl_socket_get_portid(s->nl);
  struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
  (void)setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_RCVTIMEO, &tv,
                   sizeof(tv));
  s->seq = (uint32_t)time(NULL);
  return 0;
}

/* The family's id, or -ENOENT when the module is not loaded. */
static int resolve(struct gate_kmod_state *s) {
  char buf[256];
  struct nlmsghdr *nh = mnl_nlmsg_put_header(buf);
  nh->nlmsg_type = GENL_ID_CTRL;
  nh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  nh->nlmsg_seq = ++s->seq;
  struct genlmsghdr *gh = mnl_nlmsg_put_extra_header(nh, sizeof(*gh));
  gh->cmd = CTRL_CMD_GETFAMILY;
  gh->version = 1;
  mnl_attr_put_strz(nh, CTRL_ATTR_FAMILY_NAME, SMR_TCPR_GENL_NAME);
  uint16_t id = 0;
  int rc = transact(s, nh, family_cb, &id);
  if (rc < 0) return rc;
  if (id == 0) return -EPROTO;
  s->family = id;
  return 0;
}

int tcpr_gate_kmod_reset(void) {
  struct gate_kmod_state s;
  memset(&s, 0, sizeof(s));
  int rc = sock_open(&s);
  if (rc == 0) rc = resolve(&s);
  if (rc == 0) {
    char buf[128];
    struct nlmsghdr *nh = put_hdr(&s, buf, SMR_TCPR_CMD_RESET, NLM_F_ACK);
    rc = transact(&s, nh, NULL, NULL);
  }
  if (s.nl != NULL) mnl_socket_close(s.nl);
  return rc == -ENOENT ? 0 : rc;
}

int tcpr_gate_kmod_open(unsigned ifindex, uint32_t vip, uint16_t port,
                        const struct tcpr_gate_ops **ops, void **out,
                        char *err, size_t errlen) {
  struct gate_kmod_state *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->batch = malloc(KMOD_BATCH_BUF)) == NULL) {
    if (s != NULL) free(s);
    snprintf(err, errlen, "gate: out of memory");
    return -ENOMEM;
  }
  int rc = sock_open(s);
  if (rc < 0) {
    snprintf(err, errlen, "gate: cannot open a generic netlink socket: %s",
             strerror(-rc));
    goto fail;
  }
  rc = resolve(s);
  if (rc < 0) {
    if (rc == -ENOENT)
      snprintf(err, errlen,
               "gate = kmod: the smr_tcpr kernel module is not loaded "
               "(modprobe smr_tcpr, or insmod smr_tcpr.ko)");
    else
      snprintf(err, errlen, "gate: cannot look up the %s netlink family: %s",
               SMR_TCPR_GENL_NAME, strerror(-rc));
    goto fail;
  }
  char buf[256];
  struct nlmsghdr *nh = put_hdr(s, buf, SMR_TCPR_CMD_CONFIG, NLM_F_ACK);
  mnl_attr_put_u32(nh, SMR_TCPR_A_VIP, vip);
  mnl_attr_put_u16(nh, SMR_TCPR_A_PORT, htons(port));
  mnl_attr_put_u32(nh, SMR_TCPR_A_IFINDEX, ifindex);
  mnl_attr_put_u8(nh, SMR_TCPR_A_FENCED, 1);
  rc = transact(s, nh, NULL, NULL);
  if (rc < 0) {
    snprintf(err, errlen, "gate: the smr_tcpr module refused the gate: %s%s",
             strerror(-rc),
             rc == -EPERM ? " (needs CAP_NET_ADMIN in this namespace)" : "");
    goto fail;
  }
  *ops = &gate_kmod_ops;
  *out = s;
  return 0;

fail:
  if (s->nl != NULL) mnl_socket_close(s->nl);
  free(s->batch);
  free(s);
  return rc;
}
