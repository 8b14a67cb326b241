# Writes the header with what `pgbackfill --version` prints: the project version, the git commit
# and the build type. Run as a script at every build (engine/cli/CMakeLists.txt), so a new commit
# shows without configuring again; configure_file rewrites the header only when its text changes,
# so only the one file that includes it recompiles.
#
#   cmake -DSOURCE_DIR=... -DOUTPUT=... -DVERSION=... -DBUILD_TYPE=... -P BuildInfo.cmake

set(commit unknown)
find_package(Git QUIET)
if(GIT_FOUND)
  # Only the project's own checkout: a source tree unpacked inside some other repository (a
  # tarball under a home directory kept in git) would otherwise report that repository's commit.
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel
    WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE toplevel
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0)
    file(REAL_PATH "${toplevel}" toplevel)
    file(REAL_PATH "${SOURCE_DIR}" source)
  endif()
  if(rc EQUAL 0 AND toplevel STREQUAL source)
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD
      WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE hash
      OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(rc EQUAL 0 AND hash)
      set(commit ${hash})
      # Changes to tracked files, as `git describe --dirty` counts them (untracked files do not);
      # no optional locks, so a build never holds up a git command running beside it.
      execute_process(
        COMMAND ${GIT_EXECUTABLE} --no-optional-locks status --porcelain --untracked-files=no
        WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE changes
        ERROR_QUIET)
      if(rc EQUAL 0 AND changes)
        string(APPEND commit -dirty)
      endif()
    endif()
  endif()
endif()

if(NOT BUILD_TYPE)
  set(BUILD_TYPE unknown)
endif()
set(PGBACKFILL_VERSION ${VERSION})
set(PGBACKFILL_GIT_COMMIT ${commit})
set(PGBACKFILL_BUILD_TYPE ${BUILD_TYPE})
configure_file(${CMAKE_CURRENT_LIST_DIR}/build_info.h.in ${OUTPUT} @ONLY)
