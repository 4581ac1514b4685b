# expect_violation.cmake -- passes only if the simulator catches a bug.
#
#   cmake -DSIM=<smr-sim binary> -DSEEDS=A-B -P expect_violation.cmake
#
# Runs the simulator over the seeds with every fault kind, stopping at the
# first failing seed, and succeeds only if it exited non-zero AND printed a
# VIOLATION line (a broken invariant, or the core's own assertion caught by
# the simulator's signal handler).  Used for the planted-bug variants.
if(NOT SIM OR NOT SEEDS)
  message(FATAL_ERROR "usage: cmake -DSIM=path -DSEEDS=A-B -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
execute_process(
  COMMAND ${SIM} --seeds ${SEEDS} --members 5 --steps 5000 --faults all
          --trace-tail 20 --stop-after 1
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
string(REGEX MATCH "VIOLATION seed=[0-9]+[^\n]*" line "${out}")
if(rc EQUAL 0 OR NOT line)
  message(FATAL_ERROR "the simulator found no violation over seeds ${SEEDS} "
                      "(exit ${rc}): the planted bug went unnoticed\n${out}${err}")
endif()
string(REGEX MATCH "seed=[0-9]+" seed "${line}")
message(STATUS "caught (${seed}): ${line}")
