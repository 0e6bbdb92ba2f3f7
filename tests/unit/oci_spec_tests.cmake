# Unit tests of the OCI runtime spec model (core/src/oci_*.cc). One test
# also runs the installed runc (`runc spec`) and skips, saying so, when
# /usr/sbin/runc is missing; tests/fixtures/runc-spec-config.json is a copy of
# what Debian's runc 1.1.5 writes, so the rest needs nothing.
add_executable(oci_spec_test ${CMAKE_CURRENT_LIST_DIR}/oci_spec_test.cc)
target_link_libraries(oci_spec_test PRIVATE hull_oci GTest::gtest_main)
get_filename_component(HULL_OCI_FIXTURES_DIR "${CMAKE_CURRENT_LIST_DIR}/../fixtures" ABSOLUTE)
target_compile_definitions(oci_spec_test PRIVATE HULL_FIXTURES_DIR="${HULL_OCI_FIXTURES_DIR}")
gtest_discover_tests(oci_spec_test PROPERTIES LABELS unit)
