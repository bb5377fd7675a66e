# Helpers shared by every folder's CMakeLists.txt.

# postern_require(PREFIX module debian-package): pkg-config lookup that stops
# configure with the Debian package to install when the module is missing.
function(postern_require prefix module package)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${module})
  if(NOT ${prefix}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install ${package} (or run deploy/install-deps)")
  endif()
endfunction()

# postern_add_library(NAME DIR DEPS...): a static library from DIR/*.c, minus
# test-*.c, fuzz-*.c and main-*.c; public headers in DIR/include. Every
# DIR/test-*.c becomes a unit-test executable registered with ctest (exit 77
# means skipped); every DIR/fuzz-*.c a libFuzzer target when POSTERN_FUZZ is on.
# Sub-folders listed in SUBDIRS contribute their sources the same way.
function(postern_add_library name)
  cmake_parse_arguments(A "" "" "DEPS;SUBDIRS;PRIVATE_DEPS" ${ARGN})
  set(dirs ${CMAKE_CURRENT_SOURCE_DIR})
  foreach(s ${A_SUBDIRS})
    list(APPEND dirs ${CMAKE_CURRENT_SOURCE_DIR}/${s})
  endforeach()
  set(srcs "")
  set(tests "")
  set(fuzzers "")
  foreach(d ${dirs})
    file(GLOB all CONFIGURE_DEPENDS ${d}/*.c)
    foreach(f ${all})
      get_filename_component(base ${f} NAME)
      if(base MATCHES "^test-")
        list(APPEND tests ${f})
      elseif(base MATCHES "^fuzz-")
        list(APPEND fuzzers ${f})
      elseif(base MATCHES "^main-")
        # daemons and tools: built by the folder's own CMakeLists.txt
      else()
        list(APPEND srcs ${f})
      endif()
    endforeach()
  endforeach()
  if(srcs)
    add_library(${name} STATIC ${srcs})
    target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
      PRIVATE ${dirs})
    target_link_libraries(${name} PUBLIC ${A_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  else()
    # Nothing compiled here yet: headers and dependencies only.
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    target_link_libraries(${name} INTERFACE ${A_DEPS})
  endif()
  foreach(t ${tests})
    get_filename_component(tn ${t} NAME_WE)
    set(exe ${name}-${tn})
    add_executable(${exe} ${t})
    target_include_directories(${exe} PRIVATE ${dirs})
    target_link_libraries(${exe} PRIVATE ${name} ${A_PRIVATE_DEPS})
    add_test(NAME ${exe} COMMAND ${exe})
    set_tests_properties(${exe} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120
      ENVIRONMENT "POSTERN_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endforeach()
  if(POSTERN_FUZZ)
    foreach(f ${fuzzers})
      get_filename_component(fn ${f} NAME_WE)
      add_executable(${name}-${fn} ${f})
      target_include_directories(${name}-${fn} PRIVATE ${dirs})
      target_compile_options(${name}-${fn} PRIVATE -fsanitize=fuzzer,address,undefined)
      target_link_options(${name}-${fn} PRIVATE -fsanitize=fuzzer,address,undefined)
      target_link_libraries(${name}-${fn} PRIVATE ${name} ${A_PRIVATE_DEPS})
    endforeach()
  endif()
endfunction()
