# The OCI runtime spec model (config.json): parsing with validation, the
# `runc spec` default and serialisation. Shared by the shim, hullctl and the
# guest agent. Included from core/CMakeLists.txt.
#   src/oci_json.h, src/oci_fields.h  checked JSON access; the member tables
#                                     that drive both parser and writer
#   src/oci_parse.cc                  config.json, process, resources -> model
#   src/oci_write.cc                  model -> JSON (runc's order, omitempty)
#   src/oci_default.cc                DefaultSpec (`runc spec`)
#   src/oci_vocabulary.cc             capability and rlimit names
# tests/fuzz/oci_fuzz.cmake compiles the same files into oci_spec_fuzz.
add_library(hull_oci STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/oci_parse.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/oci_write.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/oci_default.cc
  ${CMAKE_CURRENT_LIST_DIR}/src/oci_vocabulary.cc
)
target_include_directories(hull_oci PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(hull_oci PUBLIC hull_core nlohmann_json::nlohmann_json)
