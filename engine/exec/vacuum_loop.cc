// The runner's bloat control (plan key `vacuum_every`, exec/bloat_control.h): after every
// `vacuum_every` rows written, one VACUUM of the written table on its own connection, while the
// workers go on. Best effort by design: a VACUUM that fails or is skipped costs table size, never
// rows, so its errors are warnings and the backfill continues.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/exec/bloat_control.h"
#include "runner_internal.h"

namespace pgbackfill::exec::internal {


const plan::QualifiedName& Runner::WrittenTable() const {
  return plan_.mode == plan::Mode::kCopy ? *plan_.into : report_.table->name;
}

void Runner::CountForVacuum(int64_t rows) {
  vacuum_.rows_since += rows;
  const int64_t every = VacuumEveryRows(live_.vacuum_every, report_.estimate->rows);
  // One at a time: rows written while a VACUUM runs count toward the next one. Not while held:
  // a hold for replica lag or WAL rate must not start the I/O and WAL of a VACUUM.
  if (every <= 0 || vacuum_.rows_since < every || vacuum_.running || stopping_ || throttle_.was_held) {
    return;
  }
  vacuum_.rows_since = 0;
  vacuum_.running = true;
  asio::co_spawn(io_, GuardedVacuum(), asio::detached);
}

asio::awaitable<void> Runner::GuardedVacuum() {
  try {
    co_await Vacuum();
  } catch (const std::exception& e) {
    events_.Emit(
        events::Warning{absl::StrCat("bloat control stopped on an internal error: ", e.what())});
  }
  vacuum_.running = false;
  if (workers_running_ == 0) vacuum_.conn.reset();
}

asio::awaitable<void> Runner::Vacuum() {
  const std::string table = plan::QuoteQualified(WrittenTable());
  const auto warn = [&](const char* what, const absl::Status& status) {
    events_.Emit(events::Warning{absl::StrCat("bloat control: ", what, " ", table, ": ",
                                              status.message(), "; the backfill goes on")});
  };
  if (vacuum_.conn == nullptr || !vacuum_.conn->IsOpen()) {
    auto connected = co_await pg::AsyncConnection::Connect(dsn_);
    if (!connected.ok()) {
      warn("could not connect to vacuum", connected.status());
      co_return;
    }
    vacuum_.conn = std::move(connected).value();
    // A role's or database's statement_timeout would cancel every long VACUUM.
    if (absl::StatusOr<pg::Result> set = co_await vacuum_.conn->Exec("SET statement_timeout = 0");
        !set.ok()) {
      warn("could not prepare the connection to vacuum", set.status());
      vacuum_.conn.reset();
      co_return;
    }
  }
  // The last worker may have finished while this connected: StopVacuum had nothing to cancel then,
  // and a VACUUM started now would hold the run's end up for nothing.
  if (workers_running_ == 0) co_return;
  // SKIP_LOCKED (and a role that may not vacuum) skip the table with only a WARNING, which our
  // connections do not surface: the table's vacuum count says whether this one really ran. The
  // reading after it also gives the table's size for the event, in the same round trip.
  struct TableReading {
    int64_t vacuum_count = 0;
    int64_t bytes = 0;
  };
  const auto read_table = [&]() -> asio::awaitable<std::optional<TableReading>> {
    std::vector<pg::Param> params;
    params.emplace_back(table);
    absl::StatusOr<pg::Result> row = co_await vacuum_.conn->Exec(
        "SELECT pg_catalog.pg_stat_get_vacuum_count(t.r), pg_catalog.pg_table_size(t.r)\n"
        "  FROM (SELECT $1::text::pg_catalog.regclass AS r) AS t",
        std::move(params));
    if (!row.ok() || row->Rows() != 1) co_return std::nullopt;
    co_return TableReading{std::stoll(std::string(row->Get(0, 0))),
                           std::stoll(std::string(row->Get(0, 1)))};
  };
  const std::optional<TableReading> before = co_await read_table();
  const absl::Time start = absl::Now();
  // VACUUM alone before the Sync: a pipeline of one statement is not a transaction block.
  absl::StatusOr<pg::Result> vacuumed = co_await vacuum_.conn->Exec(VacuumSql(WrittenTable()));
  const absl::Duration took = absl::Now() - start;
  if (!vacuumed.ok()) {
    // Cancelled at the end of the run (the last worker finished), or failed: either way the next
    // one starts on a new connection.
    if (workers_running_ > 0) warn("VACUUM of", vacuumed.status());
    vacuum_.conn.reset();
    co_return;
  }
  const std::optional<TableReading> after = co_await read_table();
  const int64_t every_rows = VacuumEveryRows(live_.vacuum_every, report_.estimate->rows);
  if (before.has_value() && after.has_value() && after->vacuum_count == before->vacuum_count) {
    events_.Emit(events::Warning{absl::StrCat(
        "bloat control: VACUUM of ", table, " was skipped (another VACUUM, autovacuum or DDL "
        "holds the table, or the role may not vacuum it); the next one is due after ",
        every_rows, " more rows")});
    co_return;
  }
  ++summary_.vacuums;
  events::Vacuum event;
  event.table = table;
  event.seconds = absl::ToDoubleSeconds(took);
  event.every_rows = every_rows;
  if (after.has_value()) event.table_bytes = after->bytes;
  events_.Emit(event);
}

void Runner::StopVacuum() {
  if (vacuum_.running && vacuum_.conn != nullptr) (void)vacuum_.conn->Cancel();
}

}  // namespace pgbackfill::exec::internal
