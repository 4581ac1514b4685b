# tcpr/gate.cmake -- the ACK gate (gate.c) and its tc-BPF backend
# (gate_bpf.c, program gate_bpf.bpf.c), included by tcpr/CMakeLists.txt.
#
# The BPF object is compiled by an explicit clang command line, not as a
# target: the project's global compile options (warnings are fine, but
# -fsanitize=... of SMR_SANITIZE / SMR_FUZZ builds are not) must not reach
# `clang -target bpf`.  bpftool turns the object into a skeleton header
# (gate_bpf.skel.h, in the build tree) that embeds it in libsmr_tcpr.

find_program(SMR_BPF_CLANG NAMES clang clang-16 clang-15 clang-14)
find_program(SMR_BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin)
if(NOT SMR_BPF_CLANG OR NOT SMR_BPFTOOL)
  message(FATAL_ERROR "tcpr gate: clang and bpftool are needed to build the "
                      "tc-BPF gate (apt-get install clang bpftool, or run "
                      "tests/install-deps)")
endif()
pkg_check_modules(LIBBPF REQUIRED IMPORTED_TARGET libbpf)

# clang -target bpf does not search the multiarch include directory that
# holds asm/types.h.
set(_gate_bpf_includes -I${CMAKE_CURRENT_SOURCE_DIR} -I/usr/include)
if(CMAKE_LIBRARY_ARCHITECTURE)
  list(APPEND _gate_bpf_includes -I/usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
else()
  list(APPEND _gate_bpf_includes -I/usr/include/x86_64-linux-gnu)
endif()

set(_gate_bpf_obj ${CMAKE_CURRENT_BINARY_DIR}/gate_bpf.bpf.o)
set(_gate_bpf_skel ${CMAKE_CURRENT_BINARY_DIR}/gate_bpf.skel.h)

add_custom_command(
  OUTPUT ${_gate_bpf_obj}
  COMMAND ${SMR_BPF_CLANG} -O2 -g -target bpf -Wall -Wextra -Werror
          ${_gate_bpf_includes}
          -c ${CMAKE_CURRENT_SOURCE_DIR}/gate_bpf.bpf.c -o ${_gate_bpf_obj}
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/gate_bpf.bpf.c
          ${CMAKE_CURRENT_SOURCE_DIR}/gate_bpf.h
  COMMENT "Compiling the tc-BPF gate (gate_bpf.bpf.o)"
  VERBATIM)

# Written to a temporary file first: a failed bpftool must not leave an
# empty header behind that looks up to date.
add_custom_command(
  OUTPUT ${_gate_bpf_skel}
  COMMAND sh -c "\"$0\" gen skeleton \"$1\" name gate_bpf > \"$2.tmp\" && mv \"$2.tmp\" \"$2\""
          ${SMR_BPFTOOL} ${_gate_bpf_obj} ${_gate_bpf_skel}
  DEPENDS ${_gate_bpf_obj}
  COMMENT "Generating the gate's BPF skeleton (gate_bpf.skel.h)"
  VERBATIM)

target_sources(smr_tcpr PRIVATE
               ${CMAKE_CURRENT_SOURCE_DIR}/gate.c
               ${CMAKE_CURRENT_SOURCE_DIR}/gate_bpf.c
               ${CMAKE_CURRENT_SOURCE_DIR}/gate_slots.c
               ${CMAKE_CURRENT_SOURCE_DIR}/gate_kmod.c
               ${_gate_bpf_skel})
# SYSTEM: the generated header is not ours to keep warning-free.
target_include_directories(smr_tcpr SYSTEM PRIVATE ${CMAKE_CURRENT_BINARY_DIR})
# The kernel module's user-space interface (uapi/smr_tcpr.h), for gate_kmod.c.
target_include_directories(smr_tcpr PRIVATE ${PROJECT_SOURCE_DIR}/kernel-module)
target_link_libraries(smr_tcpr PRIVATE PkgConfig::LIBBPF)
