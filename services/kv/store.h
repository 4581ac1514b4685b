/* store.h -- the KV data model and its commands: a deterministic, Redis 7.0
 * compatible state machine.
 *
 * A store maps keys to typed values (string, list, set, hash, sorted set),
 * each key optionally with an expiry time.  kv_store_exec() runs one
 * command, given as an argument vector, and appends its RESP2 reply.
 *
 * Determinism, the contract every replica relies on:
 *  - Time is an argument (now_ms, milliseconds since the epoch, stamped by
 *    the member that submitted the request).  A key with expiry time T is
 *    gone once now_ms > T (Redis's rule); expired keys are dropped lazily
 *    when a command touches them, and actively by kv_store_expire_tick(),
 *    which removes the keys in (expiry time, key bytes) order.
 *  - Randomness (SPOP) is drawn from the seed argument, which the caller
 *    derives from the request's position in the group's history.
 *  - Orders a client can see are functions of the commands applied: lists
 *    by position, sorted sets by (score, member), hashes by insertion
 *    (deleting a field keeps the others' order, as Redis's small hashes),
 *    sets by the order of their member array (adds append; a removal moves
 *    the last member into the hole).  Nothing depends on hash seeds,
 *    addresses or the allocator (kv_store_new's seed may differ between
 *    replicas).
 *  - Those orders are part of the state: snapshots carry them and digests
 *    cover them.  The order of keys in the keyspace is not observable (no
 *    KEYS/SCAN/RANDOMKEY) and is not part of the state: snapshots and
 *    digests list keys sorted by their bytes.
 *
 * Read-only mode (a backup's query): lookups treat expired keys as absent
 * but never delete them, and write commands are refused with -READONLY, so
 * the store is not changed at all.
 *
 * Arguments must each be followed by a NUL byte (argv[i][argl[i]] == 0),
 * as the RESP parser and the group request decoder provide: numeric
 * arguments are parsed with C library functions that stop at a NUL, which
 * is also how Redis treats them.
 *
 * Errors: kv_store_exec returns 0, whatever the command's reply (error
 * replies included), or -ENOMEM if memory ran out; then the state may hold
 * part of the command's effect and the caller must treat the replica as
 * failed (it can no longer be trusted to match the others). */
#ifndef SMR_KV_STORE_H
#define SMR_KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "smr/service.h"

struct kv_store;

struct kv_exec {
  size_t argc; /* >= 1 */
  const uint8_t *const *argv;
  const size_t *argl;
  int64_t now_ms;   /* clamped to >= 0 */
  uint64_t seed;    /* randomness of this command */
  int readonly;     /* 1: a query (no change, writes refused) */
};

/* seed: the hash tables' seed (performance only, see above). */
struct kv_store *kv_store_new(uint64_t seed);
void kv_store_free(struct kv_store *s);
/* Removes every key (FLUSHALL). */
void kv_store_clear(struct kv_store *s);

/* Runs one command; appends its reply.  0 or -ENOMEM (see above). */
int kv_store_exec(struct kv_store *s, const struct kv_exec *x,
                  struct smr_buf *reply);

/* Removes at most budget keys whose expiry time is < now_ms, earliest
 * first (ties by key bytes); returns how many it removed. */
size_t kv_store_expire_tick(struct kv_store *s, int64_t now_ms, size_t budget);

/* Keys present, expired ones not yet removed included (DBSIZE). */
size_t kv_store_size(const struct kv_store *s);
/* Keys with an expiry time. */
size_t kv_store_expires(const struct kv_store *s);

/* Command classes, for the runtime: 1 if the command (name[0..len), any
 * case) may change the state and must be ordered through the group; 0 for
 * read-only commands and for unknown ones (which only produce an error
 * reply, identical everywhere). */
int kv_command_is_write(const uint8_t *name, size_t len);
/* 1 if the command is known to the store. */
int kv_command_exists(const uint8_t *name, size_t len);

/* Checks the store's internal invariants (tests); 0 if they hold. */
int kv_store_check(const struct kv_store *s);

/* ------------------------------------------------------------------------
 * Canonical serialisation (snapshots and digests; format in snapshot.c) */

/* Receives serialised bytes; returns 0 or a negative errno to stop. */
typedef int (*kv_sink_fn)(void *arg, const void *p, size_t n);

/* Writes every key's record in canonical order (keys sorted by bytes).
 * Returns 0 or the first error of the sink (or -ENOMEM). */
int kv_store_serialize(const struct kv_store *s, kv_sink_fn sink, void *arg);

/* Streaming restore of an image made by kv_snapshot_write(). */
struct kv_restore;
struct kv_restore *kv_restore_new(uint64_t seed);
/* Feeds the next n bytes of the image.  0, or -EBADMSG (corrupt image;
 * kv_restore_error() says why) or -ENOMEM; after an error every call
 * fails the same way. */
int kv_restore_feed(struct kv_restore *r, const uint8_t *p, size_t n);
/* Checks the image is complete and intact; on success returns 0 and the
 * store in *out (the caller owns it).  Else -EBADMSG/-ENOMEM. */
int kv_restore_finish(struct kv_restore *r, struct kv_store **out);
const char *kv_restore_error(const struct kv_restore *r);
void kv_restore_free(struct kv_restore *r);

/* The whole image of s (header, records, checksums) appended to out.
 * 0 or -ENOMEM. */
int kv_snapshot_write(const struct kv_store *s, struct smr_buf *out);

#endif
