#include "pgbackfill/metrics/exposition.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::metrics {
namespace {

// Escapes backslash and newline, and the double quote when `quote` (label values only; HELP
// text keeps its quotes).
std::string Escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quote) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

void AppendSample(std::string& text, std::string_view name, const Labels& labels,
                  std::string_view value) {
  text.append(name);
  if (!labels.empty()) {
    text += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      absl::StrAppend(&text, i == 0 ? "" : ",", labels[i].first, "=\"",
                      EscapeLabelValue(labels[i].second), "\"");
    }
    text += '}';
  }
  absl::StrAppend(&text, " ", ToAbsl(value), "\n");
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) { return Escape(value, true); }

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  constexpr double kExact = 9007199254740992.0;  // 2^53
  if (value == std::trunc(value) && std::fabs(value) < kExact) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  // The shortest of 15 or 17 digits that reads back as the same double: 0.005, not
  // 0.0050000000000000001.
  std::string text = absl::StrFormat("%.15g", value);
  if (std::strtod(text.c_str(), nullptr) != value) text = absl::StrFormat("%.17g", value);
  return text;
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  // The first bound at or above the value: buckets are "less than or equal" (le).
  const auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value);
  ++counts_[static_cast<size_t>(bucket - upper_bounds_.begin())];
  sum_ += value;
  ++count_;
}

void ExpositionWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  absl::StrAppend(&text_, "# HELP ", ToAbsl(name), " ", Escape(help, false), "\n");
  absl::StrAppend(&text_, "# TYPE ", ToAbsl(name), " ", ToAbsl(type), "\n");
}

void ExpositionWriter::Sample(std::string_view name, const Labels& labels, double value) {
  AppendSample(text_, name, labels, FormatValue(value));
}

void ExpositionWriter::HistogramSamples(std::string_view name, const Labels& labels,
                                        const Histogram& histogram) {
  const std::string bucket = absl::StrCat(ToAbsl(name), "_bucket");
  uint64_t cumulative = 0;
  const std::vector<double>& bounds = histogram.upper_bounds();
  for (size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += histogram.counts()[i];
    Labels with_le = labels;
    with_le.emplace_back("le", i < bounds.size()
                                   ? FormatValue(bounds[i])
                                   : FormatValue(std::numeric_limits<double>::infinity()));
    AppendSample(text_, bucket, with_le, FormatValue(static_cast<double>(cumulative)));
  }
  Sample(absl::StrCat(ToAbsl(name), "_sum"), labels, histogram.sum());
  Sample(absl::StrCat(ToAbsl(name), "_count"), labels, static_cast<double>(histogram.count()));
}

}  // namespace pgbackfill::metrics
