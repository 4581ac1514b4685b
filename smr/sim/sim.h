/* sim.h -- the deterministic simulator's shared state (internal).
 *
 * smr-sim drives N protocol cores (smr/core/core.h) over a simulated
 * network from a single u64 seed.  Everything a run does is a function of
 * that seed: one thread, a seeded PRNG split into sub-streams per subsystem,
 * integer millisecond time that jumps from event to event, and no decision
 * that depends on the wall clock, a pointer value or hash-table order.
 *
 * The pieces, one file each:
 *
 *   rng.h      xoshiro256** seeded through splitmix64, integer-only
 *              exponential samples (no libm, so seeds replay everywhere)
 *   trace.c    a binary trace ring (printed only on failure or with -v),
 *              the running trace hash, and the fatal-signal handler
 *   service.c  the toy replicated service (256 registers, incremental
 *              digest), its snapshot image, the retained delivery ring and
 *              the smr_core_source callbacks a donor uses
 *   net.c      directed FIFO links, the frame pool, partitions, swizzle
 *              clogs and slow nodes
 *   check.c    the invariant checker (ARCHITECTURE.md invariants 1-7)
 *   world.c    nodes and their disks, the event loop, faults, workload,
 *              the safety and liveness phases
 *   main.c     the command line, seed ranges and the summary
 *
 * The world is allocated once per process and reset for every seed, so the
 * hot path does not allocate (growable tables double rarely and keep their
 * capacity across seeds; frames come from size-class free lists). */
#ifndef SMR_SIM_SIM_H
#define SMR_SIM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "rng.h"

/* ------------------------------------------------------------------------
 * Limits
 * ---------------------------------------------------------------------- */

#define SIM_MAX_NODES 16   /* bootstrap members plus spares */
#define SIM_SPARES 2       /* nodes outside the bootstrap list (joins) */
#define SIM_REGS 256       /* registers of the toy service */
#define SIM_RING 512       /* delivered messages a node retains */
#define SIM_PAYLOAD_HDR 24 /* bytes of a payload before its filler */
#define SIM_PAYLOAD_MAX 160
#define SIM_IMG_SIZE (4 + 4 + 8 + 8 + 8 * SIM_REGS + 8)
#define SIM_SNAPS 64       /* snapshot images open at once, all donors */
#define SIM_ACTIONS 512    /* scheduled fault steps (heals, clogs, ...) */
#define SIM_TRACE_RING 16384
#define SIM_T0 1000        /* the clock's value when a run starts (ms) */

/* Fault kinds (bit numbers of a fault mask). */
enum sim_fault {
  F_CRASH = 0,
  F_RESTART,
  F_PARTITION,
  F_JOIN,
  F_LEAVE,
  F_SLOW,
  F_CLOG,  /* swizzle clog: links held, then released in random order */
  F_TOTAL, /* every member crashes, then all restart from disk */
  F_NKINDS
};
#define F_ALL ((1u << F_NKINDS) - 1)

extern const char *const sim_fault_name[F_NKINDS];

/* Invariants, numbered as in ARCHITECTURE.md; 0 is a broken contract of
 * core.h (an unexpected return code, a frame the codec refuses, ...). */
enum {
  INV_CONTRACT = 0,
  INV_VIEWS = 1,
  INV_VSYNC = 2,
  INV_ORDER = 3,
  INV_DURABLE = 4,
  INV_XFER = 5,
  INV_PRIMARY = 6,
  INV_LIVENESS = 7,
  INV_DETERMINISM = 8
};

enum { DUR_OFF = 0, DUR_ON = 1, DUR_MIXED = 2 };

/* ------------------------------------------------------------------------
 * Options and per-seed parameters
 * ---------------------------------------------------------------------- */

struct sim_opts {
  uint64_t seed_lo, seed_hi;
  int members;
  uint64_t steps;
  unsigned faults; /* mask of enum sim_fault */
  int durable;     /* DUR_* */
  int verbose;
  int trace_tail;
  int check_determinism;
};

/* What a seed chooses (swarm testing: a random subset of the enabled fault
 * kinds at random intensities, random timings and core settings). */
struct sim_params {
  uint32_t heartbeat_ms, suspect_ms, join_batch_ms;
  uint32_t max_batch, max_inflight, max_pending, xfer_chunk, xfer_window;
  int durable;
  int relay; /* ORDERs along the chain of ranks */
  uint32_t net_floor_ms, net_mean_ms;
  unsigned kinds;               /* fault kinds this seed uses */
  uint32_t weight[F_NKINDS];
  uint32_t fault_mean_ms;       /* mean gap between faults */
  uint32_t reactive_pct;        /* crash someone when a view change starts */
  uint32_t mid_pml;             /* per mille: crash a node between two of
                                   its outputs (mid-push of a proposal,
                                   a decision, a transfer) */
  uint32_t part_min_ms, part_max_ms;
  uint32_t slow_extra_ms;
  uint32_t work_mean_ms, burst_pct, burst_max;
  uint64_t safety_steps;
  uint64_t live_bound_ms;       /* liveness: converge within this */
};

/* ------------------------------------------------------------------------
 * The service
 * ---------------------------------------------------------------------- */

struct sim_service {
  uint64_t pos, hash; /* delivered position and chain hash */
  uint64_t count;     /* messages applied (== pos) */
  uint64_t sum;       /* incremental part of the digest */
  uint64_t regs[SIM_REGS];
};

struct sim_logslot {
  uint64_t pos; /* 0: empty */
  uint64_t hash; /* the chain hash after it */
  uint32_t len;
  uint8_t data[SIM_PAYLOAD_MAX];
};

struct sim_snap {
  int used, owner;
  int pending; /* captured when the owner's service reaches pos */
  uint64_t pos;
  uint8_t img[SIM_IMG_SIZE];
};

/* ------------------------------------------------------------------------
 * Disk: what survives a crash
 * ---------------------------------------------------------------------- */

struct sim_dentry {
  uint64_t epoch, seq, sender_seq;
  uint32_t len;
  uint8_t sender;
  size_t off; /* into the arena */
};

struct sim_disk {
  int has_view;
  struct smr_wire_view view;
  int has_acceptor;
  uint64_t acc_epoch, promised, accepted_ballot;
  int has_accepted;
  struct smr_wire_proposal accepted;
  struct sim_dentry *ents;
  uint32_t n_ents, cap_ents;
  uint8_t *arena;
  size_t arena_len, arena_cap;
  int has_svc; /* service state as of the delivered position */
  struct sim_service svc;
};

/* ------------------------------------------------------------------------
 * Nodes
 * ---------------------------------------------------------------------- */

enum sim_life {
  L_SPARE = 0, /* never started */
  L_UP,        /* running a core */
  L_DOWN,      /* crashed; may restart */
  L_IDLE       /* left gracefully; may join again */
};

struct sim_node {
  int idx;
  char id[16];
  char addr[32];
  uint64_t inc; /* incarnation: grows on every (re)start */
  enum sim_life life;
  int bootstrap; /* in the configured member list */
  struct smr_core *core;
  uint64_t deadline;
  uint64_t spin_at;
  uint32_t spin;
  struct smr_core_source src;

  /* service and checker's view of this incarnation */
  struct sim_service svc;
  int has_state;   /* svc is a valid state at svc.pos */
  int restoring;   /* between RESTORE_BEGIN and RESTORE_END */
  uint32_t img_got;
  uint8_t img[SIM_IMG_SIZE];
  uint64_t cur_epoch; /* last VIEW event (this incarnation) */
  uint64_t own_epoch; /* last view persisted: installed, or adopted (a
                         restarted member taking over a decided view) */
  uint32_t cur_rank;
  int needs_state;
  int amnesiac;       /* started without state and not yet in a view */
  int leave_requested, left;
  uint64_t leave_inc; /* incarnation that last asked to leave (kept across restarts) */
  int crash_now; /* dies before carrying out its remaining outputs */
  int quorum_lost;
  uint64_t views_seen, delivers_seen;
  uint64_t sub_counter;
  uint64_t probe_done; /* delivered (or passed) the probe */
  int acc_has;                  /* last value its acceptor accepted: a */
  struct smr_wire_view acc_next; /* view that may yet be decided */

  struct sim_disk disk;
  struct sim_logslot ring[SIM_RING];
};

/* ------------------------------------------------------------------------
 * Network
 * ---------------------------------------------------------------------- */

struct sim_frame {
  struct sim_frame *next;
  uint64_t ready, seq, dst_inc;
  uint32_t len;
  uint8_t cls;
  uint8_t data[];
};

struct sim_link {
  struct sim_frame *head, *tail;
  uint64_t last_ready;
  uint32_t qlen;
  uint8_t cut, clogged, dropped_cut, dropped_dead;
};

/* ------------------------------------------------------------------------
 * Scheduled actions (heals, clog steps, restarts after a total crash)
 * ---------------------------------------------------------------------- */

enum sim_action_kind {
  A_HEAL = 1,
  A_CLOG,
  A_UNCLOG,
  A_UNSLOW,
  A_CRASH,         /* reactive crash of node a */
  A_TOTAL_RESTART,
  A_START          /* first start of bootstrap member a */
};

struct sim_action {
  uint64_t at, seq;
  int kind;
  int a, b;
};

/* ------------------------------------------------------------------------
 * Checker state
 * ---------------------------------------------------------------------- */

struct chk_view {
  int defined;
  struct smr_wire_view v;
  int has_max;
  uint64_t max_pos; /* highest pos delivered in this epoch */
};

struct chk_pos {
  uint64_t hash;
  uint64_t id; /* payload id, UINT64_MAX: undefined */
  uint64_t digest;
};

struct chk_payload {
  uint64_t chk;
  uint64_t pos; /* canonical position, 0: not yet delivered */
  uint32_t len;
  uint16_t node;
  uint16_t probe;
};

/* ------------------------------------------------------------------------
 * The world
 * ---------------------------------------------------------------------- */

struct sim_trec {
  uint64_t t;
  uint64_t step;
  uint8_t kind, node, peer, x;
  uint32_t y;
  uint64_t a, b, c;
};

struct sim_world {
  const struct sim_opts *opts;
  uint64_t seed;
  struct sim_params p;
  struct sim_rng r_cfg, r_net, r_fault, r_work;

  uint64_t now, step;
  int n_nodes, n_boot;
  struct sim_node *nodes[SIM_MAX_NODES];
  struct smr_member boot[SIM_MAX_NODES];

  /* network */
  struct sim_link link[SIM_MAX_NODES][SIM_MAX_NODES];
  uint64_t frame_seq;
  uint32_t part_mask, clog_mask, slow_mask;
  int part_active, clog_active, clog_left;
  uint64_t slow_extra[SIM_MAX_NODES];

  /* scheduled events */
  struct sim_action act[SIM_ACTIONS];
  int n_act;
  uint64_t act_seq;
  uint64_t next_fault, next_work;

  /* phases */
  int liveness;
  uint64_t heal_at, converged_at;
  uint64_t probe_id, probe_epoch;
  int probe_out;
  int halted; /* the latest view lost its majority for good: no liveness */
  int total_down;

  /* counters */
  uint64_t faults[F_NKINDS];
  uint64_t checks, delivers, views_installed, submits, submit_err;
  uint64_t frames_sent, frames_dropped;
  uint64_t snap_early; /* snap_read before the image could be captured */

  /* checker */
  struct chk_view *views;
  uint64_t cap_views, max_epoch;
  struct chk_pos *hist;
  uint64_t cap_hist, hist_max; /* highest defined position */
  uint64_t genesis_hash;
  int genesis_known;
  struct chk_payload *pay;
  uint64_t cap_pay, n_pay;
  uint64_t tc_epoch, tc_pos; /* at the last total crash */
  int tc_pending;

  /* snapshots */
  struct sim_snap snaps[SIM_SNAPS];

  /* restore scratch */
  struct smr_persisted_entry *rs_ents;
  uint32_t cap_rs;

  /* failure */
  int failed;
  int fail_inv;
  char fail_msg[512];

  /* trace */
  struct sim_trec *trace;
  uint64_t trace_n;
  uint64_t trace_hash;
};

extern struct sim_world *sim_w; /* the one world, for the signal handler */

/* main.c: prints the parameters a seed chose. */
void sim_print_params(const struct sim_world *w);

/* ------------------------------------------------------------------------
 * trace.c
 * ---------------------------------------------------------------------- */

enum sim_tkind {
  T_RECV = 1, T_DROP, T_SEND, T_TICK, T_DELIVER, T_VIEW, T_WEDGED, T_QLOST,
  T_EXCLUDED, T_LEFT, T_RBEGIN, T_RCHUNK, T_REND, T_PVIEW, T_PACC, T_PENT,
  T_SUBMIT, T_CRASH, T_START, T_JOIN, T_LEAVE, T_CUT, T_HEAL, T_CLOG,
  T_UNCLOG, T_SLOW, T_UNSLOW, T_PEERLOST, T_PHASE, T_PROBE, T_TOTAL,
  T_SNAP, T_NOTE, T_XFER, T_NKINDS
};

void sim_trace(struct sim_world *w, int kind, int node, int peer, int x,
               uint32_t y, uint64_t a, uint64_t b, uint64_t c);
void sim_trace_reset(struct sim_world *w);
void sim_trace_format(const struct sim_world *w, const struct sim_trec *r,
                      char *buf, size_t cap);
void sim_trace_print_tail(const struct sim_world *w, int fd, int n);
void sim_install_signal_handlers(void);
void sim_set_repro(const char *line);
void sim_fdprintf(int fd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------------
 * service.c
 * ---------------------------------------------------------------------- */

uint64_t sim_mix64(uint64_t x);
uint64_t sim_hash(const void *data, size_t len, uint64_t seed);
void svc_reset(struct sim_service *s);
void svc_apply(struct sim_service *s, const uint8_t *data, size_t len);
uint64_t svc_digest(const struct sim_service *s);
uint64_t svc_digest_full(const struct sim_service *s);
void svc_image(const struct sim_service *s, uint8_t *img);
int svc_from_image(struct sim_service *s, const uint8_t *img, size_t len);
void ring_reset(struct sim_node *n);
void ring_put(struct sim_node *n, uint64_t pos, uint64_t hash,
              const uint8_t *d, size_t len);
void source_init(struct sim_world *w, struct sim_node *n);
void snaps_release(struct sim_world *w, int owner);
void snaps_capture(struct sim_world *w, struct sim_node *n);
size_t payload_build(uint8_t *buf, uint64_t id, int node, uint64_t inc,
                     uint64_t counter, size_t fill, int probe);
int payload_parse(const uint8_t *d, size_t len, uint64_t *id);

/* ------------------------------------------------------------------------
 * net.c
 * ---------------------------------------------------------------------- */

void net_reset(struct sim_world *w);
void net_send(struct sim_world *w, int src, const struct smr_member *to,
              const uint8_t *data, size_t len);
/* Earliest deliverable frame: returns 1 and its link, else 0. */
int net_next(struct sim_world *w, uint64_t *at, uint64_t *seq, int *src,
             int *dst);
void net_deliver(struct sim_world *w, int src, int dst);
void net_cut(struct sim_world *w, uint32_t side, int dir);
void net_heal(struct sim_world *w);
void net_clog(struct sim_world *w, int src, int dst, int on);
void net_free_all(struct sim_world *w);
int node_by_id(const struct sim_world *w, const char *id);

/* ------------------------------------------------------------------------
 * check.c
 * ---------------------------------------------------------------------- */

void chk_reset(struct sim_world *w);
void sim_fail(struct sim_world *w, int inv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *sim_inv_name(int inv);
void chk_submitted(struct sim_world *w, uint64_t id, int node, const uint8_t *d,
                   size_t len, int probe);
void chk_deliver(struct sim_world *w, struct sim_node *n,
                 const struct smr_event *ev);
void chk_view(struct sim_world *w, struct sim_node *n,
              const struct smr_event *ev);
void chk_persisted_view(struct sim_world *w, struct sim_node *n,
                        const struct smr_wire_view *v);
void chk_restore_end(struct sim_world *w, struct sim_node *n, uint64_t pos,
                     uint64_t hash);
void chk_status(struct sim_world *w, struct sim_node *n);
void chk_restarted(struct sim_world *w, struct sim_node *n);
void chk_total_crash(struct sim_world *w);
const struct chk_view *chk_get_view(const struct sim_world *w, uint64_t e);
uint64_t chk_canonical_pos(const struct sim_world *w, uint64_t id);
void chk_describe_view(const struct smr_wire_view *v, char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * world.c
 * ---------------------------------------------------------------------- */

struct sim_world *world_new(const struct sim_opts *o);
void world_free(struct sim_world *w);
/* Runs one seed; returns 0 when no invariant broke. */
int world_run(struct sim_world *w, uint64_t seed);
void node_input_done(struct sim_world *w, struct sim_node *n);

#endif
