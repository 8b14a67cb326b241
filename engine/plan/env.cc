#include "pgbackfill/plan/env.h"

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pgbackfill::plan {
namespace {

bool IsValidName(std::string_view name) {
  if (name.empty()) return false;
  if (absl::ascii_isdigit(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<std::string> ExpandEnv(std::string_view text, const EnvLookup& env) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t dollar = text.find('$', pos);
    if (dollar == std::string_view::npos || dollar + 1 == text.size()) {
      out.append(text.substr(pos));
      break;
    }
    out.append(text.substr(pos, dollar - pos));
    const char next = text[dollar + 1];
    if (next == '$') {
      out.push_back('$');
      pos = dollar + 2;
      continue;
    }
    if (next != '{') {
      out.push_back('$');
      pos = dollar + 1;
      continue;
    }
    const size_t close = text.find('}', dollar + 2);
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unterminated \"${\" at character %d (write $$ for a literal $)", dollar + 1));
    }
    const std::string_view body = text.substr(dollar + 2, close - dollar - 2);
    std::string_view name = body;
    std::optional<std::string_view> fallback;
    if (const size_t sep = body.find(":-"); sep != std::string_view::npos) {
      name = body.substr(0, sep);
      fallback = body.substr(sep + 2);
    }
    if (!IsValidName(name)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "invalid environment variable name \"%s\" in ${...} (letters, digits and _; "
          "write $$ for a literal $)",
          name));
    }
    std::optional<std::string> value = env ? env(name) : std::nullopt;
    if (fallback.has_value() && (!value.has_value() || value->empty())) {
      out.append(*fallback);
    } else if (value.has_value()) {
      out.append(*value);
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("environment variable %s is not set", name));
    }
    pos = close + 1;
  }
  return out;
}

}  // namespace pgbackfill::plan
