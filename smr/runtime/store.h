/* store.h -- a member's data directory: log, checkpoint, incarnation.
 *
 * Internal to libsmr (see store.c for the design and the file formats). */
#ifndef SMR_RUNTIME_STORE_H
#define SMR_RUNTIME_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core.h"
#include "smr/service.h"

struct smr_store;

struct smr_store_config {
  const char *dir;
  const char *group;
  int durable;            /* fsync log records before they are relied on */
  uint64_t retain;        /* delivered messages kept for deltas */
  uint64_t retain_bytes;  /* and at most this much log from the oldest (0:
                             no bound) */
  const struct smr_service_ops *svc;
  void *svc_ctx;
  /* Replays one delivered message into the service during recovery (the
   * runtime's own dispatch: envelopes are its business). */
  void (*replay)(void *ctx, uint64_t pos, const uint8_t *data, size_t len);
  void *ctx;
  void (*log)(void *ctx, int level, const char *line);
};

/* What the store found on disk, for smr_core_create(). */
struct smr_store_recovered {
  uint64_t incarnation;      /* the new process's (already persisted) */
  int has_view;              /* a view record: restart from disk */
  struct smr_core_persisted p;
  uint64_t pos, hash;        /* service state restored to this position */
  int corrupt;               /* a file was refused; local state dropped */
  int first_boot;            /* nothing on disk: no earlier process ran */
};

int smr_store_open(const struct smr_store_config *cfg, struct smr_store **out,
                   struct smr_store_recovered *rec, char *err, size_t errlen);
void smr_store_close(struct smr_store *s);

/* Records (appended to the log buffer; durable after smr_store_sync). */
int smr_store_view(struct smr_store *s, const struct smr_wire_view *v);
int smr_store_acceptor(struct smr_store *s, uint64_t epoch, uint64_t promised,
                       uint64_t accepted_ballot, int has_accepted,
                       const struct smr_wire_proposal *accepted);
int smr_store_entry(struct smr_store *s, uint64_t epoch,
                    const struct smr_persisted_entry *e);
/* The message delivered at pos, after which the chain hash is hash. */
int smr_store_delivered(struct smr_store *s, uint64_t pos, uint64_t hash,
                        const uint8_t *data, size_t len);
/* After a state transfer: the service state is now at pos (the history
 * before it is not in our log). */
int smr_store_restored(struct smr_store *s, uint64_t pos, uint64_t hash);

/* Writes what is buffered and, if durable and anything was written since
 * the last sync, fdatasyncs (one sync covers a whole batch). */
int smr_store_sync(struct smr_store *s);

/* The delivered message at pos, if retained (for a delta). */
int smr_store_log_read(struct smr_store *s, uint64_t pos,
                       struct smr_log_entry *e);

/* Writes a checkpoint of the service state at (pos, hash) and compacts the
 * log to what a restart or a delta still needs. */
int smr_store_checkpoint(struct smr_store *s, uint64_t pos, uint64_t hash);

/* The same in the background: a child process (fork(): a copy-on-write
 * image of the service as it is now) writes the checkpoint and, if digest,
 * digests the state; this process goes on.  job->fd becomes readable when
 * the child is done; then smr_store_checkpoint_finish() collects it,
 * installs the checkpoint (unless a later one is already installed:
 * -ESTALE, with the digest still given) and compacts the log, and gives
 * the digest.  Several may run;
 * smr_store_checkpoint_abort() kills one (on close).  0 or -errno. */
struct smr_store_ckjob {
  int pid, fd;
  uint64_t pos;
};
/* For a child forked to write state (checkpoint, snapshot): dies with
 * `parent`, default SIGTERM/SIGINT, every descriptor closed but keep1 and
 * keep2 (0-2 stay too). */
void smr_store_child_init(pid_t parent, int keep1, int keep2);
int smr_store_checkpoint_fork(struct smr_store *s, uint64_t pos,
                              uint64_t hash, int digest,
                              struct smr_store_ckjob *job);
int smr_store_checkpoint_finish(struct smr_store *s,
                                struct smr_store_ckjob *job,
                                uint8_t digest[SMR_DIGEST_LEN]);
void smr_store_checkpoint_abort(struct smr_store *s,
                                struct smr_store_ckjob *job);

/* Discards the checkpoint and the log (the service state they hold is not
 * to be trusted: it diverged from the group's).  The incarnation file
 * stays, so the next process is newer than every earlier one and rejoins
 * as a member without state.  The store is empty afterwards. */
int smr_store_discard(struct smr_store *s);

struct smr_store_stats {
  uint64_t log_bytes, fsyncs, checkpoint_pos, records;
  uint64_t checkpoint_bytes; /* size of checkpoint.smr (0: none) */
};
void smr_store_stats(const struct smr_store *s, struct smr_store_stats *st);

#endif
