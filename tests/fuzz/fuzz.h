/* fuzz.h -- what every fuzz target and the replay driver share.
 *
 * A target is one C file defining LLVMFuzzerTestOneInput().  It is linked
 * either with libFuzzer (-fsanitize=fuzzer, clang, SMR_FUZZ=ON) or with
 * replay.c, whose main() runs it over corpus files; see CMakeLists.txt.
 *
 * FUZZ_CHECK(X) is the target's oracle: unlike assert() it is never
 * compiled out (CMake's release flags define NDEBUG), and it aborts, which
 * both libFuzzer and ctest report as a failure. */
#ifndef SMR_TESTS_FUZZ_H
#define SMR_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(X)                                                   \
  do {                                                                  \
    if (!(X)) {                                                         \
      fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #X, __FILE__, \
              __LINE__);                                                \
      abort();                                                          \
    }                                                                   \
  } while (0)

#endif
