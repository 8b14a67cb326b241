// Prometheus text exposition format 0.0.4: metric families with HELP and TYPE, samples with
// escaped label values, and histograms as cumulative `_bucket` series ending in le="+Inf", with
// `_sum` and `_count`. Pure: builds a string; knows nothing of pgbackfill's events.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgbackfill::metrics {

// The Content-Type of the text format.
inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// (name, value) pairs, in the order written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value as the format writes it between quotes: \ " and newline escaped.
std::string EscapeLabelValue(std::string_view value);
// A sample value: integers without exponent or fraction (counters stay exact up to 2^53),
// others with enough digits to read back the same double; +Inf, -Inf and NaN as spelled by the
// format.
std::string FormatValue(double value);

// Observations counted into fixed buckets. `counts[i]` holds the observations in
// (upper_bounds[i-1], upper_bounds[i]]; the last count is those above every bound (+Inf).
class Histogram {
 public:
  // `upper_bounds` ascending, without +Inf.
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Writes one family after another. Each family's samples must follow its Family() call, as the
// format requires every sample of a family to be in one group.
class ExpositionWriter {
 public:
  // `type`: counter, gauge, histogram (or untyped). `help` is escaped (\ and newline).
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const Labels& labels, double value);
  // The `_bucket` (cumulative, le last among the labels), `_sum` and `_count` series of `name`.
  void HistogramSamples(std::string_view name, const Labels& labels, const Histogram& histogram);

  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

}  // namespace pgbackfill::metrics
