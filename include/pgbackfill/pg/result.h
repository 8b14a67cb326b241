// An owned query result. Only engine/pg/ includes <libpq-fe.h>; everything else sees this class.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

extern "C" {
typedef struct pg_result PGresult;  // NOLINT: matches libpq's own typedef
}

namespace pgbackfill::pg {

struct ResultDeleter {
  void operator()(PGresult* result) const noexcept;
};
using ResultHandle = std::unique_ptr<PGresult, ResultDeleter>;

// A successful result (PGRES_COMMAND_OK or PGRES_TUPLES_OK) of one statement; errors never become
// a Result, they become an absl::Status (see pg/error.h). Values are in text format. Move-only;
// not tied to the connection that produced it, so it may outlive it and cross threads.
class Result {
 public:
  Result() = default;
  explicit Result(ResultHandle handle) : handle_(std::move(handle)) {}

  int Rows() const;
  int Columns() const;
  bool IsNull(int row, int column) const;
  // The text value; "" for NULL (check IsNull when it matters).
  std::string_view Get(int row, int column) const;
  std::optional<std::string> GetOptional(int row, int column) const;
  // The type OID of a column (PQftype).
  uint32_t ColumnType(int column) const;
  // Column index by name, or -1.
  int ColumnIndex(const char* name) const;
  // Rows affected by INSERT/UPDATE/DELETE/COPY...; 0 when the command reports none.
  int64_t AffectedRows() const;
  // The command tag, e.g. "UPDATE 5000".
  std::string CommandTag() const;

  bool empty() const { return handle_ == nullptr; }

 private:
  ResultHandle handle_;
};

}  // namespace pgbackfill::pg
