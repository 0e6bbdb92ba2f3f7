# The cgroup v2 manager. One executable: the fake-tree and parser suites run
# anywhere; the suite on a private cgroup2 mount needs root and skips, saying
# so, without it.
if(TARGET hull_engine_cgroup)
  add_executable(cgroup_test ${CMAKE_CURRENT_LIST_DIR}/cgroup_test.cc)
  target_link_libraries(cgroup_test PRIVATE hull_engine_cgroup hull_testlib GTest::gtest_main)
  gtest_discover_tests(cgroup_test PROPERTIES LABELS privileged DISCOVERY_TIMEOUT 60)
endif()
