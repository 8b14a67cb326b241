// `pgbackfill verify` for a copy between databases: per range, count(*) and an order-independent
// hash of the rows (the sum of hashtextextended(row::text, 0)) on the source (the plan's
// `columns` over the source rows, cast to the target's types) and on the target (the same key span
// of `into`). Rows cannot be compared across two servers with EXCEPT, so a differing range is
// reported with both counts, and `--repair` copies it again: in one target transaction its rows
// are deleted and the range is streamed anew from a fresh source snapshot (pg/copy_stream.h).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::verify {

struct MoveRangeDiff {
  int range = 0;
  int64_t source_rows = 0;
  int64_t target_rows = 0;
  bool repaired = false;  // copied again, and equal afterwards
};

struct MoveReport {
  int ranges_checked = 0;
  std::vector<MoveRangeDiff> ranges;  // the ranges that differed
  int repaired = 0;
};

// Checks every range (both sides each in one REPEATABLE READ snapshot); with `repair`, copies each
// differing range again and checks it once more. The source session runs the expressions under
// `user_search_path`.
absl::StatusOr<MoveReport> VerifyMove(pg::Connection& source, pg::Connection& target,
                                      const move::MoveSpec& spec,
                                      const std::vector<checkpoint::RangeRecord>& ranges,
                                      const std::string& user_search_path, bool repair);

}  // namespace pgbackfill::verify
