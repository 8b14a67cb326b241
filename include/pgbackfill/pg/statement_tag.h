// The comment in front of every statement pgbackfill's asynchronous sessions send (batches and
// their BEGIN/set_config/COMMIT, probes, VACUUM), added by AsyncConnection where the text does not
// begin with it. The application signals read pg_stat_statements, which keeps comments in the
// text it stores, and leave out every statement whose text holds it: the job never measures
// itself as the application. sql::kTag is the same text.
#pragma once

namespace pgbackfill::pg {

inline constexpr char kStatementTag[] = "/* pgbackfill */ ";

}  // namespace pgbackfill::pg
