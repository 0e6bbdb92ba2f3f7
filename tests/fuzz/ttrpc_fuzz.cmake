# libFuzzer target for the ttrpc frame decoder (shim/ttrpc/frame.cc, compiled
# from source so it carries the fuzzer's instrumentation) and the parsing of
# the Request/Response envelopes. Include it from tests/CMakeLists.txt after
# fuzz/fuzz.cmake, which defines hull_add_fuzzer().
if(NOT HULL_BUILD_FUZZERS)
  return()
endif()

get_filename_component(HULL_TTRPC_FUZZ_SOURCE_ROOT "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

hull_add_fuzzer(ttrpc_frame_fuzz
  TEST fuzz_ttrpc_frame
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/ttrpc
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/ttrpc_frame_fuzz.cc
          ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/shim/ttrpc/frame.cc
  INCLUDES ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/shim
  LIBRARIES hull_core hull_containerd_proto)

# ParseCniInterface (sandbox/src/pod_network.cc): the pod netns's `ip -j` output.
hull_add_fuzzer(cni_interface_fuzz
  TEST fuzz_cni_interface
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/cni
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/cni_interface_fuzz.cc
          ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/sandbox/src/pod_network.cc
  INCLUDES ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/sandbox/include ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/hypervisor/include
  LIBRARIES hull_core nlohmann_json::nlohmann_json)

# FromWire (sandbox/src/agent_wire.cc): the guest agent's replies, as a
# hostile agent may encode them.
hull_add_fuzzer(agent_reply_fuzz
  TEST fuzz_agent_reply
  CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/agent_reply
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/agent_reply_fuzz.cc
          ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/sandbox/src/agent_wire.cc
  INCLUDES ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/sandbox/src ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/sandbox/include
           ${HULL_TTRPC_FUZZ_SOURCE_ROOT}/hypervisor/include
  LIBRARIES hull_core hull_proto)
