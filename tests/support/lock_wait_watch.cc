#include "support/lock_wait_watch.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::testing {

LockWaitWatch::LockWaitWatch(std::string dsn, std::string blockers_sql) {
  thread_ = std::thread([this, dsn = std::move(dsn), blockers_sql = std::move(blockers_sql)] {
    auto conn = pg::Connection::Connect(dsn);
    if (!conn.ok()) return;
    const std::string sql = absl::StrCat(
        "SELECT coalesce(max(extract(epoch FROM now() - l.waitstart)), 0)::float8"
        " FROM pg_catalog.pg_locks l"
        " WHERE NOT l.granted AND l.waitstart IS NOT NULL"
        "   AND pg_catalog.pg_blocking_pids(l.pid) && ",
        blockers_sql);
    while (!done_) {
      auto wait = conn->Exec(sql);
      if (wait.ok()) {
        const double seconds = std::stod(std::string(wait->Get(0, 0)));
        if (seconds > max_wait_seconds_) max_wait_seconds_ = seconds;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  });
}

LockWaitWatch::~LockWaitWatch() {
  done_ = true;
  thread_.join();
}

}  // namespace pgbackfill::testing
