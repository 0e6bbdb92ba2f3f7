# The cgroup v2 manager of the container engine. Included from
# agent/CMakeLists.txt; code includes it as "engine/cgroup.h".
add_library(hull_engine_cgroup STATIC ${CMAKE_CURRENT_LIST_DIR}/cgroup.cc)
target_include_directories(hull_engine_cgroup PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hull_engine_cgroup PUBLIC hull_core)
