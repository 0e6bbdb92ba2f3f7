# The cgroup v2 manager of the container engine. Included from
# agent/CMakeLists.txt; code includes it as "engine/cgroup.h".
#   cgroup_files.cc      interface files: one-write I/O and the pure parsers
#   cgroup_resources.cc  OCI linux.resources -> interface files (runc's fs2)
#   cgroup.cc            the Cgroup handle: create, freeze, kill, destroy, stats
#   oom_watcher.cc       the OOM event thread
add_library(hull_engine_cgroup STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cgroup_files.cc
  ${CMAKE_CURRENT_LIST_DIR}/cgroup_resources.cc
  ${CMAKE_CURRENT_LIST_DIR}/cgroup.cc
  ${CMAKE_CURRENT_LIST_DIR}/oom_watcher.cc
)
target_include_directories(hull_engine_cgroup PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hull_engine_cgroup PUBLIC hull_core)
