/* tcpr/tcpr.h -- TCP-R: client connections that survive the primary.
 *
 * The pieces the runtime (smrd and a service's front end) uses to keep a
 * client's TCP connection to the group's virtual IP (VIP) alive across the
 * death of the member serving it:
 *
 *   gate     the primary's kernel must not acknowledge request bytes before
 *            the group has them (gate.c, backends: tc-BPF in gate_bpf.c,
 *            the kernel module later);
 *   repair   capture a connection's TCP state at accept, restore it on
 *            another host with TCP_REPAIR (repair.c);
 *   vip      take and give up the VIP over rtnetlink, announce it with a
 *            gratuitous ARP (vip.c);
 *   keeper   a small process that holds a duplicate of every client socket
 *            so that a dying server's kernel sends nothing, and fences the
 *            host (keeper.c);
 *   conntab  the replicated table of connections: byte offsets in both
 *            directions and the reply bytes a client may still lack, kept by
 *            every replica in the total order (conntab.c).
 *
 * Addresses and ports are IPv4, in network byte order where the type is a
 * raw uint32_t address (as in struct in_addr) and in host order for ports
 * and sequence numbers.  Every function returns 0 or a negative errno. */
#ifndef SMR_TCPR_H
#define SMR_TCPR_H

#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Gate
 * --------------------------------------------------------------------- */

enum tcpr_gate_kind {
  TCPR_GATE_OFF = 0,
  TCPR_GATE_AUTO, /* kmod if the module is loaded, else bpf */
  TCPR_GATE_BPF,
  TCPR_GATE_KMOD
};

struct tcpr_gate;

struct tcpr_gate_stats {
  uint64_t clamped;        /* segments whose ack_seq was lowered */
  uint64_t sack_stripped;  /* segments whose SACK blocks were removed */
  uint64_t fin_dropped;    /* FINs of gated connections not released */
  uint64_t rst_dropped;    /* RSTs of gated connections not released */
  uint64_t fenced_dropped; /* packets from the VIP dropped while fenced */
  uint64_t acks_clamped_in; /* client ACKs above what we sent, lowered */
  uint64_t acks_sent;      /* acknowledgements sent at release (kmod) */
  uint64_t conns;          /* connections in the gate's table */
};

/* Attaches the gate to the egress of `dev` for connections from vip:port.
 * Replaces an earlier smr gate on the same device.  A new gate starts
 * fenced.  err gets a one-line reason on failure. */
int tcpr_gate_open(enum tcpr_gate_kind kind, const char *dev, uint32_t vip,
                   uint16_t port, struct tcpr_gate **out, char *err,
                   size_t errlen);
/* Frees the handle.  The attachment stays, fenced: the host stays silent on
 * the VIP until the next gate replaces it. */
void tcpr_gate_close(struct tcpr_gate *g);
const char *tcpr_gate_kind_name(const struct tcpr_gate *g);

/* Fenced: every packet with the VIP as source, and every ARP for the VIP,
 * is dropped on this host. */
int tcpr_gate_fence(struct tcpr_gate *g, int fenced);

/* Gates the connection with the client caddr:cport: acknowledgements are
 * held at `released` (an absolute sequence number of the client's stream,
 * host order); rcv_wscale is our receive window scale (for keeping the
 * right edge of the offered window); snd_nxt is our next sequence number
 * (the client's acknowledgements above what we sent are lowered to it on
 * ingress: after a takeover the client may have received more than the
 * group knows).  Replaces an existing entry. */
int tcpr_gate_conn_open(struct tcpr_gate *g, uint32_t caddr, uint16_t cport,
                        uint32_t released, uint8_t rcv_wscale,
                        uint32_t snd_nxt);
/* Moves the released point forward (never back, in sequence space).  A
 * backend may queue it until tcpr_gate_flush (kmod batches releases into
 * one message); call tcpr_gate_flush before writing the replies that
 * should carry the acknowledgement. */
int tcpr_gate_release(struct tcpr_gate *g, uint32_t caddr, uint16_t cport,
                      uint32_t released);
/* The same, for a release nothing is about to carry to the client (no
 * reply follows, e.g. the first part of a long request): the backend
 * sends the acknowledgement at once if it can (kmod); others only
 * release (the client learns it from the next segment it gets). */
int tcpr_gate_release_now(struct tcpr_gate *g, uint32_t caddr,
                          uint16_t cport, uint32_t released);
/* Sends queued releases.  Every other call also sends them first. */
int tcpr_gate_flush(struct tcpr_gate *g);
/* The connection may now send FIN/RST (a graceful close); acknowledgements
 * are no longer held. */
int tcpr_gate_allow_close(struct tcpr_gate *g, uint32_t caddr,
                          uint16_t cport);
/* Forgets the connection (-ENOENT if unknown). */
int tcpr_gate_conn_close(struct tcpr_gate *g, uint32_t caddr, uint16_t cport);
int tcpr_gate_stats(struct tcpr_gate *g, struct tcpr_gate_stats *st);

/* ------------------------------------------------------------------------
 * VIP
 * --------------------------------------------------------------------- */

/* cidr: "10.77.0.100/24".  Adding an address already there and deleting
 * one that is absent succeed. */
int tcpr_vip_add(const char *dev, const char *cidr, char *err, size_t errlen);
int tcpr_vip_del(const char *dev, const char *cidr, char *err, size_t errlen);
/* 1 if present, 0 if not, or a negative errno. */
int tcpr_vip_present(const char *dev, const char *cidr);
/* Broadcasts gratuitous ARP (request and reply form) for vip from dev. */
int tcpr_garp(const char *dev, uint32_t vip, char *err, size_t errlen);
/* The same on a socket kept open (tcpr_garp_socket: an fd, or a negative
 * errno): a takeover then does not wait for a packet socket's creation
 * and release (each an RCU grace period, 10-30 ms). */
int tcpr_garp_socket(void);
int tcpr_garp_on(int fd, const char *dev, uint32_t vip, char *err,
                 size_t errlen);
/* Parses "a.b.c.d/len" (len 0..32) */
int tcpr_parse_cidr(const char *cidr, uint32_t *addr, unsigned *prefix);

/* ------------------------------------------------------------------------
 * Repair: capture and restore a connection's TCP state
 * --------------------------------------------------------------------- */

#define TCPR_OPT_SACK 1
#define TCPR_OPT_TS 2
#define TCPR_OPT_WSCALE 4

/* What another host needs to recreate our end of a connection.  Captured
 * once, right after accept() and before the first read or write; positions
 * later are stream offsets counted from rcv_isn1 / snd_isn1. */
struct tcpr_tcp_state {
  uint32_t laddr, raddr;   /* network order: our (VIP) and the client's */
  uint16_t lport, rport;   /* host order */
  uint32_t rcv_isn1;       /* sequence number of the client's first byte */
  uint32_t snd_isn1;       /* sequence number of our first byte */
  uint16_t mss;            /* the MSS clamp */
  uint8_t snd_wscale, rcv_wscale;
  uint8_t opts;            /* TCPR_OPT_* */
  uint32_t tsval;          /* TCP_TIMESTAMP as read (low bit: usec clock) */
  int64_t ts_wall_us;      /* CLOCK_REALTIME when tsval was read */
  uint32_t snd_wnd, max_window, rcv_wnd;
};

/* Captures fd's state (needs CAP_NET_ADMIN; fd must not have been read
 * from or written to yet).  The socket is left out of repair mode. */
int tcpr_capture(int fd, struct tcpr_tcp_state *st);

/* Recreates the connection as a new non-blocking socket whose receive side
 * expects the client's byte rcv_off next and whose send side starts at our
 * byte snd_off (everything before it counts as acknowledged; send the bytes
 * the client may lack after this as ordinary data).  *fd_out on success. */
int tcpr_restore(const struct tcpr_tcp_state *st, uint64_t rcv_off,
                 uint64_t snd_off, int *fd_out);

/* Closes fd without a FIN or RST reaching the wire (repair-mode close). */
void tcpr_close_silently(int fd);

/* Bytes of our stream the client has acknowledged, given how many we have
 * handed to the kernel (sent_off, a stream offset): sent_off minus what is
 * still in the send queue. */
int tcpr_acked(int fd, uint64_t sent_off, uint64_t *acked);


/* ------------------------------------------------------------------------
 * Conntab: the replicated connection table (a state machine wrapper)
 * --------------------------------------------------------------------- */

struct smr_buf;
struct smr_service_ops;
struct tcpr_conntab;

#define TCPR_MAX_CONNS 65536
/* Reply bytes kept per connection beyond what the client acknowledged; a
 * front end stops reading a client that is this far behind. */
#define TCPR_MAX_UNACKED (8u << 20)

/* One connection as every replica knows it. */
struct tcpr_conn {
  uint64_t id;
  struct tcpr_tcp_state tcp;
  uint64_t rcv_off; /* client bytes consumed by applied requests */
  uint64_t snd_off; /* reply bytes produced */
  uint64_t acked;   /* reply bytes the client acknowledged (as reported) */
  int fin;          /* the client closed its side (at rcv_off) */
  int closing;      /* the server closes after the replies */
  uint8_t *unacked; /* reply bytes [acked, snd_off) */
  size_t unacked_cap;
  /* Client bytes [rcv_off, rcv_off + partial_len): the start of a request
   * too large to wait for (its client cannot send it whole without
   * acknowledgements), replicated ahead (PART records). */
  uint8_t *partial;
  size_t partial_len, partial_cap;
};

/* Records a front end submits (each encoder appends to out). */
#define TCPR_REQ_LITERAL 1     /* payload is the reply itself (QUIT, errors) */
#define TCPR_REQ_CLOSE_AFTER 2 /* the server closes after this reply */
/* owner: the submitter's owner epoch, the epoch of the view in which it
 * became primary (records of an earlier owner are skipped). */
int tcpr_rec_plain(struct smr_buf *out, const void *req, size_t len);
int tcpr_rec_take(struct smr_buf *out, uint64_t owner);
int tcpr_rec_open(struct smr_buf *out, uint64_t owner, uint64_t id,
                  const struct tcpr_tcp_state *st);
int tcpr_rec_req(struct smr_buf *out, uint64_t owner, uint64_t id,
                 uint64_t start, uint64_t end, uint64_t acked, unsigned flags,
                 const void *payload, size_t len);
int tcpr_rec_acked(struct smr_buf *out, uint64_t owner, uint64_t id,
                   uint64_t acked);
int tcpr_rec_fin(struct smr_buf *out, uint64_t owner, uint64_t id,
                 uint64_t at);
int tcpr_rec_forget(struct smr_buf *out, uint64_t owner, uint64_t id);
/* Client bytes starting at stream offset `at` that belong to a request not
 * complete yet (see struct tcpr_conn's partial). */
int tcpr_rec_part(struct smr_buf *out, uint64_t owner, uint64_t id,
                  uint64_t at, const void *bytes, size_t len);
/* A partial request may hold at most this much (RESP's own limit on a
 * request is larger, but every replica keeps these bytes). */
#define TCPR_MAX_PARTIAL ((size_t)1 << 30)

/* The reply of every record but a plain one starts with a status byte. */
#define TCPR_ST_APPLIED 1 /* applied; REQ: the reply bytes follow */
#define TCPR_ST_SKIPPED 2 /* a duplicate, for a connection not known, or
                             from a replaced primary */
#define TCPR_ST_REFUSED 3 /* OPEN: the table is full */

/* Wraps a service: the table's state machine applies tcpr records and hands
 * plain ones and REQ payloads to the inner service; its snapshot, restore
 * and digest cover both.  *ops/ctx are what libsmr is given. */
int tcpr_conntab_new(const struct smr_service_ops *inner_ops, void *inner,
                     struct tcpr_conntab **out,
                     const struct smr_service_ops **ops);
void tcpr_conntab_free(struct tcpr_conntab *t);
size_t tcpr_conntab_count(const struct tcpr_conntab *t);
/* Connections in id order: i from 0 to count-1. */
const struct tcpr_conn *tcpr_conntab_at(const struct tcpr_conntab *t,
                                        size_t i);
const struct tcpr_conn *tcpr_conntab_find(const struct tcpr_conntab *t,
                                          uint64_t id);
/* The owner epoch of the primary the table follows now. */
uint64_t tcpr_conntab_owner(const struct tcpr_conntab *t);


/* ------------------------------------------------------------------------
 * Keeper: silence and fencing when the server process dies
 * --------------------------------------------------------------------- */

struct tcpr_keeper;

/* Forks the keeper.  Call it early, before the process opens anything the
 * keeper must not hold (the data directory's lock, member connections):
 * the child keeps only its end of a socket pair and the gate's descriptors.
 * When the server's end goes (the server died, or stopped), the keeper
 * fences the host (gate fenced, VIP deleted from vip_dev if vip_cidr is
 * given), closes every socket it holds in repair mode (nothing reaches the
 * wire) and exits. */
int tcpr_keeper_start(struct tcpr_gate *gate, const char *vip_dev,
                      const char *vip_cidr, struct tcpr_keeper **out,
                      char *err, size_t errlen);
/* Hands the keeper a duplicate of a client socket, under the
 * connection's id. */
int tcpr_keeper_hold(struct tcpr_keeper *k, uint64_t id, int fd);
/* The keeper closes its duplicate (after the server closed the connection
 * gracefully with shutdown(), or put it in repair mode to drop it). */
int tcpr_keeper_drop(struct tcpr_keeper *k, uint64_t id);
/* Stops the keeper: it fences and exits.  Waits for it (bounded). */
void tcpr_keeper_stop(struct tcpr_keeper *k);

#endif
