# hull_ttrpc: ttrpc 1.1 (containerd's shim RPC) over unix sockets. Included
# from shim/CMakeLists.txt; users write #include "ttrpc/ttrpc.h".
add_library(hull_ttrpc STATIC
  ${CMAKE_CURRENT_LIST_DIR}/frame.cc
  ${CMAKE_CURRENT_LIST_DIR}/wire.cc
  ${CMAKE_CURRENT_LIST_DIR}/context.cc
  ${CMAKE_CURRENT_LIST_DIR}/server.cc
  ${CMAKE_CURRENT_LIST_DIR}/client.cc)
target_include_directories(hull_ttrpc PUBLIC ${PROJECT_SOURCE_DIR}/shim)
target_link_libraries(hull_ttrpc PUBLIC hull_core hull_containerd_proto Threads::Threads)
