# The QMP client of the QEMU backend. Included from hypervisor/CMakeLists.txt;
# code includes it as "qemu/qmp.h" (the include root is hypervisor/). That
# root is private: only the backend and tests of its internals (which add it
# themselves, tests/CMakeLists.txt) see QMP.
get_filename_component(HULL_QMP_INCLUDE_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)

add_library(hull_qmp STATIC
  ${CMAKE_CURRENT_LIST_DIR}/qmp_parser.cc
  ${CMAKE_CURRENT_LIST_DIR}/qmp_client.cc
)
target_include_directories(hull_qmp PRIVATE ${HULL_QMP_INCLUDE_ROOT})
target_link_libraries(hull_qmp PUBLIC hull_core nlohmann_json::nlohmann_json)
