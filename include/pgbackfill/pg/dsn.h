// Connection strings without their secrets. A DSN may carry a password (`password=...`,
// `postgres://u:secret@h/db`), so messages, events and throttle reasons name a server by
// DescribeDsn() instead, text that keeps a DSN (the plan stored with a job) has its secrets
// replaced at FindDsnSecrets()' places, and messages that may quote one go through
// ScrubDsnSecrets(). libpq decides what is a secret: the options it marks for hiding
// (PQconninfoOption::dispchar "*": password, sslpassword).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pgbackfill::pg {

// "host:port" for a URI or key=value DSN, e.g. "db1.internal:5432", "[::1]:5433",
// "/var/run/postgresql:5432" for a socket directory. Several hosts are listed in order,
// comma-separated ("h1:5432,h2:5433"). What the DSN leaves out is filled as libpq would fill it
// from PGHOST/PGHOSTADDR/PGPORT, then "localhost" and 5432 (libpq's own default is a unix socket,
// but "localhost" is what users recognise). `hostaddr` is used when `host` is absent. Never
// includes the user, database, password or any other option. Pure apart from reading those
// environment variables; InvalidArgument (libpq's message, secrets scrubbed) when the DSN does
// not parse.
absl::StatusOr<std::string> DescribeDsn(std::string_view dsn);

// What stands in for a secret that was removed.
inline constexpr std::string_view kRedacted = "********";

// Where a secret is written in a connection string: its value's bytes, quotes and escapes
// included, so that replacing them by kRedacted leaves a connection string of the same form.
struct SecretSpan {
  size_t offset = 0;
  size_t length = 0;
};

// The places of the secrets `dsn` writes, in order: `password=...` (plain or '...' quoted, with
// \ escapes), a URI's `user:secret@` and `?password=...`. Empty values and values that are only
// an environment reference (`${NAME}`, expanded later, never stored) are left out, and so is
// everything in a string that is not a connection string (a bare database name, ""). The places
// follow libpq's grammar; when libpq parses `dsn`, each secret it read must be the value found at
// the last place of its option, else FailedPrecondition (nothing can then be removed safely).
// When libpq cannot parse `dsn` (it will not connect with it either), the grammar alone decides.
absl::StatusOr<std::vector<SecretSpan>> FindDsnSecrets(std::string_view dsn);

// `message` with every secret of `dsn` replaced by kRedacted, as written and as libpq reads it:
// libpq's messages about a connection string it cannot parse quote parts of it.
std::string ScrubDsnSecrets(std::string_view message, std::string_view dsn);

}  // namespace pgbackfill::pg
