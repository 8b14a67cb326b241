// `pgbackfill check PLAN`: parse the plan, connect, run preflight, print the report.
#pragma once

#include <iosfwd>
#include <string>

#include "nlohmann/json.hpp"
#include "pgbackfill/preflight/preflight.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::cli {

struct CheckOptions {
  std::string plan_path;
  std::string dsn;  // --dsn; overrides the plan's `dsn`
  bool json = false;
};

// Returns the process exit code (see cli.h).
int RunCheck(const CheckOptions& options, std::ostream& out, std::ostream& err);

// The report as one JSON object (the `check --json` schema, documented in the README).
nlohmann::json CheckReportJson(const plan::Plan& plan, const preflight::PreflightReport& report);
// The report for a person.
void PrintCheckReport(const plan::Plan& plan, const preflight::PreflightReport& report,
                      std::ostream& out);

}  // namespace pgbackfill::cli
