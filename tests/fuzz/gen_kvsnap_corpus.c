/* gen_kvsnap_corpus.c -- writes the seed corpus of fuzz_kvsnap.
 *
 *   gen_kvsnap_corpus DIR
 *
 * Builds a few stores with fixed commands (empty; strings; one key of each
 * type; expiry times; a larger sorted set and hash) and writes each image
 * twice, in fuzz_kvsnap's two modes: DIR/<name>-raw (mode byte, then the
 * image) and DIR/<name>-sealed (mode byte, record count, then the records
 * without the header).  The contents are fixed, so rerunning it after a
 * deliberate change of the format regenerates the committed corpus
 * (tests/fuzz/corpus/kvsnap) reproducibly. */
#include <stdio.h>
#include <string.h>

#include "store.h"

static int run(struct kv_store *s, const char *line) {
  char copy[512], *save = NULL;
  const uint8_t *argv[64];
  size_t argl[64], argc = 0;
  struct smr_buf out = {0};
  int r;
  snprintf(copy, sizeof copy, "%s", line);
  for (char *w = strtok_r(copy, " ", &save); w && argc < 64;
       w = strtok_r(NULL, " ", &save)) {
    argv[argc] = (const uint8_t *)w;
    argl[argc++] = strlen(w);
  }
  struct kv_exec x = {argc, argv, argl, 1000, 1, 0};
  r = kv_store_exec(s, &x, &out);
  smr_buf_free(&out);
  return r;
}

static int write_file(const char *dir, const char *name, const char *suffix,
                      const uint8_t *a, size_t an, const uint8_t *b,
                      size_t bn) {
  char path[4096];
  FILE *f;
  snprintf(path, sizeof path, "%s/%s-%s", dir, name, suffix);
  f = fopen(path, "wb");
  if (!f || fwrite(a, 1, an, f) != an || (bn && fwrite(b, 1, bn, f) != bn) ||
      fclose(f) != 0) {
    fprintf(stderr, "gen_kvsnap_corpus: cannot write %s\n", path);
    return -1;
  }
  return 0;
}

static int emit(const char *dir, const char *name, const char *const *cmds,
                uint8_t mode) {
  struct kv_store *s = kv_store_new(1);
  struct smr_buf img = {0};
  uint8_t pre[2];
  int r = 0;
  for (int i = 0; cmds[i] && !r; i++) r = run(s, cmds[i]);
  if (!r) r = kv_snapshot_write(s, &img);
  if (!r) {
    pre[0] = (uint8_t)(mode & ~1u);
    r = write_file(dir, name, "raw", pre, 1, img.data, img.len);
  }
  if (!r) {
    pre[0] = (uint8_t)(mode | 1u);
    pre[1] = (uint8_t)kv_store_size(s);
    r = write_file(dir, name, "sealed", pre, 2, img.data + 40, img.len - 40);
  }
  smr_buf_free(&img);
  kv_store_free(s);
  return r;
}

int main(int argc, char **argv) {
  static const char *const empty[] = {NULL};
  static const char *const strings[] = {"SET a 1", "SET b hello", "SET c x", NULL};
  static const char *const types[] = {
      "SET s v", "RPUSH l a b c", "SADD set x y z", "SREM set y",
      "HSET h f1 v1 f2 v2 f3 v3", "HDEL h f2", "ZADD z 1 a 2 b -inf c 2 a2",
      NULL};
  static const char *const expiry[] = {"SET a 1 PX 100", "RPUSH l a",
                                       "PEXPIREAT l 5000", "SET forever x",
                                       NULL};
  static const char *const larger[] = {
      "ZADD big 1 a 2 b 3 c 4 d 5 e 6 f 7 g 8 h 9 i 10 j 11 k 12 l 13 m",
      "ZADD big 0.5 aa 1.5 bb 2.5 cc inf dd -1e300 ee",
      "HSET hh a 1 b 2 c 3 d 4 e 5 f 6 g 7 h 8 i 9 j 10",
      "SADD ss 1 2 3 4 5 6 7 8 9 10 11 12", "SPOP ss 3",
      "LPUSH ll 1 2 3 4 5 6 7 8", "RPOP ll 2", NULL};
  if (argc != 2) {
    fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  if (emit(argv[1], "empty", empty, 0) || emit(argv[1], "strings", strings, 2) ||
      emit(argv[1], "types", types, 16) || emit(argv[1], "expiry", expiry, 6) ||
      emit(argv[1], "larger", larger, 40))
    return 1;
  return 0;
}
