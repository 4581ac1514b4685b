/* test_kv_store.c -- the KV store (services/kv/store.c, cmd_*.c, ds.c,
 * zset.c): replies, failure paths, expiry by the supplied clock, read-only
 * mode, determinism, and the data structures against simple models.
 *
 * The byte-for-byte comparison with a real Redis is test_kv_redis.c; this
 * file needs no server and checks what Redis cannot: that replicas with
 * different hash seeds, or one restored from a snapshot midway, give the
 * same replies and states for the same command stream. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ds.h"
#include "resp.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Helpers */

static char last[1 << 16];

/* Runs a command given as space separated words (\e: empty word, \s: a
 * space) and returns its reply as a C string (static buffer). */
static const char *runx(struct kv_store *s, int64_t now, uint64_t seed,
                        int readonly, const char *line) {
  char *copy = strdup(line), *save = NULL;
  const uint8_t *argv[64];
  size_t argl[64], argc = 0;
  struct smr_buf out = {0};
  for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    char *d = w;
    for (char *p = w; *p; p++) {
      if (p[0] == '\\' && p[1] == 'e') {
        p++;
      } else if (p[0] == '\\' && p[1] == 's') {
        *d++ = ' ';
        p++;
      } else {
        *d++ = *p;
      }
    }
    *d = 0;
    argv[argc] = (const uint8_t *)w;
    argl[argc] = (size_t)(d - w);
    argc++;
  }
  struct kv_exec x = {argc, argv, argl, now, seed, readonly};
  assert_int_equal(kv_store_exec(s, &x, &out), 0);
  assert_true(out.len < sizeof last);
  assert_int_equal(resp_reply_len(out.data, out.len), (long)out.len);
  memcpy(last, out.data, out.len);
  last[out.len] = 0;
  smr_buf_free(&out);
  free(copy);
  assert_int_equal(kv_store_check(s), 0);
  return last;
}

static const char *run(struct kv_store *s, int64_t now, const char *line) {
  return runx(s, now, 1, 0, line);
}

#define EXPECT(s, now, line, want) assert_string_equal(run(s, now, line), want)

static int sink_buf(void *arg, const void *p, size_t n) {
  return smr_buf_append(arg, p, n);
}

static void serialize(struct kv_store *s, struct smr_buf *out) {
  out->len = 0;
  assert_int_equal(kv_store_serialize(s, sink_buf, out), 0);
}

/* ------------------------------------------------------------------------
 * Replies and failure paths */

static void test_strings_and_errors(void **state) {
  struct kv_store *s = kv_store_new(1);
  (void)state;
  EXPECT(s, 0, "PING", "+PONG\r\n");
  EXPECT(s, 0, "SET k v", "+OK\r\n");
  EXPECT(s, 0, "GET k", "$1\r\nv\r\n");
  EXPECT(s, 0, "GET nokey", "$-1\r\n");
  EXPECT(s, 0, "get", "-ERR wrong number of arguments for 'get' command\r\n");
  EXPECT(s, 0, "nosuch a b",
         "-ERR unknown command 'nosuch', with args beginning with: 'a' 'b' \r\n");
  EXPECT(s, 0, "SET k v BOGUS", "-ERR syntax error\r\n");
  EXPECT(s, 0, "APPEND k xyz", ":4\r\n");
  EXPECT(s, 0, "STRLEN k", ":4\r\n");
  EXPECT(s, 0, "MSET a 1 b", "-ERR wrong number of arguments for 'mset' command\r\n");
  EXPECT(s, 0, "MSET a 1 b 2", "+OK\r\n");
  EXPECT(s, 0, "MGET a b c", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
  EXPECT(s, 0, "DEL a b c", ":2\r\n");
  EXPECT(s, 0, "CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
  EXPECT(s, 0, "CONFIG GET APPENDO*", "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  EXPECT(s, 0, "CONFIG GET [st]ime?ut", "*2\r\n$7\r\ntimeout\r\n$1\r\n0\r\n");
  EXPECT(s, 0, "CONFIG GET nosuch", "*0\r\n");
  EXPECT(s, 0, "CONFIG SET save x",
         "-ERR CONFIG SET is not supported: the group is configured through smrd\r\n");
  EXPECT(s, 0, "CONFIG nope", "-ERR unknown subcommand 'nope'. Try CONFIG HELP.\r\n");
  EXPECT(s, 0, "COMMAND", "*0\r\n");
  EXPECT(s, 0, "COMMAND DOCS", "*0\r\n");
  EXPECT(s, 0, "COMMAND INFO get x", "*2\r\n$-1\r\n$-1\r\n");
  EXPECT(s, 0, "SELECT 0", "+OK\r\n");
  EXPECT(s, 0, "SELECT 1", "-ERR DB index is out of range\r\n");
  EXPECT(s, 0, "INFO keyspace",
         "$44\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n\r\n");
  assert_non_null(strstr(run(s, 0, "INFO"), "redis_version:7.0.15\r\n"));
  assert_non_null(strstr(run(s, 0, "COMMAND LIST"), "$7\r\nzpopmin\r\n"));
  EXPECT(s, 0, "FLUSHALL", "+OK\r\n");
  EXPECT(s, 0, "DBSIZE", ":0\r\n");
  kv_store_free(s);
}

/* tmpl with its "%s" replaced by key. */
static void subst(char *out, size_t n, const char *tmpl, const char *key) {
  const char *at = strstr(tmpl, "%s");
  assert_non_null(at);
  snprintf(out, n, "%.*s%s%s", (int)(at - tmpl), tmpl, key, at + 2);
}

static void test_wrongtype(void **state) {
  static const char *const per_type[][8] = {
      /* commands that need a string, a list, a set, a hash, a zset */
      {"GET %s", "INCR %s", "APPEND %s x", "STRLEN %s", "DECRBY %s 1", NULL},
      {"LPUSH %s x", "LPOP %s", "RPOP %s 2", "LRANGE %s 0 1", "LLEN %s",
       "LINDEX %s 0", NULL},
      {"SADD %s x", "SREM %s x", "SMEMBERS %s", "SCARD %s", "SISMEMBER %s x",
       "SPOP %s", NULL},
      {"HSET %s f v", "HGET %s f", "HDEL %s f", "HGETALL %s", "HLEN %s",
       "HMGET %s f", NULL},
      {"ZADD %s 1 m", "ZRANGE %s 0 1", "ZPOPMIN %s", "ZCARD %s", "ZSCORE %s m",
       "ZREM %s m", NULL},
  };
  static const char *const makers[] = {"SET %s v", "RPUSH %s a", "SADD %s a",
                                       "HSET %s f v", "ZADD %s 1 a"};
  struct kv_store *s = kv_store_new(2);
  char cmd[64];
  (void)state;
  for (int t = 0; t < 5; t++) {
    char key[8];
    snprintf(key, sizeof key, "t%d", t);
    subst(cmd, sizeof cmd, makers[t], key);
    run(s, 0, cmd);
  }
  for (int holder = 0; holder < 5; holder++) {
    char key[8];
    snprintf(key, sizeof key, "t%d", holder);
    for (int t = 0; t < 5; t++) {
      if (t == holder) continue;
      for (int i = 0; per_type[t][i]; i++) {
        subst(cmd, sizeof cmd, per_type[t][i], key);
        EXPECT(s, 0, cmd,
               "-WRONGTYPE Operation against a key holding the wrong kind of "
               "value\r\n");
      }
    }
  }
  /* Nothing changed. */
  EXPECT(s, 0, "DBSIZE", ":5\r\n");
  EXPECT(s, 0, "LRANGE t1 0 -1", "*1\r\n$1\r\na\r\n");
  kv_store_free(s);
}

static void test_integer_overflow(void **state) {
  struct kv_store *s = kv_store_new(3);
  (void)state;
  EXPECT(s, 0, "SET n 9223372036854775806", "+OK\r\n");
  EXPECT(s, 0, "INCR n", ":9223372036854775807\r\n");
  EXPECT(s, 0, "INCR n", "-ERR increment or decrement would overflow\r\n");
  EXPECT(s, 0, "GET n", "$19\r\n9223372036854775807\r\n");
  EXPECT(s, 0, "INCRBY n -9223372036854775807", ":0\r\n");
  EXPECT(s, 0, "DECRBY n 9223372036854775807", ":-9223372036854775807\r\n");
  EXPECT(s, 0, "DECR n", ":-9223372036854775808\r\n");
  EXPECT(s, 0, "DECR n", "-ERR increment or decrement would overflow\r\n");
  EXPECT(s, 0, "DECRBY n -9223372036854775808", "-ERR decrement would overflow\r\n");
  EXPECT(s, 0, "INCRBY n 9223372036854775808",
         "-ERR value is not an integer or out of range\r\n");
  EXPECT(s, 0, "SET n 1.0", "+OK\r\n");
  EXPECT(s, 0, "INCR n", "-ERR value is not an integer or out of range\r\n");
  EXPECT(s, 0, "SET n \\s1", "+OK\r\n");
  EXPECT(s, 0, "INCR n", "-ERR value is not an integer or out of range\r\n");
  EXPECT(s, 0, "INCR fresh", ":1\r\n");
  EXPECT(s, 0, "ZADD z INCR inf m", "$3\r\ninf\r\n");
  EXPECT(s, 0, "ZADD z INCR -inf m", "-ERR resulting score is not a number (NaN)\r\n");
  EXPECT(s, 0, "ZSCORE z m", "$3\r\ninf\r\n");
  kv_store_free(s);
}

/* ------------------------------------------------------------------------
 * Expiry by the supplied clock */

static void test_expiry(void **state) {
  struct kv_store *s = kv_store_new(4);
  (void)state;
  EXPECT(s, 1000, "SET k v PX 100", "+OK\r\n");
  EXPECT(s, 1000, "PTTL k", ":100\r\n");
  EXPECT(s, 1049, "TTL k", ":0\r\n");
  EXPECT(s, 1000, "TTL k", ":0\r\n");
  EXPECT(s, 1100, "GET k", "$1\r\nv\r\n"); /* expired only once now > T */
  EXPECT(s, 1100, "PTTL k", ":0\r\n");
  EXPECT(s, 1101, "GET k", "$-1\r\n");
  EXPECT(s, 1101, "DBSIZE", ":0\r\n"); /* the read deleted it */
  EXPECT(s, 1000, "SET k v EX 10", "+OK\r\n");
  EXPECT(s, 1499, "TTL k", ":10\r\n");
  EXPECT(s, 1501, "TTL k", ":9\r\n");
  EXPECT(s, 2000, "INCR k", "-ERR value is not an integer or out of range\r\n");
  EXPECT(s, 2000, "SET k 5 KEEPTTL", "+OK\r\n");
  EXPECT(s, 2000, "INCR k", ":6\r\n");
  EXPECT(s, 2000, "PTTL k", ":9000\r\n");
  EXPECT(s, 2000, "SET k 5", "+OK\r\n");
  EXPECT(s, 2000, "PTTL k", ":-1\r\n");
  EXPECT(s, 2000, "EXPIRE k -1", ":1\r\n");
  EXPECT(s, 2000, "EXISTS k", ":0\r\n");
  EXPECT(s, 2000, "SET k v", "+OK\r\n");
  EXPECT(s, 2000, "PEXPIREAT k 2000", ":1\r\n"); /* <= now: deleted */
  EXPECT(s, 2000, "EXISTS k", ":0\r\n");
  EXPECT(s, 2000, "SET k v EXAT 1", "+OK\r\n"); /* set, already expired */
  EXPECT(s, 2000, "DBSIZE", ":1\r\n");
  EXPECT(s, 2000, "TTL k", ":-2\r\n");
  EXPECT(s, 2000, "DBSIZE", ":0\r\n");
  /* Expiry applies to every type, and MSET/SET clear it. */
  EXPECT(s, 0, "RPUSH l a", ":1\r\n");
  EXPECT(s, 0, "PEXPIRE l 10", ":1\r\n");
  EXPECT(s, 11, "LLEN l", ":0\r\n");
  EXPECT(s, 0, "SET m v PX 10", "+OK\r\n");
  EXPECT(s, 0, "MSET m w", "+OK\r\n");
  EXPECT(s, 100, "GET m", "$1\r\nw\r\n");
  /* Overflow of the expiry time. */
  EXPECT(s, 5000, "SET big v PX 9223372036854775000",
         "-ERR invalid expire time in 'set' command\r\n");
  EXPECT(s, 5000, "PEXPIRE m 9223372036854775000",
         "-ERR invalid expire time in 'pexpire' command\r\n");
  EXPECT(s, 0, "PEXPIREAT m 9223372036854775807", ":1\r\n");
  EXPECT(s, 0, "TTL m", ":9223372036854776\r\n");
  kv_store_free(s);
}

static void test_expire_tick(void **state) {
  struct kv_store *s = kv_store_new(5);
  (void)state;
  /* Times 10, 10, 20, 30; ties by key bytes. */
  run(s, 0, "SET b v PXAT 10");
  run(s, 0, "SET a v PXAT 10");
  run(s, 0, "SET c v PXAT 20");
  run(s, 0, "SET d v PXAT 30");
  run(s, 0, "SET forever v");
  assert_int_equal(kv_store_expires(s), 4);
  assert_int_equal(kv_store_expire_tick(s, 10, 100), 0); /* not yet: now > T */
  assert_int_equal(kv_store_expire_tick(s, 25, 1), 1);
  EXPECT(s, 0, "EXISTS a", ":0\r\n");
  EXPECT(s, 0, "EXISTS b", ":1\r\n");
  assert_int_equal(kv_store_expire_tick(s, 25, 100), 2); /* b, c */
  EXPECT(s, 0, "EXISTS b c d forever", ":2\r\n");
  assert_int_equal(kv_store_expire_tick(s, 1000, 0), 0); /* no budget */
  assert_int_equal(kv_store_expire_tick(s, 1000, 100), 1);
  assert_int_equal(kv_store_size(s), 1);
  assert_int_equal(kv_store_expires(s), 0);
  /* Moving a key's time moves it in the order. */
  run(s, 0, "SET x v PXAT 50");
  run(s, 0, "SET y v PXAT 40");
  run(s, 0, "PEXPIREAT y 60");
  run(s, 0, "PERSIST forever");
  assert_int_equal(kv_store_expire_tick(s, 55, 100), 1);
  EXPECT(s, 0, "EXISTS x y", ":1\r\n");
  kv_store_free(s);
}

/* ------------------------------------------------------------------------
 * Read-only mode */

static void test_readonly(void **state) {
  struct kv_store *s = kv_store_new(6);
  struct smr_buf before = {0}, after = {0};
  static const char *const reads[] = {
      "GET k", "GET gone", "TTL gone", "EXISTS gone k", "MGET k gone",
      "LRANGE l 0 -1", "SMEMBERS s", "HGETALL h", "ZRANGE z 0 -1 WITHSCORES",
      "DBSIZE", "TYPE gone", "PING", "INFO", "CONFIG GET *", "nosuch x", NULL};
  static const char *const writes[] = {"SET k v", "DEL k", "INCR n", "LPOP l",
                                       "SPOP s", "HDEL h f", "ZPOPMIN z",
                                       "EXPIRE k 10", "PERSIST k", "FLUSHALL",
                                       NULL};
  (void)state;
  run(s, 0, "SET k v");
  run(s, 0, "SET gone v PX 5");
  run(s, 0, "RPUSH l a b");
  run(s, 0, "SADD s a b");
  run(s, 0, "HSET h f v");
  run(s, 0, "ZADD z 1 a");
  serialize(s, &before);
  for (int i = 0; reads[i]; i++) runx(s, 100, 1, 1, reads[i]);
  assert_string_equal(runx(s, 100, 1, 1, "GET gone"), "$-1\r\n");
  for (int i = 0; writes[i]; i++)
    assert_string_equal(runx(s, 100, 1, 1, writes[i]),
                        "-READONLY You can't write against a read only replica.\r\n");
  /* Arity and unknown commands are checked first, as in Redis. */
  assert_string_equal(runx(s, 100, 1, 1, "SET k"),
                      "-ERR wrong number of arguments for 'set' command\r\n");
  serialize(s, &after);
  assert_int_equal(before.len, after.len);
  assert_memory_equal(before.data, after.data, before.len);
  assert_int_equal(kv_store_size(s), 6); /* the expired key is still there */
  EXPECT(s, 100, "GET gone", "$-1\r\n"); /* a write-mode read drops it */
  assert_int_equal(kv_store_size(s), 5);
  smr_buf_free(&before);
  smr_buf_free(&after);
  kv_store_free(s);
}

static void test_command_classes(void **state) {
  static const char *const w[] = {"set", "SET", "Incr", "lpush", "rpop", "sadd",
                                  "spop", "hset", "hdel", "zadd", "zpopmin",
                                  "expire", "persist", "flushall", "del", "mset",
                                  "append", NULL};
  static const char *const r[] = {"get", "GET", "ping", "lrange", "smembers",
                                  "hgetall", "zrange", "ttl", "dbsize", "info",
                                  "config", "command", "select", "exists", NULL};
  (void)state;
  for (int i = 0; w[i]; i++) {
    assert_true(kv_command_is_write((const uint8_t *)w[i], strlen(w[i])));
    assert_true(kv_command_exists((const uint8_t *)w[i], strlen(w[i])));
  }
  for (int i = 0; r[i]; i++) {
    assert_false(kv_command_is_write((const uint8_t *)r[i], strlen(r[i])));
    assert_true(kv_command_exists((const uint8_t *)r[i], strlen(r[i])));
  }
  assert_false(kv_command_is_write((const uint8_t *)"nosuch", 6));
  assert_false(kv_command_exists((const uint8_t *)"nosuch", 6));
  assert_false(kv_command_exists((const uint8_t *)"get\0", 4));
  assert_false(kv_command_exists((const uint8_t *)"", 0));
  assert_false(kv_command_exists(
      (const uint8_t *)"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 46));
}

/* ------------------------------------------------------------------------
 * Determinism */

/* A random command.  Each family of commands mostly uses keys of its own
 * (s*, h*, z*, l*, x*), sometimes a shared one (wrong types, DEL). */
static void random_command(uint64_t *rng, char *line, size_t n) {
  static const char *const m[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
  uint64_t r, x;
  char k[4];
  *rng ^= *rng << 13;
  *rng ^= *rng >> 7;
  *rng ^= *rng << 17;
  r = *rng;
  x = r >> 20;
  const char *a = m[(x >> 3) % 8], *b = m[(x >> 6) % 8];
  int i1 = (int)((x >> 9) % 9) - 4, i2 = (int)((x >> 13) % 9) - 4;
  int op = (int)(r % 26);
  static const char fam[26] = {'x', 's', 's', 's', 's', 's', 'h', 'h', 'h',
                               'z', 'z', 'z', 'z', 'l', 'l', 'l', 'k', 'k',
                               'k', 'x', 'x', 'k', 's', 'h', 'z', 'k'};
  k[0] = (x >> 17) % 8 == 0 ? 'k' : fam[op];
  k[1] = (char)('0' + (x >> 20) % 3);
  k[2] = 0;
  switch (op) {
    case 0: snprintf(line, n, "SET %s %s", k, a); break;
    case 1: snprintf(line, n, "SADD %s %s %s", k, a, b); break;
    case 2: snprintf(line, n, "SREM %s %s", k, a); break;
    case 3: snprintf(line, n, "SPOP %s", k); break;
    case 4: snprintf(line, n, "SPOP %s %d", k, i1 + 4); break;
    case 5: snprintf(line, n, "SMEMBERS %s", k); break;
    case 6: snprintf(line, n, "HSET %s %s %s %s v", k, a, b, b); break;
    case 7: snprintf(line, n, "HDEL %s %s", k, a); break;
    case 8: snprintf(line, n, "HGETALL %s", k); break;
    case 9: snprintf(line, n, "ZADD %s %d %s %d %s", k, i1, a, i2, b); break;
    case 10: snprintf(line, n, "ZRANGE %s %d %d WITHSCORES", k, i1, i2); break;
    case 11: snprintf(line, n, "ZPOPMAX %s %d", k, i1 + 4); break;
    case 12: snprintf(line, n, "ZINCRBY %s %d %s", k, i1, a); break;
    case 13: snprintf(line, n, "LPUSH %s %s %s", k, a, b); break;
    case 14: snprintf(line, n, "RPOP %s %d", k, i1 + 4); break;
    case 15: snprintf(line, n, "LRANGE %s %d %d", k, i1, i2); break;
    case 16: snprintf(line, n, "PEXPIRE %s %d", k, (i1 + 4) * 30); break;
    case 17: snprintf(line, n, "PTTL %s", k); break;
    case 18: snprintf(line, n, "DEL %s", k); break;
    case 19: snprintf(line, n, "INCR %s", k); break;
    case 20: snprintf(line, n, "APPEND %s %s", k, a); break;
    case 21: snprintf(line, n, "DBSIZE"); break;
    case 22: snprintf(line, n, "SISMEMBER %s %s", k, a); break;
    case 23: snprintf(line, n, "HMGET %s %s %s", k, a, b); break;
    case 24: snprintf(line, n, "ZREM %s %s", k, a); break;
    default: snprintf(line, n, "TYPE %s", k); break;
  }
}

/* Restores a store from s's snapshot image, fed in chunks of `chunk`. */
static struct kv_store *clone_by_snapshot(struct kv_store *s, uint64_t seed,
                                          size_t chunk) {
  struct smr_buf img = {0};
  struct kv_restore *r = kv_restore_new(seed);
  struct kv_store *out = NULL;
  assert_int_equal(kv_snapshot_write(s, &img), 0);
  for (size_t at = 0; at < img.len; at += chunk) {
    size_t n = img.len - at < chunk ? img.len - at : chunk;
    assert_int_equal(kv_restore_feed(r, img.data + at, n), 0);
  }
  assert_int_equal(kv_restore_finish(r, &out), 0);
  assert_null(kv_restore_error(r));
  kv_restore_free(r);
  smr_buf_free(&img);
  assert_int_equal(kv_store_check(out), 0);
  return out;
}

static void test_determinism(void **state) {
  /* Replicas: different hash seeds; the third joins from a snapshot. */
  struct kv_store *a = kv_store_new(1), *b = kv_store_new(0xdeadbeef), *c = NULL;
  struct smr_buf sa = {0}, sb = {0}, sc = {0};
  uint64_t rng = 99;
  char line[128], ra[sizeof last];
  int spops = 0, orders = 0;
  (void)state;
  for (int i = 0; i < 6000; i++) {
    int64_t now = 1000 + i * 7;
    uint64_t seed = (uint64_t)i * 0x9e3779b97f4a7c15ULL;
    random_command(&rng, line, sizeof line);
    strcpy(ra, runx(a, now, seed, 0, line));
    assert_string_equal(runx(b, now, seed, 0, line), ra);
    if (c) assert_string_equal(runx(c, now, seed, 0, line), ra);
    if (i == 3000) {
      c = clone_by_snapshot(a, 42, 5);
      assert_true(kv_store_size(c) >= 3);
    }
    /* The stream exercises what matters: random pops, visible orders. */
    if (!strncmp(line, "SPOP", 4) && ra[0] != '-' && strcmp(ra, "$-1\r\n") &&
        strcmp(ra, "*0\r\n"))
      spops++;
    if ((!strncmp(line, "SMEMBERS", 8) || !strncmp(line, "HGETALL", 7)) &&
        ra[0] == '*' && ra[1] >= '3')
      orders++;
    if (i % 500 == 0) {
      kv_store_expire_tick(a, now, 3);
      kv_store_expire_tick(b, now, 3);
      if (c) kv_store_expire_tick(c, now, 3);
    }
  }
  print_message("%d random pops, %d multi-element orders\n", spops, orders);
  assert_true(spops > 50);
  assert_true(orders > 50);
  serialize(a, &sa);
  serialize(b, &sb);
  serialize(c, &sc);
  assert_int_equal(sa.len, sb.len);
  assert_memory_equal(sa.data, sb.data, sa.len);
  assert_int_equal(sa.len, sc.len);
  assert_memory_equal(sa.data, sc.data, sa.len);
  smr_buf_free(&sa);
  smr_buf_free(&sb);
  smr_buf_free(&sc);
  kv_store_free(a);
  kv_store_free(b);
  kv_store_free(c);
}

static void test_spop_seed(void **state) {
  char first[64];
  int differs = 0;
  (void)state;
  for (uint64_t seed = 1; seed <= 20; seed++) {
    struct kv_store *x = kv_store_new(seed), *y = kv_store_new(seed * 77);
    run(x, 0, "SADD s a b c d e f g h i j");
    run(y, 0, "SADD s a b c d e f g h i j");
    strcpy(first, runx(x, 0, seed, 0, "SPOP s 3"));
    assert_string_equal(runx(y, 0, seed, 0, "SPOP s 3"), first);
    {
      char members[256];
      strcpy(members, runx(x, 0, 1000, 0, "SMEMBERS s"));
      assert_string_equal(runx(y, 0, 1000, 0, "SMEMBERS s"), members);
    }
    struct kv_store *z = kv_store_new(3);
    run(z, 0, "SADD s a b c d e f g h i j");
    if (strcmp(runx(z, 0, seed + 100, 0, "SPOP s 3"), first) != 0) differs = 1;
    kv_store_free(x);
    kv_store_free(y);
    kv_store_free(z);
  }
  assert_true(differs);
}

/* ------------------------------------------------------------------------
 * Data structures against models */

static void test_dict_model(void **state) {
  struct kv_dict d;
  char keys[2000][8];
  int present[2000] = {0};
  int order[2000], norder = 0; /* model of the entry order */
  uint64_t rng = 7;
  (void)state;
  kv_dict_init(&d, 12345);
  for (int i = 0; i < 2000; i++) snprintf(keys[i], sizeof keys[i], "k%d", i);
  for (int step = 0; step < 40000; step++) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int k = (int)(rng % (step < 20000 ? 2000 : 300));
    uint32_t e = kv_dict_find(&d, keys[k], strlen(keys[k]));
    assert_int_equal(e != KV_DICT_NONE, present[k]);
    if (!present[k]) {
      assert_int_equal(kv_dict_add(&d, kv_str_new(keys[k], strlen(keys[k])),
                                   (void *)(intptr_t)(k + 1), NULL),
                       0);
      present[k] = 1;
      order[norder++] = k;
    } else {
      int pos = 0;
      assert_int_equal((intptr_t)d.ent[e].val, k + 1);
      while (order[pos] != k) pos++;
      free(d.ent[e].key);
      if (rng & 0x100) {
        /* Stable: the others keep their order. */
        kv_dict_del_stable(&d, e);
        memmove(order + pos, order + pos + 1,
                (size_t)(norder - pos - 1) * sizeof order[0]);
      } else {
        /* Swap: the last takes the hole (only valid without holes). */
        if (d.nent != d.live) {
          kv_dict_del_stable(&d, e);
          memmove(order + pos, order + pos + 1,
                  (size_t)(norder - pos - 1) * sizeof order[0]);
        } else {
          kv_dict_del_swap(&d, e);
          order[pos] = order[norder - 1];
        }
      }
      norder--;
      present[k] = 0;
    }
    if (step % 997 == 0) assert_int_equal(kv_dict_check(&d), 0);
    if (step % 101 == 0) {
      int pos = 0;
      for (uint32_t i = 0; i < d.nent; i++) {
        if (!d.ent[i].key) continue;
        assert_int_equal((intptr_t)d.ent[i].val, order[pos] + 1);
        pos++;
      }
      assert_int_equal(pos, norder);
    }
  }
  assert_int_equal(kv_dict_check(&d), 0);
  for (uint32_t i = 0; i < d.nent; i++) free(d.ent[i].key);
  kv_dict_free(&d);
}

static int cmp_pair(const void *a, const void *b) {
  const double *x = a, *y = b;
  if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
  return (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_zset_model(void **state) {
  struct kv_zset z;
  double model[3000][2]; /* score, member id */
  double score_of[3000];
  int in[3000] = {0}, n = 0;
  uint64_t rng = 11;
  (void)state;
  assert_int_equal(kv_zset_init(&z, 5), 0);
  for (int step = 0; step < 30000; step++) {
    char m[16];
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int id = (int)(rng % 3000);
    /* Members "m0000".."m2999" sort by id. */
    snprintf(m, sizeof m, "m%04d", id);
    double sc = (double)((rng >> 20) % 50) - 25; /* many ties */
    struct kv_znode *x = kv_zset_find(&z, m, strlen(m));
    assert_int_equal(x != NULL, in[id]);
    switch ((rng >> 40) % 3) {
      case 0:
        if (x) kv_zset_rescore(&z, x, sc);
        else assert_int_equal(kv_zset_add(&z, m, strlen(m), sc), 0);
        in[id] = 1;
        score_of[id] = sc;
        break;
      case 1:
        if (x) kv_zset_delete(&z, x);
        in[id] = 0;
        break;
      default:
        if (x) {
          kv_zset_rescore(&z, x, x->score + 0.5);
          score_of[id] += 0.5;
        }
        break;
    }
    if (step % 1000 == 0 || step == 29999) {
      assert_int_equal(kv_zset_check(&z), 0);
      n = 0;
      for (int i = 0; i < 3000; i++)
        if (in[i]) {
          model[n][0] = score_of[i];
          model[n][1] = i;
          n++;
        }
      qsort(model, (size_t)n, sizeof model[0], cmp_pair);
      assert_int_equal(z.len, (size_t)n);
      for (int r = 0; r < n; r += 37) {
        struct kv_znode *y = kv_zset_at(&z, (size_t)r);
        snprintf(m, sizeof m, "m%04d", (int)model[r][1]);
        assert_string_equal((const char *)y->member->data, m);
        assert_true(y->score == model[r][0]);
        assert_int_equal(kv_zset_rank(&z, y), r);
      }
      /* Range searches agree with the model. */
      for (double b = -26; b <= 26; b += 6.5) {
        struct kv_znode *f = kv_zset_first_score(&z, b, 0);
        struct kv_znode *fx = kv_zset_first_score(&z, b, 1);
        struct kv_znode *l = kv_zset_last_score(&z, b, 0);
        int r0 = 0, r1 = 0, r2 = 0;
        while (r0 < n && model[r0][0] < b) r0++;
        while (r1 < n && model[r1][0] <= b) r1++;
        r2 = r1 - 1;
        assert_true(r0 < n ? f && kv_zset_rank(&z, f) == (size_t)r0 : !f);
        assert_true(r1 < n ? fx && kv_zset_rank(&z, fx) == (size_t)r1 : !fx);
        assert_true(r2 >= 0 ? l && kv_zset_rank(&z, l) == (size_t)r2 : !l);
      }
    }
  }
  kv_zset_free(&z);
}

static void test_list_model(void **state) {
  struct kv_store *s = kv_store_new(8);
  int model[4096], head = 2048, tail = 2048; /* [head, tail) */
  uint64_t rng = 3;
  char cmd[64];
  (void)state;
  for (int step = 0; step < 8000; step++) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    int v = (int)(rng >> 40) % 1000;
    switch (rng % 4) {
      case 0:
        if (head == 0) break;
        snprintf(cmd, sizeof cmd, "LPUSH l %d", v);
        run(s, 0, cmd);
        model[--head] = v;
        break;
      case 1:
        if (tail == 4096) break;
        snprintf(cmd, sizeof cmd, "RPUSH l %d", v);
        run(s, 0, cmd);
        model[tail++] = v;
        break;
      case 2: {
        char want[32];
        if (head == tail) {
          EXPECT(s, 0, "LPOP l", "$-1\r\n");
          break;
        }
        snprintf(want, sizeof want, "$%d\r\n%d\r\n",
                 model[head] >= 100 ? 3 : model[head] >= 10 ? 2 : 1, model[head]);
        EXPECT(s, 0, "LPOP l", want);
        head++;
        break;
      }
      default: {
        char want[32];
        if (head == tail) break;
        tail--;
        snprintf(want, sizeof want, "$%d\r\n%d\r\n",
                 model[tail] >= 100 ? 3 : model[tail] >= 10 ? 2 : 1, model[tail]);
        EXPECT(s, 0, "RPOP l", want);
        break;
      }
    }
    if (step % 500 == 0 && head < tail) {
      int i = head + (int)(rng % (uint64_t)(tail - head));
      char want[32];
      snprintf(cmd, sizeof cmd, "LINDEX l %d", i - head);
      snprintf(want, sizeof want, "$%d\r\n%d\r\n",
               model[i] >= 100 ? 3 : model[i] >= 10 ? 2 : 1, model[i]);
      EXPECT(s, 0, cmd, want);
      snprintf(cmd, sizeof cmd, "LLEN l");
      snprintf(want, sizeof want, ":%d\r\n", tail - head);
      EXPECT(s, 0, cmd, want);
    }
    if (head == 0 || tail == 4096) { /* recentre the model */
      run(s, 0, "DEL l");
      head = tail = 2048;
    }
  }
  kv_store_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strings_and_errors),
      cmocka_unit_test(test_wrongtype),
      cmocka_unit_test(test_integer_overflow),
      cmocka_unit_test(test_expiry),
      cmocka_unit_test(test_expire_tick),
      cmocka_unit_test(test_readonly),
      cmocka_unit_test(test_command_classes),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_spop_seed),
      cmocka_unit_test(test_dict_model),
      cmocka_unit_test(test_zset_model),
      cmocka_unit_test(test_list_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
