# The shim's logic as a library (tested without the binary), and the binary:
# a containerd adapter over the sandbox library.
add_library(hull_shim STATIC
  events.cc
  mounts.cc
  pod.cc
  process_io.cc
  shim.cc
  shim_flags.cc
  task_convert.cc
  task_lifecycle.cc
  task_service.cc
  task_vm.cc
)
target_include_directories(hull_shim PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(hull_shim PUBLIC hull_sandbox hull_oci hull_ttrpc hull_containerd_proto hull_config)
target_compile_definitions(hull_shim PRIVATE PROJECT_VERSION_STRING="${PROJECT_VERSION}")

add_executable(containerd-shim-hull-v2 main.cc)
target_link_libraries(containerd-shim-hull-v2 PRIVATE hull_shim)
target_compile_definitions(containerd-shim-hull-v2 PRIVATE PROJECT_VERSION_STRING="${PROJECT_VERSION}")
