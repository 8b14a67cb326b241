#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/parse.h"

namespace pgbackfill::plan {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

absl::StatusOr<Plan> Parse(std::string_view text) {
  return ParsePlan(text, "plan.yaml", FakeEnv({{"PGPASSWORD_X", "s3cret"}}));
}

// The error message of a plan that must not parse.
std::string ErrorOf(std::string_view text) {
  absl::StatusOr<Plan> plan = Parse(text);
  EXPECT_FALSE(plan.ok()) << "parsed unexpectedly:\n" << text;
  if (plan.ok()) return "";
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(plan.status().message());
}

constexpr std::string_view kUpdatePlan = R"(# Split full_name.
version: 1
name: users-split-name
dsn: postgresql://app:${PGPASSWORD_X}@db/prod
table: Public.Users
key: [id]
set:
  first_name: split_part(full_name, ' ', 1)
  '"Last Name"': |
    split_part(full_name, ' ', 2)
where: first_name IS NULL
dual_write: true
expand:
  - ALTER TABLE users ADD COLUMN first_name text
  - 'ALTER TABLE users ADD COLUMN "Last Name" text'
contract: "ALTER TABLE users DROP COLUMN full_name"
rollback: []
batch: { rows: 2000, target: 150ms, min_rows: 50, max_rows: 50000 }
workers: 8
throttle:
  interval: 500ms
  max_replica_lag: 2s
  max_replica_lag_bytes: 16MB
  replicas: ["host=replica1 password=${PGPASSWORD_X}", "host=replica2"]
  max_lock_waiters: 1
  lock_timeout: 100ms
  statement_timeout: 1m
  max_rows_per_second: 2500.5
  max_wal_bytes_per_second: 64MB
  max_canary_latency: 50ms
  canary: SELECT 1
  query: SELECT count(*) > 10 FROM pg_stat_activity
  hold_on_autovacuum: yes
verify: false
)";

TEST(ParsePlanTest, FullUpdatePlanRoundTrips) {
  absl::StatusOr<Plan> plan = Parse(kUpdatePlan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->file, "plan.yaml");
  EXPECT_EQ(plan->version, 1);
  EXPECT_EQ(plan->name, "users-split-name");
  EXPECT_EQ(plan->dsn, "postgresql://app:s3cret@db/prod");
  EXPECT_EQ(plan->table, (QualifiedName{"public", "users"}));
  EXPECT_THAT(plan->key, ElementsAre("id"));
  EXPECT_EQ(plan->mode, Mode::kUpdate);
  ASSERT_EQ(plan->set.size(), 2u);
  EXPECT_EQ(plan->set[0].column, "first_name");
  EXPECT_EQ(plan->set[0].expression, "split_part(full_name, ' ', 1)");
  EXPECT_EQ(plan->set[0].line, 8);
  EXPECT_EQ(plan->set[1].column, "Last Name");
  EXPECT_EQ(plan->set[1].expression, "split_part(full_name, ' ', 2)");  // block scalar trimmed
  EXPECT_EQ(plan->set[1].line, 9);
  EXPECT_EQ(plan->where, "first_name IS NULL");
  EXPECT_TRUE(plan->dual_write);
  EXPECT_FALSE(plan->into.has_value());
  EXPECT_THAT(plan->expand, ElementsAre("ALTER TABLE users ADD COLUMN first_name text",
                                        "ALTER TABLE users ADD COLUMN \"Last Name\" text"));
  EXPECT_THAT(plan->contract, ElementsAre("ALTER TABLE users DROP COLUMN full_name"));
  EXPECT_TRUE(plan->rollback.empty());
  EXPECT_EQ(plan->batch.rows, 2000);
  EXPECT_EQ(plan->batch.target, absl::Milliseconds(150));
  EXPECT_EQ(plan->batch.min_rows, 50);
  EXPECT_EQ(plan->batch.max_rows, 50000);
  EXPECT_EQ(plan->workers, 8);
  const Throttle& t = plan->throttle;
  EXPECT_EQ(t.interval, absl::Milliseconds(500));
  EXPECT_EQ(t.max_replica_lag, absl::Seconds(2));
  EXPECT_EQ(t.max_replica_lag_bytes, 16 << 20);
  EXPECT_THAT(t.replicas, ElementsAre("host=replica1 password=s3cret", "host=replica2"));
  EXPECT_EQ(t.max_lock_waiters, 1);
  EXPECT_EQ(t.lock_timeout, absl::Milliseconds(100));
  EXPECT_EQ(t.statement_timeout, absl::Minutes(1));
  EXPECT_DOUBLE_EQ(t.max_rows_per_second, 2500.5);
  EXPECT_EQ(t.max_wal_bytes_per_second, 64 << 20);
  EXPECT_EQ(t.max_canary_latency, absl::Milliseconds(50));
  EXPECT_EQ(t.canary, "SELECT 1");
  EXPECT_EQ(t.query, "SELECT count(*) > 10 FROM pg_stat_activity");
  EXPECT_TRUE(t.hold_on_autovacuum);
  EXPECT_FALSE(plan->verify);
  EXPECT_EQ(plan->text, kUpdatePlan);
}

TEST(ParsePlanTest, NotNullColumnsAndDdlSection) {
  absl::StatusOr<Plan> plan = Parse(R"(version: 1
name: j
table: t
set: {a: '1'}
not_null:
  - first_name
  - Last_Name
  - '"Mixed Case"'
ddl: { lock_timeout: 250ms, retry_for: 30m }
)");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->not_null, ElementsAre("first_name", "last_name", "Mixed Case"));
  EXPECT_EQ(plan->ddl.lock_timeout, absl::Milliseconds(250));
  EXPECT_EQ(plan->ddl.retry_for, absl::Minutes(30));
  EXPECT_EQ(plan->key_lines.at("not_null"), 5);
  EXPECT_EQ(plan->key_lines.at("not_null.last_name"), 7);  // catalog spelling
  EXPECT_EQ(plan->key_lines.at("not_null.Mixed Case"), 8);
  EXPECT_EQ(plan->key_lines.at("ddl.retry_for"), 9);

  absl::StatusOr<Plan> one =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\nnot_null: A\nddl: {retry_for: 0}\n");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(one->not_null, ElementsAre("a"));
  EXPECT_EQ(one->ddl.retry_for, absl::ZeroDuration());  // one attempt, no retries
  EXPECT_EQ(one->ddl.lock_timeout, absl::Seconds(1));

  // Copy mode: the columns are still columns of `table`.
  absl::StatusOr<Plan> copy = Parse("version: 1\nname: j\ntable: a\ninto: b\nnot_null: []\nddl:\n");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_TRUE(copy->not_null.empty());
}

TEST(ParsePlanTest, NotNullAndDdlAreNotPartOfTheHash) {
  absl::StatusOr<Plan> plain = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  absl::StatusOr<Plan> with = Parse(
      "version: 1\nname: j\ntable: t\nset: {a: '1'}\nnot_null: [a]\nddl: {lock_timeout: 5s}\n"
      "contract: ALTER TABLE t DROP COLUMN b\n");
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_TRUE(with.ok()) << with.status();
  EXPECT_EQ(PlanHash(*plain), PlanHash(*with));
}

TEST(ParsePlanTest, HooksAreCommandsOrMappingsAndStopOnlyGuardsAPhase) {
  absl::StatusOr<Plan> plan = Parse(R"(version: 1
name: j
table: t
set: {a: '1'}
hooks:
  on_done: notify.sh done
  before_contract: { command: ok-to-contract.sh, timeout: 5s, on_failure: stop }
)");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->hooks.size(), 2u);
  EXPECT_EQ(plan->hooks.at("on_done").command, "notify.sh done");
  EXPECT_EQ(plan->hooks.at("on_done").timeout, absl::Seconds(30));
  EXPECT_FALSE(plan->hooks.at("on_done").stop_on_failure);
  EXPECT_EQ(plan->hooks.at("before_contract").timeout, absl::Seconds(5));
  EXPECT_TRUE(plan->hooks.at("before_contract").stop_on_failure);
  EXPECT_EQ(plan->hooks.at("before_contract").line, 7);
  // Hooks do not change which rows are written: not part of the hash.
  absl::StatusOr<Plan> plain = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(PlanHash(*plan), PlanHash(*plain));

  const std::string head = "version: 1\nname: j\ntable: t\nset: {a: '1'}\nhooks:\n";
  EXPECT_THAT(ErrorOf(head + "  on_finish: x\n"),
              HasSubstr("plan.yaml:6: hooks.on_finish: unknown key"));
  EXPECT_EQ(ErrorOf(head + "  after_backfill: { command: x, on_failure: stop }\n"),
            "plan.yaml:6: hooks.after_backfill.on_failure: stop applies to before_<phase> hooks "
            "only: this hook runs after the fact, so it can only warn");
  EXPECT_EQ(ErrorOf(head + "  on_hold: { timeout: 1s }\n"),
            "plan.yaml:6: hooks.on_hold: has no `command`");
  EXPECT_EQ(ErrorOf(head + "  on_hold: { command: x, on_failure: maybe }\n"),
            "plan.yaml:6: hooks.on_hold.on_failure: must be warn or stop, got maybe");
  EXPECT_EQ(ErrorOf(head + "  on_hold: \" \"\n"),
            "plan.yaml:6: hooks.on_hold: the command is empty");
}

TEST(ParsePlanTest, RecordsTheLineOfEveryKeyForLaterChecks) {
  absl::StatusOr<Plan> plan = Parse(kUpdatePlan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::map<std::string, int>& lines = plan->key_lines;
  EXPECT_EQ(lines.at("version"), 2);
  EXPECT_EQ(lines.at("table"), 5);
  EXPECT_EQ(lines.at("set"), 7);
  EXPECT_EQ(lines.at("set.first_name"), 8);
  EXPECT_EQ(lines.at("set.Last Name"), 9);  // catalog spelling, as preflight looks it up
  EXPECT_EQ(lines.at("where"), 11);
  EXPECT_EQ(lines.at("batch.rows"), 18);
  EXPECT_EQ(lines.at("throttle.lock_timeout"), 26);
  EXPECT_EQ(lines.count("into"), 0u);
}

TEST(ParsePlanTest, CopyPlanRoundTrips) {
  absl::StatusOr<Plan> plan = Parse(R"(version: 1
name: users_v2
table: public.users
into: archive."Users V2"
columns:
  id: id
  email: lower(email)
on_conflict: update
where: deleted_at IS NULL
source_dsn: host=old
target_dsn: host=new dbname=${DB:-app}
)");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->mode, Mode::kCopy);
  ASSERT_TRUE(plan->into.has_value());
  EXPECT_EQ(*plan->into, (QualifiedName{"archive", "Users V2"}));
  ASSERT_EQ(plan->columns.size(), 2u);
  EXPECT_EQ(plan->columns[1].column, "email");
  EXPECT_EQ(plan->columns[1].expression, "lower(email)");
  EXPECT_EQ(plan->on_conflict, OnConflict::kUpdate);
  EXPECT_EQ(plan->where, "deleted_at IS NULL");
  EXPECT_EQ(plan->source_dsn, "host=old");
  EXPECT_EQ(plan->target_dsn, "host=new dbname=app");
  EXPECT_TRUE(plan->set.empty());
  EXPECT_FALSE(plan->dual_write);
}

TEST(ParsePlanTest, CopyPlanWithoutColumnsMeansAllCommonColumns) {
  absl::StatusOr<Plan> plan = Parse("version: 1\nname: j\ntable: a\ninto: b\non_conflict: skip\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->columns.empty());
  EXPECT_EQ(plan->on_conflict, OnConflict::kSkip);
}

TEST(ParsePlanTest, DefaultsMatchTheModel) {
  absl::StatusOr<Plan> plan = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const Plan defaults;
  EXPECT_EQ(plan->table, (QualifiedName{"", "t"}));
  EXPECT_TRUE(plan->key.empty());
  EXPECT_EQ(plan->dsn, "");
  EXPECT_EQ(plan->batch.rows, defaults.batch.rows);
  EXPECT_EQ(plan->batch.target, defaults.batch.target);
  EXPECT_EQ(plan->workers, defaults.workers);
  EXPECT_EQ(plan->throttle.lock_timeout, defaults.throttle.lock_timeout);
  EXPECT_EQ(plan->throttle.max_replica_lag, defaults.throttle.max_replica_lag);
  EXPECT_FALSE(plan->throttle.hold_on_autovacuum);
  EXPECT_EQ(plan->throttle.hold_on_autovacuum, defaults.throttle.hold_on_autovacuum);
  EXPECT_TRUE(plan->verify);
  EXPECT_FALSE(plan->dual_write);
  EXPECT_EQ(plan->on_conflict, OnConflict::kError);
}

TEST(ParsePlanTest, TriggersFireByDefaultAndSkipInEitherMode) {
  absl::StatusOr<Plan> update = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->triggers, Triggers::kFire);
  EXPECT_EQ(Plan{}.triggers, Triggers::kFire);
  for (const char* mode : {"set: {a: '1'}", "into: u"}) {
    SCOPED_TRACE(mode);
    absl::StatusOr<Plan> skip =
        Parse(absl::StrCat("version: 1\nname: j\ntable: t\n", mode, "\ntriggers: skip\n"));
    ASSERT_TRUE(skip.ok()) << skip.status();
    EXPECT_EQ(skip->triggers, Triggers::kSkip);
    EXPECT_EQ(skip->key_lines.at("triggers"), 5);
    absl::StatusOr<Plan> fire =
        Parse(absl::StrCat("version: 1\nname: j\ntable: t\n", mode, "\ntriggers: fire\n"));
    ASSERT_TRUE(fire.ok()) << fire.status();
    EXPECT_EQ(fire->triggers, Triggers::kFire);
  }
}

TEST(ParsePlanTest, BadTriggersValuesNameTheirLineAndKey) {
  const std::string base = "version: 1\nname: j\ntable: t\nset: {a: '1'}\n";
  EXPECT_THAT(ErrorOf(base + "triggers: off\n"),
              HasSubstr("plan.yaml:5: triggers: must be fire or skip, got "));
  EXPECT_THAT(ErrorOf(base + "triggers: Skip\n"),
              HasSubstr("plan.yaml:5: triggers: must be fire or skip, got "));
  EXPECT_THAT(ErrorOf(base + "triggers: [skip]\n"), HasSubstr("plan.yaml:5: triggers: "));
  EXPECT_THAT(ErrorOf(base + "triggers:\n"), HasSubstr("plan.yaml:5: triggers: "));
  EXPECT_THAT(ErrorOf(base + "throttle: {triggers: skip}\n"),
              HasSubstr("plan.yaml:5: throttle.triggers: unknown key"));
}

TEST(ParsePlanTest, KeyAsSingleStringAndCompositeList) {
  absl::StatusOr<Plan> one = Parse("version: 1\nname: j\ntable: t\nkey: Id\nset: {a: '1'}\n");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_THAT(one->key, ElementsAre("id"));
  absl::StatusOr<Plan> two =
      Parse("version: 1\nname: j\ntable: t\nkey: [tenant_id, '\"Order No\"']\nset: {a: '1'}\n");
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_THAT(two->key, ElementsAre("tenant_id", "Order No"));
}

TEST(ParsePlanTest, BatchDefaultsGiveWayToExplicitValues) {
  absl::StatusOr<Plan> small =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\nbatch: {max_rows: 1000}\n");
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->batch.rows, 1000);
  EXPECT_EQ(small->batch.min_rows, 100);
  absl::StatusOr<Plan> tiny =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\nbatch: {rows: 10}\n");
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->batch.min_rows, 10);
  absl::StatusOr<Plan> huge =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\nbatch: {min_rows: 200000}\n");
  ASSERT_TRUE(huge.ok()) << huge.status();
  EXPECT_EQ(huge->batch.rows, 200000);
  EXPECT_EQ(huge->batch.max_rows, 200000);
}

TEST(ParsePlanTest, HoldOnAutovacuumIsABool) {
  for (const auto& [text, expected] :
       {std::pair{"true", true}, std::pair{"false", false}, std::pair{"on", true},
        std::pair{"No", false}}) {
    absl::StatusOr<Plan> plan = Parse(absl::StrCat(
        "version: 1\nname: j\ntable: t\nset: {a: '1'}\nthrottle:\n  hold_on_autovacuum: ", text,
        "\n"));
    ASSERT_TRUE(plan.ok()) << text << ": " << plan.status();
    EXPECT_EQ(plan->throttle.hold_on_autovacuum, expected) << text;
    EXPECT_EQ(plan->key_lines.at("throttle.hold_on_autovacuum"), 6);
  }
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n"
                    "  hold_on_autovacuum: sometimes\n"),
            "plan.yaml:6: throttle.hold_on_autovacuum: must be true or false, got \"sometimes\"");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n"
                    "  hold_on_autovaccum: true\n"),
            "plan.yaml:6: throttle.hold_on_autovaccum: unknown key (did you mean "
            "\"hold_on_autovacuum\"?)");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nhold_on_autovacuum: true\n"),
            "plan.yaml:5: hold_on_autovacuum: unknown key (hold_on_autovacuum belongs under "
            "throttle:)");
}

TEST(ParsePlanTest, VacuumEveryIsAShareOrARowCount) {
  const auto parse = [](const char* value) {
    return Parse(absl::StrCat("version: 1\nname: j\ntable: t\nset: {a: '1'}\nvacuum_every: ",
                              value, "\n"));
  };
  absl::StatusOr<Plan> plan = parse("5%");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_DOUBLE_EQ(plan->vacuum_every.fraction, 0.05);
  EXPECT_EQ(plan->vacuum_every.rows, 0);
  EXPECT_EQ(plan->key_lines.at("vacuum_every"), 5);
  plan = parse("0.5%");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_DOUBLE_EQ(plan->vacuum_every.fraction, 0.005);
  plan = parse("250000");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->vacuum_every.rows, 250000);
  for (const char* off : {"off", "0"}) {
    plan = parse(off);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_FALSE(plan->vacuum_every.enabled()) << off;
  }
  plan = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->vacuum_every.enabled()) << "off unless asked for";

  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nvacuum_every: 0%\n"),
            "plan.yaml:5: vacuum_every: '0%' is not a share between 0% and 100%; use a share of "
            "the table such as 5% or a row count such as 500000, or off");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nvacuum_every: 150%\n"),
              HasSubstr("plan.yaml:5: vacuum_every: '150%' is not a share"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nvacuum_every: -3\n"),
              HasSubstr("plan.yaml:5: vacuum_every: '-3' is not a share or a row count"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nvacuum_every: [5%]\n"),
              HasSubstr("plan.yaml:5: vacuum_every: must be a share of the table"));
}

TEST(ParsePlanTest, VacuumEveryIsNotPartOfTheHash) {
  absl::StatusOr<Plan> without = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  absl::StatusOr<Plan> with =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\nvacuum_every: 5%\n");
  ASSERT_TRUE(without.ok() && with.ok());
  EXPECT_EQ(PlanHash(*without), PlanHash(*with));
}

TEST(ParsePlanTest, ZeroDurationsAndEmptyThrottleValuesAreAccepted) {
  absl::StatusOr<Plan> plan = Parse(R"(version: 1
name: j
table: t
set: {a: '1'}
throttle: {max_replica_lag: 0, max_canary_latency: 0, query: "", replicas: []}
)");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->throttle.max_replica_lag, absl::ZeroDuration());
  EXPECT_EQ(plan->throttle.query, "");
  EXPECT_TRUE(plan->throttle.replicas.empty());
}

// --- Errors: `file:line: key: what` --------------------------------------------------------

TEST(ParsePlanErrorTest, YamlSyntaxErrorPointsAtTheLine) {
  EXPECT_THAT(ErrorOf("version: 1\nname: j\nset: [a\ntable: t\n"),
              HasSubstr("plan.yaml:4: invalid YAML:"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\n  table: t\n"),
              HasSubstr("plan.yaml:3: invalid YAML: illegal map value"));
}

TEST(ParsePlanErrorTest, EmptyAndNonMappingDocuments) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("plan.yaml:1: the plan is empty"));
  EXPECT_THAT(ErrorOf("# only a comment\n"), HasSubstr("plan.yaml:1: the plan is empty"));
  EXPECT_THAT(ErrorOf("- version: 1\n"), HasSubstr("plan.yaml:1: the plan must be a mapping"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\n---\nversion: 1\n"),
              HasSubstr("plan.yaml:6: a second YAML document"));
}

TEST(ParsePlanErrorTest, InputThatHangsYamlCppLoadAllIsRefused) {
  // yaml-cpp 0.7's LoadAll never returns on these (jbeder/yaml-cpp#1040).
  EXPECT_THAT(ErrorOf(","), HasSubstr("plan.yaml:1: invalid YAML"));
  EXPECT_THAT(ErrorOf("# comment\n,\n"), HasSubstr("plan.yaml:2: invalid YAML"));
  EXPECT_THAT(ErrorOf("version: 1\n,\n"), HasSubstr("plan.yaml:2: invalid YAML"));
}

TEST(ParsePlanErrorTest, UnknownKeysSuggestAtEveryLevel) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntabel: t\nset: {a: b}\n"),
            "plan.yaml:3: tabel: unknown key (did you mean \"table\"?)");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nwokers: 4\n"),
              HasSubstr("plan.yaml:5: wokers: unknown key (did you mean \"workers\"?)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  row: 10\n"),
              HasSubstr("plan.yaml:6: batch.row: unknown key (did you mean \"rows\"?)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  lock_timout: 1s\n"),
              HasSubstr("plan.yaml:6: throttle.lock_timout: unknown key (did you mean "
                        "\"lock_timeout\"?)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  "
                      "max_replica_lga: 1s\n"),
              HasSubstr("did you mean \"max_replica_lag\"?"));
}

TEST(ParsePlanErrorTest, MisplacedKeysNameTheirSection) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nlock_timeout: 1s\n"),
            "plan.yaml:5: lock_timeout: unknown key (lock_timeout belongs under throttle: or "
            "ddl:)");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle: {retry_for: 1m}\n"),
            "plan.yaml:5: throttle.retry_for: unknown key (retry_for belongs under ddl:)");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch: {workers: 2}\n"),
            "plan.yaml:5: batch.workers: unknown key (workers is a top-level key)");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch: {size: 2}\n"),
              HasSubstr("batch.size: unknown key (batch takes: rows, target, min_rows, "
                        "max_rows)"));
}

TEST(ParsePlanErrorTest, NotNullAndDdlValues) {
  constexpr char kHead[] = "version: 1\nname: j\ntable: t\nset: {a: b}\n";
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "not_null: [a, A]\n")),
            "plan.yaml:5: not_null: column \"a\" is listed twice (first at line 5)");
  const std::string not_a_list = ErrorOf(absl::StrCat(kHead, "not_null: a, b\n"));
  EXPECT_THAT(not_a_list, HasSubstr("plan.yaml:5: not_null: unexpected character ','"));
  EXPECT_THAT(not_a_list, HasSubstr("give several columns as a list: not_null: [a, b]"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kHead, "not_null:\n  - a\n  - 1x\n")),
              HasSubstr("plan.yaml:7: not_null: unquoted name 1x cannot start with '1'"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kHead, "not_null: ['']\n")),
              HasSubstr("plan.yaml:5: not_null: entry 1 is empty"));
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "not_null: {a: b}\n")),
            "plan.yaml:5: not_null: must be a list of strings, got a mapping (text containing "
            "\": \" or starting with [ { & * ! | > ' \" % @ must be quoted in YAML)");
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "ddl: {lock_timeout: 0}\n")),
            "plan.yaml:5: ddl.lock_timeout: must be at least 1ms (0 would turn PostgreSQL's "
            "timeout off), got \"0\"");
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "ddl:\n  retry_for: forever\n")).substr(0, 27),
            "plan.yaml:6: ddl.retry_for:");
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "ddl:\n  retry_fro: 1m\n")),
            "plan.yaml:6: ddl.retry_fro: unknown key (did you mean \"retry_for\"?)");
  EXPECT_EQ(ErrorOf(absl::StrCat(kHead, "ddl: {retry: 1m}\n")),
            "plan.yaml:5: ddl.retry: unknown key (ddl takes: lock_timeout, retry_for)");
  EXPECT_THAT(ErrorOf(absl::StrCat(kHead, "ddl: 1s\n")),
              HasSubstr("plan.yaml:5: ddl: must be a mapping such as { lock_timeout: 1s, "
                        "retry_for: 10m }, got \"1s\""));
}

TEST(ParsePlanErrorTest, DuplicateKeys) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\ntable: u\n"),
            "plan.yaml:5: table: given twice (first at line 3); remove one");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  rows: 1\n"
                      "  rows: 2\n"),
              HasSubstr("plan.yaml:7: batch.rows: given twice (first at line 6)"));
}

TEST(ParsePlanErrorTest, DuplicateColumnsInSetIncludingFoldedSpellings) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset:\n  a: '1'\n  a: '2'\n"),
            "plan.yaml:6: set.a: column \"a\" is given twice (first at line 5)");
  EXPECT_THAT(
      ErrorOf("version: 1\nname: j\ntable: t\nset:\n  First_Name: x\n  '\"first_name\"': y\n"),
      HasSubstr("plan.yaml:6: set.\"first_name\": column \"first_name\" is given twice "
                "(first at line 5)"));
  // Quoted names keep their case, so these are two columns.
  EXPECT_TRUE(Parse("version: 1\nname: j\ntable: t\nset:\n  a: x\n  '\"A\"': y\n").ok());
}

TEST(ParsePlanErrorTest, WrongTypes) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nworkers: many\n"),
            "plan.yaml:5: workers: must be an integer between 1 and 256, got \"many\"");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: [a]\n"),
            "plan.yaml:4: set: must be a mapping of column: SQL expression, got a list");
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\ndual_write: maybe\n"),
            "plan.yaml:5: dual_write: must be true or false, got \"maybe\"");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: [t]\nset: {a: b}\n"),
              HasSubstr("plan.yaml:3: table: must be a string, got a list"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch: 500\n"),
              HasSubstr("plan.yaml:5: batch: must be a mapping such as"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nverify: 1x\n"),
              HasSubstr("plan.yaml:5: verify: must be true or false"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n"
                      "  max_rows_per_second: fast\n"),
              HasSubstr("plan.yaml:6: throttle.max_rows_per_second: must be a non-negative "
                        "number, got \"fast\""));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n"
                      "  max_wal_bytes_per_second: 5 parsecs\n"),
              HasSubstr("plan.yaml:6: throttle.max_wal_bytes_per_second: must be a byte count"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\non_conflict: skip\n"),
              HasSubstr("plan.yaml:5: on_conflict: only applies with into (copy mode)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\non_conflict: ignore\n"),
              HasSubstr("plan.yaml:5: on_conflict: must be error, skip or update, got "
                        "\"ignore\""));
}

TEST(ParsePlanErrorTest, SqlThatYamlReadsAsAMappingGetsAQuotingHint) {
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nexpand:\n  - x: y\n"),
              HasSubstr("plan.yaml:6: expand: entry 1 must be a string, got a mapping (text "
                        "containing \": \""));
}

TEST(ParsePlanErrorTest, BadDurations) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  target: 5x\n"),
            "plan.yaml:6: batch.target: must be a duration such as 200ms, 5s or 1m, got "
            "\"5x\"");
  EXPECT_EQ(
      ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  max_replica_lag: -1s\n"),
      "plan.yaml:6: throttle.max_replica_lag: must not be negative, got \"-1s\"");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  lock_timeout: 0\n"),
              HasSubstr("plan.yaml:6: throttle.lock_timeout: must be at least 1ms (0 would turn "
                        "PostgreSQL's timeout off), got \"0\""));
  EXPECT_THAT(
      ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  statement_timeout: 0s\n"),
      HasSubstr("plan.yaml:6: throttle.statement_timeout: must be at least 1ms"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  interval: 5\n"),
              HasSubstr("plan.yaml:6: throttle.interval: needs a unit (ms, s, m or h)"));
}

TEST(ParsePlanErrorTest, MissingRequiredKeys) {
  EXPECT_THAT(ErrorOf("# header\nname: j\ntable: t\nset: {a: b}\n"),
              HasSubstr("plan.yaml:2: version: missing"));
  EXPECT_THAT(ErrorOf("version: 1\ntable: t\nset: {a: b}\n"),
              HasSubstr("plan.yaml:1: name: missing"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\nset: {a: b}\n"),
              HasSubstr("plan.yaml:1: table: missing"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\n"),
              HasSubstr("plan.yaml:1: set: missing; give set (update columns of table in "
                        "place) or into"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable:\nset: {a: b}\n"),
              HasSubstr("plan.yaml:3: table: has no value"));
}

TEST(ParsePlanErrorTest, VersionAndName) {
  EXPECT_EQ(ErrorOf("version: 2\nname: j\ntable: t\nset: {a: b}\n"),
            "plan.yaml:1: version: unsupported version 2; this pgbackfill reads version 1");
  EXPECT_THAT(ErrorOf("version: one\nname: j\ntable: t\nset: {a: b}\n"),
              HasSubstr("plan.yaml:1: version: must be 1, got \"one\""));
  EXPECT_THAT(ErrorOf("version: 1\nname: users split\ntable: t\nset: {a: b}\n"),
              HasSubstr("plan.yaml:2: name: must be 1 to 63 characters"));
  EXPECT_THAT(ErrorOf("version: 1\nname: " + std::string(64, 'x') + "\ntable: t\nset: {a: b}\n"),
              HasSubstr("plan.yaml:2: name: must be 1 to 63 characters"));
}

TEST(ParsePlanErrorTest, EmptySetAndEmptyExpressions) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {}\n"),
            "plan.yaml:4: set: is empty; give at least one column: SQL expression");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset:\n  a: x\n  first_name:\n"),
              HasSubstr("plan.yaml:6: set.first_name: empty expression (for SQL NULL write "
                        "'NULL' in quotes"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset:\n  a: \"  \"\n"),
              HasSubstr("plan.yaml:5: set.a: empty expression"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\ncolumns:\n  a:\n"),
              HasSubstr("plan.yaml:6: columns.a: empty expression"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nexpand: ['']\n"),
              HasSubstr("plan.yaml:5: expand: entry 1 is empty"));
  // SQL NULL, quoted, is a fine expression.
  absl::StatusOr<Plan> plan = Parse("version: 1\nname: j\ntable: t\nset: {a: 'NULL'}\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->set[0].expression, "NULL");
}

TEST(ParsePlanTest, FollowIsTrueOrItsLimitsAndOnlyForAMoveBetweenDatabases) {
  constexpr char kMove[] =
      "version: 1\nname: j\ntable: t\ninto: t\nsource_dsn: host=a\ntarget_dsn: host=b\n";
  absl::StatusOr<Plan> plain = Parse(std::string(kMove) + "follow: true\n");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_TRUE(plain->follow);
  EXPECT_EQ(plain->follow_limits.max_slot_wal, int64_t{16} << 30);
  absl::StatusOr<Plan> limited =
      Parse(std::string(kMove) + "follow: { warn_slot_wal: 100MB, max_slot_wal: 2GB }\n");
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_TRUE(limited->follow);
  EXPECT_EQ(limited->follow_limits.warn_slot_wal, int64_t{100} << 20);
  EXPECT_EQ(limited->follow_limits.max_slot_wal, int64_t{2} << 30);
  // The limits are tuning; following or not is what the job does.
  EXPECT_EQ(PlanHash(*limited), PlanHash(*plain));
  absl::StatusOr<Plan> copy_only = Parse(kMove);
  ASSERT_TRUE(copy_only.ok());
  EXPECT_NE(PlanHash(*copy_only), PlanHash(*plain));

  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\nfollow: true\n"),
              HasSubstr("plan.yaml:5: follow: only applies to a copy between databases"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nfollow: true\n"),
              HasSubstr("plan.yaml:5: follow: only applies with into (copy mode)"));
  EXPECT_THAT(ErrorOf(std::string(kMove) + "where: a > 1\nfollow: true\n"),
              HasSubstr("plan.yaml:8: follow: cannot be combined with where (line 7)"));
  EXPECT_THAT(
      ErrorOf(std::string(kMove) + "follow: { max_slot_wal: 1MB, warn_slot_wal: 2MB }\n"),
      HasSubstr("plan.yaml:7: follow: max_slot_wal must not be smaller than warn_slot_wal"));
  EXPECT_THAT(ErrorOf(std::string(kMove) + "follow: { max_wal: 1MB }\n"),
              HasSubstr("plan.yaml:7: follow.max_wal:"));
}

TEST(ParsePlanErrorTest, ConflictingModes) {
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\ninto: u\n"),
              HasSubstr("plan.yaml:5: into: cannot be combined with set (line 4)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\ncolumns: {a: b}\n"),
              HasSubstr("plan.yaml:5: columns: only applies with into (copy mode)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\ndual_write: true\n"),
              HasSubstr("plan.yaml:5: dual_write: only applies with set (update mode); copy "
                        "mode always installs the trigger"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nsource_dsn: host=x\n"),
              HasSubstr("plan.yaml:5: source_dsn: only applies with into (copy mode)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\ntarget_dsn: host=x\n"),
              HasSubstr("plan.yaml:5: target_dsn: only applies with into"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: public.t\ninto: public.t\n"),
              HasSubstr("plan.yaml:4: into: names the same table as table"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\ncolumns: {}\n"),
              HasSubstr("plan.yaml:5: columns: is empty"));
}

TEST(ParsePlanErrorTest, SizesMustBePositiveAndOrdered) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  rows: -5\n"),
            "plan.yaml:6: batch.rows: must be a positive integer, got \"-5\"");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch: {rows: 0}\n"),
              HasSubstr("plan.yaml:5: batch.rows: must be a positive integer, got \"0\""));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nworkers: 0\n"),
              HasSubstr("plan.yaml:5: workers: must be an integer between 1 and 256"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nworkers: -2\n"),
              HasSubstr("plan.yaml:5: workers:"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  min_rows: 10\n"
                      "  max_rows: 100\n  rows: 500\n"),
              HasSubstr("plan.yaml:8: batch.rows: must not exceed batch.max_rows (100), got "
                        "500"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  min_rows: 10\n"
                      "  rows: 5\n"),
              HasSubstr("plan.yaml:7: batch.rows: must be at least batch.min_rows (10), got 5"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nbatch:\n  min_rows: 1000\n"
                      "  max_rows: 10\n"),
              HasSubstr("plan.yaml:6: batch.min_rows: must not exceed batch.max_rows (10)"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n"
                      "  max_lock_waiters: -1\n"),
              HasSubstr("plan.yaml:6: throttle.max_lock_waiters: must be a non-negative "
                        "integer"));
}

TEST(ParsePlanErrorTest, MalformedIdentifiersPointAtTheKey) {
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: '\"Users'\nset: {a: b}\n"),
              HasSubstr("plan.yaml:3: table: unterminated quoted identifier"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: public.\nset: {a: b}\n"),
              HasSubstr("plan.yaml:3: table: empty name part"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: db.public.users\nset: {a: b}\n"),
              HasSubstr("plan.yaml:3: table: too many dots"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: my-table\n"),
              HasSubstr("plan.yaml:4: into: unexpected character '-'"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nkey:\n  - id\n  - '\"x'\nset: {a: b}\n"),
              HasSubstr("plan.yaml:6: key: unterminated quoted identifier"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nkey: [id, ID]\nset: {a: b}\n"),
              HasSubstr("plan.yaml:4: key: column \"id\" is listed twice"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nkey: []\nset: {a: b}\n"),
              HasSubstr("plan.yaml:4: key: is an empty list"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nkey: a, b\nset: {a: b}\n"),
              HasSubstr("give several columns as a list: key: [a, b]"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset:\n  x: '1'\n  a.b: '2'\n"),
              HasSubstr("plan.yaml:6: set.a.b: expected a single name"));
}

TEST(ParsePlanEnvTest, ExpandsOnlyConnectionStrings) {
  absl::StatusOr<Plan> plan = Parse(R"(version: 1
name: j
dsn: "host=db password=${PGPASSWORD_X} user=${PGUSER:-backfill} note=$$HOME"
table: t
set: {a: "'${NOT_EXPANDED}' || $$x$$"}
where: b <> '${ALSO_NOT}'
)");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->dsn, "host=db password=s3cret user=backfill note=$HOME");
  EXPECT_EQ(plan->set[0].expression, "'${NOT_EXPANDED}' || $$x$$");
  EXPECT_EQ(plan->where, "b <> '${ALSO_NOT}'");
}

TEST(ParsePlanEnvTest, UnsetVariableIsAnErrorNamingIt) {
  EXPECT_EQ(ErrorOf("version: 1\nname: j\ndsn: host=x password=${PGPASSWORD_Y}\ntable: t\n"
                    "set: {a: b}\n"),
            "plan.yaml:3: dsn: environment variable PGPASSWORD_Y is not set");
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\nset: {a: b}\nthrottle:\n  replicas:\n"
                      "    - host=r1\n    - host=${REPLICA2}\n"),
              HasSubstr("plan.yaml:8: throttle.replicas: environment variable REPLICA2 is not "
                        "set"));
  EXPECT_THAT(ErrorOf("version: 1\nname: j\ntable: t\ninto: u\ntarget_dsn: ${TARGET\n"),
              HasSubstr("plan.yaml:5: target_dsn: unterminated \"${\""));
}

TEST(LoadPlanFileTest, ReadsTheFileAndNamesItInErrors) {
  const std::string path = ::testing::TempDir() + "/pgbackfill_plan_test.yaml";
  {
    std::ofstream out(path);
    out << "version: 1\nname: j\ntable: t\nset: {a: b}\nworkers: zero\n";
  }
  absl::StatusOr<Plan> plan = LoadPlanFile(path, FakeEnv({}));
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr(path + ":5: workers:"));
  std::remove(path.c_str());

  absl::StatusOr<Plan> missing = LoadPlanFile(path, FakeEnv({}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("cannot read plan file"));
}

}  // namespace
TEST(PlanParseTest, ApplicationSignalsAreOnByDefaultAndOffDropsOnlyTheDefaults) {
  absl::StatusOr<Plan> plan = Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(plan->throttle.application);
  EXPECT_EQ(plan->throttle.max_statement_latency, (Limit{.factor = 1.25, .offset = 0}));
  EXPECT_EQ(plan->throttle.max_statement_tail, (Limit{.factor = 2, .offset = 0}));
  EXPECT_EQ(plan->throttle.max_commit_latency, (Limit{.factor = 2, .offset = 0.002}));
  EXPECT_EQ(plan->throttle.max_active_sessions, (Limit{.factor = 2, .offset = 1}));
  EXPECT_EQ(plan->throttle.max_cpu_pressure, (Limit{.factor = 1, .offset = 0.05}));
  // Written after the limit it keeps, on purpose: the order of keys does not matter.
  plan = Parse(
      "version: 1\nname: j\ntable: t\nset: {a: '1'}\n"
      "throttle: { max_commit_latency: 20ms, max_statement_tail: 2x + 0.1ms, application: off }\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->throttle.max_statement_latency.enabled());
  EXPECT_EQ(plan->throttle.max_statement_tail, (Limit{.factor = 2, .offset = 0.0001}));
  EXPECT_TRUE(plan->throttle.ReadsStatements());
  EXPECT_FALSE(plan->throttle.max_active_sessions.enabled());
  EXPECT_FALSE(plan->throttle.max_cpu_pressure.enabled());
  EXPECT_EQ(plan->throttle.max_commit_latency, (Limit{.factor = 0, .offset = 0.020}));
}

}  // namespace pgbackfill::plan
