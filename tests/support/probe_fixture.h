// The fixture of the tests that drive a throttle::Prober directly: a database of its own with a
// small `items` table, a probe configuration on it, and io_ driven by the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/use_future.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "pgbackfill/throttle/probes.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::testing {

class ProbeFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(db_.ExecScript(
        "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0, pad text);"
        "INSERT INTO items (id) SELECT g FROM generate_series(1, 1000) g;"));
  }

  throttle::ProbeConfig Config() const {
    throttle::ProbeConfig config;
    config.dsn = db_.dsn();
    config.table = {"public", "items"};
    config.key_columns = {"id"};
    config.interval = absl::Milliseconds(200);
    return config;
  }

  // Runs one coroutine to completion on io_, driven by this thread. Only until it completes, as
  // the runner's io_context would: a probe the round gave up on stays in the background.
  template <typename T>
  T Run(asio::awaitable<T> task) {
    std::future<T> result = asio::co_spawn(io_, std::move(task), asio::use_future);
    io_.restart();
    while (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      if (io_.run_one() == 0) throw std::runtime_error("io_context ran out of work");
    }
    return result.get();
  }

  // Runs io_ for `d`, as the runner's io thread would between rounds.
  void Idle(absl::Duration d) {
    io_.restart();
    io_.run_for(absl::ToChronoNanoseconds(d));
  }

  std::unique_ptr<throttle::Prober> Create(throttle::ProbeConfig config) {
    absl::StatusOr<std::unique_ptr<throttle::Prober>> prober =
        Run(throttle::Prober::Create(std::move(config)));
    EXPECT_OK(prober);
    return prober.ok() ? *std::move(prober) : nullptr;
  }

  throttle::Samples Sample(throttle::Prober& prober, std::vector<int> our_pids = {}) {
    return Run(prober.Sample(absl::Now(), std::move(our_pids)));
  }

  // A Prober lives on io_, so io_ is declared first and destroyed last.
  asio::io_context io_;
  TestDatabase db_;
};

}  // namespace pgbackfill::testing
