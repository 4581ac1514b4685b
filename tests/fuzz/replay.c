/* replay.c -- runs a fuzz target without libFuzzer.
 *
 *   <target>_replay [--mutations N] PATH...
 *
 * Every PATH is a file, or a directory whose regular files are taken in
 * name order.  Each input is passed to LLVMFuzzerTestOneInput() as is and
 * then, with --mutations N, N times more after a few random edits (bit
 * flips, byte stores, truncation, insertion, appended bytes).  The edits
 * come from a fixed-seed PRNG keyed by the input's index, so a run is
 * reproducible: a failure names the input and the mutation number.
 *
 * This is what keeps the seed corpus, and the crashers fixed over time,
 * under test in every build, gcc included; it is not a fuzzer.  It fails
 * (exit 1) when a path cannot be read or no input is found at all, so a
 * misplaced corpus cannot pass silently.  A failing check in the target
 * aborts, which fails the run anyway. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define INPUT_MAX (1u << 24)
#define MUTATE_EXTRA 64 /* room for inserted and appended bytes */

static uint64_t rng_next(uint64_t *s) {
  /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/* Applies 1..4 random edits to buf[0..*len), which has room for
 * MUTATE_EXTRA more bytes; the length stays within that room. */
static void mutate(uint8_t *buf, size_t *len, size_t cap, uint64_t *s) {
  int edits = 1 + (int)(rng_next(s) % 4);
  for (int i = 0; i < edits; i++) {
    uint64_t r = rng_next(s);
    size_t n = *len;
    size_t at = n ? (size_t)(r >> 8) % n : 0;
    switch (r % 5) {
      case 0: /* flip a bit */
        if (n) buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
        break;
      case 1: /* store a byte, often an interesting one */
        if (n) {
          static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, 8, 16, 32, 64};
          buf[at] = (r >> 40) & 1 ? v[(r >> 41) % sizeof v]
                                  : (uint8_t)(r >> 48);
        }
        break;
      case 2: /* truncate */
        *len = at;
        break;
      case 3: /* insert a byte */
        if (n < cap) {
          memmove(buf + at + 1, buf + at, n - at);
          buf[at] = (uint8_t)(r >> 48);
          *len = n + 1;
        }
        break;
      default: /* append a few bytes */
        for (size_t k = 0; k < 1 + (r >> 40) % 8 && *len < cap; k++)
          buf[(*len)++] = (uint8_t)rng_next(s);
        break;
    }
  }
}

static long mutations;
static unsigned long inputs, runs;

static int run_file(const char *path) {
  struct stat st;
  FILE *f;
  uint8_t *data, *work;
  size_t size;
  uint64_t seed;

  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
      (uint64_t)st.st_size > INPUT_MAX) {
    fprintf(stderr, "replay: %s: not a readable input\n", path);
    return -1;
  }
  size = (size_t)st.st_size;
  data = malloc(size ? size : 1);
  work = malloc(size + MUTATE_EXTRA);
  f = fopen(path, "rb");
  if (!data || !work || !f || fread(data, 1, size, f) != size) {
    fprintf(stderr, "replay: %s: cannot read\n", path);
    if (f) fclose(f);
    free(data);
    free(work);
    return -1;
  }
  fclose(f);

  /* Each input gets its own exact-size copy so ASan sees any over-read. */
  LLVMFuzzerTestOneInput(data, size);
  runs++;
  seed = 0x5eed0000u + inputs;
  for (long i = 0; i < mutations; i++) {
    size_t len = size;
    uint8_t *exact;
    memcpy(work, data, size);
    mutate(work, &len, size + MUTATE_EXTRA, &seed);
    exact = malloc(len ? len : 1);
    if (!exact) {
      fprintf(stderr, "replay: out of memory\n");
      free(data);
      free(work);
      return -1;
    }
    memcpy(exact, work, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    runs++;
  }
  inputs++;
  free(data);
  free(work);
  return 0;
}

static int is_file(const struct dirent *d) { return d->d_name[0] != '.'; }

static int run_path(const char *path) {
  struct stat st;
  struct dirent **names;
  int n, rc = 0;

  if (stat(path, &st) != 0) {
    fprintf(stderr, "replay: %s: no such file or directory\n", path);
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return run_file(path);
  n = scandir(path, &names, is_file, alphasort);
  if (n < 0) {
    fprintf(stderr, "replay: %s: cannot list\n", path);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char full[4096];
    int w = snprintf(full, sizeof full, "%s/%s", path, names[i]->d_name);
    if (rc == 0 && (w < 0 || (size_t)w >= sizeof full || run_file(full)))
      rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  int i = 1;
  if (argc > 2 && strcmp(argv[1], "--mutations") == 0) {
    char *end;
    mutations = strtol(argv[2], &end, 10);
    if (*end || mutations < 0) {
      fprintf(stderr, "replay: bad --mutations %s\n", argv[2]);
      return 2;
    }
    i = 3;
  }
  if (i >= argc) {
    fprintf(stderr, "usage: %s [--mutations N] FILE|DIR...\n", argv[0]);
    return 2;
  }
  for (; i < argc; i++)
    if (run_path(argv[i]) != 0) return 1;
  if (inputs == 0) {
    fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  printf("replay: %lu inputs, %lu runs, all passed\n", inputs, runs);
  return 0;
}
