/* smr/service.h -- what a replicated service gives libsmr.
 *
 * A service is a deterministic state machine plus a way to copy its state.
 * libsmr calls it from one thread (the event loop's), never concurrently:
 *
 *   apply       every replica applies every delivered request, in the same
 *               total order, and must reach the same state and produce the
 *               same reply bytes (no clocks, randomness or addresses in the
 *               result: time, where a command needs it, comes inside the
 *               request, stamped by the member that submitted it).
 *   query       a read-only request answered from local state without
 *               ordering (a backup's possibly stale read); must not change
 *               the state.
 *   snapshot_*  an image of the state as of the moment snapshot_open is
 *               called; later applies must not change the image (copy on
 *               open, copy on write, or an immutable structure).  It is
 *               read in chunks at arbitrary offsets, possibly more than
 *               once.
 *   restore_*   replaces the whole state with an image received in chunks,
 *               in order; restore_end validates it.  A refused image leaves
 *               the service in its empty state.
 *   digest      a hash of the whole state, equal on replicas with equal
 *               states, used to detect divergence.
 *
 * Every function returns 0 or a negative errno; reply and image bytes go
 * through struct smr_buf.  A service never calls back into libsmr from
 * these functions. */
#ifndef SMR_SERVICE_H
#define SMR_SERVICE_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer owned by the caller. */
struct smr_buf {
  uint8_t *data;
  size_t len, cap;
};

/* Appends len bytes; returns 0 or -ENOMEM. */
int smr_buf_append(struct smr_buf *b, const void *data, size_t len);
void smr_buf_reset(struct smr_buf *b);
void smr_buf_free(struct smr_buf *b);

#define SMR_DIGEST_LEN 32

struct smr_service_ops {
  const char *name;
  /* pos: the request's position in the group's history (from 1). */
  int (*apply)(void *svc, uint64_t pos, const uint8_t *req, size_t len,
               struct smr_buf *reply);
  int (*query)(void *svc, const uint8_t *req, size_t len,
               struct smr_buf *reply);
  int (*snapshot_open)(void *svc, void **snap);
  /* Bytes read (0 at the end of the image), or a negative errno. */
  long (*snapshot_read)(void *svc, void *snap, uint64_t off, uint8_t *buf,
                        size_t len);
  void (*snapshot_close)(void *svc, void *snap);
  int (*restore_begin)(void *svc);
  int (*restore_chunk)(void *svc, uint64_t off, const uint8_t *buf,
                       size_t len);
  int (*restore_end)(void *svc);
  void (*digest)(void *svc, uint8_t out[SMR_DIGEST_LEN]);
};

#endif
