/* http.c -- the metrics endpoint (see http.h for what it answers).
 *
 * HTTP itself is libmicrohttpd's (MHD): request parsing, keep-alive,
 * pipelining, limits.  What this file adds is how MHD runs inside smrd:
 *
 * - No threads.  smrd's state (libsmr, the front end) belongs to the
 *   event loop's thread and is not thread-safe, and the callback that
 *   produces the metrics reads it.  So MHD runs in "external polling" mode
 *   with epoll: it keeps its listening and client sockets in an epoll set
 *   of its own, whose descriptor (MHD_DAEMON_INFO_EPOLL_FD) is readable
 *   whenever one of them has an event.  An ev_io watches that descriptor
 *   and calls MHD_run(), which handles what is ready without blocking, on
 *   the loop's thread; every request callback therefore runs there too.
 *   After each run an ev_timer is set to MHD_get_timeout(): the time to
 *   the next idle timeout, or 0 when MHD has work that no socket event
 *   will announce again (its epoll set is edge-triggered), so that nothing
 *   is left waiting.
 *
 * - Who may ask.  Every control interface checks who is asking: the admin
 *   socket checks the peer's uid; this listener checks the peer's address
 *   against an allow list (allow.h), in MHD's accept policy callback, so a
 *   client outside the list is closed before MHD reads a byte from it.
 *   Refusals are counted for smrd's metrics rather than logged (a scanner
 *   must not be able to fill the log).
 *
 * - Bounded.  At most HTTP_MAX_CONNECTIONS connections (HTTP_MAX_PER_CLIENT
 *   from one address), each closed after HTTP_IDLE_S seconds without
 *   activity, with MHD's default of 32 KB of memory each (a request whose
 *   headers do not fit is refused by MHD with 431).
 *
 * MHD binds the socket itself (MHD_OPTION_SOCK_ADDR), so it owns it in
 * every case, failure included; its messages are collected while it
 * starts and the last one, the reason it failed, goes into err.  Once it
 * runs its messages are dropped: they concern one client connection. */
#include "http.h"

#include <errno.h>
#include <ev.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "allow.h"
#include "tcp_proto.h" /* smr_net_addr_parse */

#define HTTP_MAX_CONNECTIONS 16
#define HTTP_MAX_PER_CLIENT 4
#define HTTP_IDLE_S 10
#define HTTP_BACKLOG 16

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct smrd_http {
  struct ev_loop *loop;
  struct MHD_Daemon *mhd;
  ev_io io_w;       /* MHD's epoll descriptor */
  ev_timer timer_w; /* MHD_get_timeout() */
  struct smrd_allow allow;
  smrd_http_fn fn;
  void *ctx;
  uint16_t port;
  uint64_t refused;
  char *why; /* while MHD starts: its last message */
  size_t whylen;
};

/* ------------------------------------------------------------- requests */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
                             const char *text, const char *allow) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_PERSISTENT);
  if (r == NULL) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                          "text/plain; charset=utf-8");
  if (allow != NULL) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

/* MHD calls this once the request's headers are in, then for each piece
 * of its body, then once more when it is complete.  An error is answered
 * at the first call: MHD then discards the rest of the request and closes
 * the connection.  The metrics are answered at the last call, since MHD
 * closes the connection after a response queued at the first, and a
 * scraper keeps its connection from one scrape to the next. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  struct smrd_http *h = cls;
  (void)version;
  (void)upload_data;
  if (strcmp(url, "/metrics") != 0)
    return reply(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at "
                 "/metrics\n", NULL);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                 "method not allowed: GET or HEAD\n", "GET, HEAD");
  if (*con_cls == NULL) { /* the headers: wait for the end */
    *con_cls = h;
    return MHD_YES;
  }
  if (*upload_data_size != 0) { /* a body on a GET: ignored */
    *upload_data_size = 0;
    return MHD_YES;
  }
  size_t len = 0;
  char *text = h->fn(h->ctx, &len);
  if (text == NULL)
    return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                 "cannot produce the metrics\n", NULL);
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_TYPE);
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *sa,
                                 socklen_t salen) {
  struct smrd_http *h = cls;
  if (smrd_allow_match(&h->allow, sa, salen)) return MHD_YES;
  h->refused++;
  return MHD_NO;
}

__attribute__((format(printf, 2, 0)))
static void on_log(void *cls, const char *fmt, va_list ap) {
  struct smrd_http *h = cls;
  if (h->why == NULL) return;
  vsnprintf(h->why, h->whylen, fmt, ap);
  size_t n = strlen(h->why);
  while (n > 0 && (h->why[n - 1] == '\n' || h->why[n - 1] == '.'))
    h->why[--n] = 0;
}

/* ----------------------------------------------------- the event loop */

static void drive(struct smrd_http *h) {
  MHD_run(h->mhd);
  ev_timer_stop(h->loop, &h->timer_w);
  MHD_UNSIGNED_LONG_LONG ms;
  if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
    ev_timer_set(&h->timer_w, (double)ms / 1000.0, 0.);
    ev_timer_start(h->loop, &h->timer_w);
  }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  drive(w->data);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  drive(w->data);
}

/* ------------------------------------------------------------------ API */

int smrd_http_open(struct ev_loop *loop, const char *listen,
                   const char *allow, smrd_http_fn fn, void *ctx,
                   struct smrd_http **out, char *err, size_t errlen) {
  *out = NULL;
  struct sockaddr_storage ss;
  socklen_t sslen;
  if (listen == NULL || smr_net_addr_parse(listen, 1, &ss, &sslen) < 0) {
    snprintf(err, errlen, "listen %s: not a numeric host:port (e.g. "
             "127.0.0.1:9464 or [::1]:9464)", listen ? listen : "(none)");
    return -EINVAL;
  }
  struct smrd_http *h = calloc(1, sizeof(*h));
  if (h == NULL) {
    snprintf(err, errlen, "listen %s: out of memory", listen);
    return -ENOMEM;
  }
  char why[256];
  if (smrd_allow_parse(allow ? allow : SMRD_ALLOW_LOOPBACK, &h->allow, why,
                       sizeof(why)) < 0) {
    snprintf(err, errlen, "listen %s: allow list: %s", listen, why);
    free(h);
    return -EINVAL;
  }
  h->loop = loop;
  h->fn = fn;
  h->ctx = ctx;
  const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
  int v6 = ss.ss_family == AF_INET6;
  uint16_t port = ntohs(v6 ? s6->sin6_port : s4->sin_port);
  why[0] = 0;
  h->why = why;
  h->whylen = sizeof(why);
  errno = 0;
  /* IPv6 without MHD_USE_DUAL_STACK: IPV6_V6ONLY, the address given and
   * nothing else. */
  h->mhd = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0), port,
      on_accept, h, on_request, h,
      MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTP_MAX_CONNECTIONS,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)HTTP_MAX_PER_CLIENT,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTP_IDLE_S,
      MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)HTTP_BACKLOG,
      MHD_OPTION_END);
  int e = errno;
  h->why = NULL;
  if (h->mhd == NULL) {
    snprintf(err, errlen, "listen %s: %s", listen,
             why[0] ? why : "libmicrohttpd cannot start (it gave no reason)");
    free(h);
    return e > 0 ? -e : -EIO;
  }
  const union MHD_DaemonInfo *ei =
      MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  const union MHD_DaemonInfo *pi =
      MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  if (ei == NULL || ei->epoll_fd < 0 || pi == NULL) {
    snprintf(err, errlen, "listen %s: libmicrohttpd has no epoll "
             "descriptor to watch", listen);
    MHD_stop_daemon(h->mhd);
    free(h);
    return -ENOTSUP;
  }
  h->port = pi->port;
  ev_io_init(&h->io_w, on_io, ei->epoll_fd, EV_READ);
  h->io_w.data = h;
  ev_io_start(loop, &h->io_w);
  ev_init(&h->timer_w, on_timer);
  h->timer_w.data = h;
  drive(h);
  *out = h;
  return 0;
}

void smrd_http_close(struct smrd_http *h) {
  if (h == NULL) return;
  ev_io_stop(h->loop, &h->io_w);
  ev_timer_stop(h->loop, &h->timer_w);
  MHD_stop_daemon(h->mhd);
  free(h);
}

uint16_t smrd_http_port(const struct smrd_http *h) { return h->port; }

uint64_t smrd_http_refused(const struct smrd_http *h) { return h->refused; }
