// The /metrics endpoint: a small HTTP/1.1 server (Boost.Beast) on a thread and io_context of its
// own, so a slow scrape never delays a batch and the engine's single-threaded reactor stays
// untouched. GET /metrics answers 200 with `render()` as the text format (exposition.h); any
// other path 404, another method 405. Requests are bounded (8 KiB of headers, no body), a
// connection idle for 10 s is closed, and at most 16 are open at once.
//
// Lifetime: serving starts in Start and stops in the destructor, which joins the thread; `render`
// is called on that thread and must be thread-safe (MetricsSink::Render is).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pgbackfill::metrics {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  // `address` is HOST:PORT ([V6]:PORT for an IPv6 literal); port 0 picks a free port.
  // InvalidArgument for an address that does not parse or resolve, FailedPrecondition when it
  // cannot be bound (in use, not an address of this host).
  // `idle_timeout`: how long a connection may wait for its next request (or a request for its
  // bytes) before it is closed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      std::string_view address, Render render, absl::Duration idle_timeout = absl::Seconds(10));
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address, HOST:PORT with the real port: what --metrics-addr ...:0 got.
  const std::string& address() const;

 private:
  struct Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pgbackfill::metrics
