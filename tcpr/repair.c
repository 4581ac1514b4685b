/* repair.c -- capture a TCP connection's state, and recreate it elsewhere.
 *
 * DESIGN
 * ======
 * Linux's TCP_REPAIR mode (made for CRIU) lets a privileged process read
 * and set the parts of a TCP socket that are normally the kernel's own:
 * the sequence numbers of both queues, the negotiated options, the
 * timestamp clock and the windows.  A socket created in repair mode and
 * "connected" sends no SYN; it simply is the connection, at the sequence
 * numbers it was given.
 *
 * TCP-R uses it in two places:
 *
 *   capture   once, right after accept(), before the server read or wrote
 *             anything: the ISNs of both directions, MSS clamp, window
 *             scales, SACK/timestamp options, the timestamp clock (with the
 *             wall clock it was read at) and the windows.  Everything later
 *             is derived by counting stream bytes at request boundaries (the
 *             replicated connection table, conntab.c); re-capturing per
 *             request would be slower and racy.
 *   restore   on the member that takes over: a socket with the receive
 *             sequence at the end of the last request the group applied and
 *             the send sequence at the first reply byte the client has not
 *             acknowledged (as far as the group knows), in the order libsoccr
 *             (CRIU) uses: queues, bind, connect, options, timestamp, window,
 *             leave repair.  The caller then sends the reply bytes the
 *             client may lack as fresh data: a restored socket has no RTT
 *             sample, so waiting for the kernel to retransmit would cost the
 *             initial RTO (1 s); fresh data goes out at once.
 *
 * Pitfalls this file handles (see ../shared/notes/tcp-takeover.md):
 *   - repair mode does not freeze the socket: a segment can arrive between
 *     two reads, so the receive ISN is computed from a pair of reads that
 *     saw the same byte count before and after;
 *   - TCP_TIMESTAMP's low bit says whether the clock counts microseconds
 *     (kernels >= 6.7); it is kept as read, and the value carried forward
 *     by the wall-clock time elapsed since capture, because the client
 *     drops segments whose timestamp goes backwards (PAWS);
 *   - TCP_REPAIR_WINDOW is refused unless snd_wl1 and rcv_wup sit at the
 *     restored rcv_nxt, so the captured window is re-based there;
 *   - SO_REUSEADDR is set before entering repair mode: entering it makes
 *     the socket force-reusable (the port is the listener's), and a later
 *     SO_REUSEADDR would undo that; leaving repair mode clears the flag,
 *     so it is set again afterwards (at capture too), or the connection's
 *     TIME_WAIT would block a restarted server's listener.
 *
 * Deviation from libsoccr: no queued data is captured or restored.  The
 * receive queue is empty by construction (bytes the group has not applied
 * were never acknowledged, so the client sends them again), and the send
 * queue is rebuilt by the caller from the replicated reply bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tcpr.h"

/* From linux/tcp.h, which clashes with netinet/tcp.h. */
#ifndef TCP_REPAIR_OFF_NO_WP
#define TCP_REPAIR_OFF_NO_WP -1
#endif
#ifndef TCP_REPAIR_WINDOW
#define TCP_REPAIR_WINDOW 29
#endif
struct tcpr_repair_window {
  uint32_t snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup;
};
#define OPT_MAXSEG 2
#define OPT_WINDOW 3
#define OPT_SACK_PERM 4
#define OPT_TIMESTAMP 8

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int sopt(int fd, int level, int name, const void *v, socklen_t len) {
  return setsockopt(fd, level, name, v, len) < 0 ? -errno : 0;
}

static int sopt_int(int fd, int level, int name, int v) {
  return sopt(fd, level, name, &v, sizeof(v));
}

static int gopt(int fd, int level, int name, void *v, socklen_t len) {
  socklen_t l = len;
  if (getsockopt(fd, level, name, v, &l) < 0) return -errno;
  return 0;
}

static int queue_seq(int fd, int queue, uint32_t *seq) {
  int rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue);
  if (rc == 0) rc = gopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, sizeof(*seq));
  return rc;
}

/* Bytes received and not yet read: all of them, as nothing was read. */
static int bytes_received(int fd, uint64_t *n) {
  int inq = 0;
  if (ioctl(fd, SIOCINQ, &inq) < 0) return -errno;
  *n = inq < 0 ? 0 : (uint64_t)inq;
  return 0;
}

/* ------------------------------------------------------------------------
 * Capture
 * --------------------------------------------------------------------- */

static int capture_repair(int fd, struct tcpr_tcp_state *st) {
  uint32_t rcv_nxt = 0, write_seq = 0;
  uint64_t before = 0, after = 0;
  int rc = 0, tries;
  /* Bytes may arrive while we read: keep the pair that saw none. */
  for (tries = 0; tries < 100; tries++) {
    if ((rc = bytes_received(fd, &before)) < 0) return rc;
    if ((rc = queue_seq(fd, TCP_RECV_QUEUE, &rcv_nxt)) < 0) return rc;
    if ((rc = bytes_received(fd, &after)) < 0) return rc;
    if (before == after) break;
  }
  if (before != after) return -EAGAIN;
  st->rcv_isn1 = rcv_nxt - (uint32_t)before;
  if ((rc = queue_seq(fd, TCP_SEND_QUEUE, &write_seq)) < 0) return rc;
  st->snd_isn1 = write_seq; /* nothing written yet */
  int mss = 0;
  if ((rc = gopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss))) < 0)
    return rc;
  st->mss = (uint16_t)mss;
  if (st->opts & TCPR_OPT_TS) {
    uint32_t ts = 0;
    if ((rc = gopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, sizeof(ts))) < 0)
      return rc;
    st->tsval = ts;
    st->ts_wall_us = wall_us();
  }
  struct tcpr_repair_window w;
  memset(&w, 0, sizeof(w));
  if ((rc = gopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w))) < 0)
    return rc;
  st->snd_wnd = w.snd_wnd;
  st->max_window = w.max_window;
  st->rcv_wnd = w.rcv_wnd;
  return 0;
}

/* An IPv4 address, plain or v4-mapped (a dual-stack listener's). */
static int v4_of(const struct sockaddr_storage *ss, uint32_t *addr,
                 uint16_t *port) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    *addr = a->sin_addr.s_addr;
    *port = ntohs(a->sin_port);
    return 0;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    if (!IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) return -1;
    memcpy(addr, &a->sin6_addr.s6_addr[12], 4);
    *port = ntohs(a->sin6_port);
    return 0;
  }
  return -1;
}

int tcpr_capture(int fd, struct tcpr_tcp_state *st) {
  memset(st, 0, sizeof(*st));
  struct sockaddr_storage l, r;
  socklen_t ll = sizeof(l), rl = sizeof(r);
  if (getsockname(fd, (struct sockaddr *)&l, &ll) < 0) return -errno;
  if (getpeername(fd, (struct sockaddr *)&r, &rl) < 0) return -errno;
  if (v4_of(&l, &st->laddr, &st->lport) < 0 ||
      v4_of(&r, &st->raddr, &st->rport) < 0)
    return -EAFNOSUPPORT;

  struct tcp_info ti;
  memset(&ti, 0, sizeof(ti));
  int rc = gopt(fd, IPPROTO_TCP, TCP_INFO, &ti, sizeof(ti));
  if (rc < 0) return rc;
  if (ti.tcpi_state != TCP_ESTABLISHED) return -ENOTCONN;
  if (ti.tcpi_options & TCPI_OPT_SACK) st->opts |= TCPR_OPT_SACK;
  if (ti.tcpi_options & TCPI_OPT_TIMESTAMPS) st->opts |= TCPR_OPT_TS;
  if (ti.tcpi_options & TCPI_OPT_WSCALE) {
    st->opts |= TCPR_OPT_WSCALE;
    st->snd_wscale = ti.tcpi_snd_wscale;
    st->rcv_wscale = ti.tcpi_rcv_wscale;
  }

  /* Repair mode overwrites the socket's reuse flag (and leaving it clears
   * the flag): put back what it was, or the connection's TIME_WAIT would
   * keep a restarted server from listening on the port. */
  int reuse = 0;
  gopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
  if ((rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR, 1)) < 0) return rc;
  rc = capture_repair(fd, st);
  /* Leave repair mode without a window probe, whatever happened. */
  int off = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
  if (reuse) sopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  return rc < 0 ? rc : off;
}

/* ------------------------------------------------------------------------
 * Restore
 * --------------------------------------------------------------------- */

/* The timestamp to resume with: as read, carried forward by the wall-clock
 * time since, plus a little, so it never goes backwards for the client. */
static uint32_t resume_tsval(const struct tcpr_tcp_state *st) {
  int64_t elapsed_us = wall_us() - st->ts_wall_us;
  if (elapsed_us < 0) elapsed_us = 0;
  uint32_t usec = st->tsval & 1;
  uint32_t add = usec ? (uint32_t)(elapsed_us + 2000)
                      : (uint32_t)(elapsed_us / 1000 + 2);
  uint32_t v = st->tsval + add;
  return (v & ~1u) | usec;
}

static int restore_repair(int fd, const struct tcpr_tcp_state *st,
                          uint32_t rcv_nxt, uint32_t snd_nxt) {
  int rc;
  if ((rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)) < 0 ||
      (rc = sopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &rcv_nxt,
                 sizeof(rcv_nxt))) < 0)
    return rc;
  if ((rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)) < 0 ||
      (rc = sopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, &snd_nxt,
                 sizeof(snd_nxt))) < 0)
    return rc;
  if ((rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE)) < 0)
    return rc;

  /* The VIP is not on this host's device yet when we restore (a client
   * segment must not find the VIP before its socket exists): bind to it
   * anyway (IP_FREEBIND), and let the route lookup accept a source that is
   * not local (IP_TRANSPARENT; FREEBIND alone gets ENETUNREACH). */
  if ((rc = sopt_int(fd, IPPROTO_IP, IP_FREEBIND, 1)) < 0 ||
      (rc = sopt_int(fd, IPPROTO_IP, IP_TRANSPARENT, 1)) < 0)
    return rc;
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = st->laddr;
  a.sin_port = htons(st->lport);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return -errno;
  a.sin_addr.s_addr = st->raddr;
  a.sin_port = htons(st->rport);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) return -errno;

  struct tcp_repair_opt opts[4];
  int n = 0;
  opts[n].opt_code = OPT_MAXSEG;
  opts[n++].opt_val = st->mss;
  if (st->opts & TCPR_OPT_WSCALE) {
    opts[n].opt_code = OPT_WINDOW;
    opts[n++].opt_val = (uint32_t)st->snd_wscale |
                        ((uint32_t)st->rcv_wscale << 16);
  }
  if (st->opts & TCPR_OPT_SACK) {
    opts[n].opt_code = OPT_SACK_PERM;
    opts[n++].opt_val = 0;
  }
  if (st->opts & TCPR_OPT_TS) {
    opts[n].opt_code = OPT_TIMESTAMP;
    opts[n++].opt_val = 0;
  }
  if ((rc = sopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts,
                 (socklen_t)(n * (int)sizeof(opts[0])))) < 0)
    return rc;
  if (st->opts & TCPR_OPT_TS) {
    uint32_t ts = resume_tsval(st);
    if ((rc = sopt(fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, sizeof(ts))) < 0)
      return rc;
  }
  struct tcpr_repair_window w = {
      .snd_wl1 = rcv_nxt,
      .snd_wnd = st->snd_wnd,
      .max_window = st->max_window,
      .rcv_wnd = st->rcv_wnd,
      .rcv_wup = rcv_nxt,
  };
  if ((rc = sopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w))) < 0)
    return rc;
  return 0;
}

int tcpr_restore(const struct tcpr_tcp_state *st, uint64_t rcv_off,
                 uint64_t snd_off, int *fd_out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int rc = sopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (rc == 0) rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR, 1);
  if (rc == 0)
    rc = restore_repair(fd, st, st->rcv_isn1 + (uint32_t)rcv_off,
                        st->snd_isn1 + (uint32_t)snd_off);
  if (rc < 0) {
    tcpr_close_silently(fd);
    return rc;
  }
  /* Leaving repair mode sends a window probe (harmless, out of window). */
  if ((rc = sopt_int(fd, IPPROTO_TCP, TCP_REPAIR, 0)) < 0) {
    tcpr_close_silently(fd);
    return rc;
  }
  /* Leaving repair mode also cleared the reuse flag: set it again, or this
   * socket, should it ever outlive its process (closing), would keep a
   * restarted server from listening on the port. */
  sopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  sopt_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  *fd_out = fd;
  return 0;
}

void tcpr_close_silently(int fd) {
  if (fd < 0) return;
  /* In repair mode a close sends nothing.  Repair mode is refused in some
   * states (the client's FIN arrived: CLOSE_WAIT; ours was sent:
   * FIN_WAIT); then an abortive close, whose RST the gate drops (the
   * connection is still in its table, or the host is fenced), so that no
   * closing socket lingers on the port. */
  if (sopt_int(fd, IPPROTO_TCP, TCP_REPAIR, 1) < 0) {
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  }
  close(fd);
}

int tcpr_acked(int fd, uint64_t sent_off, uint64_t *acked) {
  int outq = 0;
  if (ioctl(fd, SIOCOUTQ, &outq) < 0) return -errno;
  if (outq < 0 || (uint64_t)outq > sent_off) return -EPROTO;
  *acked = sent_off - (uint64_t)outq;
  return 0;
}
