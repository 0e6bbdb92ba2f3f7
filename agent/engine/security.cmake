# Seccomp, capabilities, rlimits, no_new_privs and the user switch of a
# container process (engine/security.h).
if(NOT TARGET PkgConfig::SECCOMP)
  # GLOBAL: the tests link this library from another directory.
  pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET GLOBAL libseccomp)
endif()

add_library(hull_engine_security STATIC ${CMAKE_CURRENT_LIST_DIR}/security.cc)
target_include_directories(hull_engine_security PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hull_engine_security PUBLIC hull_oci hull_core PRIVATE PkgConfig::SECCOMP)
