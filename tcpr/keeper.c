/* keeper.c -- a process that makes the server's death silent.
 *
 * DESIGN
 * ======
 * When a process dies, its kernel closes its sockets: a client connected
 * to the VIP receives FIN (or RST if unread bytes were queued) and sees
 * its connection end, which TCP-R exists to prevent.  The ACK gate drops
 * FIN and RST of gated connections, but a socket that is gone answers the
 * client's next segment with RST from a host that still holds the VIP, and
 * the VIP itself must leave the host before another member announces it.
 *
 * The keeper is a child forked early by the server.  It holds a duplicate
 * of every client socket (passed with SCM_RIGHTS), so the sockets outlive
 * the server: a dead server's kernel has nothing to close.  It learns of
 * the death from its end of a socket pair (end of file once the server's
 * end is closed, which the kernel does at the server's death whatever
 * killed it; no polling, no pid reuse race, equivalent to a pidfd), then:
 *
 *   1. fences: the gate drops every packet from the VIP, and the VIP is
 *      deleted from the device (the order the note in
 *      ../shared/notes/tcp-takeover.md found necessary: fence before the
 *      sockets go, or they answer with RST);
 *   2. puts every socket it holds in repair mode and closes it: a close in
 *      repair mode sends nothing;
 *   3. exits.
 *
 * A graceful close by the server (shutdown() sends the FIN whatever the
 * reference count) is followed by tcpr_keeper_drop so the keeper lets go
 * of its duplicate.  The keeper ignores SIGINT, SIGTERM and SIGHUP so that
 * a signal to the server's process group (Ctrl-C in a terminal) does not
 * take it down before it has fenced: it always ends by fencing.
 *
 * Messages on the pair (SOCK_SEQPACKET): { u8 op; u64 id } with one file
 * descriptor attached for HOLD. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tcpr.h"

enum { OP_HOLD = 1, OP_DROP = 2 };

struct msg {
  uint8_t op;
  uint8_t pad[7];
  uint64_t id;
};

struct tcpr_keeper {
  int fd;    /* our end of the pair */
  pid_t pid; /* the keeper */
};

struct held {
  uint64_t id;
  int fd;
};

/* ------------------------------------------------------------------------
 * The keeper process
 * --------------------------------------------------------------------- */

static void keeper_log(const char *what, const char *detail) {
  char line[300];
  int n = snprintf(line, sizeof(line), "smrd keeper: %s%s%s\n", what,
                   detail[0] ? ": " : "", detail);
  if (n > 0) {
    ssize_t w = write(2, line, (size_t)n < sizeof(line) ? (size_t)n
                                                         : sizeof(line) - 1);
    (void)w;
  }
}

static int recv_msg(int fd, struct msg *m, int *passed) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {m, sizeof(*m)};
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof(cbuf);
  *passed = -1;
  ssize_t n;
  do {
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return n == 0 ? 0 : -errno;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(sizeof(int)))
      memcpy(passed, CMSG_DATA(c), sizeof(int));
  }
  if ((size_t)n != sizeof(*m)) return -EPROTO;
  return 1;
}

__attribute__((noreturn))
static void keeper_main(int fd, struct tcpr_gate *gate, const char *dev,
                        const char *cidr) {
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_NAME, "smrd-keeper", 0, 0, 0);
  struct held *h = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    struct msg m;
    int passed;
    int rc = recv_msg(fd, &m, &passed);
    if (rc <= 0) break; /* the server is gone (or stopped) */
    if (m.op == OP_HOLD && passed >= 0) {
      if (n == cap) {
        size_t nc = cap ? cap * 2 : 64;
        struct held *p = realloc(h, nc * sizeof(*h));
        if (p == NULL) { /* cannot keep it: better than nothing */
          close(passed);
          continue;
        }
        h = p;
        cap = nc;
      }
      h[n].id = m.id;
      h[n].fd = passed;
      n++;
    } else if (m.op == OP_DROP) {
      if (passed >= 0) close(passed);
      for (size_t i = 0; i < n; i++) {
        if (h[i].id == m.id) {
          close(h[i].fd);
          h[i] = h[--n];
          break;
        }
      }
    } else if (passed >= 0) {
      close(passed);
    }
  }
  /* Fence first, then let the sockets go without a sound. */
  int frc = gate != NULL ? tcpr_gate_fence(gate, 1) : 0;
  char err[200] = "";
  int vrc = 0;
  if (dev != NULL && cidr != NULL)
    vrc = tcpr_vip_del(dev, cidr, err, sizeof(err));
  for (size_t i = 0; i < n; i++) tcpr_close_silently(h[i].fd);
  char detail[260];
  snprintf(detail, sizeof(detail), "%zu connection(s) dropped silently%s%s",
           n, frc < 0 ? "; gate fence failed" : "", vrc < 0 ? "; " : "");
  if (vrc < 0) strncat(detail, err, sizeof(detail) - strlen(detail) - 1);
  keeper_log("server gone, host fenced", detail);
  _exit(0);
}

/* ------------------------------------------------------------------------
 * The server's side
 * --------------------------------------------------------------------- */

int tcpr_keeper_start(struct tcpr_gate *gate, const char *vip_dev,
                      const char *vip_cidr, struct tcpr_keeper **out,
                      char *err, size_t errlen) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    int e = errno;
    snprintf(err, errlen, "keeper: socketpair: %s", strerror(e));
    return -e;
  }
  struct tcpr_keeper *k = calloc(1, sizeof(*k));
  if (k == NULL) {
    close(sv[0]);
    close(sv[1]);
    snprintf(err, errlen, "keeper: out of memory");
    return -ENOMEM;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    free(k);
    snprintf(err, errlen, "keeper: fork: %s", strerror(e));
    return -e;
  }
  if (pid == 0) {
    close(sv[0]);
    keeper_main(sv[1], gate, vip_dev, vip_cidr);
  }
  close(sv[1]);
  k->fd = sv[0];
  k->pid = pid;
  *out = k;
  return 0;
}

static int send_msg(struct tcpr_keeper *k, uint8_t op, uint64_t id, int fd) {
  struct msg m;
  memset(&m, 0, sizeof(m));
  m.op = op;
  m.id = id;
  struct iovec iov = {&m, sizeof(m)};
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct msghdr mh;
  memset(&mh, 0, sizeof(mh));
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(cbuf, 0, sizeof(cbuf));
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof(cbuf);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = sendmsg(k->fd, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  return n == (ssize_t)sizeof(m) ? 0 : -EPROTO;
}

int tcpr_keeper_hold(struct tcpr_keeper *k, uint64_t id, int fd) {
  if (k == NULL) return 0;
  return send_msg(k, OP_HOLD, id, fd);
}

int tcpr_keeper_drop(struct tcpr_keeper *k, uint64_t id) {
  if (k == NULL) return 0;
  return send_msg(k, OP_DROP, id, -1);
}

void tcpr_keeper_stop(struct tcpr_keeper *k) {
  if (k == NULL) return;
  close(k->fd);
  /* It fences and exits at once; wait at most about a second. */
  for (int i = 0; i < 200; i++) {
    pid_t r = waitpid(k->pid, NULL, WNOHANG);
    if (r == k->pid || (r < 0 && errno == ECHILD)) break;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  free(k);
}
