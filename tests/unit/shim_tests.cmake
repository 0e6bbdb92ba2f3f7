# Unit tests of the shim's pure pieces: containerd's flag syntax, mount
# options, runtime options, sandbox grouping and event envelopes.
find_package(GTest REQUIRED)
include(GoogleTest)

# Doubles for the host runtime: a hypervisor of records, a scripted agent.
add_library(hull_test_fakes STATIC
  ${CMAKE_CURRENT_LIST_DIR}/../support/fake_agent.cc
  ${CMAKE_CURRENT_LIST_DIR}/../support/fake_vm.cc)
target_include_directories(hull_test_fakes PUBLIC ${CMAKE_CURRENT_LIST_DIR}/../support)
target_link_libraries(hull_test_fakes PUBLIC hull_sandbox hull_hypervisor hull_core)

add_executable(shim_unit_tests
  ${CMAKE_CURRENT_LIST_DIR}/shim_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/task_convert_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/task_service_test.cc)
target_link_libraries(shim_unit_tests PRIVATE hull_shim hull_test_fakes GTest::gtest_main)
gtest_discover_tests(shim_unit_tests PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)

# tools/install into temp dirs, checked by containerd's own config parser.
add_test(NAME install_script
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR})
# Exit 77 = skipped (no guest image, or no containerd to read the config), with why.
set_tests_properties(install_script PROPERTIES LABELS unit TIMEOUT 120 SKIP_RETURN_CODE 77)

# The shared directory against a hostile guest's symlinks (mounts: root).
add_executable(shared_dir_test ${CMAKE_CURRENT_LIST_DIR}/../privileged/shared_dir_test.cc)
target_link_libraries(shared_dir_test PRIVATE hull_sandbox hull_testlib GTest::gtest_main)
gtest_discover_tests(shared_dir_test PROPERTIES LABELS privileged DISCOVERY_TIMEOUT 60)

# The sandbox library without a VM: parsers, records, the agent API's plumbing
# and the Sandbox over a fake hypervisor and agent.
add_executable(sandbox_unit_tests ${CMAKE_CURRENT_LIST_DIR}/sandbox_test.cc)
target_link_libraries(sandbox_unit_tests PRIVATE hull_sandbox hull_test_fakes hull_proto GTest::gtest_main)
gtest_discover_tests(sandbox_unit_tests PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
