# --- containerd: a private containerd + ctr, every case with runc and with hull
# (included from tests/CMakeLists.txt, so paths are relative to tests/)

add_library(hull_test_containerd STATIC support/containerd_env.cc)
target_include_directories(hull_test_containerd PUBLIC support)
target_link_libraries(hull_test_containerd PUBLIC hull_core hull_testlib)

# The busybox OCI image every case imports into its own containerd: built once,
# here, from Debian's busybox-static (nothing is downloaded). Without busybox
# the archive is missing and the cases skip, saying so.
set(HULL_TEST_IMAGE_ARCHIVE ${CMAKE_CURRENT_BINARY_DIR}/containerd/hull-test-busybox.tar)
if(EXISTS /bin/busybox)
  add_custom_command(
    OUTPUT ${HULL_TEST_IMAGE_ARCHIVE}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/containerd
    COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/make-oci-image ${HULL_TEST_IMAGE_ARCHIVE}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/make-oci-image /bin/busybox
    COMMENT "Building the busybox OCI image for the containerd tests"
    VERBATIM)
  add_custom_target(hull_test_oci_image DEPENDS ${HULL_TEST_IMAGE_ARCHIVE})
endif()

add_executable(ctr_test containerd/ctr_test.cc)
target_link_libraries(ctr_test PRIVATE hull_test_containerd hull_test_support hull_test_libvirt hull_testlib
                      GTest::gtest_main)
# The shim is looked up in this tree's bin/ (HULL_TEST_BIN_DIR overrides it, to
# test a shim built elsewhere); ctr_test does not build it, so a broken shim
# never blocks the runc baseline.
target_compile_definitions(ctr_test PRIVATE
  HULL_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
  HULL_TEST_IMAGE_ARCHIVE="${HULL_TEST_IMAGE_ARCHIVE}")
if(TARGET hull_test_oci_image)
  add_dependencies(ctr_test hull_test_oci_image)
endif()
# Each hull case boots one or two VMs (3-4 s each under TCG): one at a time.
gtest_discover_tests(ctr_test PROPERTIES LABELS containerd RUN_SERIAL TRUE TIMEOUT 300 DISCOVERY_TIMEOUT 60)
