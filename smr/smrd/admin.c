/* admin.c -- smrd's admin socket (see admin.h for the protocol).
 *
 * One connection carries one request.  Each accepted connection gets a read
 * watcher; bytes accumulate (at most 64 KB) until a newline, the request is
 * parsed and handled, and the reply is written with a short send timeout
 * (admin replies are small) before the connection is closed.  Who may ask
 * is checked before anything is read: the peer's uid (SO_PEERCRED) must be
 * root's or smrd's own, and the socket file itself is created 0600. */
#include "admin.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_MAX_REQUEST 65536

struct smrd_admin {
  struct ev_loop *loop;
  ev_io accept_w;
  int fd;
  char path[108];
  smrd_admin_fn fn;
  void *ctx;
};

struct conn {
  struct smrd_admin *a;
  ev_io w;
  char buf[ADMIN_MAX_REQUEST];
  size_t len;
};

static void conn_close(struct conn *c) {
  ev_io_stop(c->a->loop, &c->w);
  close(c->w.fd);
  free(c);
}

static void reply_and_close(struct conn *c, json_t *reply) {
  char *text = json_dumps(reply, JSON_COMPACT);
  if (text != NULL) {
    /* Small and final: write it with a bounded blocking send. */
    int fd = c->w.fd;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    size_t n = strlen(text), off = 0;
    while (off < n) {
      ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += (size_t)w;
    }
    if (off == n) send(fd, "\n", 1, MSG_NOSIGNAL);
    free(text);
  }
  conn_close(c);
}

static json_t *error_reply(const char *reason) {
  return json_pack("{s:s}", "error", reason);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  struct conn *c = w->data;
  ssize_t r = read(w->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r <= 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)r;
  char *nl = memchr(c->buf, '\n', c->len);
  if (nl == NULL) {
    if (c->len >= sizeof(c->buf) - 1) {
      json_t *e = error_reply("request too long");
      reply_and_close(c, e);
      json_decref(e);
    }
    return;
  }
  *nl = 0;
  json_error_t jerr;
  json_t *req = json_loads(c->buf, 0, &jerr), *reply = NULL;
  char err[300] = "";
  const char *cmd = NULL;
  if (req == NULL || !json_is_object(req)) {
    snprintf(err, sizeof(err), "request is not a JSON object: %s",
             req == NULL ? jerr.text : "not an object");
  } else if (!json_is_string(json_object_get(req, "cmd"))) {
    snprintf(err, sizeof(err), "request has no \"cmd\" string");
  } else {
    cmd = json_string_value(json_object_get(req, "cmd"));
    reply = c->a->fn(c->a->ctx, cmd, req, err, sizeof(err));
    if (reply == NULL && err[0] == 0)
      snprintf(err, sizeof(err), "%s: failed", cmd);
  }
  if (reply == NULL) reply = error_reply(err);
  json_decref(req);
  reply_and_close(c, reply);
  json_decref(reply);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct smrd_admin *a = w->data;
  int fd = accept4(a->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  struct ucred cred;
  socklen_t cl = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
      (cred.uid != 0 && cred.uid != geteuid())) {
    close(fd); /* not root and not us: no word */
    return;
  }
  struct conn *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    close(fd);
    return;
  }
  c->a = a;
  ev_io_init(&c->w, on_read, fd, EV_READ);
  c->w.data = c;
  ev_io_start(loop, &c->w);
}

int smrd_admin_open(struct ev_loop *loop, const char *path, smrd_admin_fn fn,
                    void *ctx, struct smrd_admin **out, char *err,
                    size_t errlen) {
  *out = NULL;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(err, errlen, "admin socket %s: path too long", path);
    return -ENAMETOOLONG;
  }
  strcpy(sa.sun_path, path);
  /* A live socket means another smrd: refuse.  A dead one is replaced. */
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    int live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(probe);
    if (live) {
      snprintf(err, errlen, "admin socket %s: another smrd is serving it",
               path);
      return -EADDRINUSE;
    }
  }
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "admin socket: %s", strerror(errno));
    return -errno;
  }
  mode_t old = umask(0077);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rc < 0 || chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
    int e = errno;
    snprintf(err, errlen, "admin socket %s: %s", path, strerror(e));
    close(fd);
    return -e;
  }
  struct smrd_admin *a = calloc(1, sizeof(*a));
  if (a == NULL) {
    close(fd);
    return -ENOMEM;
  }
  a->loop = loop;
  a->fd = fd;
  snprintf(a->path, sizeof(a->path), "%s", path);
  a->fn = fn;
  a->ctx = ctx;
  ev_io_init(&a->accept_w, on_accept, fd, EV_READ);
  a->accept_w.data = a;
  ev_io_start(loop, &a->accept_w);
  *out = a;
  return 0;
}

void smrd_admin_close(struct smrd_admin *a) {
  if (a == NULL) return;
  ev_io_stop(a->loop, &a->accept_w);
  close(a->fd);
  unlink(a->path);
  free(a);
}

/* ------------------------------------------------------------------------
 * Client
 * --------------------------------------------------------------------- */

static int wait_fd(int fd, short ev, int timeout_ms) {
  struct pollfd p = {fd, ev, 0};
  int r;
  do r = poll(&p, 1, timeout_ms);
  while (r < 0 && errno == EINTR);
  return r > 0 ? 0 : -ETIMEDOUT;
}

json_t *smrd_admin_call(const char *path, json_t *req, int timeout_ms,
                        char *err, size_t errlen) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    snprintf(err, errlen, "%s: path too long", path);
    return NULL;
  }
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    snprintf(err, errlen, "cannot reach smrd at %s: %s", path,
             strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  char *text = json_dumps(req, JSON_COMPACT);
  size_t n = text ? strlen(text) : 0, off = 0;
  int ok = text != NULL;
  while (ok && off < n) {
    ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
    if (w <= 0) ok = 0;
    else off += (size_t)w;
  }
  if (ok && send(fd, "\n", 1, MSG_NOSIGNAL) != 1) ok = 0;
  free(text);
  if (!ok) {
    snprintf(err, errlen, "%s: sending the request failed", path);
    close(fd);
    return NULL;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) break;
    if (len + 1 >= cap) {
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) break;
      buf = nb;
      cap *= 2;
    }
    if (wait_fd(fd, POLLIN, timeout_ms) < 0) {
      snprintf(err, errlen, "%s: no reply within %d ms", path, timeout_ms);
      free(buf);
      close(fd);
      return NULL;
    }
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  close(fd);
  if (buf == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  buf[len] = 0;
  json_error_t jerr;
  json_t *reply = json_loads(buf, JSON_DISABLE_EOF_CHECK, &jerr);
  free(buf);
  if (reply == NULL) {
    snprintf(err, errlen, "%s: the reply is not JSON (%s)", path, jerr.text);
    return NULL;
  }
  return reply;
}
