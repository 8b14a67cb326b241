#include "pgbackfill/verify/move_verify.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/copy_stream.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::verify {
namespace {

struct Side {
  int64_t rows = 0;
  std::string hash;
  bool operator==(const Side&) const = default;
};

std::vector<pg::Param> SpanParams(const checkpoint::RangeRecord& range) {
  std::vector<pg::Param> params;
  if (range.lower) params.insert(params.end(), range.lower->begin(), range.lower->end());
  if (range.upper) params.insert(params.end(), range.upper->begin(), range.upper->end());
  return params;
}

sql::RangeEnds EndsOf(const checkpoint::RangeRecord& range) {
  return sql::RangeEnds{range.lower.has_value(), range.upper.has_value()};
}

absl::StatusOr<Side> Measure(pg::Connection& conn, const std::string& sql,
                             const checkpoint::RangeRecord& range) {
  ASSIGN_OR_RETURN(pg::Result result, conn.Exec(sql, SpanParams(range)));
  return Side{std::stoll(std::string(result.Get(0, 0))), std::string(result.Get(0, 1))};
}

// Both sides of every range, each side under one snapshot.
class Checker {
 public:
  Checker(pg::Connection& source, pg::Connection& target, const move::MoveSpec& spec,
          const std::string& user_search_path)
      : source_(source), target_(target), spec_(spec), user_search_path_(user_search_path) {}

  absl::Status Begin() {
    for (pg::Connection* conn : {&source_, &target_}) {
      RETURN_IF_ERROR(conn->ExecScript(move::VerifySessionSettings()));
      RETURN_IF_ERROR(conn->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
    }
    return source_
        .Exec("SELECT pg_catalog.set_config('search_path', $1, true)", {user_search_path_})
        .status();
  }
  void End() {
    (void)source_.Exec("ROLLBACK");
    (void)target_.Exec("ROLLBACK");
  }

  absl::StatusOr<std::pair<Side, Side>> Check(const checkpoint::RangeRecord& range) {
    const sql::RangeEnds ends = EndsOf(range);
    ASSIGN_OR_RETURN(Side source, Measure(source_, move::SourceHashSql(spec_, ends), range));
    ASSIGN_OR_RETURN(Side target, Measure(target_, move::TargetHashSql(spec_, ends), range));
    return std::make_pair(std::move(source), std::move(target));
  }

 private:
  pg::Connection& source_;
  pg::Connection& target_;
  const move::MoveSpec& spec_;
  const std::string& user_search_path_;
};

// Deletes the target's rows of the range and streams the range again, in one target transaction,
// from a fresh source snapshot.
absl::Status Repair(pg::Connection& source, pg::Connection& target, const move::MoveSpec& spec,
                    const checkpoint::RangeRecord& range, const std::string& user_search_path) {
  RETURN_IF_ERROR(source.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
  RETURN_IF_ERROR(
      source.Exec("SELECT pg_catalog.set_config('search_path', $1, true)", {user_search_path})
          .status());
  RETURN_IF_ERROR(target.Exec("BEGIN").status());
  auto run = [&]() -> absl::Status {
    RETURN_IF_ERROR(
        target.Exec(move::DeleteTargetRangeSql(spec, EndsOf(range)), SpanParams(range)).status());
    const pg::CopyStreamResult streamed =
        pg::StreamCopy(source.raw(), move::CopyOutSql(spec, range.lower, range.upper), target.raw(),
                       move::CopyInSql(spec, /*staged=*/false));
    RETURN_IF_ERROR(streamed.status);
    return target.Exec("COMMIT").status();
  };
  absl::Status repaired = run();
  if (!repaired.ok()) (void)target.Exec("ROLLBACK");
  (void)source.Exec("ROLLBACK");
  return repaired;
}

}  // namespace

absl::StatusOr<MoveReport> VerifyMove(pg::Connection& source, pg::Connection& target,
                                      const move::MoveSpec& spec,
                                      const std::vector<checkpoint::RangeRecord>& ranges,
                                      const std::string& user_search_path, bool repair) {
  MoveReport report;
  // An empty job (no ranges yet) is the whole table: one range open at both ends.
  std::vector<checkpoint::RangeRecord> all = ranges;
  if (all.empty()) all.push_back(checkpoint::RangeRecord{});
  Checker checker(source, target, spec, user_search_path);
  RETURN_IF_ERROR(checker.Begin());
  for (const checkpoint::RangeRecord& range : all) {
    absl::StatusOr<std::pair<Side, Side>> sides = checker.Check(range);
    if (!sides.ok()) {
      checker.End();
      return sides.status();
    }
    ++report.ranges_checked;
    if (sides->first == sides->second) continue;
    report.ranges.push_back(MoveRangeDiff{range.id, sides->first.rows, sides->second.rows, false});
  }
  checker.End();
  if (!repair) return report;
  for (MoveRangeDiff& diff : report.ranges) {
    const checkpoint::RangeRecord& range =
        *std::find_if(all.begin(), all.end(),
                      [&](const checkpoint::RangeRecord& r) { return r.id == diff.range; });
    RETURN_IF_ERROR(Repair(source, target, spec, range, user_search_path));
    RETURN_IF_ERROR(checker.Begin());
    absl::StatusOr<std::pair<Side, Side>> again = checker.Check(range);
    checker.End();
    RETURN_IF_ERROR(again.status());
    diff.repaired = again->first == again->second;
    if (diff.repaired) ++report.repaired;
  }
  return report;
}

}  // namespace pgbackfill::verify
