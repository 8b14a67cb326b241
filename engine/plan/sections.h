// The plan file's sections (private to engine/plan): the keys each takes, and how their values,
// read through the YAML reader (yaml_reader.h), become a Plan. sections.cc reads what the job
// does (identity, update or copy mode, key, DDL); tuning.cc how hard it may push (workers, batch,
// throttle, vacuum_every), the keys `pgbackfill set` may also change on a running job.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgbackfill/plan/plan.h"
#include "yaml_reader.h"

namespace pgbackfill::plan::internal {

inline constexpr std::string_view kTopKeys[] = {
    "version",    "name",       "dsn",          "table",    "key",          "set",
    "where",      "dual_write", "into",         "columns",  "on_conflict",  "source_dsn",
    "target_dsn", "expand",     "contract",     "rollback", "not_null",     "ddl",
    "batch",      "workers",    "throttle",     "verify",   "vacuum_every", "hooks",
    "triggers",   "follow",     "lease_timeout"};
inline constexpr std::string_view kBatchKeys[] = {"rows", "target", "min_rows", "max_rows"};
inline constexpr std::string_view kThrottleKeys[] = {"interval",
                                                     "max_replica_lag",
                                                     "max_replica_lag_bytes",
                                                     "replicas",
                                                     "max_lock_waiters",
                                                     "lock_timeout",
                                                     "statement_timeout",
                                                     "max_rows_per_second",
                                                     "max_wal_bytes_per_second",
                                                     "max_canary_latency",
                                                     "canary",
                                                     "query",
                                                     "hold_on_autovacuum",
                                                     "application",
                                                     "max_statement_latency",
                                                     "max_statement_tail",
                                                     "max_commit_latency",
                                                     "max_active_sessions",
                                                     "max_cpu_pressure",
                                                     "baseline",
                                                     "max_slot_wal",
                                                     "max_archive_pending",
                                                     "command"};
inline constexpr std::string_view kDdlKeys[] = {"lock_timeout", "retry_for"};
inline constexpr std::string_view kFollowKeys[] = {"warn_slot_wal", "max_slot_wal"};
inline constexpr std::string_view kHookNames[] = {
    "on_start",       "before_expand", "after_expand",    "before_backfill", "after_backfill",
    "before_verify",  "after_verify",  "before_contract", "after_contract",  "before_rollback",
    "after_rollback", "on_hold",       "on_resume",       "on_done",         "on_failure"};
inline constexpr std::string_view kHookKeys[] = {"command", "timeout", "on_failure"};

inline constexpr Section kTopSection{"", kTopKeys};
inline constexpr Section kBatchSection{"batch", kBatchKeys};
inline constexpr Section kThrottleSection{"throttle", kThrottleKeys};
inline constexpr Section kDdlSection{"ddl", kDdlKeys};
inline constexpr Section kHooksSection{"hooks", kHookNames};
inline constexpr Section kFollowSection{"follow", kFollowKeys};
// Every section, for the reader's hints about keys under the wrong one.
inline constexpr Section kSections[] = {kTopSection, kBatchSection, kThrottleSection,
                                        kDdlSection, kHooksSection, kFollowSection};

// The whole plan from the top level's entries, checked in a fixed order so that the first
// problem reported does not depend on the order of keys in the file. `root_line` is where the
// plan starts: messages about a missing key point there.
absl::StatusOr<Plan> ParsePlanEntries(Reader& reader, const std::vector<Entry>& entries,
                                      int root_line);

// --- Tuning (tuning.cc) ---------------------------------------------------------------------
// The Apply* functions change only what their entries give, over what the plan already has:
// `pgbackfill set` passes one entry at a time through them.

absl::Status ApplyWorkers(const Reader& reader, const Entry& entry, Plan& plan);
// `5%` (of the table's estimated rows), a row count, or off/0.
absl::Status ApplyVacuumEvery(const Reader& reader, const Entry& entry, Plan& plan);

absl::Status ParseBatch(Reader& reader, const Entry& section, Batch& batch);
absl::Status ApplyBatch(const Reader& reader, const std::vector<Entry>& entries, Batch& batch);

absl::Status ParseThrottle(Reader& reader, const Entry& section, Throttle& throttle);
absl::Status ApplyThrottle(const Reader& reader, const std::vector<Entry>& entries,
                           Throttle& throttle);

}  // namespace pgbackfill::plan::internal
