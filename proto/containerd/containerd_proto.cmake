# containerd's wire types, compiled with protoc --cpp_out only (messages, no
# service code: ttrpc registers methods by name). Included from
# proto/CMakeLists.txt, so CMAKE_CURRENT_SOURCE_DIR is proto/. Headers are
# included by their proto path: "containerd/task/v2/shim.pb.h", "ttrpc/ttrpc.pb.h".
set(HULL_CONTAINERD_PROTO_FILES
    google/rpc/status.proto
    ttrpc/ttrpc.proto
    containerd/types/mount.proto
    containerd/types/task/task.proto
    containerd/task/v2/shim.proto
    containerd/events/task.proto
    containerd/services/events/ttrpc/v1/events.proto
    containerd/cgroups/v2/metrics.proto
    containerd/runtimeoptions/v1/api.proto
    containerd/runc/v1/process_details.proto)
set(HULL_CONTAINERD_PROTO_OUT ${CMAKE_CURRENT_BINARY_DIR}/containerd_gen)
file(MAKE_DIRECTORY ${HULL_CONTAINERD_PROTO_OUT})

# The well-known types (any, empty, timestamp) come from Debian's
# libprotobuf-dev, in the protobuf include dir (/usr/include).
list(GET Protobuf_INCLUDE_DIRS 0 HULL_PROTOBUF_WKT_DIR)

set(HULL_CONTAINERD_PROTO_SRCS)
set(HULL_CONTAINERD_PROTO_OUTS)
set(HULL_CONTAINERD_PROTO_DEPS)
foreach(rel ${HULL_CONTAINERD_PROTO_FILES})
  string(REGEX REPLACE "\\.proto$" "" base ${rel})
  list(APPEND HULL_CONTAINERD_PROTO_SRCS ${HULL_CONTAINERD_PROTO_OUT}/${base}.pb.cc)
  list(APPEND HULL_CONTAINERD_PROTO_OUTS ${HULL_CONTAINERD_PROTO_OUT}/${base}.pb.cc
                                         ${HULL_CONTAINERD_PROTO_OUT}/${base}.pb.h)
  list(APPEND HULL_CONTAINERD_PROTO_DEPS ${CMAKE_CURRENT_SOURCE_DIR}/${rel})
endforeach()

# One protoc run for all files: they import each other.
add_custom_command(
  OUTPUT ${HULL_CONTAINERD_PROTO_OUTS}
  COMMAND protobuf::protoc
    --proto_path=${CMAKE_CURRENT_SOURCE_DIR}
    --proto_path=${HULL_PROTOBUF_WKT_DIR}
    --cpp_out=${HULL_CONTAINERD_PROTO_OUT}
    ${HULL_CONTAINERD_PROTO_FILES}
  DEPENDS ${HULL_CONTAINERD_PROTO_DEPS} protobuf::protoc
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
  COMMENT "protoc containerd and ttrpc wire types")

add_library(hull_containerd_proto STATIC ${HULL_CONTAINERD_PROTO_SRCS})
target_include_directories(hull_containerd_proto SYSTEM PUBLIC ${HULL_CONTAINERD_PROTO_OUT})
target_link_libraries(hull_containerd_proto PUBLIC protobuf::libprotobuf)
target_compile_options(hull_containerd_proto PRIVATE -w)
