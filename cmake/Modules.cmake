# The engine's modules as the build sees them. Each directory engine/<module>/ is one OBJECT
# library, pgbackfill_<module>, declared in its own CMakeLists.txt with the modules it may use:
#
#   pgbackfill_module(<module> [DEPENDS <module>...] [PUBLIC_LIBS <target>...]
#                     [PRIVATE_LIBS <target>...])
#
# A module's headers (include/pgbackfill/<module>/) are reachable only through an include root of
# its own, which the build links in as ${build}/modules/<module>/pgbackfill/<module>, and which
# only the module and those that depend on it (directly or through others) get. An #include of a
# module that is not below it therefore does not compile, and pgbackfill_check_module_graph()
# refuses a cycle among the declared dependencies at configure time. pgbackfill_core is the one
# static library built from every module's objects.

function(pgbackfill_module name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "DEPENDS;PUBLIC_LIBS;PRIVATE_LIBS")
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc)
  set(target pgbackfill_${name})
  add_library(${target} OBJECT ${sources})

  set(root ${PROJECT_BINARY_DIR}/modules/${name})
  file(MAKE_DIRECTORY ${root}/pgbackfill)
  if(NOT EXISTS ${root}/pgbackfill/${name})
    file(CREATE_LINK ${PROJECT_SOURCE_DIR}/include/pgbackfill/${name} ${root}/pgbackfill/${name}
         SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC ${root})

  list(TRANSFORM arg_DEPENDS PREPEND pgbackfill_ OUTPUT_VARIABLE dependencies)
  target_link_libraries(${target}
    PUBLIC pgbackfill_options ${dependencies} ${arg_PUBLIC_LIBS}
    PRIVATE pgbackfill_warnings ${arg_PRIVATE_LIBS})

  set_property(GLOBAL APPEND PROPERTY PGBACKFILL_MODULES ${name})
  set_property(GLOBAL PROPERTY PGBACKFILL_DEPENDS_${name} ${arg_DEPENDS})
endfunction()

# Depth-first search from `module`; `path` is the chain of modules that led here.
function(_pgbackfill_visit module path)
  if(module IN_LIST path)
    list(APPEND path ${module})
    list(JOIN path " -> " chain)
    message(FATAL_ERROR "engine modules depend on each other in a cycle: ${chain}")
  endif()
  get_property(known GLOBAL PROPERTY PGBACKFILL_MODULES)
  if(NOT module IN_LIST known)
    message(FATAL_ERROR "engine module '${module}' is a dependency but no pgbackfill_module()")
  endif()
  get_property(done GLOBAL PROPERTY _PGBACKFILL_ACYCLIC)
  if(module IN_LIST done)
    return()
  endif()
  list(APPEND path ${module})
  get_property(dependencies GLOBAL PROPERTY PGBACKFILL_DEPENDS_${module})
  foreach(dependency IN LISTS dependencies)
    _pgbackfill_visit(${dependency} "${path}")
  endforeach()
  set_property(GLOBAL APPEND PROPERTY _PGBACKFILL_ACYCLIC ${module})
endfunction()

# Refuses a cycle and writes ${build}/module_graph.txt, one `module: dependency ...` line per
# module, which the architecture test compares with ARCHITECTURE.md.
function(pgbackfill_check_module_graph)
  get_property(modules GLOBAL PROPERTY PGBACKFILL_MODULES)
  set(graph "")
  foreach(module IN LISTS modules)
    _pgbackfill_visit(${module} "")
    get_property(dependencies GLOBAL PROPERTY PGBACKFILL_DEPENDS_${module})
    list(SORT dependencies)
    list(JOIN dependencies " " line)
    string(APPEND graph "${module}: ${line}\n")
  endforeach()
  file(WRITE ${PROJECT_BINARY_DIR}/module_graph.txt "${graph}")
endfunction()
