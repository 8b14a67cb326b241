#include "pgbackfill/pg/dsn.h"

#include <libpq-fe.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace pgbackfill::pg {
namespace {

struct OptionsDeleter {
  void operator()(PQconninfoOption* options) const noexcept { PQconninfoFree(options); }
};

std::string FromEnv(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// libpq's comma-separated host and port lists, empty entries kept: "h1,,h3" means the default
// for the second host.
std::vector<std::string> SplitList(const std::string& list) {
  if (list.empty()) return {};
  return absl::StrSplit(list, ',');
}

}  // namespace

absl::StatusOr<std::string> DescribeDsn(std::string_view dsn) {
  char* error = nullptr;
  const std::string text(dsn);
  std::unique_ptr<PQconninfoOption, OptionsDeleter> options(PQconninfoParse(text.c_str(), &error));
  if (options == nullptr) {
    std::string message =
        error != nullptr ? std::string(absl::StripTrailingAsciiWhitespace(error)) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(absl::StrCat("invalid connection string: ", message));
  }
  std::string host;
  std::string hostaddr;
  std::string port;
  for (const PQconninfoOption* option = options.get(); option->keyword != nullptr; ++option) {
    if (option->val == nullptr) continue;
    const std::string_view keyword = option->keyword;
    if (keyword == "host") host = option->val;
    if (keyword == "hostaddr") hostaddr = option->val;
    if (keyword == "port") port = option->val;
  }
  if (host.empty()) host = hostaddr;
  if (host.empty()) host = FromEnv("PGHOST");
  if (host.empty()) host = FromEnv("PGHOSTADDR");
  if (host.empty()) host = "localhost";
  if (port.empty()) port = FromEnv("PGPORT");

  const std::vector<std::string> hosts = SplitList(host);
  const std::vector<std::string> ports = SplitList(port);
  std::vector<std::string> parts;
  for (size_t i = 0; i < hosts.size(); ++i) {
    std::string name = hosts[i].empty() ? "localhost" : hosts[i];
    // One port applies to every host (libpq's rule); otherwise they pair up.
    std::string this_port = ports.size() == 1 ? ports[0] : (i < ports.size() ? ports[i] : "");
    if (this_port.empty()) this_port = "5432";
    // An IPv6 address is bracketed so that the port stays readable.
    if (name.find(':') != std::string::npos && name.front() != '/') name = "[" + name + "]";
    parts.push_back(absl::StrCat(name, ":", this_port));
  }
  return absl::StrJoin(parts, ",");
}

}  // namespace pgbackfill::pg
