// The one file that includes Boost.Beast (header-only and heavy to compile).
#include "pgbackfill/metrics/server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pgbackfill/metrics/exposition.h"
#include "pgbackfill/util/asio.h"  // first: <utility> before any Asio header
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::metrics {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint32_t kMaxHeaderBytes = 8 * 1024;
constexpr int kMaxConnections = 16;

struct Endpoint {
  std::string host;
  uint16_t port = 0;
};

absl::StatusOr<Endpoint> ParseAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-addr ", ToAbsl(address),
                                                   ": expected HOST:PORT, e.g. 127.0.0.1:9187"));
  }
  std::string_view host = address.substr(0, colon);
  const std::string_view port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  Endpoint endpoint{.host = std::string(host), .port = 0};
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), endpoint.port);
  if (port.empty() || error != std::errc() || end != port.data() + port.size()) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-addr ", ToAbsl(address),
                                                   ": the port must be a number from 0 to 65535"));
  }
  return endpoint;
}

http::response<http::string_body> Answer(const http::request<http::empty_body>& request,
                                         const MetricsServer::Render& render) {
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  http::response<http::string_body> response;
  response.version(request.version());
  response.keep_alive(request.keep_alive());
  if (path != "/metrics") {
    response.result(http::status::not_found);
    response.set(http::field::content_type, "text/plain; charset=utf-8");
    response.body() = "not found; metrics are at /metrics\n";
  } else if (request.method() != http::verb::get && request.method() != http::verb::head) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
  } else {
    response.result(http::status::ok);
    response.set(http::field::content_type, kContentType);
    response.body() = render();
  }
  response.prepare_payload();
  if (request.method() == http::verb::head) response.body().clear();
  return response;
}

}  // namespace

struct MetricsServer::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  Render render;
  std::chrono::nanoseconds idle_timeout{std::chrono::seconds(10)};
  std::string address;
  int connections = 0;  // on the server's thread only
  std::thread thread;

  asio::awaitable<void> Accept();
  asio::awaitable<void> Serve(tcp::socket socket);
};

asio::awaitable<void> MetricsServer::Impl::Accept() {
  asio::steady_timer pause(io);
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of file descriptors and the like: try again shortly rather than spin.
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (connections >= kMaxConnections) continue;  // the socket closes as it goes out of scope
    asio::co_spawn(io, Serve(std::move(socket)), asio::detached);
  }
}

asio::awaitable<void> MetricsServer::Impl::Serve(tcp::socket socket) {
  ++connections;
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(kMaxHeaderBytes);
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(0);  // a scrape sends none
    stream.expires_after(idle_timeout);
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;  // closed, idle too long, or too large or malformed: drop the connection
    http::response<http::string_body> response = Answer(parser.get(), render);
    const bool keep_alive = response.keep_alive();
    stream.expires_after(idle_timeout);
    co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  --connections;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(std::string_view address,
                                                                    Render render,
                                                                    absl::Duration idle_timeout) {
  ASSIGN_OR_RETURN(const Endpoint endpoint, ParseAddress(address));
  auto impl = std::make_unique<Impl>();
  impl->render = std::move(render);
  impl->idle_timeout = absl::ToChronoNanoseconds(idle_timeout);
  boost::system::error_code ec;
  tcp::resolver resolver(impl->io);
  const tcp::resolver::results_type resolved =
      resolver.resolve(endpoint.host, std::to_string(endpoint.port),
                       tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || resolved.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--metrics-addr ", ToAbsl(address),
                                                   ": cannot resolve ", endpoint.host, ": ",
                                                   ec.message()));
  }
  const tcp::endpoint local = resolved.begin()->endpoint();
  tcp::acceptor& acceptor = impl->acceptor;
  // Each step runs only while the ones before it succeeded; the first error is reported.
  acceptor.open(local.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(local, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  tcp::endpoint bound;
  if (!ec) bound = acceptor.local_endpoint(ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("--metrics-addr ", ToAbsl(address), ": cannot listen on ",
                     local.address().to_string(), ":", local.port(), ": ", ec.message()));
  }
  const std::string host = bound.address().to_string();
  impl->address = bound.address().is_v6() ? absl::StrCat("[", host, "]:", bound.port())
                                          : absl::StrCat(host, ":", bound.port());
  Impl& running = *impl;
  asio::co_spawn(running.io, running.Accept(), asio::detached);
  running.thread = std::thread([&running] { running.io.run(); });
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsServer::~MetricsServer() {
  impl_->io.stop();
  impl_->thread.join();
}

const std::string& MetricsServer::address() const { return impl_->address; }

}  // namespace pgbackfill::metrics
