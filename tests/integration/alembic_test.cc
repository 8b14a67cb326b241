// pgbackfill as a phase step of a real Alembic migration: examples/alembic (Debian's
// python3-alembic and python3-psycopg2), driven as a user runs it, against a fresh database.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::HasSubstr;
using testing::CommandResult;
using testing::EnvVars;
using testing::Process;
using testing::TestDatabase;

constexpr int kRows = 5000;

// Alembic comes from Debian's python3-alembic: /usr/bin/python3, not whatever `python3` is first
// on PATH (a pyenv or venv interpreter would not have it).
constexpr char kPython[] = "/usr/bin/python3";

std::string AlembicIni() { return testing::SourceDir() + "/examples/alembic/alembic.ini"; }

// The parts of a libpq key=value DSN (values unquoted; '...' quoting understood).
std::map<std::string, std::string> ParseKeyValueDsn(const std::string& dsn) {
  std::map<std::string, std::string> parts;
  size_t i = 0;
  while (i < dsn.size()) {
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
    const size_t eq = dsn.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = dsn.substr(i, eq - i);
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
    i = eq + 1;
    while (i < dsn.size() && std::isspace(static_cast<unsigned char>(dsn[i]))) ++i;
    std::string value;
    if (i < dsn.size() && dsn[i] == '\'') {
      for (++i; i < dsn.size() && dsn[i] != '\''; ++i) {
        if (dsn[i] == '\\' && i + 1 < dsn.size()) ++i;
        value += dsn[i];
      }
      ++i;  // closing quote
    } else {
      while (i < dsn.size() && !std::isspace(static_cast<unsigned char>(dsn[i]))) value += dsn[i++];
    }
    parts[key] = value;
  }
  return parts;
}

std::string PercentEncode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The test database as a SQLAlchemy URL for psycopg2, from the cluster's DSN (the unix socket):
// postgresql+psycopg2:///DB?host=%2Ftmp%2F...&port=N&user=U. The percent signs also check that
// env.py escapes them for ConfigParser.
std::string SqlalchemyUrl(const TestDatabase& db) {
  std::string url = "postgresql+psycopg2:///" + PercentEncode(db.name());
  const char* separator = "?";
  for (const auto& [key, value] : ParseKeyValueDsn(testing::ClusterDsn())) {
    if (key == "dbname") continue;
    absl::StrAppend(&url, separator, PercentEncode(key), "=", PercentEncode(value));
    separator = "&";
  }
  return url;
}

class AlembicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(db_.ExecScript(absl::StrCat(
        "CREATE TABLE public.people (id bigint PRIMARY KEY, first text, last text);"
        "INSERT INTO public.people SELECT g, 'First' || g, 'Last' || (g % 97)"
        "  FROM generate_series(1, ",
        kRows, ") g;"
        "ANALYZE public.people;")));
  }

  EnvVars AlembicEnv() const {
    return {
        {"DATABASE_URL", SqlalchemyUrl(db_)},
        {"PGBACKFILL_BIN", testing::PgbackfillBinary()},
        // The DSN must come from the migration's own connection, not from the caller's shell.
        {"PGBACKFILL_DSN", ""},
        // No __pycache__ in the source tree (it may be read-only in CI).
        {"PYTHONDONTWRITEBYTECODE", "1"},
    };
  }

  std::vector<std::string> AlembicArgv(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {kPython, "-m", "alembic", "-c", AlembicIni()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  CommandResult Alembic(const std::vector<std::string>& args) {
    return testing::RunCommand(AlembicArgv(args), AlembicEnv());
  }

  std::string Query(const std::string& sql) {
    auto value = db_.QueryValue(sql);
    EXPECT_OK(value) << sql;
    return value.ok() ? *value : "<error>";
  }

  // The state after a successful upgrade: every row filled, NOT NULL, nothing of pgbackfill's
  // left on the table, the revision recorded.
  void ExpectUpgraded(int rows) {
    EXPECT_EQ(Query("SELECT count(*) FROM public.people"), absl::StrCat(rows));
    EXPECT_EQ(Query("SELECT count(*) FROM public.people"
                    " WHERE full_name IS DISTINCT FROM first || ' ' || last"),
              "0");
    EXPECT_EQ(Query("SELECT full_name FROM public.people WHERE id = 42"), "First42 Last42");
    EXPECT_EQ(Query("SELECT attnotnull FROM pg_catalog.pg_attribute"
                    " WHERE attrelid = 'public.people'::regclass AND attname = 'full_name'"),
              "t");
    // The contract dropped the dual-write trigger and the NOT NULL helper constraint.
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_trigger"
                    " WHERE tgrelid = 'public.people'::regclass AND NOT tgisinternal"),
              "0");
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_constraint"
                    " WHERE conrelid = 'public.people'::regclass AND contype <> 'p'"),
              "0");
    EXPECT_EQ(Query("SELECT string_agg(version_num, ',') FROM public.alembic_version"), "0001");
  }

  void ExpectDowngraded() {
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_attribute"
                    " WHERE attrelid = 'public.people'::regclass AND attname = 'full_name'"
                    " AND NOT attisdropped"),
              "0");
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_trigger"
                    " WHERE tgrelid = 'public.people'::regclass"),
              "0");
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_proc p"
                    " JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = 'pgbackfill'"),
              "0");
    EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_constraint"
                    " WHERE conrelid = 'public.people'::regclass AND contype <> 'p'"),
              "0");
    EXPECT_EQ(Query("SELECT count(*) FROM public.alembic_version"), "0");
  }

  TestDatabase db_;
};

TEST_F(AlembicTest, UpgradeFillsAndContractsThenDowngradeLeavesNothing) {
  CommandResult up = Alembic({"upgrade", "head"});
  ASSERT_EQ(up.exit_code, 0) << up.out << up.err;
  // The migration logged pgbackfill's events as they came, ending with the contract's.
  EXPECT_THAT(up.err, HasSubstr("Running upgrade  -> 0001"));
  EXPECT_THAT(up.err, HasSubstr("job_finished"));
  ExpectUpgraded(kRows);

  CommandResult down = Alembic({"downgrade", "-1"});
  ASSERT_EQ(down.exit_code, 0) << down.out << down.err;
  EXPECT_THAT(down.err, HasSubstr("Running downgrade 0001 -> "));
  ExpectDowngraded();
  // The rows themselves are untouched.
  EXPECT_EQ(Query("SELECT count(*) FROM public.people WHERE first = 'First' || id"),
            absl::StrCat(kRows));

  // Upgrading again after a downgrade works: the rolled-back job starts over.
  CommandResult again = Alembic({"upgrade", "head"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  ExpectUpgraded(kRows);
}

TEST_F(AlembicTest, InterruptedUpgradeFailsAndResumesWhenRunAgain) {
  // As an earlier, interrupted attempt leaves it: the column committed (the migration's
  // autocommit block), the revision not recorded. The migration must skip the ADD COLUMN.
  ASSERT_OK(db_.ExecScript("ALTER TABLE public.people ADD COLUMN full_name text"));
  // A row lock the backfill cannot get: the batch over id 2500 hits lock_timeout and retries
  // (ROW SHARE does not block the trigger installation before it).
  ASSERT_OK(db_.ExecScript("BEGIN; SELECT 1 FROM public.people WHERE id = 2500 FOR UPDATE"));

  ASSERT_OK_AND_ASSIGN(Process alembic,
                       Process::Spawn(AlembicArgv({"upgrade", "head"}), AlembicEnv()));
  ASSERT_OK(alembic.WaitForOutput("retry:", absl::Seconds(120)))
      << alembic.StdoutSoFar() << alembic.StderrSoFar();
  // Ctrl-C on the migration: forwarded to pgbackfill, which stops with exit code 3.
  ASSERT_OK(alembic.Signal(SIGINT));
  CommandResult interrupted = alembic.Wait(absl::Minutes(2));
  EXPECT_NE(interrupted.exit_code, 0) << interrupted.err;
  EXPECT_THAT(interrupted.err, HasSubstr("exit code 3"));
  ASSERT_OK(db_.ExecScript("COMMIT"));
  EXPECT_EQ(Query("SELECT count(*) FROM public.alembic_version"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_catalog.pg_trigger"
                  " WHERE tgrelid = 'public.people'::regclass AND NOT tgisinternal"),
            "1");  // the dual-write trigger stays until the job is contracted or rolled back

  // Running the migration again resumes the job and finishes it.
  CommandResult resumed = Alembic({"upgrade", "head"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_THAT(resumed.err, HasSubstr("resumed=true"));
  ExpectUpgraded(kRows);
}

}  // namespace
}  // namespace pgbackfill
