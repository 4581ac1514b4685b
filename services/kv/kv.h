/* kv.h -- the KV service: the store behind struct smr_service_ops, and the
 * format of the requests the group orders.
 *
 * The runtime's path for one client request:
 *
 *   1. resp_parse() (resp.h) cuts the connection's bytes into requests.
 *   2. kv_command_is_write(argv[0]) (store.h) decides the path:
 *        write      kv_request_encode(now_ms, ...) and submit to the group;
 *                   every member's apply() runs it at the same position
 *        read-only  kv_request_encode(now_ms, ...) and query() locally
 *                   (a backup's possibly stale read; never changes state)
 *   3. The reply bytes from apply()/query() go to the client unchanged.
 *
 * Request format (what apply() and query() receive), little endian:
 *
 *   offset size
 *   0      4    magic "KVRQ"
 *   4      1    version (1)
 *   5      1    kind: 1 command, 2 expiry tick
 *   6      2    zero
 *   8      8    now_ms: the submitting member's clock, ms since the epoch
 *               (int64 >= 0)
 *   16     4    command: argc >= 1; tick: the most keys to expire
 *   20     ...  command: argc x { u32 len, len bytes, one 0 byte }
 *               tick: nothing
 *
 * The trailing NUL of each argument lets the store parse arguments in
 * place.  A request that does not follow the format exactly (bad magic or
 * version, unknown kind, lengths that do not add up, a missing NUL,
 * trailing bytes) is answered "-ERR malformed request" and changes
 * nothing, the same way on every replica.
 *
 * Time: the member that submits a request stamps now_ms once, from its own
 * clock; every replica expires keys and computes TTLs from that stamp,
 * never from its own clock.  Stamps need not be monotonic for safety (a
 * key's expiry is a pure function of the stamps), but a primary should not
 * let them go backwards, or a key could reappear to clients after it was
 * reported gone.
 *
 * Randomness: apply() derives SPOP's random stream from the request's
 * position in the group's history (pos), so it is the same on every
 * replica and in every replay of the log.
 *
 * Expiry: apply() first expires up to KV_EXPIRE_PER_APPLY keys whose time
 * has passed (by the request's now_ms), then runs the command.  An idle
 * group expires nothing, so the primary should also submit a tick request
 * (kv_request_encode_tick) now and then, e.g. every 100 ms while it has
 * nothing else to send; a tick's reply is empty.  Without ticks expired
 * keys still vanish for clients (lazy expiry), they only take memory and
 * count in DBSIZE/INFO until touched.
 *
 * Errors: apply() returns 0 whatever the command's reply (error replies
 * included), or -ENOMEM when memory ran out in the middle of a command.
 * The state may then hold part of that command, so the member must stop
 * applying and get its state from the group again (restart, rejoin).
 * query() fails only with -ENOMEM and never changes the state.
 *
 * Snapshots are a copy made at snapshot_open (O(state) memory and time,
 * the keys sorted, in the event loop's thread); the image format is in
 * snapshot.c.  restore_begin() empties the service at once; a refused
 * image leaves it empty, and kv_service_restore_error() says why.
 *
 * Digest: SHA-256 over "smr-kv digest 1\n" and the canonical record stream
 * (snapshot.c), so replicas whose states are logically equal (same keys,
 * values, expiry times and client-visible orders) have equal digests,
 * whatever their histories, hash seeds or memory layouts.  It costs a pass
 * over the whole state and a sort of the keys, like a snapshot, without
 * the copy.  The order of
 * set members and hash fields is client-visible (SMEMBERS, HGETALL, SPOP),
 * so it is part of the state; the order of keys is not. */
#ifndef SMR_KV_KV_H
#define SMR_KV_KV_H

#include <stddef.h>
#include <stdint.h>

#include "smr/service.h"

#define KV_REQ_MAGIC "KVRQ"
#define KV_REQ_VERSION 1
#define KV_REQ_COMMAND 1
#define KV_REQ_TICK 2
#define KV_REQ_HDR 20
#define KV_EXPIRE_PER_APPLY 16

struct kv_service;

struct kv_options {
  uint64_t hash_seed; /* hash tables only; need not match across replicas */
};

/* opt may be NULL.  NULL when out of memory. */
struct kv_service *kv_service_new(const struct kv_options *opt);
void kv_service_free(struct kv_service *svc);

/* The vtable; its functions take the struct kv_service * as svc. */
extern const struct smr_service_ops kv_service_ops;

/* Why the last restore was refused (NULL if it was not). */
const char *kv_service_restore_error(const struct kv_service *svc);

/* The store behind the service (tests, INFO-like admin output). */
struct kv_store *kv_service_store(struct kv_service *svc);

/* Encodes a command request into out (appended).  0, -EINVAL (argc == 0,
 * an argument of UINT32_MAX bytes or more, now_ms < 0) or -ENOMEM. */
int kv_request_encode(struct smr_buf *out, int64_t now_ms, size_t argc,
                      const uint8_t *const *argv, const size_t *argl);
/* Encodes an expiry tick (at most budget keys). */
int kv_request_encode_tick(struct smr_buf *out, int64_t now_ms,
                           uint32_t budget);
/* The encoded size of a command request (to check it against the group's
 * message size limit before submitting). */
size_t kv_request_size(size_t argc, const size_t *argl);

/* A decoded request; argv points into the request bytes. */
struct kv_request {
  int kind;
  int64_t now_ms;
  uint32_t budget;            /* ticks */
  size_t argc;                /* commands */
  const uint8_t **argv;
  size_t *argl;
};

/* Decodes req[0..len).  argv and argl are allocated (free them with
 * kv_request_release) unless argc is 0.  0, -EBADMSG or -ENOMEM. */
int kv_request_decode(const uint8_t *req, size_t len, struct kv_request *out);
void kv_request_release(struct kv_request *r);

#endif
