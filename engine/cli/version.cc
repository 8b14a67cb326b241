#include "pgbackfill/cli/version.h"

// Generated at build time (cmake/BuildInfo.cmake); this is its only includer, so a new commit
// recompiles this file alone.
#include "build_info.h"

namespace pgbackfill::cli {

std::string VersionLine() {
  return "pgbackfill " PGBACKFILL_VERSION " (commit " PGBACKFILL_GIT_COMMIT
         ", " PGBACKFILL_BUILD_TYPE ")";
}

}  // namespace pgbackfill::cli
