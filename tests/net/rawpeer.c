/* rawpeer.c -- a hand-driven client for refusal tests (see rawpeer.h).
 *
 * The TCP connect is blocking (the listener's kernel completes it from its
 * backlog without the loop's help); everything after is non-blocking and
 * driven by an ev_io on the test's loop.  OpenSSL's own socket BIO writes
 * with write(2), which would raise SIGPIPE when the transport under test
 * has already dropped us, so every SSL call runs with SIGPIPE blocked and
 * any SIGPIPE it raised is consumed before unblocking.  (The transport
 * itself must never raise SIGPIPE: the tests do not ignore it.) */
#include "rawpeer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

enum { OP_HANDSHAKE, OP_READ, OP_WRITE };

/* One SSL call with SIGPIPE held off; returns SSL's result. */
static int ssl_call(struct rawpeer *r, int op, void *buf, size_t len,
                    size_t *done) {
  sigset_t pipe_set, old;
  struct timespec zero = {0, 0};
  int ret;

  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigprocmask(SIG_BLOCK, &pipe_set, &old);
  ERR_clear_error();
  if (op == OP_HANDSHAKE)
    ret = SSL_do_handshake(r->ssl);
  else if (op == OP_READ)
    ret = SSL_read_ex(r->ssl, buf, len, done);
  else
    ret = SSL_write_ex(r->ssl, buf, len, done);
  while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
  }
  sigprocmask(SIG_SETMASK, &old, NULL);
  return ret;
}

static void fail(struct rawpeer *r, const char *what) {
  if (r->closed) return;
  r->closed = 1;
  snprintf(r->error, sizeof r->error, "%s", what);
  ev_io_stop(r->loop, &r->io);
}

static void set_events(struct rawpeer *r, int ev) {
  if (r->closed || ev == r->events) return;
  ev_io_stop(r->loop, &r->io);
  ev_io_set(&r->io, r->fd, ev);
  ev_io_start(r->loop, &r->io);
  r->events = ev;
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
  struct rawpeer *r = w->data;
  int want_write = 0;

  (void)loop;
  (void)revents;
  if (r->closed) return;
  if (r->tls && !r->up) {
    int x = ssl_call(r, OP_HANDSHAKE, NULL, 0, NULL);
    if (x != 1) {
      int e = SSL_get_error(r->ssl, x);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_events(r, EV_READ | (e == SSL_ERROR_WANT_WRITE ? EV_WRITE : 0));
        return;
      }
      fail(r, "handshake failed");
      return;
    }
  }
  r->up = 1;
  while (r->outoff < r->outlen) {
    size_t n = 0;
    if (r->tls) {
      int x = ssl_call(r, OP_WRITE, r->out + r->outoff, r->outlen - r->outoff,
                       &n);
      if (x != 1) {
        int e = SSL_get_error(r->ssl, x);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
          want_write = e == SSL_ERROR_WANT_WRITE;
          break;
        }
        r->outoff = r->outlen; /* the other side is gone: keep reading */
        break;
      }
    } else {
      ssize_t s = send(r->fd, r->out + r->outoff, r->outlen - r->outoff,
                       MSG_NOSIGNAL);
      if (s < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          want_write = 1;
          break;
        }
        r->outoff = r->outlen;
        break;
      }
      n = (size_t)s;
    }
    r->outoff += n;
  }
  for (;;) {
    size_t n = 0;
    if (r->inlen == sizeof r->in) r->inlen = 0; /* keep the latest bytes */
    if (r->tls) {
      int x = ssl_call(r, OP_READ, r->in + r->inlen, sizeof r->in - r->inlen,
                       &n);
      if (x != 1) {
        int e = SSL_get_error(r->ssl, x);
        if (e == SSL_ERROR_WANT_READ) break;
        if (e == SSL_ERROR_WANT_WRITE) {
          want_write = 1;
          break;
        }
        fail(r, "closed");
        return;
      }
    } else {
      ssize_t s = recv(r->fd, r->in + r->inlen, sizeof r->in - r->inlen, 0);
      if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (s <= 0) {
        fail(r, "closed");
        return;
      }
      n = (size_t)s;
    }
    r->inlen += n;
  }
  set_events(r, EV_READ | (want_write ? EV_WRITE : 0));
}

int rawpeer_open(struct rawpeer *r, struct ev_loop *loop, const char *host,
                 int port, int tls, const char *cert, const char *key) {
  struct sockaddr_storage ss;
  socklen_t len;

  memset(r, 0, sizeof *r);
  r->loop = loop;
  r->tls = tls;
  r->fd = -1;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    len = sizeof *a4;
  } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    len = sizeof *a6;
  } else {
    return -1;
  }
  r->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (r->fd < 0) return -1;
  if (connect(r->fd, (struct sockaddr *)&ss, len) < 0 ||
      fcntl(r->fd, F_SETFL, O_NONBLOCK) < 0)
    goto fail;
  if (tls) {
    r->ctx = SSL_CTX_new(TLS_client_method());
    if (r->ctx == NULL) goto fail;
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_NONE, NULL);
    if (cert != NULL &&
        (SSL_CTX_use_certificate_chain_file(r->ctx, cert) != 1 ||
         SSL_CTX_use_PrivateKey_file(r->ctx, key, SSL_FILETYPE_PEM) != 1))
      goto fail;
    r->ssl = SSL_new(r->ctx);
    if (r->ssl == NULL || SSL_set_fd(r->ssl, r->fd) != 1) goto fail;
    SSL_set_connect_state(r->ssl);
  }
  ev_io_init(&r->io, on_io, r->fd, EV_READ | EV_WRITE);
  r->io.data = r;
  r->events = EV_READ | EV_WRITE;
  ev_io_start(loop, &r->io);
  return 0;

fail:
  ERR_clear_error();
  rawpeer_close(r);
  return -1;
}

void rawpeer_send(struct rawpeer *r, const void *buf, size_t len) {
  if (len > sizeof r->out - r->outlen) len = sizeof r->out - r->outlen;
  memcpy(r->out + r->outlen, buf, len);
  r->outlen += len;
  if (!r->closed && r->fd >= 0) set_events(r, EV_READ | EV_WRITE);
}

void rawpeer_close(struct rawpeer *r) {
  if (r->loop != NULL) ev_io_stop(r->loop, &r->io);
  if (r->ssl != NULL) SSL_free(r->ssl);
  if (r->ctx != NULL) SSL_CTX_free(r->ctx);
  if (r->fd >= 0) close(r->fd);
  r->ssl = NULL;
  r->ctx = NULL;
  r->fd = -1;
  r->closed = 1;
}
