#include "pgbackfill/pg/dsn.h"

#include <libpq-fe.h>

#include <cctype>
#include <cstdlib>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::pg {
namespace {

struct OptionsDeleter {
  void operator()(PQconninfoOption* options) const noexcept { PQconninfoFree(options); }
};
using Options = std::unique_ptr<PQconninfoOption, OptionsDeleter>;

// libpq's reading of `dsn`, or its message (which may quote `dsn`: scrub before showing it).
absl::StatusOr<Options> ParseOptions(const std::string& dsn) {
  char* error = nullptr;
  Options options(PQconninfoParse(dsn.c_str(), &error));
  if (options == nullptr) {
    std::string message =
        error != nullptr ? std::string(absl::StripTrailingAsciiWhitespace(error)) : "out of memory";
    PQfreemem(error);
    return absl::InvalidArgumentError(absl::StrCat("invalid connection string: ", message));
  }
  return options;
}

// The options libpq hides from display (dispchar "*"). The empty string parses to every option.
const std::vector<std::string>& SecretKeywords() {
  static const std::vector<std::string>* const keywords = [] {
    auto* out = new std::vector<std::string>;
    absl::StatusOr<Options> all = ParseOptions("");
    if (!all.ok()) {
      out->push_back("password");  // libpq out of memory; the one every DSN may have
      return out;
    }
    for (const PQconninfoOption* option = all->get(); option->keyword != nullptr; ++option) {
      if (option->dispchar != nullptr && option->dispchar[0] == '*') {
        out->push_back(option->keyword);
      }
    }
    return out;
  }();
  return *keywords;
}

bool IsSecretKeyword(std::string_view keyword) {
  for (const std::string& secret : SecretKeywords()) {
    if (secret == keyword) return true;
  }
  return false;
}

// `${NAME}` and nothing else: expanded from the environment when connecting, never stored.
bool IsEnvReference(std::string_view value) {
  if (value.size() < 4 || !value.starts_with("${") || !value.ends_with("}")) return false;
  const std::string_view name = value.substr(2, value.size() - 3);
  if (std::isdigit(static_cast<unsigned char>(name.front())) != 0) return false;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '_') return false;
  }
  return true;
}

// One option as a connection string writes it.
struct Written {
  std::string keyword;   // as libpq reads it (a URI's percent-decoded)
  SecretSpan span;       // the value as written
  std::string value;     // as libpq reads it, when `readable`
  bool readable = true;  // false when libpq would refuse the value (bad escape, no closing quote)
};

bool IsSpace(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// libpq's conninfo_parse: `keyword = value` separated by white space; a value is a word or
// '...', and \ takes the next character as it is in both.
std::vector<Written> ScanKeywordValues(std::string_view dsn) {
  std::vector<Written> out;
  const size_t n = dsn.size();
  size_t i = 0;
  while (true) {
    while (i < n && IsSpace(dsn[i])) ++i;
    if (i == n) break;
    const size_t keyword_start = i;
    while (i < n && dsn[i] != '=' && !IsSpace(dsn[i])) ++i;
    Written written;
    written.keyword = std::string(dsn.substr(keyword_start, i - keyword_start));
    while (i < n && IsSpace(dsn[i])) ++i;
    if (i == n || dsn[i] != '=') break;  // libpq refuses the rest: missing "="
    ++i;
    while (i < n && IsSpace(dsn[i])) ++i;
    written.span.offset = i;
    const bool quoted = i < n && dsn[i] == '\'';
    if (quoted) ++i;
    written.readable = !quoted;  // until the closing quote is seen
    while (i < n) {
      if (dsn[i] == '\\') {
        if (++i < n) written.value.push_back(dsn[i++]);
        continue;
      }
      if (quoted && dsn[i] == '\'') {
        ++i;
        written.readable = true;
        break;
      }
      if (!quoted && IsSpace(dsn[i])) break;
      written.value.push_back(dsn[i++]);
    }
    written.span.length = i - written.span.offset;
    out.push_back(std::move(written));
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// libpq's conninfo_uri_decode: %XX escapes, %00 refused.
std::optional<std::string> PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (text.size() - i < 3) return std::nullopt;
    const int high = HexDigit(text[i + 1]);
    const int low = HexDigit(text[i + 2]);
    if (high < 0 || low < 0 || (high == 0 && low == 0)) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

Written UriValue(std::string keyword, std::string_view dsn, size_t begin, size_t end) {
  Written written;
  written.keyword = std::move(keyword);
  written.span = {.offset = begin, .length = end - begin};
  std::optional<std::string> value = PercentDecode(dsn.substr(begin, end - begin));
  written.readable = value.has_value();
  if (value.has_value()) written.value = *std::move(value);
  return written;
}

// libpq's conninfo_uri_parse_params: `keyword=value` pairs separated by &, both percent-encoded.
void ScanUriQuery(std::string_view dsn, size_t start, std::vector<Written>& out) {
  for (size_t i = start; i < dsn.size();) {
    size_t end = dsn.find('&', i);
    if (end == std::string_view::npos) end = dsn.size();
    const size_t equals = dsn.substr(i, end - i).find('=');
    if (equals != std::string_view::npos) {
      const std::string_view raw_keyword = dsn.substr(i, equals);
      std::string keyword = PercentDecode(raw_keyword).value_or(std::string(raw_keyword));
      out.push_back(UriValue(std::move(keyword), dsn, i + equals + 1, end));
    }
    i = end + 1;
  }
}

// libpq's conninfo_uri_parse_options: `scheme://[user[:password]@]hosts[/dbname][?query]`. The
// credentials end at the first @ before any /; the query starts at the first ? after them.
std::vector<Written> ScanUri(std::string_view dsn, size_t prefix) {
  std::vector<Written> out;
  size_t at = prefix;
  while (at < dsn.size() && dsn[at] != '@' && dsn[at] != '/') ++at;
  size_t hosts = prefix;
  if (at < dsn.size() && dsn[at] == '@') {
    const size_t colon = dsn.substr(0, at).find(':', prefix);
    if (colon != std::string_view::npos) out.push_back(UriValue("password", dsn, colon + 1, at));
    hosts = at + 1;
  }
  if (const size_t query = dsn.find('?', hosts); query != std::string_view::npos) {
    ScanUriQuery(dsn, query + 1, out);
  }
  return out;
}

size_t UriPrefixLength(std::string_view dsn) {
  for (std::string_view prefix : {"postgresql://", "postgres://"}) {
    if (dsn.starts_with(prefix)) return prefix.size();
  }
  return 0;
}

// Every option `dsn` writes, in order; none for what libpq takes as a database name (no = and
// not a URI).
std::vector<Written> ScanOptions(std::string_view dsn) {
  if (const size_t prefix = UriPrefixLength(dsn); prefix > 0) return ScanUri(dsn, prefix);
  if (dsn.find('=') == std::string_view::npos) return {};
  return ScanKeywordValues(dsn);
}

// Each secret libpq read must be what the last place of its option holds: then those places
// are where it is written.
absl::Status AgreesWithLibpq(const PQconninfoOption* options, const std::vector<Written>& written) {
  for (const PQconninfoOption* option = options; option->keyword != nullptr; ++option) {
    if (option->val == nullptr || option->val[0] == '\0' || !IsSecretKeyword(option->keyword)) {
      continue;
    }
    const Written* last = nullptr;
    for (const Written& candidate : written) {
      if (candidate.keyword == option->keyword) last = &candidate;
    }
    if (last == nullptr || !last->readable || last->value != option->val) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot tell where the connection string writes its ", option->keyword));
    }
  }
  return absl::OkStatus();
}

// Replaces every occurrence of `secret` in `text`.
void Scrub(std::string& text, std::string_view secret) {
  if (secret.empty()) return;
  text = absl::StrReplaceAll(text, {{ToAbsl(secret), ToAbsl(kRedacted)}});
}

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

absl::StatusOr<std::vector<SecretSpan>> FindDsnSecrets(std::string_view dsn) {
  const std::vector<Written> written = ScanOptions(dsn);
  if (written.empty()) return std::vector<SecretSpan>{};
  if (absl::StatusOr<Options> parsed = ParseOptions(std::string(dsn)); parsed.ok()) {
    if (absl::Status agrees = AgreesWithLibpq(parsed->get(), written); !agrees.ok()) return agrees;
  }
  std::vector<SecretSpan> spans;
  for (const Written& option : written) {
    if (!IsSecretKeyword(option.keyword) || option.span.length == 0) continue;
    if (option.readable && IsEnvReference(option.value)) continue;
    spans.push_back(option.span);
  }
  return spans;
}

std::string ScrubDsnSecrets(std::string_view message, std::string_view dsn) {
  std::string out(message);
  for (const Written& option : ScanOptions(dsn)) {
    if (!IsSecretKeyword(option.keyword)) continue;
    // As written first: it holds the value as read (quotes, escapes), which would else leave
    // the rest of it behind.
    Scrub(out, dsn.substr(option.span.offset, option.span.length));
    if (option.readable) Scrub(out, option.value);
  }
  return out;
}

absl::StatusOr<std::string> DescribeDsn(std::string_view dsn) {
  absl::StatusOr<Options> options = ParseOptions(std::string(dsn));
  if (!options.ok()) {
    return absl::InvalidArgumentError(ScrubDsnSecrets(ToStd(options.status().message()), dsn));
  }
  std::string host;
  std::string hostaddr;
  std::string port;
  for (const PQconninfoOption* option = options->get(); option->keyword != nullptr; ++option) {
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
