#include <gtest/gtest.h>

#include <limits>

#include "pgbackfill/metrics/exposition.h"

namespace pgbackfill::metrics {
namespace {

TEST(MetricsExpositionTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(EscapeLabelValue(R"(a\b"c)"
                             "\n"
                             "d"),
            R"(a\\b\"c\nd)");
  EXPECT_EQ(EscapeLabelValue("plain-job_1"), "plain-job_1");
}

TEST(MetricsExpositionTest, HelpTextEscapesBackslashAndNewlineButKeepsQuotes) {
  ExpositionWriter out;
  out.Family("x_total", "counter", "a \"b\" \\ c\nd");
  EXPECT_EQ(out.text(), "# HELP x_total a \"b\" \\\\ c\\nd\n# TYPE x_total counter\n");
}

TEST(MetricsExpositionTest, CountersStayExactAndFractionsReadBackTheSame) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(1234567890123), "1234567890123");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsExpositionTest, SamplesWriteTheirLabelsInOrder) {
  ExpositionWriter out;
  out.Sample("m", {{"job", "a\"b"}, {"reason", "x"}}, 2);
  out.Sample("n", {}, 0.5);
  EXPECT_EQ(out.text(), "m{job=\"a\\\"b\",reason=\"x\"} 2\nn 0.5\n");
}

TEST(MetricsExpositionTest, ABoundaryValueCountsInTheBucketItBounds) {
  Histogram histogram({0.1, 1});
  histogram.Observe(0.1);
  histogram.Observe(0.1000001);
  histogram.Observe(5);
  EXPECT_EQ(histogram.counts(), (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_EQ(histogram.count(), 3u);
}

TEST(MetricsExpositionTest, HistogramBucketsAreCumulativeAndEndWithInfSumAndCount) {
  Histogram histogram({0.1, 1});
  for (const double seconds : {0.05, 0.05, 0.5, 2.0}) histogram.Observe(seconds);
  ExpositionWriter out;
  out.HistogramSamples("d_seconds", {{"job", "j"}}, histogram);
  EXPECT_EQ(out.text(),
            "d_seconds_bucket{job=\"j\",le=\"0.1\"} 2\n"
            "d_seconds_bucket{job=\"j\",le=\"1\"} 3\n"
            "d_seconds_bucket{job=\"j\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{job=\"j\"} 2.6\n"
            "d_seconds_count{job=\"j\"} 4\n");
}

TEST(MetricsExpositionTest, AnEmptyHistogramStillWritesEveryBucket) {
  ExpositionWriter out;
  out.HistogramSamples("d_seconds", {}, Histogram({1}));
  EXPECT_EQ(out.text(),
            "d_seconds_bucket{le=\"1\"} 0\nd_seconds_bucket{le=\"+Inf\"} 0\n"
            "d_seconds_sum 0\nd_seconds_count 0\n");
}

}  // namespace
}  // namespace pgbackfill::metrics
