# Helpers that keep each module's CMakeLists.txt to a few lines.
#
#   sluice_library(NAME SRCS a.cc b.cc DEPS sluice::common PRIVATE_DEPS x)
#     -> target sluice_NAME, alias sluice::NAME, include root = source root.
#   sluice_binary(NAME SRCS main.cpp DEPS ...)
#   sluice_test(NAME SRCS x_test.cc DEPS ... LABELS unit|integration [TIMEOUT s])
#     -> one gtest executable, its tests discovered into CTest with the label.

set(SLUICE_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

function(sluice_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(sluice_${name} STATIC ${ARG_SRCS})
  add_library(sluice::${name} ALIAS sluice_${name})
  target_include_directories(sluice_${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(sluice_${name} PRIVATE ${SLUICE_WARNINGS})
  target_link_libraries(sluice_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

function(sluice_binary name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${SLUICE_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
endfunction()

include(GoogleTest)
# RESOURCE_LOCK: ctest runs no two tests holding the same lock at once (tests
# that each keep both cores busy on purpose, whose figures mean nothing when
# two of them share the machine).
function(sluice_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT;RESOURCE_LOCK" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(lock)
  if(ARG_RESOURCE_LOCK)
    set(lock RESOURCE_LOCK ${ARG_RESOURCE_LOCK})
  endif()
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${SLUICE_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT} ${lock}
    DISCOVERY_TIMEOUT 30)
endfunction()
