/* assert.c -- reporting a broken invariant (see assert.h). */
#include "assert.h"

#include <stdio.h>
#include <stdlib.h>

void smr_assert_fail(const char *expr, const char *file, int line,
                     const char *func) {
  fprintf(stderr, "smr: invariant violated: %s (%s:%d, %s)\n", expr, file,
          line, func);
  fflush(stderr);
  abort();
}
