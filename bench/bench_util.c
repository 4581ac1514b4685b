/* bench_util.c -- see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char *prog_name = "bench";
static const char *usage_text = "";

void bench_init(const char *prog, const char *usage) {
  prog_name = prog;
  usage_text = usage;
}

double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_usage_exit(const char *fmt, ...) {
  if (fmt != NULL) {
    va_list ap;
    fprintf(stderr, "%s: ", prog_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
  }
  fputs(usage_text, stderr);
  exit(2);
}

uint64_t bench_parse_u64(const char *opt, const char *s, uint64_t min,
                         uint64_t max) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min ||
      v > max)
    bench_usage_exit("--%s %s: expected a number from %" PRIu64 " to %" PRIu64,
                     opt, s, min, max);
  return v;
}

static int cmp_double(const void *a, const void *c) {
  double x = *(const double *)a, y = *(const double *)c;
  return (x > y) - (x < y);
}

static double nearest_rank(const double *v, uint64_t n, uint64_t pct) {
  uint64_t k = (pct * n + 99) / 100;
  return v[k > 0 ? k - 1 : 0];
}

void bench_percentiles(double *v, uint64_t n, double *p50, double *p99) {
  qsort(v, n, sizeof *v, cmp_double);
  *p50 = nearest_rank(v, n, 50);
  *p99 = nearest_rank(v, n, 99);
}
