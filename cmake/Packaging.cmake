# `cmake --install` and the Debian package (`cpack -G DEB` in the build directory). Only the
# pgbackfill binary is installed, with its man page, the README, the plan reference and the example
# plans, in the GNU places under the prefix (/usr in the package). Tests, benchmarks and the
# delay proxy are not. tests/package/check-package.sh (the test PackageInstallsAndRuns) checks it.
# GNUInstallDirs is included at the top of CMakeLists.txt, before the test that names the places.

install(TARGETS pgbackfill RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/pgbackfill.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/plan-reference.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
file(GLOB example_plans CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/plans/*.yaml)
install(FILES ${example_plans} DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

set(PGBACKFILL_PACKAGE_MAINTAINER
  "pgbackfill maintainers <maintainers@users.noreply.b-seed-765f079a.example>"
  CACHE STRING "Maintainer field of the Debian package")

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgbackfill)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${PGBACKFILL_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "online large-table backfills for PostgreSQL")
set(CPACK_PACKAGE_DESCRIPTION
  "pgbackfill fills a new column, or copies into a new table or another database, on a very\n"
  "large PostgreSQL table while the application keeps serving: key ranges, one short pipelined\n"
  "transaction per batch with its own checkpoint (a run resumes where it stopped), throttled by\n"
  "replication lag and what the application feels, with expand/contract phases and verify.")
string(JOIN "" CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
# Depends: from the shared libraries the binary links (libpq5, libyaml-cpp, libstdc++6, ...), by
# dpkg-shlibdeps, so the list cannot drift from the link line.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# pgbackfill_0.1.0-1_amd64.deb
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# The package carries the binary without its debug information (RelWithDebInfo by default).
set(CPACK_STRIP_FILES ON)
# No homepage field: the project has none to name.
include(CPack)
