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
   * the connection manager's port (0: the member's TCP port). */
  int rdma, rdma_fallback;
  uint16_t rdma_port;
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
  void (*log)(void *ctx, int level, const char *line);
};

enum smr_role {
  SMR_ROLE_NONE = 0, /* not in a view (starting, joining, left) */
  SMR_ROLE_PRIMARY,  /* rank 0 of the current view */
  SMR_ROLE_BACKUP,
  SMR_ROLE_WEDGED    /* a view change is under way */
};

struct smr_status {
  enum smr_role role;
  const char *state;  /* "recovering", "joining", "normal", "wedged", "left" */
  uint64_t epoch;
  uint32_t n, rank;
  const char *ids[16], *addrs[16];
  int member_state[16]; /* 0 up, 1 joining (needs state), 2 suspected */
  int quorum_lost;
  uint64_t incarnation;
  uint64_t applied;  /* position of the last applied request */
  uint64_t stable;   /* sequence number stable in the view */
  uint64_t pending;  /* our submissions not yet applied */
  uint64_t checkpoint_pos;
  uint8_t digest[SMR_DIGEST_LEN]; /* of the service state now */
  uint64_t views_installed, delivered_total, suspicions, refused_frames;
  uint64_t log_bytes, fsyncs;
  /* The transport: "tcp" or "rdma" (as configured), its RDMA links up now
   * and the bytes they carried. */
  const char *transport;
  uint64_t peers_up, rdma_links, rdma_bytes_out, rdma_bytes_in;
  uint64_t rdma_sst_out, rdma_sst_in; /* heartbeats through SST slots */
};

int smr_open(const struct smr_config *cfg, struct smr **out, char *err,
             size_t errlen);
void smr_close(struct smr *g);

/* The largest request smr_submit takes (bytes). */
#define SMR_MAX_REQUEST (1u << 20)

/* Multicasts a request.  Returns 0 (on_reply or on_dropped follows),
 * -EAGAIN (too many outstanding: retry after replies), -EMSGSIZE, or
 * -ENOTCONN (left the group). */
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

void smr_status(struct smr *g, struct smr_status *st);

/* This member's role now (SMR_ROLE_NONE while it is still receiving its
 * state, whatever its rank), and (if quorum_lost is not NULL) whether it
 * has lost its majority.  Cheap, unlike smr_status (which digests the
 * state). */
enum smr_role smr_role(struct smr *g, int *quorum_lost);
/* The epoch of the view this member is in (last installed). */
uint64_t smr_epoch(struct smr *g);

/* Milliseconds since this member last heard from a majority of its view
 * (itself included); UINT64_MAX when it is not in a view.  Cheap. */
uint64_t smr_quorum_silence(struct smr *g);

#endif
