/* bench_util.h -- what the benchmark programs (net_bench.c, group_bench.c)
 * share: the monotonic clock, usage errors and numeric options, and
 * latency percentiles.  Each program calls bench_init() first with its
 * name and usage text; a usage error prints both and exits 2. */
#ifndef SMR_BENCH_UTIL_H
#define SMR_BENCH_UTIL_H

#include <stdint.h>

void bench_init(const char *prog, const char *usage);

/* Seconds on CLOCK_MONOTONIC. */
double bench_now_s(void);

/* "PROG: message" (if fmt is not NULL), the usage text, exit 2. */
void bench_usage_exit(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* A decimal number from min to max for option --opt, or a usage error. */
uint64_t bench_parse_u64(const char *opt, const char *s, uint64_t min,
                         uint64_t max);

/* Sorts v[0..n) (n > 0) and gives its 50th and 99th percentiles (nearest
 * rank: the smallest value with that share at or below it). */
void bench_percentiles(double *v, uint64_t n, double *p50, double *p99);

#endif
