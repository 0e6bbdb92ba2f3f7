# The root filesystem setup (agent/engine/rootfs.h), run for real: as root,
# in child mount and pid namespaces, with a busybox rootfs in a temp dir.
add_executable(rootfs_test ${CMAKE_CURRENT_LIST_DIR}/rootfs_test.cc)
target_link_libraries(rootfs_test PRIVATE hull_engine_rootfs hull_testlib GTest::gtest_main)
# RUN_SERIAL: each test checks that the host mount table is unchanged
# afterwards, which other privileged tests running alongside could disturb.
gtest_discover_tests(rootfs_test PROPERTIES LABELS privileged RUN_SERIAL TRUE TIMEOUT 60 DISCOVERY_TIMEOUT 60)
