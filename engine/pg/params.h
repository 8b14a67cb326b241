// Private to engine/pg: the C arrays PQexecParams / PQsendQueryParams want, built from Params.
#pragma once

#include <vector>

#include "pgbackfill/pg/connection.h"

namespace pgbackfill::pg::internal {

// Borrows the strings of `params`, which must outlive this object.
class ParamArrays {
 public:
  explicit ParamArrays(const std::vector<Param>& params) {
    values_.reserve(params.size());
    for (const Param& param : params) values_.push_back(param ? param->c_str() : nullptr);
  }
  int count() const { return static_cast<int>(values_.size()); }
  const char* const* values() const { return values_.empty() ? nullptr : values_.data(); }

 private:
  std::vector<const char*> values_;
};

}  // namespace pgbackfill::pg::internal
