// `pgbackfill bench PLAN`: the plan's backfill measured on a scratch copy of its table, so a
// staging run says how fast the real one will go without touching the real table.
//
// The scratch table is `CREATE TABLE ... (LIKE <table> INCLUDING ALL)` in the job-store schema
// (same columns, defaults, constraints and indexes, so an UPDATE costs what it costs on the
// original; no triggers, no foreign keys), filled with up to N rows of the original: all of them
// when the table is small enough, else a TABLESAMPLE of its pages (values as they really are,
// read once with a plain SELECT), stored in key order and vacuumed like a table loaded long ago.
// The backfill then runs exactly as `pgbackfill backfill` would, against the scratch table, under
// the plan's throttle, as its own job; the scratch tables and that job are dropped at the end.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::staging {

struct ScratchNames {
  plan::QualifiedName table;
  std::optional<plan::QualifiedName> into;  // copy mode: an empty twin of `into`
  std::string job;                          // the bench's own job name
};

// Names derived from the plan's name, the same every time: a bench killed before it cleaned up
// leaves tables the next bench of the plan drops first.
ScratchNames ScratchFor(const plan::Plan& plan);

// The plan as the bench runs it: against the scratch tables, as its own job, without DDL,
// triggers or verify.
plan::Plan BenchPlan(const plan::Plan& plan, const ScratchNames& scratch);

// The INSERT that fills the scratch table: `columns` (every column but the generated ones) of up
// to `rows` rows, ordered by the key. When `sample_percent` is set, from a TABLESAMPLE SYSTEM of
// that share of the pages (a fixed seed, so that two benches of one table see the same rows).
std::string FillSql(const plan::QualifiedName& source, const plan::QualifiedName& scratch,
                    const std::vector<std::string>& columns, const std::vector<std::string>& key,
                    int64_t rows, std::optional<double> sample_percent);

// The share of pages to sample for about `rows` rows of a table of `estimated_rows`, with a
// margin for pages emptier than the average; nullopt when the whole table is wanted.
std::optional<double> SamplePercent(int64_t rows, int64_t estimated_rows);

struct BenchOptions {
  std::string dsn;       // overrides plan.dsn when not empty
  int64_t rows = 1'000'000;  // at most this many rows in the scratch copy
  bool keep = false;     // leave the scratch tables and the job (to look at them)
};

struct BenchReport {
  plan::QualifiedName source;
  ScratchNames scratch;
  int64_t scratch_rows = 0;     // rows copied into the scratch table
  bool whole_table = false;     // the copy is the whole table
  int64_t production_rows = 0;  // the original's estimated rows
  std::string production_estimate_source;
  absl::Duration copy_time;  // making the scratch copy (not part of the backfill)
  exec::RunSummary run;      // the backfill on the scratch table
  double rows_per_second = 0;
  // production_rows at rows_per_second; nullopt when the run did no rows.
  std::optional<absl::Duration> production_time;
};

// Returns an error when the bench could not run (preflight problems of the plan, the server);
// the backfill's own outcome is in `run`. Events of the backfill go to `events`.
absl::StatusOr<BenchReport> RunBench(const plan::Plan& plan, const BenchOptions& options,
                                     events::EventSink& events);

}  // namespace pgbackfill::staging
