# The coroutine rules test: no `co_await` in the condition of an `if` or `while` in engine/.
# GCC 12.2 (Debian 12's compiler) keeps the value of such a condition in a frame variable
# declared in the wrong scope (`__ifcd_0` in -fdump-tree-original), which another scope's slot
# overlaps. Read back as garbage after the suspension, it crashed or spun a worker after a lost
# session (under UBSan: an invalid bool load). Await into a local first:
# `const bool ok = co_await F(); if (!ok) ...`.
#   cmake -DSOURCE_DIR=engine -P cmake/CheckCoroutineRules.cmake
cmake_minimum_required(VERSION 3.22)

file(GLOB_RECURSE sources ${SOURCE_DIR}/*.cc ${SOURCE_DIR}/*.h)
set(problems "")
foreach(source IN LISTS sources)
  file(STRINGS ${source} lines REGEX "co_await")
  foreach(line IN LISTS lines)
    if(line MATCHES "(^|[^A-Za-z0-9_])(if|while) \\(!?\\(?co_await"
       OR line MATCHES "(^|[^A-Za-z0-9_])(if|while) \\([^;]*(&&|\\|\\|) *!?co_await")
      file(RELATIVE_PATH relative ${SOURCE_DIR} ${source})
      string(STRIP "${line}" line)
      string(APPEND problems "  ${relative}: ${line}\n")
    endif()
  endforeach()
endforeach()

if(problems)
  message(FATAL_ERROR "co_await in a condition (GCC 12 miscompiles it; await into a local "
                      "first):\n${problems}")
endif()
list(LENGTH sources count)
message(STATUS "no co_await in a condition in ${count} files")
