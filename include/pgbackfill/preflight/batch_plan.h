// Reading how a batch's write reaches its rows from the server's EXPLAIN (FORMAT JSON). Pure.
#pragma once

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "pgbackfill/preflight/preflight.h"

namespace pgbackfill::preflight {

// The scan of the written table (alias `t`, or `t_N` for a partition) in an EXPLAIN (FORMAT
// JSON) of batch::UpdateWriteShape or CopyWriteShape; nullopt when the plan has none (the
// planner proved the write empty). `batch` is left for the caller.
absl::StatusOr<std::optional<BatchScan>> WriteScanOf(std::string_view explain_json);

}  // namespace pgbackfill::preflight
