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
 * TCP-R (tcpr/tcpr.h): a connection accepted on the VIP is a gated one.
 * Its TCP state is captured at accept and submitted (OPEN) before any of
 * its requests; each request goes to the group as a REQ record with its
 * stream offsets, and when it is applied the gate releases the client's
 * bytes up to its end and the reply goes out.  The group's connection
 * table (conntab.c) holds the offsets and the reply bytes the client may
 * lack, so when this member becomes primary it restores every connection
 * of the table (repair.c), resends those bytes and reads on where the
 * group stopped.  A member that stops being primary drops its gated
 * connections silently (repair-mode close): the client must not notice.
 * Graceful closes go through the group too (FIN, QUIT), then FORGET.
 *
 * A submission whose fate the member cannot learn (it was excluded from
 * the group) gets an error reply on an ordinary connection; on a gated one
 * nothing is sent: the connection is dropped silently and the new primary
 * answers.
 * A closed client's waiting slots stay allocated until their replies come
 * back (the cookie must stay valid), then go.  While any key has an expiry
 * time, the primary also submits an expiry tick every 100 ms, so that
 * expired keys disappear everywhere at the same position. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <sys/random.h>
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
#include "tcpr.h"

#define READ_CHUNK 65536
#define MAX_OUT (64u << 20) /* stop reading a client that does not read */
#define TICK_S 0.1

struct client;

/* What a slot's submission was (gated connections submit records other
 * than requests; their replies carry a status byte). */
enum slot_kind {
  SLOT_PLAIN = 0,
  SLOT_OPEN,
  SLOT_REQ,
  SLOT_PART,
  SLOT_FIN,
  SLOT_OTHER
};

struct slot {
  struct client *c;
  struct slot *next;
  int ready;
  enum slot_kind kind;
  uint64_t end;           /* SLOT_REQ: stream offset past the request */
  struct smr_buf reply;
};

/* A submission held back by the test-only replication delay, or by the
 * group's flow control (EAGAIN). */
struct held {
  struct held *next;
  struct slot *s;
  double due;
  struct smr_buf rec;
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
  /* Gated (TCP-R) connections only. */
  int gated;
  uint64_t id;
  struct tcpr_tcp_state tcp;
  uint64_t sent_off;   /* reply stream bytes handed to the kernel */
  uint64_t repl_off;   /* client stream bytes submitted (REQ or PART) */
  struct smr_buf raw;  /* client bytes from raw_off on, not replicated */
  uint64_t raw_off;
  uint64_t acked_told; /* acknowledged offset last told to the group */
  int fin;             /* the client closed; FIN record submitted */
  int finishing;       /* close once every slot is flushed */
  int finished;        /* shutdown done, FORGET submitted */
  int throttled;       /* not read: the group holds too many of its reply
                          bytes the client has not acknowledged */
  ev_timer part_w;     /* a short incomplete request waits this long */
  uint64_t release_to; /* client bytes applied: to release */
  uint64_t released;   /* client bytes released at the gate */
  int dirty;           /* on the front end's list of clients to flush */
  struct client *dirty_next;
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
  struct smr_buf rec;    /* record encoding scratch */
  int tick_cookie;       /* its address marks our expiry ticks */
  struct held *held, *held_tail; /* in submission order */
  ev_timer held_w;
  uint64_t n_gated, restore_failures;
  uint64_t released_bytes; /* client bytes the gate released */
  uint64_t owner;        /* our owner epoch (tcpr_rec_*), set at takeover */
  /* Test only: replies of gated connections held back (reply_delay_ms). */
  struct slot **late;
  double *late_due;
  size_t late_head, late_n, late_cap;
  ev_timer late_w;
  struct client *dirty; /* replies to flush before the loop blocks */
  ev_prepare flush_w;
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
 * Submission (through the test-only delay and flow control)
 * --------------------------------------------------------------------- */

static double now_s(struct smrd_frontend *f) { return ev_now(f->cfg.loop); }

static void held_arm(struct smrd_frontend *f);

/* Submits rec for slot s, or holds it (delay, or the group is full).
 * Returns 0 or a negative errno other than EAGAIN (nothing held then). */
static int submit(struct smrd_frontend *f, struct slot *s,
                  const struct smr_buf *rec) {
  /* Refused now rather than from the held queue, where the caller could no
   * longer answer it. */
  if (rec->len > SMR_MAX_REQUEST) return -EMSGSIZE;
  if (f->held == NULL && f->cfg.replication_delay_ms == 0) {
    int rc = smr_submit(f->cfg.group, rec->data, rec->len, s);
    if (rc != -EAGAIN) return rc;
  }
  struct held *h = calloc(1, sizeof(*h));
  if (h == NULL) return -ENOMEM;
  h->s = s;
  h->due = now_s(f) + f->cfg.replication_delay_ms / 1000.0;
  if (smr_buf_append(&h->rec, rec->data, rec->len) < 0) {
    free(h);
    return -ENOMEM;
  }
  if (f->held_tail) f->held_tail->next = h;
  else f->held = h;
  f->held_tail = h;
  held_arm(f);
  return 0;
}

static void slot_error(struct slot *s, const char *msg);
static void client_flush(struct client *c);
static void slot_dropped(struct smrd_frontend *f, struct slot *s);

/* Submits what is due, in order, until the group pushes back. */
static void held_run(struct smrd_frontend *f) {
  while (f->held != NULL && f->held->due <= now_s(f) + 1e-4) {
    struct held *h = f->held;
    int rc = smr_submit(f->cfg.group, h->rec.data, h->rec.len, h->s);
    if (rc == -EAGAIN) break; /* retried on the next reply */
    f->held = h->next;
    if (f->held == NULL) f->held_tail = NULL;
    if (rc < 0) slot_dropped(f, h->s);
    smr_buf_free(&h->rec);
    free(h);
  }
  held_arm(f);
}

static void on_held(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  held_run(w->data);
}

static void held_arm(struct smrd_frontend *f) {
  ev_timer_stop(f->cfg.loop, &f->held_w);
  if (f->held == NULL) return;
  double after = f->held->due - now_s(f);
  /* Waiting for the group's flow control: poll a little too. */
  if (after < 0.001) after = 0.001;
  ev_timer_set(&f->held_w, after, 0);
  ev_timer_start(f->cfg.loop, &f->held_w);
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
  ev_timer_stop(f->cfg.loop, &c->part_w);
  if (c->dirty) {
    struct client **pp = &f->dirty;
    while (*pp != c) pp = &(*pp)->dirty_next;
    *pp = c->dirty_next;
  }
  resp_parser_free(&c->parser);
  smr_buf_free(&c->out);
  smr_buf_free(&c->raw);
  while (c->head) {
    struct slot *s = c->head;
    c->head = s->next;
    smr_buf_free(&s->reply);
    free(s);
  }
  free(c);
}

static struct slot *slot_new(struct client *c);

/* A gated connection whose socket went: the group forgets it. */
static void gated_forget(struct client *c) {
  struct smrd_frontend *f = c->f;
  if (c->finished) return;
  c->finished = 1;
  struct slot *s = slot_new(c);
  if (s == NULL) return;
  s->kind = SLOT_OTHER;
  smr_buf_reset(&f->rec);
  if (tcpr_rec_forget(&f->rec, f->owner, c->id) == 0 && submit(f, s, &f->rec) == 0)
    c->waiting++;
  else
    s->ready = 1;
}

/* The socket goes now; the struct when no reply is still awaited.  A gated
 * connection closes gracefully: the gate lets its FIN through, shutdown()
 * sends it whatever the keeper holds, and the group forgets it. */
static void client_close(struct client *c) {
  struct smrd_frontend *f = c->f;
  if (!c->closed) {
    ev_io_stop(f->cfg.loop, &c->rw);
    ev_io_stop(f->cfg.loop, &c->ww);
    ev_timer_stop(f->cfg.loop, &c->part_w);
    if (c->gated) {
      tcpr_gate_allow_close(f->cfg.gate, c->tcp.raddr, c->tcp.rport);
      shutdown(c->fd, SHUT_WR);
      tcpr_keeper_drop(f->cfg.keeper, c->id);
      tcpr_gate_conn_close(f->cfg.gate, c->tcp.raddr, c->tcp.rport);
      f->n_gated--;
    }
    close(c->fd);
    c->closed = 1;
    if (c->gated) gated_forget(c);
  }
  if (c->waiting == 0) client_free(c);
}

/* Drops a gated connection without a sound (this member is no longer the
 * primary; the new one restores it). */
static void client_drop_silently(struct client *c) {
  struct smrd_frontend *f = c->f;
  if (!c->closed) {
    ev_io_stop(f->cfg.loop, &c->rw);
    ev_io_stop(f->cfg.loop, &c->ww);
    ev_timer_stop(f->cfg.loop, &c->part_w);
    tcpr_close_silently(c->fd); /* repair mode first: the keeper's copy */
    tcpr_keeper_drop(f->cfg.keeper, c->id); /* closes silently too */
    /* The gate keeps its entry: whatever the socket still emits as it goes
     * (an abortive close's RST) must stay held. */
    f->n_gated--;
    c->closed = 1;
    c->finished = 1; /* the group keeps it, for the next primary */
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
    c->sent_off += (uint64_t)w;
  }
  if (c->out_off == c->out.len) {
    smr_buf_reset(&c->out);
    c->out_off = 0;
    ev_io_stop(c->f->cfg.loop, &c->ww);
    if (c->close_after || (c->finishing && c->head == NULL)) {
      client_close(c);
      return;
    }
    if (!ev_is_active(&c->rw) && !c->fin && !c->throttled)
      ev_io_start(c->f->cfg.loop, &c->rw);
  } else {
    ev_io_start(c->f->cfg.loop, &c->ww);
    if (c->out.len - c->out_off > MAX_OUT) ev_io_stop(c->f->cfg.loop, &c->rw);
  }
}

/* Moves the replies at the head of the FIFO that are ready to the output,
 * after releasing the client's bytes the group applied (the replies carry
 * the acknowledgement). */
/* Releases the client's bytes the group applied (queued in the gate:
 * kmod batches them until tcpr_gate_flush).  1 if it released. */
static int client_release(struct client *c) {
  if (!c->gated || c->closed || c->release_to <= c->released) return 0;
  tcpr_gate_release(c->f->cfg.gate, c->tcp.raddr, c->tcp.rport,
                    c->tcp.rcv_isn1 + (uint32_t)c->release_to);
  c->f->released_bytes += c->release_to - c->released;
  c->released = c->release_to;
  return 1;
}

static void client_flush(struct client *c) {
  /* (From on_flush the release went out with the whole batch already.) */
  if (client_release(c)) tcpr_gate_flush(c->f->cfg.gate);
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

/* What the client has acknowledged of our replies (as far as we know). */
static uint64_t gated_acked(struct client *c) {
  uint64_t a = c->acked_told;
  if (!c->closed && tcpr_acked(c->fd, c->sent_off, &a) < 0) a = c->acked_told;
  if (a < c->acked_told) a = c->acked_told;
  return a;
}

/* A request (or a literal reply) of a gated connection, through the group.
 * The reply comes back with the request's status. */
static void gated_submit(struct client *c, struct slot *s, uint64_t start,
                         uint64_t end, unsigned flags, const void *payload,
                         size_t len) {
  struct smrd_frontend *f = c->f;
  uint64_t acked = gated_acked(c);
  smr_buf_reset(&f->rec);
  s->kind = SLOT_REQ;
  s->end = end;
  int rc = tcpr_rec_req(&f->rec, f->owner, c->id, start, end, acked, flags, payload,
                        len);
  if (rc == 0) rc = submit(f, s, &f->rec);
  if ((rc == -EMSGSIZE || rc == -EINVAL) && !(flags & TCPR_REQ_LITERAL)) {
    /* Larger than one group message: refused, as on any connection, but
     * through the group like every reply of a gated connection. */
    struct smr_buf e = {0};
    resp_add_error(&e, "ERR request too large for the group");
    gated_submit(c, s, start, end, TCPR_REQ_LITERAL, e.data, e.len);
    smr_buf_free(&e);
    return;
  }
  if (rc < 0) {
    /* Cannot reach the group: the connection cannot go on consistently. */
    flog(f, SMR_LOG_WARN, "client %" PRIu64 ": cannot submit (%s); closing",
         c->id, strerror(-rc));
    s->ready = 1;
    c->close_after = 1;
    return;
  }
  c->acked_told = acked;
  c->waiting++;
}

static void handle(struct client *c, const struct resp_request *r) {
  struct smrd_frontend *f = c->f;
  struct slot *s = slot_new(c);
  if (s == NULL) {
    c->close_after = 1; /* out of memory: closes once the output is out */
    return;
  }
  if (name_is(r, "QUIT")) {
    if (c->gated) {
      gated_submit(c, s, r->start, r->end,
                   TCPR_REQ_LITERAL | TCPR_REQ_CLOSE_AFTER, "+OK\r\n", 5);
      c->fin = 1; /* read no more */
      ev_io_stop(f->cfg.loop, &c->rw);
      return;
    }
    slot_fill(s, "+OK\r\n", 5);
    c->close_after = 1;
    return;
  }
  int write = kv_command_is_write(r->argv[0], r->argl[0]);
  if (!c->gated && f->role == SMR_ROLE_BACKUP) {
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
  if (!c->gated && f->role == SMR_ROLE_NONE) {
    slot_error(s, "LOADING this member is joining the group");
    return;
  }
  /* The primary (or the primary of a view being changed): through the
   * group, in order. */
  smr_buf_reset(&f->req);
  int rc = kv_request_encode(&f->req, wall_ms(), r->argc, r->argv, r->argl);
  if (c->gated) {
    if (rc < 0) {
      smr_buf_reset(&f->req);
      resp_add_error(&f->req, "ERR request too large for the group");
      gated_submit(c, s, r->start, r->end, TCPR_REQ_LITERAL, f->req.data,
                   f->req.len);
      return;
    }
    gated_submit(c, s, r->start, r->end, 0, f->req.data, f->req.len);
    return;
  }
  smr_buf_reset(&f->rec);
  if (rc == 0) rc = tcpr_rec_plain(&f->rec, f->req.data, f->req.len);
  if (rc == 0) rc = smr_submit(f->cfg.group, f->rec.data, f->rec.len, s);
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

/* The client closed its side of a gated connection: the group learns it
 * (after the requests before it), then the connection closes. */
static void gated_fin(struct client *c) {
  struct smrd_frontend *f = c->f;
  c->fin = 1;
  ev_io_stop(f->cfg.loop, &c->rw);
  struct slot *s = slot_new(c);
  if (s == NULL) {
    client_close(c);
    return;
  }
  s->kind = SLOT_FIN;
  smr_buf_reset(&f->rec);
  int rc = tcpr_rec_fin(&f->rec, f->owner, c->id, resp_parser_offset(&c->parser));
  if (rc == 0) rc = submit(f, s, &f->rec);
  if (rc < 0) {
    s->ready = 1;
    c->finishing = 1;
    client_flush(c);
    return;
  }
  c->waiting++;
}

/* Parses bytes of the client's stream; complete requests are handled. */
static void feed(struct client *c, const uint8_t *buf, size_t n) {
  struct smrd_frontend *f = c->f;
  size_t off = 0;
  while (off < n && !c->closed && !c->close_after && !c->fin) {
    size_t used = 0;
    struct resp_request req;
    int rc = resp_parse(&c->parser, buf + off, n - off, &used, &req);
    off += used;
    if (rc == 1) {
      handle(c, &req);
      if (c->gated && req.end > c->repl_off) c->repl_off = req.end;
    } else if (rc < 0) {
      /* A protocol error: its reply, then the connection closes, as in
       * Redis. */
      size_t len;
      const char *e = resp_parser_error(&c->parser, &len);
      struct slot *s = slot_new(c);
      if (s == NULL) break;
      if (c->gated) {
        uint64_t at = resp_parser_offset(&c->parser);
        gated_submit(c, s, at, at, TCPR_REQ_LITERAL | TCPR_REQ_CLOSE_AFTER, e,
                     len);
        c->fin = 1;
        ev_io_stop(f->cfg.loop, &c->rw);
      } else {
        slot_fill(s, e, len);
        c->close_after = 1;
      }
      break;
    } else {
      break; /* need more bytes */
    }
  }
}

/* A gated connection's bytes that belong to a request not complete yet are
 * replicated ahead once there are PART_MIN of them (struct tcpr_conn's
 * partial): the gate can then acknowledge them, and the client, whose
 * congestion window is small at first, can send the rest. */
#define PART_MIN 8192

/* How long the start of a request shorter than PART_MIN may wait for the
 * rest before it is replicated anyway: a client may be unable to send more
 * until it is acknowledged (Nagle's algorithm, or a congestion window of
 * one segment after a retransmission timeout). */
#define PART_IDLE_S 0.005

static void gated_part(struct client *c, int force) {
  struct smrd_frontend *f = c->f;
  uint64_t upto = resp_parser_offset(&c->parser);
  if (c->closed || c->fin || c->close_after || upto <= c->repl_off)
    return;
  if (!force && upto < c->repl_off + PART_MIN) {
    if (!ev_is_active(&c->part_w)) {
      ev_timer_set(&c->part_w, PART_IDLE_S, 0);
      ev_timer_start(f->cfg.loop, &c->part_w);
    }
    return;
  }
  ev_timer_stop(f->cfg.loop, &c->part_w);
  /* raw holds the stream from raw_off on. */
  size_t from = (size_t)(c->repl_off - c->raw_off);
  size_t len = (size_t)(upto - c->repl_off);
  struct slot *s = slot_new(c);
  if (s == NULL) return;
  s->kind = SLOT_PART;
  s->end = upto;
  smr_buf_reset(&f->rec);
  int rc = tcpr_rec_part(&f->rec, f->owner, c->id, c->repl_off, c->raw.data + from, len);
  if (rc == 0) rc = submit(f, s, &f->rec);
  if (rc < 0) {
    s->ready = 1;
    return; /* the whole request will carry it */
  }
  c->waiting++;
  c->repl_off = upto;
  /* The bytes are held (raw) only until they are replicated. */
  smr_buf_reset(&c->raw);
  c->raw_off = upto;
}

static void on_part_idle(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  gated_part(w->data, 1);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct client *c = w->data;
  if (c->gated) {
    /* Every replica keeps the reply bytes the client has not acknowledged;
     * a client that does not read its replies is not read either. */
    const struct tcpr_conn *t = tcpr_conntab_find(c->f->cfg.conns, c->id);
    if (t != NULL && t->snd_off - t->acked > TCPR_MAX_UNACKED) {
      c->throttled = 1;
      ev_io_stop(loop, &c->rw);
      return;
    }
  }
  uint8_t buf[READ_CHUNK];
  ssize_t n = read(c->fd, buf, sizeof(buf));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n == 0 && c->gated) {
    gated_fin(c);
    return;
  }
  if (n <= 0) {
    client_close(c);
    return;
  }
  if (c->gated) {
    /* Keep the bytes not replicated yet, for PART records. */
    if (c->raw.len == 0) c->raw_off = resp_parser_offset(&c->parser);
    if (smr_buf_append(&c->raw, buf, (size_t)n) < 0) {
      client_close(c);
      return;
    }
  }
  feed(c, buf, (size_t)n);
  if (c->gated && !c->closed) {
    gated_part(c, 0);
    /* Forget what is replicated (by requests or PART records). */
    if (c->repl_off >= c->raw_off + c->raw.len) {
      smr_buf_reset(&c->raw);
      c->raw_off = c->repl_off;
    } else if (c->repl_off > c->raw_off) {
      size_t drop = (size_t)(c->repl_off - c->raw_off);
      memmove(c->raw.data, c->raw.data + drop, c->raw.len - drop);
      c->raw.len -= drop;
      c->raw_off = c->repl_off;
    }
  }
  if (!c->closed) client_flush(c);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents) {
  (void)loop;
  (void)revents;
  client_write(w->data);
}

static struct client *client_new(struct smrd_frontend *f, int fd) {
  struct client *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->f = f;
  c->fd = fd;
  resp_parser_init(&c->parser, NULL);
  ev_io_init(&c->rw, on_read, fd, EV_READ);
  c->rw.data = c;
  ev_io_init(&c->ww, on_writable, fd, EV_WRITE);
  c->ww.data = c;
  ev_timer_init(&c->part_w, on_part_idle, PART_IDLE_S, 0);
  c->part_w.data = c;
  c->next = f->clients;
  if (f->clients) f->clients->prev = c;
  f->clients = c;
  f->n_clients++;
  return c;
}

static uint64_t new_conn_id(void) {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id)) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      id = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^
           ((uint64_t)getpid() << 48);
    }
  }
  return id;
}

/* A connection on the VIP: capture, gate, keeper, then OPEN through the
 * group before any of its requests.  Returns 0, or -1 if it was closed. */
static int gated_accept(struct client *c) {
  struct smrd_frontend *f = c->f;
  int rc = tcpr_capture(c->fd, &c->tcp);
  if (rc < 0) {
    flog(f, SMR_LOG_WARN, "VIP client: cannot capture its TCP state (%s); "
         "closing it", strerror(-rc));
    return -1;
  }
  c->gated = 1;
  c->id = new_conn_id();
  f->n_gated++;
  tcpr_gate_conn_open(f->cfg.gate, c->tcp.raddr, c->tcp.rport,
                      c->tcp.rcv_isn1, c->tcp.rcv_wscale, c->tcp.snd_isn1);
  if ((rc = tcpr_keeper_hold(f->cfg.keeper, c->id, c->fd)) < 0)
    flog(f, SMR_LOG_WARN, "keeper: cannot hand it a connection: %s",
         strerror(-rc));
  struct slot *s = slot_new(c);
  if (s == NULL) return -1;
  s->kind = SLOT_OPEN;
  smr_buf_reset(&f->rec);
  rc = tcpr_rec_open(&f->rec, f->owner, c->id, &c->tcp);
  if (rc == 0) rc = submit(f, s, &f->rec);
  if (rc < 0) {
    s->ready = 1;
    c->close_after = 1;
    return 0;
  }
  c->waiting++;
  return 0;
}

/* The socket's local (peer = 0) or remote IPv4 address and port, plain or
 * v4-mapped (the listener is dual-stack).  -1 if not IPv4. */
static int sock_v4(int fd, int peer, uint32_t *addr, uint16_t *port) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
                : getsockname(fd, (struct sockaddr *)&ss, &sl);
  if (rc < 0) return -1;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    *addr = a->sin_addr.s_addr;
    *port = ntohs(a->sin_port);
    return 0;
  }
  const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
  if (ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
    return -1;
  memcpy(addr, &a->sin6_addr.s6_addr[12], 4);
  *port = ntohs(a->sin6_port);
  return 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
  (void)revents;
  struct smrd_frontend *f = w->data;
  for (;;) {
    int fd = accept4(f->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct client *c = client_new(f, fd);
    if (c == NULL) {
      close(fd);
      continue;
    }
    if (f->cfg.vip != 0) {
      uint32_t local = 0;
      uint16_t lport;
      sock_v4(fd, 0, &local, &lport);
      if (local == f->cfg.vip) {
        if (f->role != SMR_ROLE_PRIMARY || gated_accept(c) < 0) {
          /* Not ours to serve (we are not the primary, or the connection
           * cannot be replicated): close it, letting the FIN through the
           * gate (which holds every connection from its SYN-ACK on). */
          uint32_t pa;
          uint16_t pp;
          if (sock_v4(fd, 1, &pa, &pp) == 0)
            tcpr_gate_allow_close(f->cfg.gate, pa, pp);
          if (c->gated) {
            tcpr_keeper_drop(f->cfg.keeper, c->id);
            c->gated = 0;
            f->n_gated--;
          }
          client_close(c);
          continue;
        }
      }
    }
    ev_io_start(loop, &c->rw);
  }
}

/* ------------------------------------------------------------------------
 * Takeover: this member became the primary
 * --------------------------------------------------------------------- */

/* Restores one connection of the group's table. */
static void restore_one(struct smrd_frontend *f, const struct tcpr_conn *t) {
  int fd = -1;
  int rc = tcpr_restore(&t->tcp, t->rcv_off + t->partial_len, t->acked, &fd);
  if (rc < 0) {
    f->restore_failures++;
    flog(f, SMR_LOG_WARN, "takeover: connection %" PRIu64
         " cannot be restored (%s); the group forgets it", t->id,
         strerror(-rc));
    smr_buf_reset(&f->rec);
    if (tcpr_rec_forget(&f->rec, f->owner, t->id) == 0)
      smr_submit(f->cfg.group, f->rec.data, f->rec.len, &f->tick_cookie);
    return;
  }
  struct client *c = client_new(f, fd);
  if (c == NULL) {
    tcpr_close_silently(fd);
    return;
  }
  c->gated = 1;
  c->id = t->id;
  c->tcp = t->tcp;
  c->sent_off = t->acked;
  c->acked_told = t->acked;
  c->parser.offset = t->rcv_off;
  c->parser.req_start = t->rcv_off;
  c->repl_off = t->rcv_off + t->partial_len;
  c->raw_off = c->repl_off;
  c->release_to = c->released = c->repl_off; /* the gate entry's point */
  /* The start of an incomplete request the group holds: the parser picks
   * up where the old primary's stood. */
  if (t->partial_len > 0) feed(c, t->partial, t->partial_len);
  f->n_gated++;
  tcpr_gate_conn_open(f->cfg.gate, t->tcp.raddr, t->tcp.rport,
                      t->tcp.rcv_isn1 + (uint32_t)c->repl_off,
                      t->tcp.rcv_wscale, t->tcp.snd_isn1 + (uint32_t)t->acked);
  tcpr_keeper_hold(f->cfg.keeper, c->id, fd);
  /* The reply bytes the client may lack go out as fresh data once the VIP
   * is ours (kv_resume): sent now, the fenced gate would drop them and the
   * kernel would retransmit only after the initial RTO. */
  smr_buf_append(&c->out, t->unacked, (size_t)(t->snd_off - t->acked));
  if (t->fin || t->closing) {
    c->fin = 1;
    c->finishing = 1;
  }
}

/* The VIP is ours and the gate open: restored connections go on. */
static void kv_resume(struct smrd_frontend *f) {
  struct client *next;
  for (struct client *c = f->clients; c; c = next) {
    next = c->next; /* client_write may close and free c */
    if (!c->gated || c->closed) continue;
    if (!c->fin && !c->throttled && !ev_is_active(&c->rw))
      ev_io_start(f->cfg.loop, &c->rw);
    if (c->out.len > c->out_off || c->finishing) {
      client_write(c);
    } else {
      /* Nothing to send would carry the acknowledgement of what the group
       * has (e.g. the start of a long request, released, whose ACK died
       * with the old primary): the kmod gate sends it now.  Others do
       * nothing here; the client learns at its next retransmission. */
      for (uint32_t k = 0; k < f->cfg.takeover_acks; k++)
        tcpr_gate_release_now(f->cfg.gate, c->tcp.raddr, c->tcp.rport,
                              c->tcp.rcv_isn1 + (uint32_t)c->released);
    }
  }
  tcpr_gate_flush(f->cfg.gate);
}

static void takeover(struct smrd_frontend *f) {
  /* From now on the table follows us: whatever a former primary (or we,
   * in an earlier term) still has on its way is skipped. */
  f->owner = smr_epoch(f->cfg.group);
  smr_buf_reset(&f->rec);
  if (tcpr_rec_take(&f->rec, f->owner) == 0)
    smr_submit(f->cfg.group, f->rec.data, f->rec.len, &f->tick_cookie);
  size_t n = tcpr_conntab_count(f->cfg.conns), restored = 0;
  uint64_t failures0 = f->restore_failures;
  for (size_t i = 0; i < n; i++) {
    const struct tcpr_conn *t = tcpr_conntab_at(f->cfg.conns, i);
    if (t->tcp.laddr != f->cfg.vip) continue;
    /* Already ours (we were primary before and kept it). */
    int ours = 0;
    for (struct client *c = f->clients; c; c = c->next)
      if (c->gated && !c->closed && c->id == t->id) ours = 1;
    if (ours) continue;
    restore_one(f, t);
    restored++;
  }
  if (n > 0)
    flog(f, SMR_LOG_INFO, "takeover: %zu client connection(s) restored, "
         "%" PRIu64 " failed", restored - (size_t)(f->restore_failures -
                                                   failures0),
         f->restore_failures - failures0);
}

/* No longer the primary: gated connections go, silently, and so do their
 * records not submitted yet. */
static void relinquish(struct smrd_frontend *f) {
  struct held **hp = &f->held, *h;
  f->held_tail = NULL;
  while ((h = *hp) != NULL) {
    if (h->s->c->gated) {
      *hp = h->next;
      h->s->ready = 1;
      h->s->c->waiting--;
      smr_buf_free(&h->rec);
      free(h);
    } else {
      f->held_tail = h;
      hp = &h->next;
    }
  }
  held_arm(f);
  struct client *c = f->clients, *next;
  uint64_t n = 0;
  for (; c; c = next) {
    next = c->next;
    if (c->gated && !c->closed) {
      client_drop_silently(c);
      n++;
    }
  }
  if (n > 0)
    flog(f, SMR_LOG_INFO, "%" PRIu64 " client connection(s) on the VIP "
         "dropped silently (another member takes them over)", n);
}

/* ------------------------------------------------------------------------
 * libsmr's upcalls
 * --------------------------------------------------------------------- */

/* A reply came: the client's output is flushed once per loop iteration
 * (on_flush), so a batch of replies costs one gate release and one send
 * per client, not one each. */
static void slot_done(struct client *c) {
  c->waiting--;
  if (c->closed) {
    if (c->waiting == 0) client_free(c);
    return;
  }
  if (!c->dirty) {
    c->dirty = 1;
    c->dirty_next = c->f->dirty;
    c->f->dirty = c;
  }
}

static void on_flush(struct ev_loop *loop, ev_prepare *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd_frontend *f = w->data;
  /* Every release first, sent to the gate as one batch, so that the
   * replies written next carry the acknowledgements. */
  int released = 0;
  for (struct client *c = f->dirty; c != NULL; c = c->dirty_next)
    released |= client_release(c);
  if (released) tcpr_gate_flush(f->cfg.gate);
  while (f->dirty != NULL) {
    struct client *c = f->dirty;
    f->dirty = c->dirty_next;
    c->dirty = 0;
    if (!c->closed) client_flush(c); /* may free c */
  }
}

static void on_late(struct ev_loop *loop, ev_timer *w, int revents);

/* Test only: the slot becomes ready reply_delay_ms from now (FIFO). */
static int late_push(struct smrd_frontend *f, struct slot *s) {
  if (f->late_head + f->late_n == f->late_cap) {
    if (f->late_head > 0) {
      memmove(f->late, f->late + f->late_head, f->late_n * sizeof(*f->late));
      memmove(f->late_due, f->late_due + f->late_head,
              f->late_n * sizeof(*f->late_due));
      f->late_head = 0;
    } else {
      size_t cap = f->late_cap ? f->late_cap * 2 : 64;
      struct slot **a = realloc(f->late, cap * sizeof(*a));
      if (a == NULL) return -ENOMEM;
      f->late = a;
      double *b = realloc(f->late_due, cap * sizeof(*b));
      if (b == NULL) return -ENOMEM;
      f->late_due = b;
      f->late_cap = cap;
    }
  }
  size_t i = f->late_head + f->late_n++;
  f->late[i] = s;
  f->late_due[i] = now_s(f) + f->cfg.reply_delay_ms / 1000.0;
  if (!ev_is_active(&f->late_w)) {
    ev_timer_set(&f->late_w, f->cfg.reply_delay_ms / 1000.0, 0);
    ev_timer_start(f->cfg.loop, &f->late_w);
  }
  return 0;
}

static void kv_on_reply(struct smrd_frontend *f, void *cookie,
                        const uint8_t *reply, size_t len) {
  if (f->held != NULL) held_run(f);
  if (cookie == &f->tick_cookie) return;
  struct slot *s = cookie;
  struct client *c = s->c;
  uint8_t st = len > 0 ? reply[0] : 0;
  switch (s->kind) {
  case SLOT_PLAIN:
    slot_fill(s, reply, len);
    break;
  case SLOT_REQ:
    s->ready = 1;
    if (st == TCPR_ST_APPLIED) {
      smr_buf_append(&s->reply, reply + 1, len - 1);
      /* Released (once per batch) just before the replies go out. */
      if (s->end > c->release_to) c->release_to = s->end;
    }
    if (c->fin && s->next == NULL) c->finishing = 1; /* the last one */
    if (f->cfg.reply_delay_ms > 0 && st == TCPR_ST_APPLIED &&
        late_push(f, s) == 0) {
      s->ready = 0; /* on_late finishes it (the slot stays awaited) */
      return;
    }
    break;
  case SLOT_OPEN:
    s->ready = 1;
    if (st != TCPR_ST_APPLIED) c->close_after = 1; /* the table is full */
    break;
  case SLOT_PART:
    s->ready = 1;
    if (st == TCPR_ST_APPLIED && !c->closed) {
      /* No reply will carry the acknowledgement: the kmod gate sends it
       * now.  For the others, if the kernel still has one to send
       * (delayed), it goes now, and the gate lets it reach the released
       * point.  (If it was sent already, held, the client learns at its
       * next retransmission: the tc gate cannot send.) */
      tcpr_gate_release_now(f->cfg.gate, c->tcp.raddr, c->tcp.rport,
                            c->tcp.rcv_isn1 + (uint32_t)s->end);
      tcpr_gate_flush(f->cfg.gate);
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
    }
    else if (st == TCPR_ST_REFUSED)
      c->close_after = 1; /* a request larger than the group keeps */
    break;
  case SLOT_FIN:
    s->ready = 1;
    c->finishing = 1;
    break;
  case SLOT_OTHER:
    s->ready = 1;
    if (c->throttled && !c->closed) {
      const struct tcpr_conn *t = tcpr_conntab_find(f->cfg.conns, c->id);
      if (t == NULL || t->snd_off - t->acked <= TCPR_MAX_UNACKED / 2) {
        c->throttled = 0;
        if (!c->fin) ev_io_start(f->cfg.loop, &c->rw);
      }
    }
    break;
  }
  slot_done(c);
}

static void on_late(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd_frontend *f = w->data;
  while (f->late_n > 0 && f->late_due[f->late_head] <= now_s(f) + 1e-4) {
    struct slot *s = f->late[f->late_head++];
    f->late_n--;
    s->ready = 1;
    slot_done(s->c);
  }
  if (f->late_n > 0) {
    ev_timer_set(w, f->late_due[f->late_head] - now_s(f), 0);
    ev_timer_start(f->cfg.loop, w);
  }
}

static void slot_dropped(struct smrd_frontend *f, struct slot *s) {
  struct client *c = s->c;
  if (c->gated) {
    /* Excluded from the group: the connection is the next primary's. */
    s->ready = 1;
    if (!c->closed) client_drop_silently(c);
  } else {
    slot_error(s, "ERR this member left the group before the request's "
                  "outcome was known; retry it");
  }
  (void)f;
  slot_done(c);
}

static void kv_on_dropped(struct smrd_frontend *f, void *cookie) {
  if (cookie == &f->tick_cookie) return;
  slot_dropped(f, cookie);
}

/* Tells the group how far gated clients have read, for those with many
 * reply bytes outstanding in the table and no request to carry it. */
static void tell_acked(struct smrd_frontend *f) {
  for (struct client *c = f->clients; c; c = c->next) {
    if (!c->gated || c->closed || (c->waiting > 0 && !c->throttled)) continue;
    uint64_t a = gated_acked(c);
    if (a == c->acked_told) continue;
    struct slot *s = slot_new(c);
    if (s == NULL) continue;
    s->kind = SLOT_OTHER;
    smr_buf_reset(&f->rec);
    if (tcpr_rec_acked(&f->rec, f->owner, c->id, a) == 0 && submit(f, s, &f->rec) == 0) {
      c->acked_told = a;
      c->waiting++;
    } else {
      s->ready = 1;
    }
  }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  struct smrd_frontend *f = w->data;
  if (f->role != SMR_ROLE_PRIMARY) return;
  if (f->n_gated > 0) tell_acked(f);
  /* Nothing can expire: no tick (an idle group stays idle, and its disk
   * is not synced ten times a second for nothing). */
  if (kv_store_expires(kv_service_store(f->cfg.svc)) == 0) return;
  smr_buf_reset(&f->req);
  smr_buf_reset(&f->rec);
  if (kv_request_encode_tick(&f->req, wall_ms(), 64) == 0 &&
      tcpr_rec_plain(&f->rec, f->req.data, f->req.len) == 0)
    smr_submit(f->cfg.group, f->rec.data, f->rec.len, &f->tick_cookie);
}

static void kv_on_role(struct smrd_frontend *f, enum smr_role role) {
  static const char *names[] = {"not in the group", "primary", "backup",
                                "changing views"};
  /* A primary whose view is changing stays one for its clients (the core
   * carries its submissions into the next view): smrd does not tell us of
   * that, only of a view change without a majority, where we stop. */
  enum smr_role was = f->role;
  f->role = role;
  flog(f, SMR_LOG_INFO, "clients: serving as %s", names[role]);
  if (f->cfg.vip == 0) return;
  if (role == SMR_ROLE_PRIMARY && was != SMR_ROLE_PRIMARY) takeover(f);
  else if (role != SMR_ROLE_PRIMARY && was == SMR_ROLE_PRIMARY) relinquish(f);
}

static uint64_t kv_connections(struct smrd_frontend *f) {
  return f->n_clients;
}

static uint64_t kv_vip_connections(struct smrd_frontend *f) {
  return f->n_gated;
}

static uint64_t kv_restore_failures(struct smrd_frontend *f) {
  return f->restore_failures;
}

static uint64_t kv_released_bytes(struct smrd_frontend *f) {
  return f->released_bytes;
}

/* Test only: SET key value on this copy alone (see frontend.h). */
static int kv_debug_corrupt(struct smrd_frontend *f, const char *key,
                            const char *value) {
  const uint8_t *argv[3] = {(const uint8_t *)"SET", (const uint8_t *)key,
                            (const uint8_t *)value};
  size_t argl[3] = {3, strlen(key), strlen(value)};
  struct kv_exec x = {.argc = 3, .argv = argv, .argl = argl};
  struct smr_buf reply = {0};
  int rc = kv_store_exec(kv_service_store(f->cfg.svc), &x, &reply);
  smr_buf_free(&reply);
  return rc;
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
  ev_timer_init(&f->held_w, on_held, 0, 0);
  f->held_w.data = f;
  ev_timer_init(&f->late_w, on_late, 0, 0);
  f->late_w.data = f;
  ev_prepare_init(&f->flush_w, on_flush);
  f->flush_w.data = f;
  ev_prepare_start(cfg->loop, &f->flush_w);
  *out = f;
  return 0;
}

static void kv_close(struct smrd_frontend *f) {
  if (f == NULL) return;
  ev_io_stop(f->cfg.loop, &f->accept_w);
  ev_timer_stop(f->cfg.loop, &f->tick_w);
  ev_timer_stop(f->cfg.loop, &f->held_w);
  ev_timer_stop(f->cfg.loop, &f->late_w);
  ev_prepare_stop(f->cfg.loop, &f->flush_w);
  free(f->late);
  free(f->late_due);
  close(f->fd);
  while (f->held) {
    struct held *h = f->held;
    f->held = h->next;
    smr_buf_free(&h->rec);
    free(h);
  }
  while (f->clients) {
    struct client *c = f->clients;
    c->waiting = 0; /* the group is going away too: nothing will come */
    /* Gated connections stay with the group (the keeper makes their end
     * silent); others close. */
    if (c->gated) client_drop_silently(c);
    else client_close(c);
  }
  smr_buf_free(&f->req);
  smr_buf_free(&f->rec);
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
    .vip_connections = kv_vip_connections,
    .restore_failures = kv_restore_failures,
    .released_bytes = kv_released_bytes,
    .debug_corrupt = kv_debug_corrupt,
    .resume = kv_resume,
};
