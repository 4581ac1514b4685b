/* smr/frontend.h -- what a program (smrd) needs from a service's
 * client-facing side.
 *
 * A service (services/kv, ...) is two things: the replicated state machine
 * that libsmr drives (smr/service.h), and a front end that speaks the
 * service's protocol to clients, submits their requests to the group on
 * the primary and answers read-only ones locally on backups.  smrd creates
 * both from the configuration and wires libsmr's upcalls to the front end. */
#ifndef SMR_SMRD_FRONTEND_H
#define SMR_SMRD_FRONTEND_H

#include <stdint.h>

#include "smr/smr.h"

struct ev_loop;
struct smrd_frontend;
struct tcpr_gate;
struct tcpr_keeper;
struct tcpr_conntab;

struct smrd_frontend_config {
  struct ev_loop *loop;
  const char *bind;   /* address to listen on, "" for all */
  uint16_t port;
  struct smr *group;  /* to submit to */
  void *svc;          /* the state machine, for local read-only queries */
  const struct smr_service_ops *ops;
  void (*log)(void *ctx, int level, const char *line);
  void *log_ctx;
  /* TCP-R (tcpr/tcpr.h).  Every submission is a tcpr record (the group's
   * state machine is the connection table wrapped around the service);
   * connections accepted on vip:port are gated, replicated, and restored
   * by the member that becomes primary.  vip 0: no VIP. */
  struct tcpr_conntab *conns;
  struct tcpr_gate *gate;     /* may be NULL (gate = off) */
  struct tcpr_keeper *keeper; /* may be NULL */
  uint32_t vip;               /* network order */
  uint32_t replication_delay_ms; /* test only: hold requests this long */
  uint32_t reply_delay_ms;       /* test only: hold VIP replies this long */
  uint32_t takeover_acks;        /* ACKs per restored idle connection */
};

struct smrd_frontend_ops {
  const char *name;
  /* The state machine (created before the group, which restores into it). */
  int (*service_create)(void **svc, const struct smr_service_ops **ops);
  void (*service_destroy)(void *svc);
  int (*open)(const struct smrd_frontend_config *cfg,
              struct smrd_frontend **out, char *err, size_t errlen);
  void (*close)(struct smrd_frontend *f);
  /* libsmr's upcalls, forwarded. */
  void (*on_role)(struct smrd_frontend *f, enum smr_role role);
  void (*on_reply)(struct smrd_frontend *f, void *cookie,
                   const uint8_t *reply, size_t len);
  void (*on_dropped)(struct smrd_frontend *f, void *cookie);
  uint64_t (*connections)(struct smrd_frontend *f);
  /* Connections on the VIP this member serves now. */
  uint64_t (*vip_connections)(struct smrd_frontend *f);
  /* After on_role(PRIMARY) restored the group's connections (quietly:
   * the VIP is not ours yet), the VIP was taken: serve them now. */
  void (*resume)(struct smrd_frontend *f);
  /* Restores failed at the last takeover. */
  uint64_t (*restore_failures)(struct smrd_frontend *f);
  /* Client bytes the ACK gate released (acknowledgeable: the group has
   * them), over all connections. */
  uint64_t (*released_bytes)(struct smrd_frontend *f);
  /* TEST ONLY (smrd refuses it unless [testing] corrupt_command = yes):
   * changes this member's copy of the state behind the group's back, as a
   * bug would, so that divergence detection can be shown to work.  KV: sets
   * key to value locally.  0 or a negative errno. */
  int (*debug_corrupt)(struct smrd_frontend *f, const char *key,
                       const char *value);
};

#endif
