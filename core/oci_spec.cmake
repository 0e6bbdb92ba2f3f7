# The OCI runtime spec model (config.json): parsing with validation, the
# `runc spec` default and serialisation. Shared by the shim, hullctl and the
# guest agent. Included from core/CMakeLists.txt.
add_library(hull_oci STATIC ${CMAKE_CURRENT_LIST_DIR}/src/oci_spec.cc)
target_include_directories(hull_oci PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(hull_oci PUBLIC hull_core nlohmann_json::nlohmann_json)
