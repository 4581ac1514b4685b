/* server.c -- the KV service's front end: Redis clients on TCP.
 *
 * DESIGN
 * ======
 * Each client connection has a RESP parser (resp.c) and a FIFO of reply
 * slots, one per request, so that replies leave in request order however
 * they are produced:
 *
 *   primary    every request -- reads too, which makes reads through the
 *              primary linearizable without leases -- is stamped with the
 *              primary's clock (expiry must be the same on every replica),
 *              encoded (kv_request_encode) and submitted to the group; its
 *              slot fills when libsmr hands back the reply of our own
 *              submission (on_reply), after every replica applied it.  A
 *              pipeline of requests becomes a batch of submissions that the
 *              group orders in one step.
 *   backup     read-only commands are answered at once from the local copy
 *              (possibly stale, never torn); writes get -READONLY.
 *   changing   while the view changes, a former primary keeps submitting
 *              (the core queues and resubmits); a member that is neither
 *              answers -LOADING until it is.
 *
 * A submission whose fate the member cannot learn (it was excluded from
 * the group) gets an error reply; TCP-R will later make that case vanish.
 * A closed client's waiting slots stay allocated until their replies come
 * back (the cookie must stay valid), then go.  While any key has an expiry
 * time, the primary also submits an expiry tick every 100 ms, so that
 * expired keys disappear everywhere at the same position. */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kv.h"
#include "resp.h"
#include "smr/frontend.h"
#include "store.h"

#define READ_CHUNK 65536
#define MAX_OUT (64u << 20) /* stop reading a client that does not read */
#define TICK_S 0.1

struct client;

struct slot {
  struct client *c;
  struct slot *next;
  int ready;
  struct smr_buf reply;
};

struct client {
  struct smrd_frontend *f;
  ev_io rw, ww;
  int fd;
  int closed;         /* the socket is gone; slots may still be waiting */
  int close_after;    /* close once the output is written (QUIT, errors) */
  uint64_t waiting;   /* slots whose replies have not come back */
  struct resp_parser parser;
  struct slot *head, *tail;
  struct smr_buf out;
  size_t out_off;
  struct client *prev, *next;
};

struct smrd_frontend {
  struct smrd_frontend_config cfg;
  ev_io accept_w;
  ev_timer tick_w;
  int fd;
  enum smr_role role;
  struct client *clients;
  uint64_t n_clients;
  struct smr_buf req;    /* request encoding scratch */
  int tick_cookie;       /* its address marks our expiry ticks */
};

__attribute__((format(printf, 3, 4)))
static void flog(struct smrd_frontend *f, int level, const char *fmt, ...) {
  if (f->cfg.log == NULL) return;
  char line[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  f->cfg.log(f->cfg.log_ctx, level, line);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Client output
 * --------------------------------------------------------------------- */

static void client_free(struct client *c) {
  struct smrd_frontend *f = c->f;
  if (c->prev) c->prev->next = c->next;
  else f->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  f->n_clients--;
  resp_parser_free(&c->parser);
  smr_buf_free(&c->out);
  while (c->head) {
    struct slot *s = c->head;
    c->head = s->next;
    smr_buf_free(&s->reply);
    free(s);
  }
  free(c);
}

/* The socket goes now; the struct when no reply is still awaited. */
static void client_close(struct client *c) {
  if (!c->closed) {
    ev_io_stop(c->f->cfg.loop, &c->rw);
    ev_io_stop(c->f->cfg.loop, &c->ww);
    close(c->fd);
    c->closed = 1;
  }
  if (c->waiting == 0) client_free(c);
}

static void client_write(struct client *c) {
  while (c->out_off < c->out.len) {
    ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                     MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (w <= 0) {
      client_close(c);
      return;
    }
    c->out_off += (size_t)w;
  }
  if (c->out_off == c->out.len) {
    smr_buf_reset(&c->out);
    c->out_off = 0;
    ev_io_stop(c->f->cfg.loop, &c->ww);
    if (c->close_after) {
      client_close(c);
      return;
    }
    if (!ev_is_active(&c->rw)) ev_io_start(c->f->cfg.loop, &c->rw);
  } else {
    ev_io_start(c->f->cfg.loop, &c->ww);
    if (c->out.len - c->out_off > MAX_OUT) ev_io_stop(c->f->cfg.loop, &c->rw);
  }
}

/* Moves the replies at the head of the FIFO that are ready to the output. */
static void client_flush(struct client *c) {
  while (c->head != NULL && c->head->ready) {
    struct slot *s = c->head;
    c->head = s->next;
    if (c->head == NULL) c->tail = NULL;
    if (!c->closed) smr_buf_append(&c->out, s->reply.data, s->reply.len);
    smr_buf_free(&s->reply);
    free(s);
  }
  if (!c->closed) client_write(c);
}

static struct slot *slot_new(struct client *c) {
  struct slot *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->c = c;
  if (c->tail) c->tail->next = s;
  else c->head = s;
  c->tail = s;
  return s;
}

static void slot_fill(struct slot *s, const void *data, size_t len) {
  smr_buf_append(&s->reply, data, len);
  s->ready = 1;
}

static void slot_error(struct slot *s, const char *msg) {
  resp_add_error(&s->reply, msg);
  s->ready = 1;
}

/* ------------------------------------------------------------------------
 * Requests
 * --------------------------------------------------------------------- */

static int name_is(const struct resp_request *r, const char *n) {
  size_t l = strlen(n);
  if (r->argl[0] != l) return 0;
  for (size_t i = 0; i < l; i++) {
    char a = (char)r->argv[0][i];
    if (a >= 'a' && a <= 'z') a = (char)(a - 32);
    if (a != n[i]) return 0;
  }
  return 1;
}

static void handle(struct client *c, const struct resp_request *r) {
  struct smrd_frontend *f = c->f;
  struct slot *s = slot_new(c);
  if (s == NULL) {
    client_close(c);
    return;
  }
  if (name_is(r, "QUIT")) {
    slot_fill(s, "+OK\r\n", 5);
    c->close_after = 1;
    return;
  }
  int write = kv_command_is_write(r->argv[0], r->argl[0]);
  if (f->role == SMR_ROLE_BACKUP) {
    if (write) {
      slot_error(s, "READONLY You can't write against a read only replica.");
      return;
    }
    smr_buf_reset(&f->req);
    kv_request_encode(&f->req, wall_ms(), r->argc, r->argv, r->argl);
    if (f->cfg.ops->query(f->cfg.svc, f->req.data, f->req.len, &s->reply) < 0)
      slot_error(s, "ERR the local copy could not answer");
    s->ready = 1;
    return;
  }
  if (f->role == SMR_ROLE_NONE) {
    slot_error(s, "LOADING this member is joining the group");
    return;
  }
  /* The primary (or the primary of a view being changed): through the
   * group, in order. */
  smr_buf_reset(&f->req);
  int rc = kv_request_encode(&f->req, wall_ms(), r->argc, r->argv, r->argl);
  if (rc == 0) rc = smr_submit(f->cfg.group, f->req.data, f->req.len, s);
  if (rc == -EAGAIN) {
    slot_error(s, "ERR the group is overloaded; try again");
  } else if (rc == -EMSGSIZE || rc == -EINVAL) {
    slot_error(s, "ERR request too large for the group");
  } else if (rc < 0) {
    slot_error(s, "ERR this member is not in the group");
  } else {
    c->waiting++;
  }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  struct client *c = w->data;
  uint8_t buf[READ_CHUNK];
  ssize_t n = read(c->fd, buf, sizeof(buf));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    client_close(c);
    return;
  }
  size_t off = 0;
  while (off < (size_t)n && !c->closed && !c->close_after) {
    size_t used = 0;
    struct resp_request req;
    int rc = resp_parse(&c->parser, buf + off, (size_t)n - off, &used, &req);
    off += used;
    if (rc == 1) {
      handle(c, &req);
    } else if (rc < 0) {
      /* A protocol error: its reply, then the connection closes, as in
       * Redis. */
      size_t len;
      const char *e = resp_parser_error(&c->parser, &len);
      struct slot *s = slot_new(c);
      if (s != NULL) slot_fill(s, e, len);
      c->close_after = 1;
      break;
    } else {
      break; /* need more bytes */
    }
  }
  if (!c->closed) client_flush(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  client_write(w->data);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct smrd_frontend *f = w->data;
  for (;;) {
    int fd = accept4(f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
      close(fd);
      continue;
    }
    c->f = f;
    c->fd = fd;
    resp_parser_init(&c->parser, NULL);
    ev_io_init(&c->rw, on_read, fd, EV_READ);
    c->rw.data = c;
    ev_io_init(&c->ww, on_writable, fd, EV_WRITE);
    c->ww.data = c;
    ev_io_start(loop, &c->rw);
    c->next = f->clients;
    if (f->clients) f->clients->prev = c;
    f->clients = c;
    f->n_clients++;
  }
}

/* ------------------------------------------------------------------------
 * libsmr's upcalls
 * --------------------------------------------------------------------- */

static void kv_on_reply(struct smrd_frontend *f, void *cookie,
                        const uint8_t *reply, size_t len) {
  if (cookie == &f->tick_cookie) return;
  struct slot *s = cookie;
  struct client *c = s->c;
  slot_fill(s, reply, len);
  c->waiting--;
  if (c->closed) {
    if (c->waiting == 0) client_free(c);
    return;
  }
  client_flush(c);
}

static void kv_on_dropped(struct smrd_frontend *f, void *cookie) {
  if (cookie == &f->tick_cookie) return;
  struct slot *s = cookie;
  struct client *c = s->c;
  slot_error(s, "ERR this member left the group before the request's "
                "outcome was known; retry it");
  c->waiting--;
  if (c->closed) {
    if (c->waiting == 0) client_free(c);
    return;
  }
  client_flush(c);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd_frontend *f = w->data;
  if (f->role != SMR_ROLE_PRIMARY) return;
  /* Nothing can expire: no tick (an idle group stays idle, and its disk
   * is not synced ten times a second for nothing). */
  if (kv_store_expires(kv_service_store(f->cfg.svc)) == 0) return;
  smr_buf_reset(&f->req);
  if (kv_request_encode_tick(&f->req, wall_ms(), 64) == 0)
    smr_submit(f->cfg.group, f->req.data, f->req.len, &f->tick_cookie);
}

static void kv_on_role(struct smrd_frontend *f, enum smr_role role) {
  static const char *names[] = {"not in the group", "primary", "backup",
                                "changing views"};
  /* A primary whose view is changing stays one for its clients: the core
   * carries its submissions into the next view. */
  if (role == SMR_ROLE_WEDGED && f->role == SMR_ROLE_PRIMARY) return;
  f->role = role;
  flog(f, SMR_LOG_INFO, "clients: serving as %s", names[role]);
}

static uint64_t kv_connections(struct smrd_frontend *f) {
  return f->n_clients;
}

/* ------------------------------------------------------------------------
 * Life cycle
 * --------------------------------------------------------------------- */

static int kv_service_create(void **svc, const struct smr_service_ops **ops) {
  struct kv_service *k = kv_service_new(NULL);
  if (k == NULL) return -ENOMEM;
  *svc = k;
  *ops = &kv_service_ops;
  return 0;
}

static void kv_service_destroy(void *svc) { kv_service_free(svc); }

static int kv_open(const struct smrd_frontend_config *cfg,
                   struct smrd_frontend **out, char *err, size_t errlen) {
  struct sockaddr_in6 sa6;
  struct sockaddr_in sa4;
  struct sockaddr *sa;
  socklen_t salen;
  int family;
  memset(&sa6, 0, sizeof(sa6));
  memset(&sa4, 0, sizeof(sa4));
  const char *bind_to = cfg->bind != NULL ? cfg->bind : "";
  if (bind_to[0] == 0 || inet_pton(AF_INET6, bind_to, &sa6.sin6_addr) == 1) {
    family = AF_INET6;
    sa6.sin6_family = AF_INET6;
    sa6.sin6_port = htons(cfg->port);
    if (bind_to[0] == 0) sa6.sin6_addr = in6addr_any;
    sa = (struct sockaddr *)&sa6;
    salen = sizeof(sa6);
  } else if (inet_pton(AF_INET, bind_to, &sa4.sin_addr) == 1) {
    family = AF_INET;
    sa4.sin_family = AF_INET;
    sa4.sin_port = htons(cfg->port);
    sa = (struct sockaddr *)&sa4;
    salen = sizeof(sa4);
  } else {
    snprintf(err, errlen, "[service] bind = %s: not an IP address", bind_to);
    return -EINVAL;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    return -errno;
  }
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, sa, salen) < 0 || listen(fd, 511) < 0) {
    int e = errno;
    snprintf(err, errlen, "port %u: %s", cfg->port, strerror(e));
    close(fd);
    return -e;
  }
  struct smrd_frontend *f = calloc(1, sizeof(*f));
  if (f == NULL) {
    close(fd);
    return -ENOMEM;
  }
  f->cfg = *cfg;
  f->fd = fd;
  ev_io_init(&f->accept_w, on_accept, fd, EV_READ);
  f->accept_w.data = f;
  ev_io_start(cfg->loop, &f->accept_w);
  ev_timer_init(&f->tick_w, on_tick, TICK_S, TICK_S);
  f->tick_w.data = f;
  ev_timer_start(cfg->loop, &f->tick_w);
  *out = f;
  return 0;
}

static void kv_close(struct smrd_frontend *f) {
  if (f == NULL) return;
  ev_io_stop(f->cfg.loop, &f->accept_w);
  ev_timer_stop(f->cfg.loop, &f->tick_w);
  close(f->fd);
  while (f->clients) {
    struct client *c = f->clients;
    c->waiting = 0; /* the group is going away too: nothing will come */
    client_close(c);
  }
  smr_buf_free(&f->req);
  free(f);
}

const struct smrd_frontend_ops smrd_kv_frontend = {
    .name = "kv",
    .service_create = kv_service_create,
    .service_destroy = kv_service_destroy,
    .open = kv_open,
    .close = kv_close,
    .on_role = kv_on_role,
    .on_reply = kv_on_reply,
    .on_dropped = kv_on_dropped,
    .connections = kv_connections,
};
