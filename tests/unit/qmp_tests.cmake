# Unit tests of the QMP parser and client. One test also runs the real
# qemu-system-x86_64 (with -machine none: no guest, ~0.1 s) and skips, saying
# so, when QEMU is not installed.
find_package(GTest REQUIRED)
include(GoogleTest)

add_executable(qmp_test ${CMAKE_CURRENT_LIST_DIR}/qmp_test.cc)
target_link_libraries(qmp_test PRIVATE hull_qmp hull_testlib GTest::gtest_main)
target_include_directories(qmp_test PRIVATE ${HULL_HYPERVISOR_PRIVATE_ROOT})  # qemu/qmp.h
gtest_discover_tests(qmp_test PROPERTIES LABELS unit)
