# The container's root filesystem: mounts, /dev, pivot_root, masked and
# read-only paths (engine/rootfs.h). Included from agent/CMakeLists.txt.
add_library(hull_engine_rootfs STATIC ${CMAKE_CURRENT_LIST_DIR}/rootfs.cc)
target_include_directories(hull_engine_rootfs PUBLIC ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(hull_engine_rootfs PUBLIC hull_core)
