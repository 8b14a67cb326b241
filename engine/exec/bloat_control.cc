#include "pgbackfill/exec/bloat_control.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/sql/names.h"

namespace pgbackfill::exec {

int64_t VacuumEveryRows(const plan::VacuumEvery& every, int64_t estimated_rows) {
  if (every.rows > 0) return every.rows;
  if (every.fraction <= 0) return 0;
  const double rows = std::ceil(every.fraction * static_cast<double>(std::max<int64_t>(estimated_rows, 0)));
  return std::max(static_cast<int64_t>(rows), kMinVacuumEveryRows);
}

std::string VacuumSql(const plan::QualifiedName& table) {
  return absl::StrCat(sql::kTag, "VACUUM (SKIP_LOCKED, INDEX_CLEANUP OFF, TRUNCATE false) ",
                      plan::QuoteQualified(table));
}

std::string DescribeVacuumEvery(const plan::VacuumEvery& every) {
  if (every.rows > 0) return absl::StrCat(every.rows);
  if (every.fraction > 0) return absl::StrFormat("%g%%", every.fraction * 100);
  return "off";
}

}  // namespace pgbackfill::exec
