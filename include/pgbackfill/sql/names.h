// Names pgbackfill gives things in the database, shared by the modules that write or read them.
#pragma once

#include <string>
#include <string_view>

#include "absl/time/time.h"
#include "pgbackfill/pg/statement_tag.h"

namespace pgbackfill::sql {

// The schema of the job store (engine/checkpoint/) and of the trigger functions.
inline constexpr char kJobStoreSchema[] = "pgbackfill";

// Set (SET LOCAL) by every batch transaction; the dual-write trigger skips rows while it is on,
// because the batch computes them itself.
inline constexpr char kInBatchSetting[] = "pgbackfill.in_batch";

// The comment every statement pgbackfill sends carries when it does not name the job store
// already. pg_stat_statements keeps comments in the text it stores, and the throttle's
// statement-latency probe leaves out every statement that mentions pgbackfill, so the job never
// measures itself as the application.
inline constexpr const char* kTag = pg::kStatementTag;

// `sql` with kTag in front.
std::string Tagged(std::string_view sql);

// A timeout as a setting value: whole milliseconds, rounded up and at least 1 ms, because
// PostgreSQL takes whole milliseconds and reads 0 as "wait forever". `200ms` for 200 ms.
std::string TimeoutSetting(absl::Duration timeout);

// `SET LOCAL <setting> = '<TimeoutSetting(timeout)>'`, for the head of a transaction.
std::string SetLocalTimeout(const char* setting, absl::Duration timeout);

// The settings statement of a batch transaction (one SELECT of transaction-local set_config
// calls, so the pipeline's statement count stays the same): statement_timeout, kInBatchSetting
// on, and with `skip_triggers` session_replication_role = replica, under which triggers enabled
// as usual (the foreign keys' among them) do not fire for the batch's writes.
std::string BatchSettings(absl::Duration statement_timeout, bool skip_triggers);

}  // namespace pgbackfill::sql
