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
 * One implementation (tcp.c: TCP with mutual TLS on libev) with an RDMA
 * data path under it (rdma.h: kind = rdma; the TCP connection stays the
 * authenticated control channel, the frames move to an RC queue pair).  Like libuv: negative errno returns, and no
 * callback for a call that returned an error.
 *
 * Rules every transport keeps (tcp.c documents how):
 *  - One thread: every function is called on the loop's thread.  Callbacks
 *    run from the loop, never from inside an smr_net_* call, and may call
 *    any smr_net_* function, smr_net_close() included (then no further
 *    callback fires).  log is the exception: it must not call back in.
 *  - Frames to one peer arrive whole and in order while a connection
 *    lasts.  When an established connection breaks, on_peer_lost(peer)
 *    fires exactly once; frames already written to it may be lost, frames
 *    still queued are kept and go out on the next connection.
 *    smr_net_forget() and smr_net_close() break connections silently.
 *  - The peer's id passed to on_frame is authenticated, and the transport
 *    has already checked that the frame's header names the same member
 *    (a frame that names another is a protocol violation: the connection
 *    is dropped and counted in stats.refused).
 *  - -EAGAIN is per peer: a peer that is down or slow fills its own queue
 *    and never blocks sends to the others. */
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
  /* Added fields (zero keeps the default):
   * timeout_ms  how long a connection may take to come up (connect, TLS
   *             handshake, hello), and how long written data may stay
   *             unacknowledged, or an idle peer silent to keepalive
   *             probes, before the connection is declared dead
   *             (default 5000). */
  uint32_t timeout_ms;
  /* kind = rdma (rdma.h): each pair's TCP connection authenticates and
   * sets up an RDMA link, and its frames move to the link once it is up.
   *   rdma            1: kind = rdma.  Opening fails (-ENODEV, reason in
   *                   err) without an RDMA device, unless rdma_fallback;
   *   rdma_fallback   1: no device, a peer without RDMA, or a link that
   *                   does not come up within timeout_ms leaves that
   *                   connection (or all) on TCP, with a log line; 0: the
   *                   connection breaks and is retried;
   *   rdma_port       the connection manager's port (0: the TCP port);
   *   rdma_ring_bytes each link's receive ring per direction (a power of
   *                   two, at least 1 MiB; 0: 4 MiB);
   *   rdma_busy_poll_us  how long a link keeps polling for completions
   *                   after its last work instead of sleeping until the
   *                   next one is signalled (0: never; rdma.c says when
   *                   it pays). */
  int rdma, rdma_fallback;
  uint16_t rdma_port;
  uint32_t rdma_ring_bytes;
  uint32_t rdma_busy_poll_us;
};

/* Defaults for zero config fields. */
#define SMR_NET_DEFAULT_QUEUE_BYTES (4u << 20)
#define SMR_NET_DEFAULT_RECONNECT_MS 100u
#define SMR_NET_RECONNECT_CAP_MS 4000u /* unless reconnect_ms is larger */
#define SMR_NET_DEFAULT_TIMEOUT_MS 5000u

struct smr_net_stats {
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
  uint64_t connects, disconnects, refused; /* refused: bad cert or bytes */
  /* Added fields.  frames/bytes count whole frames: out when written to
   * the kernel (or TLS), in when delivered to on_frame.  connects counts
   * connections that came up, disconnects those that went down again
   * (broke, or were forgotten), so peers_up = connects - disconnects. */
  uint64_t peers_up; /* connections up now */
  /* kind = rdma: links up now, and stream bytes carried by them (frames
   * that went over TCP before the switch count in bytes_* only). */
  uint64_t rdma_links, rdma_bytes_out, rdma_bytes_in;
  /* kind = rdma: heartbeats written to a peer's SST slot instead of the
   * stream, and the peers' ones delivered from ours (rdma_ring.h). */
  uint64_t rdma_sst_out, rdma_sst_in;
};

/* Starts listening.  Returns 0 or a negative errno, with a reason in err.
 * listen_addr may end in port 0 (any free port: see smr_net_port()) or be
 * NULL (this member only connects out).  on_frame is required; the other
 * callbacks may be NULL.  With TLS the own certificate is checked at open:
 * it must chain to tls_ca, be valid now, fit TLS client and server use,
 * match tls_key and name self_id.  insecure = 1 with TLS files is
 * refused as ambiguous. */
int smr_net_open(const struct smr_net_config *cfg, struct smr_net **out,
                 char *err, size_t errlen);
void smr_net_close(struct smr_net *n);

/* Queues one frame for a peer, connecting to addr ("host:port") if there
 * is no connection yet.  Returns 0, -EAGAIN when the peer's queue is full
 * (wait for on_writable), -EMSGSIZE, or -EINVAL.
 *
 * Details: frame must be exactly one frame (smr_wire_frame_len() == len)
 * whose header names self_id, else -EINVAL; over SMR_WIRE_FRAME_LEN_MAX
 * is -EMSGSIZE.  addr may be NULL (keep the last one given; with none,
 * frames wait for the peer to connect to us).  A frame is accepted into
 * an empty queue whatever its size, so one frame larger than
 * max_queue_bytes cannot wedge a peer.  -ENOMEM if memory runs out. */
int smr_net_send(struct smr_net *n, const char *peer, const char *addr,
                 const uint8_t *frame, size_t len);

/* Bytes queued for a peer and not yet written to the kernel. */
size_t smr_net_queued(const struct smr_net *n, const char *peer);

/* Drops the connection to a peer (e.g. it left the group), its queued
 * frames and pending reconnection; no callback for it.  If the peer
 * connects again later it is a new peer. */
void smr_net_forget(struct smr_net *n, const char *peer);

void smr_net_stats(const struct smr_net *n, struct smr_net_stats *st);

/* ---- Added functions. */

/* The port the transport listens on (useful after port 0), or 0. */
int smr_net_port(const struct smr_net *n);

/* 1 if id is a syntactically valid member id: 1..SMR_ID_MAX-1 bytes
 * (31) of [A-Za-z0-9._-], beginning with a letter or digit.  A TLS peer's
 * certificate must name it as its subject CN or a SAN DNS name. */
int smr_net_id_valid(const char *id);

/* 1 if addr is a "host:port" smr_net_send() accepts: a numeric IPv4
 * address or a bracketed IPv6 one ("10.0.0.1:7000", "[::1]:7000"), port
 * 1..65535.  Host names are not resolved (that would block the loop). */
int smr_net_addr_valid(const char *addr);

#endif
