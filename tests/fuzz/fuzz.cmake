# libFuzzer targets, built only with -DHULL_BUILD_FUZZERS=ON and clang (see the
# `fuzz` preset). Each target compiles the parser it fuzzes from source, so the
# code under test carries the fuzzer's coverage instrumentation; the libraries
# it links (hull_core) are only needed for support code.
#
# ctest -L fuzz runs every target for a short, bounded time over its seed
# corpus; new inputs go to the build tree, never into the source tree.
if(NOT HULL_BUILD_FUZZERS)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "HULL_BUILD_FUZZERS needs clang++ (libFuzzer); "
                      "configure with -DCMAKE_CXX_COMPILER=clang++ or use the `fuzz` preset")
endif()

set(HULL_FUZZ_FLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer -g)
set(HULL_FUZZ_SECONDS 30 CACHE STRING "How long each ctest fuzz run lasts, in seconds")

get_filename_component(HULL_FUZZ_SOURCE_ROOT "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# hull_add_fuzzer(<name> TEST <ctest name> CORPUS <seed dir> SOURCES <files...>
#                 [LIBRARIES <targets...>] [INCLUDES <dirs...>])
function(hull_add_fuzzer name)
  cmake_parse_arguments(FUZZ "" "TEST;CORPUS" "SOURCES;LIBRARIES;INCLUDES" ${ARGN})
  add_executable(${name} ${FUZZ_SOURCES})
  target_compile_options(${name} PRIVATE ${HULL_FUZZ_FLAGS})
  target_link_options(${name} PRIVATE ${HULL_FUZZ_FLAGS})
  target_include_directories(${name} PRIVATE ${FUZZ_INCLUDES})
  target_link_libraries(${name} PRIVATE ${FUZZ_LIBRARIES})

  set(work_dir ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
  file(MAKE_DIRECTORY ${work_dir}/corpus ${work_dir}/artifacts)
  # The first corpus dir receives new inputs; the seeds are read only.
  add_test(NAME ${FUZZ_TEST}
           COMMAND ${name} -max_total_time=${HULL_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=2048
                   -print_final_stats=1 -artifact_prefix=${work_dir}/artifacts/
                   ${work_dir}/corpus ${FUZZ_CORPUS}
           WORKING_DIRECTORY ${work_dir})
  set_tests_properties(${FUZZ_TEST} PROPERTIES LABELS fuzz TIMEOUT 600)
endfunction()

hull_add_fuzzer(qmp_parser_fuzz
  TEST fuzz_qmp_parser
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/qmp
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/qmp_parser_fuzz.cc
          ${HULL_FUZZ_SOURCE_ROOT}/hypervisor/qemu/qmp_parser.cc
  INCLUDES ${HULL_FUZZ_SOURCE_ROOT}/hypervisor
  LIBRARIES hull_core nlohmann_json::nlohmann_json)
