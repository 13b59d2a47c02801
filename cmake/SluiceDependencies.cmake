# Finds every third-party dependency, each from its Debian 12 package (the package
# names are in scripts/setup.sh, the reasons in docs/dependencies.md). How each one
# is found is noted beside each call below.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)

# Protobuf: CMake's own module (Debian ships no config package).
find_package(Protobuf REQUIRED)
# gRPC: config package; the code generator plugin has no imported target.
find_package(gRPC CONFIG REQUIRED)
# TLS certificates: their checks and the ZooKeeper digest (lib/rpc/tls.cc).
find_package(OpenSSL REQUIRED)
find_program(SLUICE_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_package(absl CONFIG REQUIRED)

find_package(RocksDB CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  find_path(CLI11_INCLUDE_DIR CLI/CLI.hpp REQUIRED)
  add_library(CLI11::CLI11 INTERFACE IMPORTED)
  target_include_directories(CLI11::CLI11 INTERFACE ${CLI11_INCLUDE_DIR})
endif()
find_package(yaml-cpp CONFIG REQUIRED)
find_package(simdjson CONFIG REQUIRED)
# OpenSSL: CMake's own module; libcrypto's SHA-1 and base64 make ZooKeeper digest ACLs.
find_package(OpenSSL REQUIRED)

# librdkafka: pkg-config only.
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(RDKAFKAXX REQUIRED IMPORTED_TARGET rdkafka++)
# cpp-httplib: pkg-config only (the daemons' /metrics, health checks and status page).
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# libsystemd: pkg-config only (sd_notify: readiness, status, watchdog).
pkg_check_modules(SYSTEMD REQUIRED IMPORTED_TARGET libsystemd)

# ZooKeeper C client: neither pkg-config nor a config package. THREADED declares
# the synchronous API and selects the multi-threaded library.
find_path(ZOOKEEPER_INCLUDE_DIR zookeeper/zookeeper.h REQUIRED)
find_library(ZOOKEEPER_MT_LIBRARY zookeeper_mt REQUIRED)
add_library(sluice_zookeeper INTERFACE)
target_include_directories(sluice_zookeeper SYSTEM INTERFACE ${ZOOKEEPER_INCLUDE_DIR})
target_link_libraries(sluice_zookeeper INTERFACE ${ZOOKEEPER_MT_LIBRARY} Threads::Threads)
target_compile_definitions(sluice_zookeeper INTERFACE THREADED)
add_library(sluice::zookeeper ALIAS sluice_zookeeper)

if(SLUICE_BUILD_TESTS OR SLUICE_BUILD_BENCH)
  find_package(GTest CONFIG REQUIRED)
endif()
if(SLUICE_BUILD_BENCH)
  find_package(benchmark CONFIG QUIET)
endif()
