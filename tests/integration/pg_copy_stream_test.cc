// pg::StreamCopy against a real server: bytes passed through unchanged in both formats, with a
// queue small enough that the reader must wait for the writer (backpressure), and each side's
// failure reported as that side's, with both sessions usable afterwards.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/pg/copy_stream.h"
#include "pgbackfill/pg/error.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::HasSubstr;
using testing::TestDatabase;

constexpr char kSource[] =
    "CREATE TABLE src (id int PRIMARY KEY, payload text, amount numeric);"
    "INSERT INTO src SELECT g, repeat(md5(g::text), 4), g / 3.0 FROM generate_series(1, 20000) g;";
constexpr char kTarget[] = "CREATE TABLE dst (id int PRIMARY KEY, payload text, amount numeric);";

class CopyStreamTest : public ::testing::Test {
 protected:
  CopyStreamTest() : source_("source"), target_("target") {}
  void SetUp() override {
    ASSERT_OK(source_.ExecScript(kSource));
    ASSERT_OK(target_.ExecScript(kTarget));
  }
  static std::string Value(TestDatabase& db, const std::string& sql) {
    auto value = db.QueryValue(sql);
    EXPECT_OK(value);
    return value.ok() ? *value : "";
  }
  std::string Sum(TestDatabase& db, const char* table) {
    auto value = db.QueryValue(
        absl::StrCat("SELECT count(*) || '/' || sum(hashtext(t::text)) FROM ", table, " AS t"));
    EXPECT_OK(value);
    return value.ok() ? *value : "";
  }

  TestDatabase source_;
  TestDatabase target_;
};

TEST_F(CopyStreamTest, PassesEveryByteThroughASmallQueue) {
  for (const char* format : {"binary", "text"}) {
    SCOPED_TRACE(format);
    ASSERT_OK(target_.ExecScript("TRUNCATE dst"));
    pg::CopyStreamOptions options;
    options.chunk_bytes = 4096;  // about 30 rows a chunk, two chunks in flight: the reader waits
    options.queue_chunks = 2;
    const pg::CopyStreamResult result = pg::StreamCopy(
        source_.conn().raw(),
        absl::StrCat("COPY (SELECT * FROM src ORDER BY id) TO STDOUT (FORMAT ", format, ")"),
        target_.conn().raw(), absl::StrCat("COPY dst FROM STDIN (FORMAT ", format, ")"), options);
    ASSERT_OK(result.status);
    EXPECT_EQ(result.rows_read, 20000);
    EXPECT_EQ(result.rows_written, 20000);
    EXPECT_GT(result.bytes, 20000 * 128);
    EXPECT_LE(result.peak_chunks_held, options.queue_chunks + 1);
    EXPECT_EQ(Sum(target_, "dst"), Sum(source_, "src"));
  }
}

// A target much slower than its source (a trigger sleeps every 200 rows): the reader waits for
// free slots instead of gathering the source's 3 MB in memory, and every row still arrives.
TEST_F(CopyStreamTest, ASlowTargetHoldsTheSourceBack) {
  ASSERT_OK(target_.ExecScript(
      "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
      "  IF NEW.id % 200 = 0 THEN PERFORM pg_sleep(0.01); END IF; RETURN NEW; END $$;"
      "CREATE TRIGGER slow BEFORE INSERT ON dst FOR EACH ROW EXECUTE FUNCTION slow();"));
  pg::CopyStreamOptions options;
  options.chunk_bytes = 4096;
  options.queue_chunks = 2;
  const pg::CopyStreamResult result =
      pg::StreamCopy(source_.conn().raw(), "COPY (SELECT * FROM src ORDER BY id) TO STDOUT",
                     target_.conn().raw(), "COPY dst FROM STDIN", options);
  ASSERT_OK(result.status);
  EXPECT_EQ(result.rows_written, 20000);
  EXPECT_GT(result.bytes / static_cast<int64_t>(options.chunk_bytes), 500) << "many chunks";
  EXPECT_LE(result.peak_chunks_held, options.queue_chunks + 1);
  EXPECT_GT(result.reader_waits, 0);
  EXPECT_EQ(Sum(target_, "dst"), Sum(source_, "src"));
}

// The target rejects a row: its error is the stream's, reported as the target's.
TEST_F(CopyStreamTest, ATargetFailureIsReportedAsTheTargets) {
  ASSERT_OK(target_.ExecScript("INSERT INTO dst VALUES (15000, 'there first', 0)"));
  ASSERT_OK(source_.Exec("BEGIN"));
  ASSERT_OK(target_.Exec("BEGIN"));
  const pg::CopyStreamResult result = pg::StreamCopy(
      source_.conn().raw(), "COPY (SELECT * FROM src ORDER BY id) TO STDOUT (FORMAT binary)",
      target_.conn().raw(), "COPY dst FROM STDIN (FORMAT binary)");
  EXPECT_EQ(result.failed, pg::CopyStreamResult::Side::kTarget);
  EXPECT_EQ(pg::SqlStateOf(result.status), "23505") << result.status;
  EXPECT_THAT(result.status.message(), HasSubstr("15000"));
  // The target is idle in an aborted transaction, the source in its own: both usable after
  // ROLLBACK.
  ASSERT_OK(source_.Exec("ROLLBACK"));
  ASSERT_OK(target_.Exec("ROLLBACK"));
  EXPECT_EQ(Value(target_, "SELECT count(*) FROM dst"), "1");
  EXPECT_EQ(Value(source_, "SELECT count(*) FROM src"), "20000");
}

TEST_F(CopyStreamTest, ASourceFailureEndsTheTargetsCopy) {
  ASSERT_OK(target_.Exec("BEGIN"));
  // Fails at row 12000, after a good part of the stream went out.
  const pg::CopyStreamResult result = pg::StreamCopy(
      source_.conn().raw(),
      "COPY (SELECT id, payload, 1 / (id - 12000)::numeric FROM src ORDER BY id) TO STDOUT "
      "(FORMAT binary)",
      target_.conn().raw(), "COPY dst FROM STDIN (FORMAT binary)");
  EXPECT_EQ(result.failed, pg::CopyStreamResult::Side::kSource);
  EXPECT_EQ(pg::SqlStateOf(result.status), "22012") << result.status;
  ASSERT_OK(target_.Exec("ROLLBACK"));
  EXPECT_EQ(Value(target_, "SELECT count(*) FROM dst"), "0");
  EXPECT_EQ(Value(source_, "SELECT 1"), "1");
}

TEST_F(CopyStreamTest, ATargetThatCannotStartLeavesTheSourceUntouched) {
  const pg::CopyStreamResult result =
      pg::StreamCopy(source_.conn().raw(), "COPY src TO STDOUT", target_.conn().raw(),
                     "COPY no_such_table FROM STDIN");
  EXPECT_EQ(result.failed, pg::CopyStreamResult::Side::kTarget);
  EXPECT_EQ(pg::SqlStateOf(result.status), "42P01") << result.status;
  EXPECT_EQ(result.rows_read, 0);
  EXPECT_EQ(Value(source_, "SELECT 1"), "1");
  EXPECT_EQ(Value(target_, "SELECT 1"), "1");
}

}  // namespace
}  // namespace pgbackfill
