/* net.h -- the transport: how one member's frames reach the others.
 *
 * A transport carries the core's frames (smr/core/wire.h) between members,
 * reliably and in order per peer while a connection lasts.  It knows
 * nothing of the protocol: it frames the byte stream with
 * smr_wire_frame_len(), authenticates each peer, and reports three things
 * upward through callbacks on the caller's event loop:
 *
 *   on_frame      a complete frame from an authenticated peer (the peer's
 *                 id is its certificate's identity, or in insecure mode the
 *                 id it announced; the caller checks that the frame's
 *                 header names the same member);
 *   on_peer_lost  a connection to or from that peer broke: frames sent to
 *                 it may have been lost (the core is told, and repairs);
 *   on_writable   queues that were full have drained (back-pressure ends).
 *
 * Transports are plugins behind this one interface (tcp.c: TCP with mutual
 * TLS on libev; rdma.c later).  Like libuv: negative errno returns, and no
 * callback for a call that returned an error. */
#ifndef SMR_NET_NET_H
#define SMR_NET_NET_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct smr_net;

struct smr_net_config {
  struct ev_loop *loop;
  const char *self_id;     /* this member's id */
  const char *listen_addr; /* "host:port" to accept members on */
  /* Mutual TLS under one group CA: all three, or insecure = 1. */
  const char *tls_ca, *tls_cert, *tls_key;
  int insecure;
  size_t max_queue_bytes;  /* per peer; beyond it sends return -EAGAIN */
  uint32_t reconnect_ms;   /* first retry delay (doubles, capped) */
  void *ctx;
  void (*on_frame)(void *ctx, const char *peer, const uint8_t *frame,
                   size_t len);
  void (*on_peer_lost)(void *ctx, const char *peer);
  void (*on_writable)(void *ctx);
  /* One log line (no newline) for refused peers and broken connections. */
  void (*log)(void *ctx, const char *line);
};

struct smr_net_stats {
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  uint64_t connects, disconnects, refused; /* refused: bad cert or bytes */
};

/* Starts listening.  Returns 0 or a negative errno, with a reason in err. */
int smr_net_open(const struct smr_net_config *cfg, struct smr_net **out,
                 char *err, size_t errlen);
void smr_net_close(struct smr_net *n);

/* Queues one frame for a peer, connecting to addr ("host:port") if there
 * is no connection yet.  Returns 0, -EAGAIN when the peer's queue is full
 * (wait for on_writable), -EMSGSIZE, or -EINVAL. */
int smr_net_send(struct smr_net *n, const char *peer, const char *addr,
                 const uint8_t *frame, size_t len);

/* Bytes queued for a peer and not yet written to the kernel. */
size_t smr_net_queued(const struct smr_net *n, const char *peer);

/* Drops the connection to a peer (e.g. it left the group). */
void smr_net_forget(struct smr_net *n, const char *peer);

void smr_net_stats(const struct smr_net *n, struct smr_net_stats *st);

#endif
