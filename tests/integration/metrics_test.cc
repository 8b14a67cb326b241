// `--metrics-addr`: a run's /metrics scraped over HTTP while it runs, its counters rising to the
// job's final numbers, and the text accepted by Prometheus's own checker (`promtool check
// metrics`, Debian package prometheus, installed by scripts/test); the example alert rules
// accepted by `promtool check rules`.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/events/events.h"
#include "pgbackfill/util/asio.h"  // first: <utility> before any Asio header
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::CommandResult;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::Process;
using testing::RunCommand;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using tcp = asio::ip::tcp;

struct HttpAnswer {
  int status = 0;
  std::string headers;
  std::string body;
};

// One request on a connection of its own (`Connection: close`); nullopt when the server closed
// it without a complete answer. `extra_headers` are sent verbatim.
std::optional<HttpAnswer> HttpRequest(const std::string& address, const std::string& method,
                                      const std::string& path,
                                      const std::string& extra_headers = "") {
  const size_t colon = address.rfind(':');
  asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  tcp::resolver resolver(io);
  asio::connect(socket, resolver.resolve(address.substr(0, colon), address.substr(colon + 1), ec),
                ec);
  if (ec) return std::nullopt;
  const std::string request = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", address,
                                           "\r\n", extra_headers, "Connection: close\r\n\r\n");
  asio::write(socket, asio::buffer(request), ec);
  std::string raw;
  asio::read(socket, asio::dynamic_buffer(raw), ec);  // to EOF (or a reset)
  const size_t end_of_headers = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.1 ", 0) != 0 || end_of_headers == std::string::npos) return std::nullopt;
  HttpAnswer answer;
  if (!absl::SimpleAtoi(raw.substr(9, 3), &answer.status)) return std::nullopt;
  answer.headers = raw.substr(0, end_of_headers);
  answer.body = raw.substr(end_of_headers + 4);
  return answer;
}

// The value of the sample `series` (name and labels exactly as written), or -1 when absent.
double SampleValue(const std::string& text, const std::string& series) {
  const std::string prefix = series + " ";
  for (size_t at = 0; at < text.size();) {
    const size_t end = text.find('\n', at);
    const std::string line = text.substr(at, end == std::string::npos ? end : end - at);
    if (line.rfind(prefix, 0) == 0) return std::strtod(line.c_str() + prefix.size(), nullptr);
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return -1;
}

std::string ReadSource(const std::string& path) {
  std::ifstream in(testing::SourceDir() + "/" + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool HavePromtool() { return RunCommand({"promtool", "--version"}).exit_code == 0; }

class MetricsTest : public testing::RunTest {
 protected:
  void SetUp() override {
    if (!HavePromtool()) {
      GTEST_SKIP() << "promtool is missing: apt-get install prometheus (scripts/test does)";
    }
  }

  // The address a run printed on stderr ("pgbackfill: metrics at http://HOST:PORT/metrics").
  static std::string AddressOf(const Process& process) {
    std::smatch match;
    const std::string err = process.StderrSoFar();
    if (!std::regex_search(err, match, std::regex("metrics at http://([^/ ]+)/metrics"))) {
      return "";
    }
    return match[1];
  }

  static std::string Scrape(const std::string& address) {
    std::optional<HttpAnswer> answer = HttpRequest(address, "GET", "/metrics");
    EXPECT_TRUE(answer.has_value()) << "no answer from " << address;
    if (!answer.has_value()) return "";
    EXPECT_EQ(answer->status, 200) << answer->body;
    EXPECT_THAT(answer->headers,
                HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    return answer->body;
  }

  static void ExpectPromtoolAccepts(const std::string& text) {
    const CommandResult checked = RunCommand({"promtool", "check", "metrics"}, {}, text);
    EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err << "\n" << text;
  }
};

constexpr char kRows[] = "pgbackfill_rows_total{job=\"metered\"}";

// A paced job (about 4 s): its counters rise while it runs and end at the job's own numbers.
TEST_F(MetricsTest, ARunsCountersRiseWhileItRunsAndEndAtTheJobsRows) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE metered (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);"
      "INSERT INTO metered (id) SELECT g FROM generate_series(1, 6000) g; ANALYZE metered;"));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: metered\ntable: metered\nset:\n  n: n + 1\nverify: false\n"
      "throttle: { max_rows_per_second: 1500, application: off, interval: 200ms }\n"
      "batch: { rows: 100, min_rows: 100, max_rows: 100 }\nworkers: 2\n");
  std::vector<std::string> args = RunArgs(plan);
  for (const char* arg : {"--metrics-addr", "127.0.0.1:0", "--metrics-linger", "20s"}) {
    args.emplace_back(arg);
  }
  ASSERT_OK_AND_ASSIGN(Process run, SpawnPgbackfill(args));
  // The whole line: the pipe may deliver it in pieces.
  ASSERT_OK(run.WaitForOutput("/metrics\n", absl::Seconds(30))) << run.StderrSoFar();
  const std::string address = AddressOf(run);
  ASSERT_THAT(address, ::testing::StartsWith("127.0.0.1:"));
  EXPECT_NE(address, "127.0.0.1:0") << "the bound port, not the one asked for";

  // Twice mid-run: the rows counter grew in between, and both texts pass promtool.
  double first = 0;
  ASSERT_TRUE(Eventually([&] { return (first = SampleValue(Scrape(address), kRows)) > 0; }))
      << "no rows counted";
  std::string second_text;
  ASSERT_TRUE(Eventually([&] {
    second_text = Scrape(address);
    return SampleValue(second_text, kRows) > first;
  })) << "the rows counter did not grow from "
      << first;
  ASSERT_EQ(run.StdoutSoFar().find("\"event\":\"job_finished\""), std::string::npos)
      << "the job ended before the second scrape; pace it slower";
  ExpectPromtoolAccepts(second_text);
  EXPECT_GT(SampleValue(second_text, "pgbackfill_batches_total{job=\"metered\"}"), 0);
  EXPECT_GT(SampleValue(second_text, "pgbackfill_batch_duration_seconds_count{job=\"metered\"}"),
            0);
  EXPECT_GT(SampleValue(second_text, "pgbackfill_ranges{job=\"metered\"}"), 0);
  EXPECT_THAT(second_text, HasSubstr("pgbackfill_phase{job=\"metered\",phase=\"backfill\"} 1"));

  // Other paths are not found; the endpoint keeps serving after them.
  std::optional<HttpAnswer> other = HttpRequest(address, "GET", "/");
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->status, 404);
  std::optional<HttpAnswer> post = HttpRequest(address, "POST", "/metrics");
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 405);
  // A request over the header bound gets no metrics.
  std::optional<HttpAnswer> huge = HttpRequest(
      address, "GET", "/metrics", absl::StrCat("X-Padding: ", std::string(16 * 1024, 'x'), "\r\n"));
  EXPECT_TRUE(!huge.has_value() || huge->status != 200);

  // After the end (the linger keeps serving): the counters equal the job's own report.
  ASSERT_OK(run.WaitForOutput("\"event\":\"job_finished\"", absl::Seconds(60)));
  std::optional<events::JobFinished> finished;
  for (const events::JobFinished& event :
       testing::EventsOf<events::JobFinished>(testing::ReadEvents(run.StdoutSoFar()))) {
    finished = event;
  }
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->outcome, "done");
  EXPECT_EQ(finished->rows, 6000);
  const std::string last = Scrape(address);
  EXPECT_EQ(SampleValue(last, kRows), static_cast<double>(finished->rows));
  EXPECT_EQ(SampleValue(last, "pgbackfill_batches_total{job=\"metered\"}"),
            static_cast<double>(finished->batches));
  EXPECT_EQ(SampleValue(last, "pgbackfill_job_outcome{job=\"metered\",outcome=\"done\"}"), 1);
  ExpectPromtoolAccepts(last);
  EXPECT_THAT(last, ::testing::Not(HasSubstr("password")));
  // Every family a run writes is in the README's list.
  const std::string readme = ReadSource("README.md");
  const std::regex family("# TYPE (pgbackfill_[a-z_]+) ");
  for (auto it = std::sregex_iterator(last.begin(), last.end(), family);
       it != std::sregex_iterator(); ++it) {
    EXPECT_THAT(readme, HasSubstr(absl::StrCat("`", (*it)[1].str(), "`")));
  }
  ASSERT_OK(run.Signal(SIGTERM));  // ends the linger
  (void)run.Wait();
  ExpectEveryRowOnce("metered", 6000);
}

// The phase commands take the flag too: `backfill` alone, scraped after its end (the linger).
TEST_F(MetricsTest, ThePhaseCommandBackfillServesTheSameMetrics) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE phased (id int PRIMARY KEY, n int NOT NULL DEFAULT 0);"
      "INSERT INTO phased (id) SELECT g FROM generate_series(1, 2000) g; ANALYZE phased;"));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: phased\ntable: phased\nset:\n  n: n + 1\n"
      "throttle: { application: off }\nbatch: { rows: 100, min_rows: 100, max_rows: 100 }\n");
  std::vector<std::string> args = RunArgs(plan);
  args.front() = "backfill";
  for (const char* arg : {"--metrics-addr", "127.0.0.1:0", "--metrics-linger", "20s"}) {
    args.emplace_back(arg);
  }
  ASSERT_OK_AND_ASSIGN(Process backfill, SpawnPgbackfill(args));
  ASSERT_OK(backfill.WaitForOutput("\"event\":\"job_finished\"", absl::Seconds(60)))
      << backfill.StderrSoFar();
  const std::string address = AddressOf(backfill);
  ASSERT_FALSE(address.empty()) << backfill.StderrSoFar();
  const std::string text = Scrape(address);
  EXPECT_EQ(SampleValue(text, "pgbackfill_rows_total{job=\"phased\"}"), 2000);
  EXPECT_EQ(SampleValue(text, "pgbackfill_job_outcome{job=\"phased\",outcome=\"done\"}"), 1);
  ExpectPromtoolAccepts(text);
  ASSERT_OK(backfill.Signal(SIGTERM));
  (void)backfill.Wait();
}

// Without --json too: a run that cannot reach its database ends with a failed outcome, which
// the alert rules look for.
TEST_F(MetricsTest, ARunThatCannotStartShowsAFailedOutcome) {
  const std::string plan =
      testing::WriteTestFile("version: 1\nname: unreachable\ntable: t\nset:\n  n: 1\n");
  ASSERT_OK_AND_ASSIGN(
      Process run, SpawnPgbackfill({"run", plan, "--dsn", "host=127.0.0.1 port=1 connect_timeout=2",
                                    "--metrics-addr", "127.0.0.1:0", "--metrics-linger", "20s"}));
  ASSERT_OK(run.WaitForOutput("/metrics\n", absl::Seconds(30))) << run.StderrSoFar();
  const std::string address = AddressOf(run);
  std::string text;
  EXPECT_TRUE(Eventually([&] {
    text = Scrape(address);
    return SampleValue(text, "pgbackfill_job_outcome{job=\"unreachable\",outcome=\"failed\"}") == 1;
  })) << text;
  ASSERT_OK(run.Signal(SIGTERM));
  (void)run.Wait();
}

TEST_F(MetricsTest, AnAddressInUseIsAConfigurationErrorBeforeAnythingRuns) {
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string address = absl::StrCat("127.0.0.1:", taken.local_endpoint().port());
  const std::string plan =
      testing::WriteTestFile("version: 1\nname: unmetered\ntable: nowhere\nset:\n  n: 1\n");
  std::vector<std::string> args = RunArgs(plan);
  args.emplace_back("--metrics-addr");
  args.push_back(address);
  const CommandResult result = RunPgbackfill(args);
  EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
  EXPECT_THAT(result.err, HasSubstr(absl::StrCat("--metrics-addr ", address)));
  EXPECT_THAT(result.err, HasSubstr("in use"));
  EXPECT_THAT(result.out, ::testing::Not(HasSubstr("job_started")));

  const CommandResult malformed = RunPgbackfill({"run", plan, "--metrics-addr", "localhost"});
  EXPECT_EQ(malformed.exit_code, 2) << malformed.err;
  EXPECT_THAT(malformed.err, HasSubstr("HOST:PORT"));
}

TEST_F(MetricsTest, TheExampleAlertRulesPassPromtoolAndFireOnTheSeriesOfARun) {
  const CommandResult checked = RunCommand(
      {"promtool", "check", "rules", testing::SourceDir() + "/examples/prometheus-alerts.yml"});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  const CommandResult tested =
      RunCommand({"promtool", "test", "rules",
                  testing::SourceDir() + "/tests/data/prometheus-alerts-test.yml"});
  EXPECT_EQ(tested.exit_code, 0) << tested.out << tested.err;
}

// The dashboard and the rules use only metrics the README lists (a run's families are checked
// against the same list above).
TEST_F(MetricsTest, TheExamplesUseOnlyDocumentedMetrics) {
  const std::string readme = ReadSource("README.md");
  const std::regex metric("pgbackfill_[a-z_]+");
  for (const char* example :
       {"examples/grafana-dashboard.json", "examples/prometheus-alerts.yml"}) {
    const std::string text = ReadSource(example);
    ASSERT_FALSE(text.empty()) << example;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), metric);
         it != std::sregex_iterator(); ++it) {
      std::string name = it->str();
      for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        if (absl::EndsWith(name, suffix) && name.find("_duration_") != std::string::npos) {
          name.resize(name.size() - std::string_view(suffix).size());
        }
      }
      EXPECT_THAT(readme, HasSubstr("`" + name + "`")) << example << " uses " << name;
    }
  }
}

// Every query of the dashboard is PromQL that Prometheus parses: promtool checks them as
// recording rules.
TEST_F(MetricsTest, TheDashboardsQueriesParse) {
  const nlohmann::json dashboard =
      nlohmann::json::parse(ReadSource("examples/grafana-dashboard.json"), nullptr, false);
  ASSERT_TRUE(dashboard.is_object()) << "the dashboard is not JSON";
  std::string rules = "groups:\n  - name: dashboard\n    rules:\n";
  int queries = 0;
  for (const nlohmann::json& panel : dashboard["panels"]) {
    for (const nlohmann::json& target : panel["targets"]) {
      // JSON strings are YAML flow scalars.
      absl::StrAppend(&rules, "      - record: dashboard_query_", ++queries,
                      "\n        expr: ", target["expr"].dump(), "\n");
    }
  }
  EXPECT_GE(queries, 10);
  const std::string path = testing::WriteTestFile(rules, ".rules.yml");
  const CommandResult checked = RunCommand({"promtool", "check", "rules", path});
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err << rules;
}

}  // namespace
}  // namespace pgbackfill
