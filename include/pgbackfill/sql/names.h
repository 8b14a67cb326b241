// Names pgbackfill gives things in the database, shared by the modules that write or read them.
#pragma once

#include <string>

#include "absl/time/time.h"

namespace pgbackfill::sql {

// The schema of the job store (engine/checkpoint/) and of the trigger functions.
inline constexpr char kJobStoreSchema[] = "pgbackfill";

// Set (SET LOCAL) by every batch transaction; the dual-write trigger skips rows while it is on,
// because the batch computes them itself.
inline constexpr char kInBatchSetting[] = "pgbackfill.in_batch";

// A timeout as a setting value: whole milliseconds, rounded up and at least 1 ms, because
// PostgreSQL takes whole milliseconds and reads 0 as "wait forever". `200ms` for 200 ms.
std::string TimeoutSetting(absl::Duration timeout);

// `SET LOCAL <setting> = '<TimeoutSetting(timeout)>'`, for the head of a transaction.
std::string SetLocalTimeout(const char* setting, absl::Duration timeout);

}  // namespace pgbackfill::sql
