// The /metrics server on loopback: what it answers, keep-alive, and the bounds (header size, idle
// connections). No database.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/metrics/server.h"
#include "pgbackfill/util/asio.h"  // first: <utility> before any Asio header
#include "support/status_testing.h"

namespace pgbackfill::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using tcp = asio::ip::tcp;

// Sends `request` on a new connection and reads until the server closes it.
std::string Exchange(const std::string& address, const std::string& request) {
  asio::io_context io;
  tcp::socket socket(io);
  tcp::resolver resolver(io);
  const size_t colon = address.rfind(':');
  asio::connect(socket, resolver.resolve(address.substr(0, colon), address.substr(colon + 1)));
  boost::system::error_code ec;
  asio::write(socket, asio::buffer(request), ec);  // a server that stops reading may reset it
  std::string answer;
  asio::read(socket, asio::dynamic_buffer(answer), ec);
  return answer;
}

std::string Get(const std::string& path, const std::string& method = "GET") {
  return absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto started = MetricsServer::Start(
        "127.0.0.1:0", [] { return std::string("m_total 1\n"); }, absl::Milliseconds(300));
    ASSERT_OK(started);
    server_ = std::move(*started);
  }
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, PortZeroBindsAFreePortAndSaysWhich) {
  EXPECT_THAT(server_->address(), StartsWith("127.0.0.1:"));
  EXPECT_NE(server_->address(), "127.0.0.1:0");
}

TEST_F(MetricsServerTest, GetMetricsAnswersTheTextFormat) {
  const std::string answer = Exchange(server_->address(), Get("/metrics"));
  EXPECT_THAT(answer, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(answer, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_THAT(answer, HasSubstr("\r\n\r\nm_total 1\n"));
  EXPECT_THAT(Exchange(server_->address(), Get("/metrics?name[]=x")), StartsWith("HTTP/1.1 200"));
}

TEST_F(MetricsServerTest, OtherPathsAreNotFoundAndOtherMethodsNotAllowed) {
  EXPECT_THAT(Exchange(server_->address(), Get("/")), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Exchange(server_->address(), Get("/metrics/x")), StartsWith("HTTP/1.1 404"));
  const std::string post = Exchange(server_->address(), Get("/metrics", "POST"));
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(post, HasSubstr("Allow: GET, HEAD"));
  const std::string head = Exchange(server_->address(), Get("/metrics", "HEAD"));
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(head, ::testing::EndsWith("\r\n\r\n")) << "HEAD has no body";
}

TEST_F(MetricsServerTest, AKeptAliveConnectionAnswersEachRequest) {
  const std::string first = "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
  const std::string answer = Exchange(server_->address(), first + Get("/metrics"));
  size_t answers = 0;
  for (size_t at = answer.find("HTTP/1.1 200"); at != std::string::npos;
       at = answer.find("HTTP/1.1 200", at + 1)) {
    ++answers;
  }
  EXPECT_EQ(answers, 2u) << answer;
}

TEST_F(MetricsServerTest, OversizedHeadersGetNoMetrics) {
  const std::string request =
      absl::StrCat("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ", std::string(16 * 1024, 'x'),
                   "\r\nConnection: close\r\n\r\n");
  EXPECT_THAT(Exchange(server_->address(), request), ::testing::Not(HasSubstr("m_total")));
}

TEST_F(MetricsServerTest, AnIdleConnectionIsClosed) {
  const absl::Time start = absl::Now();
  // Half a request, then nothing: the server gives up after its idle timeout (300 ms here).
  EXPECT_EQ(Exchange(server_->address(), "GET /metrics HTTP/1.1\r\n"), "");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(MetricsServerStartTest, AnAddressInUseOrMalformedIsRefused) {
  auto first = MetricsServer::Start("127.0.0.1:0", [] { return std::string(); });
  ASSERT_OK(first);
  auto second = MetricsServer::Start((*first)->address(), [] { return std::string(); });
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
  EXPECT_EQ(MetricsServer::Start("127.0.0.1", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsServer::Start("127.0.0.1:99999", [] { return std::string(); }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pgbackfill::metrics
