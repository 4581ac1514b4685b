/* rdma_link.h -- one reliable-connected RDMA link between two members: a
 * queue pair set up with librdmacm, a byte ring on each side that the
 * other side fills with one-sided writes (rdma_ring.h), and credit sent
 * back as it is consumed.  The building block of the RDMA transport: the
 * transport (rdma.c) adds membership, authentication and the
 * event loop; this file knows only verbs.
 *
 * Design.
 *   - Setup.  The active side resolves the address and route and connects;
 *     the passive side listens and accepts.  Each side's connection
 *     private data is a hello: magic, version, where its ring is (the
 *     virtual address, the rkey, the capacity) and where its SST slot is.  Nothing else is exchanged
 *     over RDMA: who the peer is and whether it may connect is the
 *     transport's business, over its authenticated control channel.
 *   - Sending a record: the ring bookkeeping (smr_ring_tx_place) says where;
 *     the header and payload are staged in a registered mirror of the
 *     peer's ring at the same offsets, then written with RDMA WRITE, the
 *     last write WITH IMMEDIATE carrying the new tail's low 32 bits.  RC
 *     places writes in order, so the immediate completes at the peer only
 *     after the bytes are there.
 *   - Receiving: each immediate consumes one posted zero-length receive;
 *     the reader parses up to the announced tail (smr_ring_rx_next), hands
 *     each record to the caller, and sends its new head back when the ring
 *     bookkeeping says so, as a zero-length SEND WITH IMMEDIATE.
 *   - The SST slot (rdma_ring.h) is written with RDMA WRITE WITH
 *     IMMEDIATE too, so that its reader wakes up for it.
 *   - Immediates tell the three apart by their low bits: ring positions are
 *     multiples of 8, so a tail has them clear, a credit (head | 1) has
 *     bit 0 set, and an SST write is exactly 2.
 *   - Completions are polled.  For an event loop, smr_rdma_link_cq_fd()
 *     is the completion channel's fd: when it is readable, call
 *     smr_rdma_link_arm() (takes the events, asks for the next receive
 *     completion; a send that waits for room has armed the send CQ
 *     itself), then smr_rdma_link_poll().
 *   - Setup never blocks in the step-by-step API: the connection manager's
 *     channel (smr_rdma_link_cm_fd(), non-blocking) is read by
 *     smr_rdma_link_cm_step() whenever it is readable; the blocking
 *     connect and accept below (for tools) are built on it.  A connecting
 *     side may append up to SMR_RDMA_EXTRA_MAX bytes of its own to the
 *     hello (the transport's token); the accepting side reads them before
 *     it decides to accept or reject.
 *
 * Errors are negative errno values; a link that returned -EPROTO or
 * -ECONNRESET is dead (the transport reports the peer lost). */
#ifndef SMR_NET_RDMA_LINK_H
#define SMR_NET_RDMA_LINK_H

#include <stddef.h>
#include <stdint.h>

struct smr_rdma_link;
struct smr_rdma_listener;

struct smr_rdma_link_opts {
  uint32_t ring_cap;  /* bytes of each side's ring (a power of two) */
  uint32_t max_len;   /* largest record payload */
  int timeout_ms;     /* address and route resolution, connection */
  const char *src;    /* active side: the local address to connect from
                         (picks the device), or NULL for the route's */
};

#define SMR_RDMA_EXTRA_MAX 16

struct sockaddr;

/* ---- Step by step, for an event loop. */

/* Active side: starts connecting to dst (from src if not NULL, which picks
 * the device), with extra appended to the hello.  Then call
 * smr_rdma_link_cm_step() whenever smr_rdma_link_cm_fd() is readable. */
int smr_rdma_link_start(const struct sockaddr *dst, const struct sockaddr *src,
                        const struct smr_rdma_link_opts *o, const void *extra,
                        size_t extra_len, struct smr_rdma_link **out,
                        char *err, size_t errlen);
int smr_rdma_link_cm_fd(const struct smr_rdma_link *k);
/* Handles the connection manager's events: 1 if the link came up during
 * this call, 0 if nothing ended, or a negative errno (with the reason in
 * err) if setup failed or an up link was disconnected: the link is dead. */
int smr_rdma_link_cm_step(struct smr_rdma_link *k, char *err, size_t errlen);
int smr_rdma_link_is_up(const struct smr_rdma_link *k);
/* 1 while smr_rdma_link_poll() may still find something: up, or
 * disconnected by the peer (then the records that came before the
 * disconnection, and nothing can be sent). */
int smr_rdma_link_can_poll(const struct smr_rdma_link *k);

/* Passive side: listens at addr (port 0: any; see _port()). */
int smr_rdma_listen_at(const struct sockaddr *addr,
                       struct smr_rdma_listener **out, char *err,
                       size_t errlen);
int smr_rdma_listener_fd(const struct smr_rdma_listener *l);
int smr_rdma_listener_port(const struct smr_rdma_listener *l);
/* The next connection request, if one is waiting: returns 1 with a new
 * link (verbs objects made, not yet accepted) and the peer's extra bytes
 * (extra has room for SMR_RDMA_EXTRA_MAX), 0 if none, -ENODEV if the
 * device went away (close the listener: its removal waits for that), or
 * another negative errno for a request that could not be taken (already
 * rejected) or a channel that failed. */
int smr_rdma_listener_next(struct smr_rdma_listener *l,
                           const struct smr_rdma_link_opts *o,
                           struct smr_rdma_link **out, uint8_t *extra,
                           size_t *extra_len, char *err, size_t errlen);
/* Accepts a request; the link is up when cm_step says so. */
int smr_rdma_link_accept(struct smr_rdma_link *k, char *err, size_t errlen);
/* Rejects a request; close the link after. */
void smr_rdma_link_reject(struct smr_rdma_link *k);

/* The completion channel (non-blocking), and re-arming it for the next
 * receive completion (and taking the send CQ's events, if one was armed). */
int smr_rdma_link_cq_fd(const struct smr_rdma_link *k);
int smr_rdma_link_arm(struct smr_rdma_link *k);

/* ---- Blocking, for tools and tests. */

/* Active side: connects to host:port (numeric IPv4 or IPv6). */
int smr_rdma_link_connect(const char *host, const char *port,
                          const struct smr_rdma_link_opts *o,
                          struct smr_rdma_link **out, char *err,
                          size_t errlen);

/* Passive side: listens on host:port, then accepts one link at a time. */
int smr_rdma_listen(const char *host, const char *port,
                    struct smr_rdma_listener **out, char *err, size_t errlen);
int smr_rdma_accept(struct smr_rdma_listener *l,
                    const struct smr_rdma_link_opts *o,
                    struct smr_rdma_link **out, char *err, size_t errlen);
void smr_rdma_listener_close(struct smr_rdma_listener *l);

/* Queues one record: 0, -EAGAIN (no credit, or the send queue is full:
 * the completion that ends the wait raises the channel; poll and retry),
 * -EMSGSIZE, or -errno of a failed post (the link is dead). */
int smr_rdma_link_send(struct smr_rdma_link *k, const void *buf,
                       uint32_t len);

/* Queues len bytes (any length) as consecutive records of at most
 * max_len, all of them or none: 0, or -EAGAIN (not room for all now:
 * nothing was queued), or -errno of a failed post (the link is dead). */
int smr_rdma_link_send_whole(struct smr_rdma_link *k, const void *buf,
                             size_t len);

/* Polls the completion queue and delivers each record that arrived to
 * on_record (the bytes are valid during the call only): at most a budget
 * of completions per call (see smr_rdma_link_more()), and at most one
 * credit sent back.  Returns the number of records delivered, or -EPROTO
 * / -ECONNRESET. */
typedef void (*smr_rdma_on_record)(void *ctx, const uint8_t *rec,
                                   uint32_t len);
int smr_rdma_link_poll(struct smr_rdma_link *k, smr_rdma_on_record cb,
                       void *ctx);

/* 1 if the last poll stopped at its budget with completions left: poll
 * again (after other work) even if the channel stays quiet. */
int smr_rdma_link_more(const struct smr_rdma_link *k);
/* Completions of any kind (records, credit, sends retired) the last poll
 * handled. */
int smr_rdma_link_polled(const struct smr_rdma_link *k);

/* The SST slot (rdma_ring.h).  sst_put: makes data (at most
 * SMR_SST_DATA_MAX bytes) the content of the peer's slot, posted at once
 * behind everything posted before it: 0, -EBUSY while the previous write
 * is in flight (send it another way), or another negative errno (the link
 * is dead).  sst_get: 1 with data
 * (room for SMR_SST_DATA_MAX) and *len if the peer wrote something new
 * since the last get, 0 if not (or a write is landing: look again), or
 * -EPROTO (the link is dead). */
int smr_rdma_link_sst_put(struct smr_rdma_link *k, const void *data,
                          uint32_t len);
int smr_rdma_link_sst_get(struct smr_rdma_link *k, uint8_t *data,
                          uint32_t *len);

/* Waits (blocking, at most timeout_ms) until everything posted on an up
 * link has been executed, so that closing it loses nothing handed to
 * smr_rdma_link_send or _sst_put before (a posted write that the adapter
 * has not yet executed is flushed, not sent, when the link goes down;
 * close() of a TCP socket, by contrast, still delivers what it holds).
 * 0 once done (or if the link is down or dead), -ETIMEDOUT, or another
 * negative errno. */
int smr_rdma_link_drain(struct smr_rdma_link *k, int timeout_ms);

/* Bytes the peer's ring has free for our records now. */
uint64_t smr_rdma_link_room(const struct smr_rdma_link *k);

/* The device the link runs on (e.g. "rxe0"). */
const char *smr_rdma_link_device(const struct smr_rdma_link *k);

void smr_rdma_link_close(struct smr_rdma_link *k);

#endif
