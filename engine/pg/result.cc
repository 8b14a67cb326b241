#include "pgbackfill/pg/result.h"

#include <libpq-fe.h>

#include <charconv>

namespace pgbackfill::pg {

void ResultDeleter::operator()(PGresult* result) const noexcept { PQclear(result); }

int Result::Rows() const { return handle_ ? PQntuples(handle_.get()) : 0; }

int Result::Columns() const { return handle_ ? PQnfields(handle_.get()) : 0; }

bool Result::IsNull(int row, int column) const {
  return PQgetisnull(handle_.get(), row, column) != 0;
}

std::string_view Result::Get(int row, int column) const {
  return std::string_view(PQgetvalue(handle_.get(), row, column),
                          static_cast<size_t>(PQgetlength(handle_.get(), row, column)));
}

std::optional<std::string> Result::GetOptional(int row, int column) const {
  if (IsNull(row, column)) return std::nullopt;
  return std::string(Get(row, column));
}

uint32_t Result::ColumnType(int column) const {
  return handle_ ? static_cast<uint32_t>(PQftype(handle_.get(), column)) : 0;
}

int Result::ColumnIndex(const char* name) const {
  // PQfnumber folds unquoted names to lower case; our callers pass exact names, so quote them.
  std::string quoted = "\"";
  for (const char* p = name; *p != '\0'; ++p) {
    if (*p == '"') quoted.push_back('"');
    quoted.push_back(*p);
  }
  quoted.push_back('"');
  return handle_ ? PQfnumber(handle_.get(), quoted.c_str()) : -1;
}

int64_t Result::AffectedRows() const {
  if (!handle_) return 0;
  std::string_view tuples = PQcmdTuples(handle_.get());
  int64_t value = 0;
  std::from_chars(tuples.data(), tuples.data() + tuples.size(), value);
  return value;
}

std::string Result::CommandTag() const { return handle_ ? PQcmdStatus(handle_.get()) : ""; }

}  // namespace pgbackfill::pg
