/* rdma.h -- the RDMA data path of the transport ([transport] kind = rdma).
 *
 * With kind = rdma a member pair still makes its one TCP connection first
 * (tcp.c): TLS authenticates the peer and the hello exchange says who it
 * is.  That connection then becomes the control channel of an RDMA link:
 * the acceptor's verdict offers its connection manager port and a random
 * token (tcp_proto.h), the initiator connects an RC queue pair to that
 * port with the token in its connection request, and the acceptor
 * accepts only a request whose token it handed out over the authenticated
 * channel.  An RDMA link therefore belongs to exactly one authenticated
 * connection, and dies with it.
 *
 * The byte stream of frames moves over.  While a side's link is being
 * made its frames wait (with rdma_fallback they go over TCP if the link
 * fails); once it is up, that side writes one switch record on the link,
 * carrying how many stream bytes it sent over TCP (none, unless a TLS
 * write had to be finished first), and from then on only the link carries
 * its frames.  The receiver takes
 * bytes from the link only after the TCP stream has delivered exactly
 * that many, so the stream stays whole and in order whatever arrives
 * first; a byte over TCP past the switch point is a protocol violation.
 * Both directions switch independently.
 *
 * This file is the glue between links (rdma_link.h, verbs only) and an
 * event loop: an endpoint per transport owns the connection manager's
 * listener and the tokens handed out; a path per connection owns one link
 * and its watchers, and reports upward through three callbacks, always
 * from the loop, never from inside a call here:
 *
 *   up      the link is established (the caller may switch);
 *   input   completions arrived: call smr_rdma_path_poll() (records, and
 *           credit that lets blocked sends go on);
 *   failed  setup failed, or an established link broke; no callback
 *           follows.
 *
 * rdma.c implements it with libibverbs and librdmacm; rdma_none.c, built
 * when those are missing, refuses to open an endpoint (-ENODEV). */
#ifndef SMR_NET_RDMA_H
#define SMR_NET_RDMA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "tcp_proto.h"

struct ev_loop;
struct smr_rdma_ep;
struct smr_rdma_path;

#define SMR_RDMA_DEFAULT_RING (4u << 20)
#define SMR_RDMA_SWITCH_LEN 16 /* "SMRS", 4 zero bytes, TCP bytes (le64) */

struct smr_rdma_path_cb {
  void *ctx;
  void (*up)(void *ctx);
  void (*input)(void *ctx);
  void (*failed)(void *ctx, const char *why);
};

/* Opens the endpoint: checks that an RDMA device exists and, if addr is
 * not NULL, listens for links there (its port in the connection manager's
 * space).  ring_bytes: each link's ring (power of two; 0: the default).
 * busy_poll_us: how long a path keeps polling its completion queue after
 * its last work before it sleeps on the completion channel (0: it never
 * polls without an event; see rdma.c).  log: refused link requests (may
 * be NULL).  -ENODEV when there is no
 * device or no RDMA in this build, with the reason in err. */
int smr_rdma_ep_open(struct ev_loop *loop, const struct sockaddr *addr,
                     uint32_t ring_bytes, int timeout_ms,
                     uint32_t busy_poll_us,
                     void (*log)(void *ctx, const char *line), void *log_ctx,
                     struct smr_rdma_ep **out, char *err, size_t errlen);
void smr_rdma_ep_close(struct smr_rdma_ep *ep);
/* The listening port, or 0 when not listening. */
int smr_rdma_ep_port(const struct smr_rdma_ep *ep);
/* Link requests refused (no such token, or a token already used). */
uint64_t smr_rdma_ep_refused(const struct smr_rdma_ep *ep);

/* Acceptor: a path waiting for the link request that carries the token
 * made here. */
int smr_rdma_path_expect(struct smr_rdma_ep *ep,
                         const struct smr_rdma_path_cb *cb,
                         uint8_t token[SMR_NET_TOKEN_LEN],
                         struct smr_rdma_path **out);
/* Initiator: a path connecting to dst (from src: the local address of
 * the TCP connection, which picks the device) with the token. */
int smr_rdma_path_connect(struct smr_rdma_ep *ep, const struct sockaddr *dst,
                          const struct sockaddr *src,
                          const uint8_t token[SMR_NET_TOKEN_LEN],
                          const struct smr_rdma_path_cb *cb,
                          struct smr_rdma_path **out, char *err,
                          size_t errlen);
int smr_rdma_path_is_up(const struct smr_rdma_path *p);
/* Largest record smr_rdma_path_send() takes. */
uint32_t smr_rdma_path_max_record(const struct smr_rdma_path *p);
/* 0, -EAGAIN (no credit or send queue room: wait for input), or another
 * negative errno (the link is dead; failed follows). */
int smr_rdma_path_send(struct smr_rdma_path *p, const void *buf,
                       uint32_t len);
/* The same for any length, as records of at most the largest: all of
 * them, or -EAGAIN with none sent. */
int smr_rdma_path_send_whole(struct smr_rdma_path *p, const void *buf,
                             size_t len);
/* Delivers the records that arrived; the number, or a negative errno.
 * Also once failed has reported the peer's disconnection: then it
 * delivers what came before it (the peer waited until its link had
 * executed everything it posted). */
int smr_rdma_path_poll(struct smr_rdma_path *p,
                       void (*cb)(void *ctx, const uint8_t *rec, uint32_t len),
                       void *ctx);
/* 1 if the last poll stopped at its budget with completions left. */
int smr_rdma_path_more(const struct smr_rdma_path *p);
/* The link's SST slot (rdma_ring.h): put makes data (at most
 * SMR_SST_DATA_MAX bytes) the peer's view of it; get returns 1 with what
 * the peer put last if that is new, else 0 (every put raises input at
 * the peer, so callers look there). */
int smr_rdma_path_sst_put(struct smr_rdma_path *p, const void *data,
                          uint32_t len);
int smr_rdma_path_sst_get(struct smr_rdma_path *p, uint8_t *data,
                          uint32_t *len);
const char *smr_rdma_path_device(const struct smr_rdma_path *p);
/* Before a graceful close: waits (blocking, at most timeout_ms) until the
 * link has executed everything posted on it (rdma_link.h).  0, or a
 * negative errno (then close anyway). */
int smr_rdma_path_drain(struct smr_rdma_path *p, int timeout_ms);
/* Tears the link down; no callback after.  NULL is fine. */
void smr_rdma_path_close(struct smr_rdma_path *p);

#endif
