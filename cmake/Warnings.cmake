# Settings every project target links, as INTERFACE targets so they never leak to dependencies.
add_library(pgbackfill_warnings INTERFACE)
target_compile_options(pgbackfill_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough)
# GCC 12 reports Asio's coroutine frames (class-specific operator new/delete) as mismatched
# new/delete when a frame holds an object with a destructor: a known false positive.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(pgbackfill_warnings INTERFACE -Wno-mismatched-new-delete)
endif()
if(PGBACKFILL_WERROR)
  target_compile_options(pgbackfill_warnings INTERFACE -Werror)
endif()

add_library(pgbackfill_options INTERFACE)
target_compile_definitions(pgbackfill_options INTERFACE
  $<$<CONFIG:Debug>:_GLIBCXX_ASSERTIONS>
  # Asio: coroutines only, no deprecated interfaces.
  BOOST_ASIO_NO_DEPRECATED)
if(PGBACKFILL_SANITIZE)
  target_compile_options(pgbackfill_options INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  target_link_options(pgbackfill_options INTERFACE -fsanitize=address,undefined)
endif()
