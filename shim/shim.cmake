# The shim's logic as a library (tested without the binary), and the binary.
add_library(hull_session STATIC session.cc shared_dir.cc pod_network.cc host_cgroup.cc orphans.cc)
target_include_directories(hull_session PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(hull_session PUBLIC hull_hypervisor hull_agent_client hull_oci PRIVATE nlohmann_json::nlohmann_json)

add_library(hull_shim STATIC
  events.cc
  mounts.cc
  pod.cc
  process_io.cc
  shim.cc
  shim_flags.cc
  task_service.cc
)
target_include_directories(hull_shim PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(hull_shim PUBLIC hull_session hull_ttrpc hull_containerd_proto hull_config)
target_compile_definitions(hull_shim PRIVATE PROJECT_VERSION_STRING="${PROJECT_VERSION}")

add_executable(containerd-shim-hull-v2 main.cc)
target_link_libraries(containerd-shim-hull-v2 PRIVATE hull_shim)
target_compile_definitions(containerd-shim-hull-v2 PRIVATE PROJECT_VERSION_STRING="${PROJECT_VERSION}")
