// Bloat control (plan key `vacuum_every`): an UPDATE writes a new version of every row it touches,
// and with the table's pages full (fillfactor 100) each new version lands on a new page, so a
// backfill of every row doubles the table. A VACUUM between slices of the backfill marks the space
// of the versions already replaced as free, and the following batches put their new versions there
// instead of at the end of the table.
#pragma once

#include <cstdint>
#include <string>

#include "pgbackfill/plan/plan.h"

namespace pgbackfill::exec {

// A fraction-of-the-table setting never vacuums more often than this: on a table whose estimate is
// tiny or missing (never analysed), every batch would otherwise start a VACUUM.
inline constexpr int64_t kMinVacuumEveryRows = 10000;

// Rows written between two VACUUMs; 0 = never. `estimated_rows` is the table's estimate at the
// start of the run.
int64_t VacuumEveryRows(const plan::VacuumEvery& every, int64_t estimated_rows);

// The statement: SKIP_LOCKED, so that an autovacuum already working on the table (or a DDL
// waiting for it) makes this round a no-op instead of a wait; never in a transaction block.
std::string VacuumSql(const plan::QualifiedName& table);

// The plan value as written (`5%`, `500000`, `off`), for events and `status`.
std::string DescribeVacuumEvery(const plan::VacuumEvery& every);

}  // namespace pgbackfill::exec
