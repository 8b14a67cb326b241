// `pgbackfill pause|resume|abort JOB` and `pgbackfill set JOB key=value...`: live control of a
// job through its row in the job store, so it works from any host that reaches the database. The
// process running the job polls the row; a job that is not running takes the request when it
// next runs (abort of such a job marks it aborted at once).
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace pgbackfill::cli {

struct ControlOptions {
  std::string action;  // pause | resume | abort | set
  std::string job;
  std::vector<std::string> settings;  // `set`: key=value, keys from plan/settings.h
  std::string dsn;                    // empty: libpq's PG* variables
  bool json = false;
};

// Returns the process exit code (see cli.h): kExitBadInput for an unknown job, a database without
// a job store, a done job, or (for `set`) any bad key=value, in which case nothing is written.
int RunControl(const ControlOptions& options, std::ostream& out, std::ostream& err);

}  // namespace pgbackfill::cli
