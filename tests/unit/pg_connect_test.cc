// Connecting to a port nobody listens on: no server needed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/error.h"
#include "support/run_async.h"

namespace pgbackfill::pg {
namespace {

using ::testing::HasSubstr;
using testing::RunAsync;

TEST(ConnectTest, UnreachableServerIsReconnectClass) {
  auto conn = Connection::Connect("host=127.0.0.1 port=1 connect_timeout=2");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(Classify(conn.status()), ErrorClass::kReconnect);
  EXPECT_THAT(conn.status().message(), HasSubstr("could not connect"));

  auto async = RunAsync(AsyncConnection::Connect("host=127.0.0.1 port=1 connect_timeout=2"));
  ASSERT_FALSE(async.ok());
  EXPECT_EQ(Classify(async.status()), ErrorClass::kReconnect);
}

}  // namespace
}  // namespace pgbackfill::pg
