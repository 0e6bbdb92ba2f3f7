# The container's root filesystem: mounts, /dev, pivot_root, masked and
# read-only paths (engine/rootfs.h). Included from agent/CMakeLists.txt.
#   mount_options.cc  the spec's mount-option vocabulary (pure)
#   rootfs_plan.cc    parent side: spec -> RootfsPlan, failures -> text
#   rootfs_apply.cc   child side: the plan's system calls, async-signal-safe
add_library(hull_engine_rootfs STATIC
  ${CMAKE_CURRENT_LIST_DIR}/mount_options.cc
  ${CMAKE_CURRENT_LIST_DIR}/rootfs_plan.cc
  ${CMAKE_CURRENT_LIST_DIR}/rootfs_apply.cc
)
target_include_directories(hull_engine_rootfs PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hull_engine_rootfs PUBLIC hull_core)
