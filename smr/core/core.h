/* core.h -- one group member's protocol, as a sans-IO state machine.
 *
 * The core never touches a socket, a clock, a thread or a global.  Its
 * caller (the runtime, or the simulator) feeds it inputs -- a frame
 * received from a peer, the passing of time, a local request -- and then
 * drains its outputs with smr_core_poll(): frames to send, deliveries,
 * view upcalls and records to persist.  Outputs must be carried out in the
 * order they are polled; in particular a PERSIST_* record must be durable
 * before any SEND polled after it is transmitted (this is how "durable
 * before acknowledged" is expressed without the core doing IO; a runtime
 * gets group commit by syncing once per drained batch).
 *
 * Time is a caller-supplied millisecond counter that never goes backwards.
 *
 * Links are assumed reliable and FIFO between two live processes (TCP, or
 * the simulator's links).  A link that loses frames must be reported with
 * smr_core_peer_lost(); the core also detects a gap in a sequence it
 * receives and treats it as a failure of the sender.
 *
 * Errors are negative errno values.  A function that returns an error has
 * changed nothing. */
#ifndef SMR_CORE_CORE_H
#define SMR_CORE_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

struct smr_core;

/* A member's identity: id and address as in the config; incarnation grows
 * by one every time the member's process starts. */
struct smr_member {
  char id[SMR_ID_MAX];
  char addr[SMR_ADDR_MAX];
  uint64_t incarnation;
};

/* One delivered message, as the donor's log returns it for a delta. */
struct smr_log_entry {
  uint64_t pos;
  const uint8_t *data;
  uint32_t len;
  /* The chain hash after this message, or 0 if the source does not know
   * it.  A source that fills it promises that its retained messages are
   * one run: if positions a < b can both be read, so can every one
   * between, and their hashes chain.  A donor then checks a delta with
   * two reads instead of reading and hashing the whole run. */
  uint64_t hash;
};

/* Where a donor gets the bytes of a state transfer.  Called from inside
 * smr_core_* calls; the callee may do IO but must not call back into the
 * core.  All functions return negative errno on failure. */
struct smr_core_source {
  void *ctx;
  /* The delivered message at pos; -ENOENT if no longer retained.  data
   * stays valid until the next call. */
  int (*log_read)(void *ctx, uint64_t pos, struct smr_log_entry *e);
  /* Captures the service state at position pos (a view boundary) as an
   * image that later deliveries do not change.  It is called from inside
   * smr_core_poll(), as the VIEW event of that boundary is handed out:
   * every earlier event has been carried out and no later one, so the
   * service state is then exactly at pos. */
  int (*snap_open)(void *ctx, uint64_t pos, void **snap);
  /* Reads up to len bytes of the image at offset off; 0 at its end;
   * -EAGAIN while the image is still being made (the transfer waits and
   * a later pump tries again). */
  long (*snap_read)(void *ctx, void *snap, uint64_t off, void *buf,
                    size_t len);
  void (*snap_close)(void *ctx, void *snap);
};

/* A received multicast kept for recovery (see PERSIST_ENTRY). */
struct smr_persisted_entry {
  uint64_t seq;
  uint8_t sender;
  uint64_t sender_seq;
  uint32_t len;
  const uint8_t *data;
};

/* What a member that restarts from its own disk hands back to the core:
 * the latest PERSIST_VIEW, PERSIST_ACCEPTOR and PERSIST_ENTRY records, and
 * the position its service state was restored to.  (A durable member of a
 * group that has not formed yet persists epoch 0's placeholder view, the
 * configured member list, so that its votes in epoch 0 survive too.) */
struct smr_core_persisted {
  struct smr_wire_view view; /* last installed view */
  uint64_t pos, hash;        /* service state restored to this position */
  uint64_t promised;         /* acceptor state for view.epoch */
  uint64_t accepted_ballot;
  int has_accepted;
  struct smr_wire_proposal accepted;
  const struct smr_persisted_entry *entries; /* received in view.epoch, */
  uint32_t n_entries;                         /* by increasing seq */
};

struct smr_core_config {
  const char *group;
  struct smr_member self;
  const struct smr_member *bootstrap; /* the configured members */
  uint32_t n_bootstrap;
  uint32_t heartbeat_ms;   /* send something to each peer this often */
  uint32_t suspect_ms;     /* silence after which a peer is suspected */
  uint32_t join_batch_ms;  /* joins arriving this close share one view */
  uint32_t max_batch_bytes;/* payload bytes in one ORDER or SUBMIT */
  int relay;               /* nonzero: ORDERs go along the chain of ranks
                              (the leader's link carries them once; see
                              core.c, 1. Ordering) */
  uint32_t max_inflight;   /* ordered but not yet stable, at the leader */
  uint32_t max_pending;    /* local submissions waiting to be ordered */
  uint32_t xfer_chunk;     /* snapshot bytes per XFER frame */
  uint32_t xfer_window;    /* XFER frames sent but not acknowledged */
  int durable;             /* nonzero: emit PERSIST_ENTRY records */
  const struct smr_core_source *source;
  /* Optional: bytes of frames for member `id` that the transport holds
   * and has not written yet (its send queue).  A reliable transport loses
   * a frame only by dropping it (a full queue, a broken connection), so
   * while frames are still queued for a member its silence is our own
   * backlog, not a loss, and a repair would queue the same frames again.
   * Called from inside smr_core_* calls; must not call back into the core.
   * NULL: frames may be lost anywhere on the way (the simulator). */
  size_t (*unsent)(void *ctx, const char *id);
  void *unsent_ctx;
  /* Payload bytes of local submissions not yet delivered, beyond which
   * smr_core_submit says -EAGAIN (one is always taken); 0: no bound but
   * max_pending's count. */
  uint64_t max_pending_bytes;
  const struct smr_core_persisted *restore; /* NULL: no local state */
  /* No earlier process of this member ever ran (a new, empty disk): only
   * then may a member without restore vote in epoch 0, the group's
   * formation.  A process that lost its memory or disk must not. */
  int first_boot;
  /* Without restore: the service state the member starts with, e.g. from
   * a checkpoint (it then rejoins asking only for the delta).  0, 0 is the
   * empty state. */
  uint64_t state_pos, state_hash;
};

enum smr_event_type {
  SMR_EV_SEND = 1,      /* send: one frame to one member */
  SMR_EV_DELIVER,       /* deliver: next message of the total order */
  SMR_EV_VIEW,          /* view: installed; precedes its messages */
  SMR_EV_WEDGED,        /* a view change began: no more sends this view */
  SMR_EV_QUORUM_LOST,   /* no majority reachable: stop serving */
  SMR_EV_EXCLUDED,      /* the group went on without us: rejoining.  Our
                           submissions that were sent but not delivered
                           are dropped (the group treats us as failed, so
                           they may or may not have been delivered) and
                           each is handed back with SMR_EV_DROPPED; those
                           never sent are kept for the next view */
  SMR_EV_LEFT,          /* a graceful leave completed */
  SMR_EV_RESTORE_BEGIN, /* restore: drop the service state; image follows */
  SMR_EV_RESTORE_CHUNK, /* restore: bytes of the image at offset */
  SMR_EV_RESTORE_END,   /* restore: state is now at pos, hash */
  SMR_EV_PERSIST_VIEW,  /* persist: the view we are in from now on, and
                           forget entries of older epochs.  Follows every
                           install (before the VIEW upcall), and is also
                           emitted alone when a restarted member takes its
                           earlier process's place in a decided view that
                           process never installed (it then recovers in
                           that view, needs_state telling whether its
                           service state is the view's starting state) */
  SMR_EV_PERSIST_ACCEPTOR, /* persist: acceptor state of the epoch */
  SMR_EV_PERSIST_ENTRY, /* persist: a received multicast of the epoch */
  SMR_EV_DROPPED,       /* dropped: one of our submissions whose fate is
                           unknown (we were excluded, or left) and that
                           will not be sent again; its data follows */
  SMR_EV_XFER_BEGIN     /* informational: we (the donor) begin sending a
                           member the view's starting state, as a delta
                           of log entries or as the snapshot, and why */
};

/* Why a donor sends the snapshot rather than a delta (XFER_BEGIN). */
enum smr_xfer_why {
  SMR_XFER_WHY_DELTA = 0,   /* a delta: the receiver's history chains */
  SMR_XFER_WHY_NO_STATE,    /* the receiver has no state */
  SMR_XFER_WHY_AHEAD,       /* its position is past the boundary */
  SMR_XFER_WHY_NOT_IN_LOG,  /* our log no longer holds its position */
  SMR_XFER_WHY_DIVERGED     /* its hash does not chain to the boundary */
};

struct smr_event {
  enum smr_event_type type;
  union {
    struct {
      const struct smr_member *to;
      const uint8_t *data;
      size_t len;
    } send;
    struct {
      uint64_t pos;   /* position in the group's history, from 1 */
      uint64_t hash;  /* chain hash after this message */
      uint64_t epoch; /* 0 for a message replayed by a state transfer */
      uint64_t seq;
      const char *sender;
      const uint8_t *data;
      size_t len;
      int own; /* one of this process's submissions, in submission order */
    } deliver;
    struct {
      const struct smr_wire_view *view;
      uint32_t rank; /* ours */
      int needs_state;
    } view; /* VIEW and PERSIST_VIEW */
    struct {
      uint64_t pos;
      uint64_t offset;
      const uint8_t *data;
      size_t len;
      uint64_t hash; /* END only */
    } restore;
    struct {
      uint64_t epoch, promised, accepted_ballot;
      int has_accepted;
      const struct smr_wire_proposal *accepted;
    } acceptor;
    struct {
      uint64_t epoch;
      struct smr_persisted_entry e;
    } entry;
    struct {
      const uint8_t *data;
      size_t len;
    } dropped;
    struct {
      const struct smr_member *to;
      int delta;            /* 1: log entries from..boundary; 0: snapshot */
      enum smr_xfer_why why;
      uint64_t from;        /* the receiver's position */
      uint64_t boundary;    /* the view's starting position */
    } xfer;
  } u;
};

enum smr_core_state {
  SMR_ST_RECOVERING = 1, /* looking for the group (fresh or from disk) */
  SMR_ST_JOINING,        /* asked to be added; waiting for a view */
  SMR_ST_NORMAL,         /* in a view, multicasting */
  SMR_ST_WEDGED,         /* in a view, view change under way */
  SMR_ST_LEFT            /* left gracefully; inert */
};

struct smr_core_status {
  enum smr_core_state state;
  const struct smr_wire_view *view; /* last installed, epoch 0 if none */
  uint32_t rank;                    /* ours in view, if a member */
  int has_state;                    /* service state is valid */
  int quorum_lost;
  uint64_t pos, hash;               /* delivered position, chain hash */
  uint64_t received, stable, delivered; /* sequence numbers in the view */
  uint64_t views_installed, delivered_total, suspicions;
  uint32_t pending;                 /* local submissions not delivered */
  uint32_t suspects;                /* bitmap by rank */
  int leaving;                      /* asked to leave, not yet out */
  uint32_t leaving_mask;            /* bitmap by rank: members known to be
                                       leaving (ourselves included) */
  uint64_t refused;                 /* well-formed frames that made no sense */
  uint32_t lacks_state;             /* bitmap by rank: members of the view
                                       not yet known to hold the state
                                       (NEEDS_STATE in the view until their
                                       heartbeat says otherwise) */
  /* By rank: how far each member of the view has delivered (sequence
   * numbers in the view; ours exact, the others' as last advertised). */
  uint64_t m_delivered[SMR_MAX_MEMBERS];
  /* A state transfer this member is sending (the donor's view of it). */
  uint32_t xfer_rank;               /* receiving member, or UINT32_MAX */
  int xfer_delta;                   /* 1: log entries, 0: snapshot */
  uint64_t xfer_acked;              /* positions (delta) or bytes acked */
  /* Transfers completed and payload bytes, sent and received. */
  uint64_t xfers_out, xfer_bytes_out, xfers_in, xfer_bytes_in;
  /* ORDER entries passed on along the chain (relay), and ORDER frames the
   * leader sent again to a lagging member (repairs). */
  uint64_t relayed, repairs;
};

/* Creates a member.  cfg and everything it points to is copied; only
 * cfg->source must outlive the core.  Returns 0 or -EINVAL (with a reason
 * in the optional err buffer). */
int smr_core_create(const struct smr_core_config *cfg, struct smr_core **out,
                    char *err, size_t errlen);
void smr_core_destroy(struct smr_core *c);

/* A frame received from a peer.  Returns 0, or a negative errno from the
 * decoder (the frame is dropped and nothing changes). */
int smr_core_recv(struct smr_core *c, uint64_t now, const uint8_t *frame,
                  size_t len);

/* Time passed: heartbeats, suspicion, retries, join batching. */
void smr_core_tick(struct smr_core *c, uint64_t now);

/* The earliest time at which smr_core_tick has something to do. */
uint64_t smr_core_next_deadline(const struct smr_core *c);

/* Multicasts a message to the group in total order.  Returns 0, -EAGAIN
 * (flow control: retry after deliveries), -EMSGSIZE, or -ENOTCONN (left or
 * excluded for good). */
int smr_core_submit(struct smr_core *c, uint64_t now, const void *data,
                    size_t len);

/* Ends a batch: pending submissions and acknowledgements go out now. */
void smr_core_flush(struct smr_core *c, uint64_t now);

/* Leaves the group gracefully. */
int smr_core_leave(struct smr_core *c, uint64_t now);

/* The transport lost frames to or from this member (connection reset). */
void smr_core_peer_lost(struct smr_core *c, uint64_t now, const char *id);

/* The transport refused a frame of ours for this member (its queue was
 * full) and dropped it.  With config.unsent set, the core repairs a
 * member that lags soon after such a drop (once its queue has drained),
 * and otherwise only after suspect_ms/2 of silence: a reliable transport
 * loses nothing else, and a slow member is not one that lost frames.
 * Only records the fact (no outputs): may be called while polling. */
void smr_core_send_dropped(struct smr_core *c, const char *id);

/* Takes the next output; returns 1 and fills ev, or 0 when none is left.
 * Pointers in ev stay valid until the next call into the core. */
int smr_core_poll(struct smr_core *c, struct smr_event *ev);

void smr_core_status(const struct smr_core *c, struct smr_core_status *st);

const char *smr_core_state_name(enum smr_core_state s);

/* The time (on the caller's clock) at which a majority of the view,
 * counting this member, was last heard from; 0 when not in a view.  A
 * primary that has not heard from a majority for a while must assume the
 * others are about to replace it (TCP-R fences the VIP). */
uint64_t smr_core_quorum_heard(const struct smr_core *c);

/* The chain hash: hash after delivering payload at pos given prev. */
uint64_t smr_chain_hash(uint64_t prev, uint64_t pos, const void *data,
                        size_t len);

#endif
