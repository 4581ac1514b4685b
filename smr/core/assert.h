/* assert.h -- the core's assertion discipline (after SQLite's).
 *
 * smr_assert(X)  an invariant of the protocol state.  Checked in every build
 *                that does not define SMR_NDEBUG (tests, the simulator and
 *                CI always check them); on failure it prints the expression
 *                and its place and aborts.
 * ALWAYS(X)      a condition that can never be false.  Debug builds abort if
 *                it is; release builds evaluate to X so the caller degrades
 *                gracefully (drops the input) instead of corrupting state.
 * NEVER(X)       the same for a condition that can never be true.
 *
 * Malformed or hostile input is never an assertion failure: it is an error
 * return.  Assertions are reserved for states our own code could reach
 * only through a bug. */
#ifndef SMR_CORE_ASSERT_H
#define SMR_CORE_ASSERT_H

void smr_assert_fail(const char *expr, const char *file, int line,
                     const char *func) __attribute__((noreturn));

#ifdef SMR_NDEBUG
#define smr_assert(X) ((void)0)
#define ALWAYS(X) (X)
#define NEVER(X) (X)
#else
#define smr_assert(X) \
  ((X) ? (void)0 : smr_assert_fail(#X, __FILE__, __LINE__, __func__))
#define ALWAYS(X) \
  ((X) ? 1 : (smr_assert_fail(#X, __FILE__, __LINE__, __func__), 0))
#define NEVER(X) \
  ((X) ? (smr_assert_fail(#X, __FILE__, __LINE__, __func__), 1) : 0)
#endif

#endif
