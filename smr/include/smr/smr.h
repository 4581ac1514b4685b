/* smr.h -- libsmr: run one member of a replicated group.
 *
 * A program links libsmr, gives it a service (smr/service.h: a
 * deterministic state machine that can copy its state) and an event loop
 * (libev), and gets a member of a virtual-synchrony group:
 *
 *   - smr_submit() multicasts a request in total order; every member
 *     applies it to its copy of the service once it is stable (every
 *     member of the view has it, and with durability on, has it on disk);
 *     the member that submitted it gets the reply through on_reply;
 *   - membership changes arrive as on_view upcalls, before any request of
 *     the new view is applied; the member at rank 0 is the primary;
 *   - the member's log and checkpoints in data_dir survive restarts; a
 *     member that restarts loads its checkpoint and replays its log, then
 *     rejoins with only the delta; a corrupt file is refused with a clear
 *     log line and the member recovers from the group instead.
 *
 * The handle is used from the loop's thread only.  Every public name
 * starts with smr_; errors are negative errno values, and a function that
 * returned an error calls no callback for that call.
 *
 * examples/counter.c is a complete program in 150 lines. */
#ifndef SMR_SMR_H
#define SMR_SMR_H

#include <stddef.h>
#include <stdint.h>

#include "service.h"

struct ev_loop;
struct smr;

#define SMR_LOG_ERROR 0
#define SMR_LOG_WARN 1
#define SMR_LOG_INFO 2
#define SMR_LOG_DEBUG 3

struct smr_member_cfg {
  const char *id;   /* 1..31 bytes */
  const char *addr; /* "host:port" other members reach it at */
};

/* What an on_view upcall reports. */
struct smr_view_info {
  uint64_t epoch;
  uint32_t n;                   /* members */
  const char *const *ids;       /* ids[0] is the primary */
  const char *const *addrs;
  uint32_t rank;                /* ours */
  int needs_state;              /* our state is being transferred */
};

struct smr_config {
  struct ev_loop *loop;
  const char *group;                  /* group name */
  const char *self_id;
  const char *self_addr;              /* where to listen for members */
  const struct smr_member_cfg *members; /* the configured (bootstrap) set */
  size_t n_members;
  const char *data_dir;
  int durable;                        /* 1: fsync before acknowledging */
  uint64_t checkpoint_every;          /* deliveries between checkpoints */
  uint32_t heartbeat_ms, suspect_ms;
  const char *tls_ca, *tls_cert, *tls_key; /* all three, or insecure */
  int insecure;
  /* [transport] kind = rdma: frames between members go over RDMA links
   * (the TCP connection authenticates and sets them up).  rdma_fallback:
   * stay on TCP where no link can be made instead of failing; rdma_port:
   * the connection manager's port (0: the member's TCP port);
   * rdma_busy_poll_us: how long a link keeps polling for completions after
   * its last work before it sleeps until one is signalled (0, the
   * default: never; pays only with a core to spare for each member). */
  int rdma, rdma_fallback;
  uint16_t rdma_port;
  uint32_t rdma_busy_poll_us;
  /* [transport] relay = chain: the primary sends each ordered batch to the
   * next member only, and each member passes it on to the next, so the
   * primary's link carries it once whatever the group's size (RDMC-style;
   * one hop more per rank of latency).  0: to every member directly. */
  int relay;
  const struct smr_service_ops *service;
  void *service_ctx;
  void *ctx;
  void (*on_view)(void *ctx, const struct smr_view_info *v);
  /* One of our submissions was applied (reply: the service's reply). */
  void (*on_reply)(void *ctx, void *cookie, const uint8_t *reply,
                   size_t len);
  /* One of our submissions may or may not have been applied (we were
   * excluded from the group before we could tell); its client retries. */
  void (*on_dropped)(void *ctx, void *cookie);
  /* The member's standing changed outside a view change: it lost the
   * majority, left or was excluded (stop serving, give up the VIP), or a
   * state transfer to it completed (it may serve now).  smr_role() says
   * which. */
  void (*on_standing)(void *ctx);
  /* The member was asked to restart (smr_ask_restart), or found its state
   * diverged from the majority's: it has left the group and, unless
   * `rebuild`, checkpointed where it left; with `rebuild` its log and
   * checkpoint were discarded (the next process rejoins as a new member
   * and receives the whole state).  The program closes the handle and
   * starts again as a fresh process (smrd re-executes itself).  NULL: the
   * program cannot restart; restart requests naming it are refused by it
   * (logged), and a divergence only takes it out of the group. */
  void (*on_restart)(void *ctx, int rebuild);
  void (*log)(void *ctx, int level, const char *line);
};

enum smr_role {
  SMR_ROLE_NONE = 0, /* not in a view (starting, joining, left) */
  SMR_ROLE_PRIMARY,  /* rank 0 of the current view */
  SMR_ROLE_BACKUP,
  SMR_ROLE_WEDGED    /* a view change is under way */
};

/* Upper bounds (microseconds) of the delivery latency histogram. */
#define SMR_LATENCY_BUCKETS 12
#define SMR_LATENCY_BOUNDS                                                  \
  {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,   \
   1000000}

struct smr_status {
  enum smr_role role;
  const char *state;  /* "recovering", "joining", "normal", "wedged", "left" */
  uint64_t epoch;
  uint32_t n, rank;
  const char *ids[16], *addrs[16];
  int member_state[16]; /* 0 up, 1 joining (needs state), 2 suspected,
                           3 leaving (said so, or its restart accepted) */
  int quorum_lost;
  uint64_t incarnation;
  uint64_t applied;  /* position of the last applied request */
  uint64_t stable;   /* sequence number stable in the view */
  uint64_t pending;  /* our submissions not yet applied */
  uint64_t checkpoint_pos;
  /* The service digest at position digest_pos: this process's last
   * checkpoint (digest_pos 0 and zeros before its first).  Kept, not
   * computed per call: digesting a large state would stall the loop. */
  uint8_t digest[SMR_DIGEST_LEN];
  uint64_t digest_pos;
  uint64_t views_installed, delivered_total, suspicions, refused_frames;
  uint64_t log_bytes, fsyncs;
  /* The transport: "tcp" or "rdma" (as configured), its RDMA links up now
   * and the bytes they carried. */
  const char *transport;
  uint64_t peers_up, rdma_links, rdma_bytes_out, rdma_bytes_in;
  uint64_t rdma_sst_out, rdma_sst_in; /* heartbeats through SST slots */
  /* By rank: each member's process incarnation (the view's record) and
   * how far it has delivered (sequence numbers in the view, as it last
   * advertised; `delivered` is ours). */
  uint64_t member_incarnation[16], member_delivered[16];
  uint64_t delivered;
  /* A state transfer this member is sending now: to rank xfer_rank
   * (UINT32_MAX: none), of the delta (log entries) or the snapshot, and
   * how far acknowledged (positions or bytes). */
  uint32_t xfer_rank;
  int xfer_delta;
  uint64_t xfer_acked;
  /* Counters: state transfers this member sent and received (and their
   * bytes), divergences it saw (a member's digest differed from the
   * majority's at a checkpoint), and those of its own. */
  uint64_t xfers_sent, xfer_bytes_sent, xfers_received, xfer_bytes_received;
  uint64_t divergences_seen, diverged;
  /* Members seen back in a view with a newer incarnation (restarts). */
  uint64_t restarts_seen;
  /* Restart requests refused at their position in the total order (the
   * same count on every member that saw them), and the last one's reason
   * ("" before the first; valid until the next call into the group). */
  uint64_t restarts_refused;
  const char *last_refusal;
  /* Ordered messages this member passed on along the chain ([transport]
   * relay = chain), and ORDER frames it sent again, as primary, to a
   * member whose receipt lagged (repairs). */
  uint64_t relayed, order_repairs;
  /* Sequence numbers received but not yet stable (everyone has them). */
  uint64_t stable_lag;
  /* Delivery latency of this member's own submissions, submit to apply:
   * cumulative counts of those that took at most SMR_LATENCY_BOUNDS[i]
   * microseconds, and the sum in microseconds. */
  uint64_t latency_le[SMR_LATENCY_BUCKETS], latency_count, latency_sum_us;
};

int smr_open(const struct smr_config *cfg, struct smr **out, char *err,
             size_t errlen);
void smr_close(struct smr *g);

/* The largest request smr_submit takes (bytes). */
#define SMR_MAX_REQUEST (1u << 20)

/* Multicasts a request.  Returns 0 (on_reply or on_dropped follows),
 * -EAGAIN (too many outstanding, 100,000 requests or 32 MiB of them; one
 * is always taken: retry after replies), -EMSGSIZE, or -ENOTCONN (left
 * the group). */
int smr_submit(struct smr *g, const void *req, size_t len, void *cookie);

/* Every member checkpoints at the same position (a control message in the
 * total order), then reports its digest there. */
int smr_checkpoint(struct smr *g);

/* The members' service digests at the latest checkpoint position that
 * every member of the current view reported. */
struct smr_digests {
  uint64_t position;
  int agree;
  uint32_t n;
  char ids[16][32];
  uint8_t digests[16][SMR_DIGEST_LEN];
};
/* Returns 0, or -ENOENT if no such position yet. */
int smr_digests(struct smr *g, struct smr_digests *out);

/* Leaves the group gracefully. */
int smr_leave(struct smr *g);

/* Asks the member `id` of the current view to leave gracefully (through
 * the group, so it works from any member).  -ENOENT: not in the view. */
int smr_ask_leave(struct smr *g, const char *id);

/* Asks the member `id` of the current view to restart (through the group,
 * like smr_ask_leave): at the position of the request it leaves, then
 * checkpoints and hands over to its program (on_restart), which comes
 * back as a new incarnation with the delta.  flags: SMR_RESTART_REBUILD
 * discards its state instead (it receives all of it again).
 * -ENOENT: not in the view; -EINVAL: a bad id; -EBUSY: not now (without
 * it, and without the members already on their way out, the view would
 * fall below a majority of the configured members, or another member is
 * suspected or still receiving its state; logged).  At the request's
 * position every member decides the same from the view and the restarts
 * accepted before it that are still under way, so two requests in a row
 * never take two members away where one is all a majority can spare; the
 * named member then checks what only it sees and may still refuse.  A
 * refusal is logged and counted in smr_status (restarts_refused,
 * last_refusal) on every member. */
#define SMR_RESTART_REBUILD 1u
int smr_ask_restart(struct smr *g, const char *id, unsigned flags);

void smr_status(struct smr *g, struct smr_status *st);

/* This member's role now (SMR_ROLE_NONE while it is still receiving its
 * state, whatever its rank), and (if quorum_lost is not NULL) whether it
 * has lost its majority.  Cheap. */
enum smr_role smr_role(struct smr *g, int *quorum_lost);
/* The epoch of the view this member is in (last installed). */
uint64_t smr_epoch(struct smr *g);

/* Milliseconds since this member last heard from a majority of its view
 * (itself included); UINT64_MAX when it is not in a view.  Cheap. */
uint64_t smr_quorum_silence(struct smr *g);

#endif
