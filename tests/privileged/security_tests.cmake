# The container process security settings (seccomp, capabilities, rlimits,
# no_new_privs, user switch), applied in forked children. Needs root: the
# tests that fork skip, saying so, otherwise.
add_executable(security_test ${CMAKE_CURRENT_LIST_DIR}/security_test.cc)
target_link_libraries(security_test PRIVATE hull_engine_security hull_testlib GTest::gtest_main)
gtest_discover_tests(security_test PROPERTIES LABELS privileged)
