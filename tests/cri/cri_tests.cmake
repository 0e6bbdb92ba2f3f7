# --- cri: a private containerd with its CRI plugin, driven as kubelet does
# (included from tests/CMakeLists.txt, after containerd_tests.cmake)

# The pods' pause image, built here: a static pause binary in a one-layer image.
add_executable(hull_test_pause fixtures/pause.c)
set_target_properties(hull_test_pause PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON)
target_link_options(hull_test_pause PRIVATE -static)
set(HULL_TEST_PAUSE_ARCHIVE ${CMAKE_CURRENT_BINARY_DIR}/containerd/hull-test-pause.tar)
add_custom_command(
  OUTPUT ${HULL_TEST_PAUSE_ARCHIVE}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/containerd
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/make-oci-image --pause $<TARGET_FILE:hull_test_pause>
          ${HULL_TEST_PAUSE_ARCHIVE} docker.io/hull-test/pause:latest
  DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/make-oci-image hull_test_pause
  COMMENT "Building the pause OCI image for the CRI tests"
  VERBATIM)
add_custom_target(hull_test_pause_image DEPENDS ${HULL_TEST_PAUSE_ARCHIVE})

# The CRI client (what kubelet calls): the CRI tests and tools/bench/pod.
add_library(hull_test_cri STATIC support/cri_client.cc)
target_include_directories(hull_test_cri PUBLIC support)
target_link_libraries(hull_test_cri PUBLIC hull_cri_proto hull_proto hull_core)

add_executable(cri_test cri/cri_test.cc)
target_link_libraries(cri_test PRIVATE hull_test_containerd hull_test_support hull_test_libvirt hull_test_cri hull_testlib
                      GTest::gtest_main)
target_compile_definitions(cri_test PRIVATE
  HULL_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
  HULL_TEST_IMAGE_ARCHIVE="${HULL_TEST_IMAGE_ARCHIVE}"
  HULL_TEST_PAUSE_ARCHIVE="${HULL_TEST_PAUSE_ARCHIVE}")
add_dependencies(cri_test hull_test_pause_image)
if(TARGET hull_test_oci_image)
  add_dependencies(cri_test hull_test_oci_image)
endif()
gtest_discover_tests(cri_test PROPERTIES LABELS cri RUN_SERIAL TRUE TIMEOUT 600 DISCOVERY_TIMEOUT 60)
