// A TCP proxy for tests and benchmarks, on its own thread: counts protocol turns (how often the
// client starts sending after the server spoke, i.e. round trips), can add a one-way delay to
// every byte (the kernel here has no netem), and can cut every connection at once.
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

#include "pgbackfill/util/asio.h"

namespace pgbackfill::testing {

class TcpProxy {
 public:
  struct Options {
    std::string upstream_host = "127.0.0.1";
    uint16_t upstream_port = 5432;
    // Added to each direction: a chunk read at t is written on at t + delay.
    std::chrono::microseconds one_way_delay{0};
  };

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

}  // namespace pgbackfill::testing
