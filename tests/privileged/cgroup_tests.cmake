# The cgroup v2 manager. One executable, two labels: the parser and fake-tree
# suites need nothing and are unit tests; the suite on a private cgroup2 mount
# needs root and skips, saying so, without it.
if(TARGET hull_engine_cgroup)
  add_executable(cgroup_test ${CMAKE_CURRENT_LIST_DIR}/cgroup_test.cc)
  target_link_libraries(cgroup_test PRIVATE hull_engine_cgroup hull_testlib GTest::gtest_main)
  gtest_discover_tests(cgroup_test
    TEST_FILTER "CgroupParseTest.*:CgroupFakeTreeTest.*"
    PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
  gtest_discover_tests(cgroup_test
    TEST_FILTER "CgroupRealMountTest.*"
    PROPERTIES LABELS privileged DISCOVERY_TIMEOUT 60)
endif()
