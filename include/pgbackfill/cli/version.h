// What `pgbackfill --version` prints.
#pragma once

#include <string>

namespace pgbackfill::cli {

// "pgbackfill 0.1.0 (commit 690cbd4, RelWithDebInfo)": the project version from CMakeLists.txt,
// the git commit of the build (`-dirty` with uncommitted changes, `unknown` outside a git
// checkout) and the build type.
std::string VersionLine();

}  // namespace pgbackfill::cli
