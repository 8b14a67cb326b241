// Blocking work on a thread of its own, awaited by a coroutine without blocking the io_context's
// thread (the runner's one thread also runs the throttle, the ticker and the other workers).
#pragma once

#include <optional>
#include <thread>
#include <utility>

#include <boost/asio/post.hpp>

#include "pgbackfill/util/asio.h"

namespace pgbackfill {

// Runs `work()` on a new thread and resumes the calling coroutine, on its own executor, with the
// result. The thread touches nothing of the caller's but what `work` captures; the caller must not
// use those objects until this returns. The io_context must keep running until then (a pending
// wait keeps it from running out of work).
template <typename Work>
asio::awaitable<decltype(std::declval<Work&>()())> OnOwnThread(Work work) {
  using Result = decltype(std::declval<Work&>()());
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer finished(executor, asio::steady_timer::time_point::max());
  std::optional<Result> result;
  // The timer is only touched on the coroutine's executor: the thread posts its cancel there, and
  // the post cannot run before the wait below has started (the executor's one thread is running
  // this coroutine until it suspends there).
  std::thread thread([&] {
    result.emplace(work());
    asio::post(executor, [&finished] { finished.cancel(); });
  });
  boost::system::error_code ignored;
  co_await finished.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  thread.join();
  co_return std::move(*result);
}

}  // namespace pgbackfill
