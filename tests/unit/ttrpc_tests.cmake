# Unit tests of hull's ttrpc: framing against the reference bytes, the frame
# decoder, and a server and client over real unix sockets in a temp dir.
find_package(GTest REQUIRED)
include(GoogleTest)

add_executable(ttrpc_test ${CMAKE_CURRENT_LIST_DIR}/ttrpc_test.cc)
target_link_libraries(ttrpc_test PRIVATE hull_ttrpc GTest::gtest_main)
gtest_discover_tests(ttrpc_test PROPERTIES LABELS unit)
