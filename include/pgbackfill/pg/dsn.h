// Naming a server by its connection string without revealing it. A DSN may carry a password
// (`password=...`, `postgres://u:secret@h/db`), so messages, events and throttle reasons name a
// server by DescribeDsn() instead.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgbackfill::pg {

// "host:port" for a URI or key=value DSN, e.g. "db1.internal:5432", "[::1]:5433",
// "/var/run/postgresql:5432" for a socket directory. Several hosts are listed in order,
// comma-separated ("h1:5432,h2:5433"). What the DSN leaves out is filled as libpq would fill it
// from PGHOST/PGHOSTADDR/PGPORT, then "localhost" and 5432 (libpq's own default is a unix socket,
// but "localhost" is what users recognise). `hostaddr` is used when `host` is absent. Never
// includes the user, database, password or any other option. Pure apart from reading those
// environment variables; InvalidArgument (libpq's message) when the DSN does not parse.
absl::StatusOr<std::string> DescribeDsn(std::string_view dsn);

}  // namespace pgbackfill::pg
