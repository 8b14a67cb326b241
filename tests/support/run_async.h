// Running a coroutine of the engine to completion from a test's thread.
#pragma once

#include <future>
#include <utility>

#include <boost/asio/use_future.hpp>

#include "pgbackfill/util/asio.h"

namespace pgbackfill::testing {

// The io_context every AsyncConnection of a test lives on: a connection stays bound to the
// io_context it was made on, so all its calls must run there.
inline asio::io_context& TestIo() {
  static asio::io_context io;
  return io;
}

// Runs one coroutine to completion on TestIo(), driven by this thread.
template <typename T>
T RunAsync(asio::awaitable<T> task) {
  asio::io_context& io = TestIo();
  std::future<T> result = asio::co_spawn(io, std::move(task), asio::use_future);
  io.restart();
  io.run();
  return result.get();
}

}  // namespace pgbackfill::testing
