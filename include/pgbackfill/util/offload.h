// Blocking work on a thread of its own, awaited by a coroutine without blocking the io_context's
// thread (the runner's one thread also runs the throttle, the ticker and the other workers).
#pragma once

#include <boost/asio/post.hpp>
#include <exception>
#include <optional>
#include <thread>
#include <utility>

#include "pgbackfill/util/asio.h"

namespace pgbackfill {

// Runs `work()` on a new thread and resumes the calling coroutine, on its own executor, with the
// result (an exception `work` throws is thrown here). The thread touches nothing of the caller's
// but what `work` captures; the caller must not use those objects until this returns. The
// io_context must keep running until then (a pending wait keeps it from running out of work).
template <typename Work>
asio::awaitable<decltype(std::declval<Work&>()())> OnOwnThread(Work work) {
  using Result = decltype(std::declval<Work&>()());
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer finished(executor, asio::steady_timer::time_point::max());
  std::optional<Result> result;
  std::exception_ptr thrown;
  // The timer is only touched on the coroutine's executor: the thread posts its wake-up there.
  // Moving the expiry to the past (not only cancelling) wakes the wait also if it had not started.
  std::thread thread([&] {
    try {
      result.emplace(work());
    } catch (...) {
      thrown = std::current_exception();
    }
    asio::post(executor,
               [&finished] { finished.expires_at(asio::steady_timer::time_point::min()); });
  });
  boost::system::error_code ignored;
  co_await finished.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  thread.join();
  if (thrown) std::rethrow_exception(thrown);
  co_return std::move(*result);
}

}  // namespace pgbackfill
