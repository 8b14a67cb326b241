// A TCP proxy for tests and benchmarks, on its own thread: counts protocol turns (how often the
// client starts sending after the server spoke, i.e. round trips), can add a one-way delay to
// every byte (the kernel here has no netem), and can cut every connection at once. Linked by the
// integration tests and wrapped by the `pgbackfill_delay_proxy` command (delay_proxy_main.cc).
//
// Thread-safety: all public methods may be called from any thread; the proxy's sockets live on
// its private io_context thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "pgbackfill/util/asio.h"

namespace pgbackfill::proxy {

class TcpProxy {
 public:
  struct Options {
    // An IP address (not a host name: resolve it first, as the command does).
    std::string upstream_host = "127.0.0.1";
    uint16_t upstream_port = 5432;
    // Port to listen on, on 127.0.0.1; 0 picks a free one (see port()).
    uint16_t listen_port = 0;
    // Added to each direction: a chunk read at t is written on at t + delay.
    std::chrono::microseconds one_way_delay{0};
  };

  // Listens at once, so port() is valid on return; throws boost::system::system_error when the
  // port cannot be bound or upstream_host is not an IP address.
  explicit TcpProxy(Options options);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  // Listening port on 127.0.0.1.
  uint16_t port() const { return port_; }

  // Round trips seen since the last ResetCounters(): the number of times data arrived from a
  // client whose previous traffic, on that connection, was from the server (or nothing yet).
  int64_t client_turns() const { return client_turns_.load(); }
  // Bytes forwarded client -> server since the last ResetCounters().
  int64_t client_bytes() const { return client_bytes_.load(); }
  void ResetCounters();

  // Closes every open connection (both sides), as a network failure would.
  void CutAll();
  int64_t connections_accepted() const { return accepted_.load(); }

 private:
  struct Session;
  asio::awaitable<void> Accept();

  Options options_;
  asio::ip::tcp::endpoint upstream_;  // options_' upstream, parsed once
  asio::io_context io_;
  std::unique_ptr<struct AcceptorHolder> acceptor_;
  uint16_t port_ = 0;
  std::atomic<int64_t> client_turns_{0};
  std::atomic<int64_t> client_bytes_{0};
  std::atomic<int64_t> accepted_{0};
  std::atomic<uint64_t> generation_{0};  // bumped by CutAll; sessions of older generations close
  std::vector<std::weak_ptr<Session>> sessions_;  // proxy thread only
  std::thread thread_;
};

}  // namespace pgbackfill::proxy
