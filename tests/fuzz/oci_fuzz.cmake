# libFuzzer target for the OCI spec model (core/src/oci_*.cc), compiled
# from source so it carries the fuzzer's instrumentation. Include it from
# tests/CMakeLists.txt after fuzz/fuzz.cmake, which defines hull_add_fuzzer().
if(NOT HULL_BUILD_FUZZERS)
  return()
endif()

get_filename_component(HULL_OCI_FUZZ_SOURCE_ROOT "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

hull_add_fuzzer(oci_spec_fuzz
  TEST fuzz_oci_spec
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/oci
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/oci_spec_fuzz.cc
          ${HULL_OCI_FUZZ_SOURCE_ROOT}/core/src/oci_parse.cc
          ${HULL_OCI_FUZZ_SOURCE_ROOT}/core/src/oci_write.cc
          ${HULL_OCI_FUZZ_SOURCE_ROOT}/core/src/oci_default.cc
          ${HULL_OCI_FUZZ_SOURCE_ROOT}/core/src/oci_vocabulary.cc
  LIBRARIES hull_core nlohmann_json::nlohmann_json)

# The cgroup v2 file parsers (agent/engine/cgroup_files.cc), with the
# properties CgroupParseTest also checks.
hull_add_fuzzer(cgroup_parser_fuzz
  TEST fuzz_cgroup_parser
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/cgroup
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cgroup_parser_fuzz.cc
          ${HULL_OCI_FUZZ_SOURCE_ROOT}/agent/engine/cgroup_files.cc
  INCLUDES ${HULL_OCI_FUZZ_SOURCE_ROOT}/agent
  LIBRARIES hull_core nlohmann_json::nlohmann_json)
