// pgbackfill_delay_proxy: the TCP proxy of tcp_proxy.h as a command, for benchmarks (latency
// between client and server without netem) and reliability scripts (cutting connections).
//
//   pgbackfill_delay_proxy --to HOST:PORT [--delay-ms 1.0] [--listen-port 0]
//
// Scripts depend on this contract:
//   - once ready, stdout gets exactly one line, `listening 127.0.0.1:PORT`, flushed;
//   - SIGUSR1 cuts every open connection and keeps listening;
//   - SIGUSR2 prints the counters to stderr (also printed at exit);
//   - SIGINT / SIGTERM exit 0.
// Diagnostics go to stderr only, so stdout stays that one line.
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>

#include "proxy/tcp_proxy.h"

namespace pgbackfill::proxy {
namespace {

using boost::asio::ip::tcp;

struct Upstream {
  std::string address;  // an IP address
  uint16_t port = 0;
};

// "HOST:PORT" (or "[V6]:PORT") resolved once, preferring IPv4: the proxy itself listens on
// 127.0.0.1, and "localhost" often resolves to ::1 first where the server may not listen.
std::optional<Upstream> ResolveUpstream(const std::string& to, std::string& error) {
  const size_t colon = to.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == to.size()) {
    error = "--to must be HOST:PORT, got '" + to + "'";
    return std::nullopt;
  }
  std::string host = to.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = to.substr(colon + 1);
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  const tcp::resolver::results_type results =
      resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    error = "cannot resolve '" + to + "': " + (ec ? ec.message() : "no address");
    return std::nullopt;
  }
  tcp::endpoint chosen = results.begin()->endpoint();
  for (const auto& entry : results) {
    if (entry.endpoint().address().is_v4()) {
      chosen = entry.endpoint();
      break;
    }
  }
  return Upstream{chosen.address().to_string(), chosen.port()};
}

void PrintCounters(const TcpProxy& proxy, int64_t cuts) {
  std::cerr << "connections " << proxy.connections_accepted() << " cuts " << cuts
            << " client_turns " << proxy.client_turns() << " client_bytes " << proxy.client_bytes()
            << std::endl;
}

int Run(int argc, char** argv) {
  CLI::App app{"TCP proxy on 127.0.0.1 that delays each direction and cuts connections on SIGUSR1"};
  std::string to;
  double delay_ms = 1.0;
  int listen_port = 0;
  app.add_option("--to", to, "upstream HOST:PORT, e.g. 127.0.0.1:5432")->required();
  app.add_option("--delay-ms", delay_ms, "milliseconds added to each direction (fractional ok)")
      ->check(CLI::Range(0.0, 60000.0));
  app.add_option("--listen-port", listen_port, "port on 127.0.0.1; 0 picks a free one")
      ->check(CLI::Range(0, 65535));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::string error;
  const std::optional<Upstream> upstream = ResolveUpstream(to, error);
  if (!upstream.has_value()) {
    std::cerr << "pgbackfill_delay_proxy: " << error << std::endl;
    return 2;
  }

  // The signal handlers are installed before the proxy announces itself, so a script that signals
  // right after reading the `listening` line never meets the default action (termination).
  asio::io_context io;
  asio::signal_set stop_signals(io, SIGINT, SIGTERM);
  asio::signal_set control_signals(io, SIGUSR1, SIGUSR2);

  std::optional<TcpProxy> proxy;
  try {
    proxy.emplace(TcpProxy::Options{
        .upstream_host = upstream->address,
        .upstream_port = upstream->port,
        .listen_port = static_cast<uint16_t>(listen_port),
        .one_way_delay = std::chrono::microseconds(std::llround(delay_ms * 1000.0)),
    });
  } catch (const std::exception& e) {
    std::cerr << "pgbackfill_delay_proxy: cannot listen on 127.0.0.1:" << listen_port << ": "
              << e.what() << std::endl;
    return 1;
  }

  int64_t cuts = 0;
  stop_signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) io.stop();
  });
  // Re-arms itself after each signal; stops with io.stop().
  std::function<void(const boost::system::error_code&, int)> on_control =
      [&](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
        if (signal_number == SIGUSR1) {
          proxy->CutAll();  // blocks until the proxy thread closed them all
          ++cuts;
          std::cerr << "cut all connections (" << cuts << ")" << std::endl;
        } else {
          PrintCounters(*proxy, cuts);
        }
        control_signals.async_wait(on_control);
      };
  control_signals.async_wait(on_control);

  std::cout << "listening 127.0.0.1:" << proxy->port() << std::endl;  // endl flushes
  io.run();
  PrintCounters(*proxy, cuts);
  proxy.reset();  // stops and joins the proxy thread before exit
  return 0;
}

}  // namespace
}  // namespace pgbackfill::proxy

int main(int argc, char** argv) { return pgbackfill::proxy::Run(argc, argv); }
