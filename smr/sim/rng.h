/* rng.h -- the simulator's deterministic random numbers.
 *
 * xoshiro256** (Blackman and Vigna) seeded through splitmix64.  Each
 * subsystem (configuration, network, faults, workload) owns one generator
 * seeded from the run's seed and a fixed salt, so adding draws to one
 * subsystem does not shift the choices of another.
 *
 * Exponential samples use integer arithmetic only: -ln(u) comes from the
 * position of the leading one bit of a 32-bit draw and a 64-entry table of
 * log2(1 + f).  No libm: a seed replays the same on every machine. */
#ifndef SMR_SIM_RNG_H
#define SMR_SIM_RNG_H

#include <stdint.h>

struct sim_rng {
  uint64_t s[4];
};

static inline uint64_t sim_splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline void sim_rng_seed(struct sim_rng *r, uint64_t seed,
                                uint64_t salt) {
  uint64_t x = seed ^ (salt * 0xd1b54a32d192ed03ull);
  for (int i = 0; i < 4; i++) r->s[i] = sim_splitmix64(&x);
}

static inline uint64_t sim_rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static inline uint64_t sim_rand(struct sim_rng *r) {
  uint64_t *s = r->s;
  uint64_t out = sim_rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = sim_rotl(s[3], 45);
  return out;
}

/* Uniform in [0, n); n > 0.  (Multiply-shift; the bias is negligible.) */
static inline uint64_t sim_below(struct sim_rng *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)sim_rand(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline uint64_t sim_range(struct sim_rng *r, uint64_t lo, uint64_t hi) {
  return lo + sim_below(r, hi - lo + 1);
}

/* True with probability pct/100. */
static inline int sim_chance(struct sim_rng *r, uint32_t pct) {
  return sim_below(r, 100) < pct;
}

/* -ln(u) for u uniform in (0,1), in 16.16 fixed point. */
static inline uint64_t sim_neglog_q16(struct sim_rng *r) {
  static const uint16_t log2_frac[64] = {
      736,   2190,  3623,  5034,  6425,  7795,  9146,  10477,
      11791, 13086, 14363, 15624, 16868, 18096, 19308, 20505,
      21687, 22854, 24007, 25146, 26272, 27384, 28484, 29571,
      30645, 31707, 32758, 33797, 34825, 35841, 36847, 37842,
      38827, 39802, 40767, 41722, 42667, 43603, 44530, 45448,
      46357, 47258, 48150, 49034, 49909, 50776, 51636, 52488,
      53332, 54169, 54998, 55820, 56635, 57443, 58245, 59039,
      59827, 60609, 61384, 62152, 62915, 63671, 64421, 65166};
  uint32_t x = (uint32_t)(sim_rand(r) >> 32) | 1u;
  int lg = 31 - __builtin_clz(x);
  uint32_t idx = ((x << (31 - lg)) >> 25) & 63u;
  uint64_t nl2 = ((uint64_t)(32 - lg) << 16) - log2_frac[idx];
  return (nl2 * 45426u) >> 16; /* times ln 2 */
}

/* Exponentially distributed with the given mean (same unit). */
static inline uint64_t sim_exp(struct sim_rng *r, uint64_t mean) {
  return (mean * sim_neglog_q16(r)) >> 16;
}

#endif
