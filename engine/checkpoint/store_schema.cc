// The job store's schema and its migrations: an ordered list of steps, applied in one transaction
// under an advisory lock, with `store_version` recording the last step applied.
#include <algorithm>
#include <charconv>
#include <string>
#include <string_view>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::checkpoint {
namespace {

// The transaction-level advisory lock that serialises schema changes between pgbackfill
// processes: "pgbkfill" in ASCII. Splits lock hashtextextended() of a job-specific text for their
// transaction, which cannot be told apart from this key in principle but collides with it with
// probability 2^-64.
constexpr int64_t kSchemaLockKey = 0x7067626B66696C6C;

std::string Schema() { return pg::QuoteIdent(sql::kJobStoreSchema); }

std::string VersionTable() { return absl::StrCat(Schema(), ".", pg::QuoteIdent("store_version")); }

std::string StepV1() {
  // Tables are created without IF NOT EXISTS: at version 0 they cannot be ours, and a same-named
  // table of someone else's must stop us rather than be written to. The schema itself may have
  // been created by hand (for privileges) before the first run.
  // fillfactor 50 on the tables updated every batch keeps those updates HOT (no indexed column
  // changes), so they do not bloat the primary key indexes over a long backfill.
  return absl::StrReplaceAll(R"sql(
CREATE SCHEMA IF NOT EXISTS @schema;
COMMENT ON SCHEMA @schema IS 'pgbackfill job store: jobs and range checkpoints';
CREATE TABLE @schema."store_version" (version int NOT NULL);
INSERT INTO @schema."store_version" (version) VALUES (0);
CREATE TABLE @schema."jobs" (
  name text PRIMARY KEY,
  plan_hash text NOT NULL,
  plan_text text NOT NULL,
  plan_file text,
  state text NOT NULL
    CHECK (state IN ('pending', 'running', 'interrupted', 'done', 'failed', 'aborted')),
  phase text NOT NULL DEFAULT 'backfill',
  estimated_rows bigint,
  rows_done bigint NOT NULL DEFAULT 0,
  retries bigint NOT NULL DEFAULT 0,
  errors bigint NOT NULL DEFAULT 0,
  last_error text,
  throttle_reason text,
  pid int,
  host text,
  created_at timestamptz,
  started_at timestamptz,
  updated_at timestamptz,
  finished_at timestamptz
) WITH (fillfactor = 50);
CREATE TABLE @schema."ranges" (
  job_name text REFERENCES @schema."jobs" (name) ON DELETE CASCADE,
  range_id int,
  lower text[],
  upper text[],
  done_upto text[],
  rows_done bigint NOT NULL DEFAULT 0,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
  updated_at timestamptz,
  PRIMARY KEY (job_name, range_id)
) WITH (fillfactor = 50);
)sql",
                             {{"@schema", Schema()}});
}

// Live control: what operators ask of a job from any host, polled by the process running it.
// Constant defaults, so the ALTER does not rewrite the table (PostgreSQL 11+) and existing jobs
// read as running with no overrides.
std::string StepV2() {
  return absl::StrReplaceAll(R"sql(
ALTER TABLE @schema."jobs"
  ADD COLUMN control text NOT NULL DEFAULT 'run' CHECK (control IN ('run', 'pause', 'abort')),
  ADD COLUMN control_by text,
  ADD COLUMN control_at timestamptz,
  ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'
    CHECK (pg_catalog.jsonb_typeof(settings) = 'object');
)sql",
                             {{"@schema", Schema()}});
}

std::string StepV3() {
  // Phases (expand, backfill, verify, contract, rollback) record their steps here, each DDL step
  // in the same transaction as the DDL it covers, so a re-run skips what committed and repeats
  // nothing else. A rolled-back job keeps its row (history) with state rolled_back.
  return absl::StrReplaceAll(R"sql(
CREATE TABLE @schema."steps" (
  job_name text REFERENCES @schema."jobs" (name) ON DELETE CASCADE,
  step text,
  done_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  PRIMARY KEY (job_name, step)
);
ALTER TABLE @schema."jobs" DROP CONSTRAINT "jobs_state_check";
ALTER TABLE @schema."jobs" ADD CONSTRAINT "jobs_state_check"
  CHECK (state IN ('pending', 'running', 'interrupted', 'done', 'failed', 'aborted',
                   'rolled_back'));
)sql",
                             {{"@schema", Schema()}});
}

std::string StepV4() {
  // The throttle's commit latency probe (throttle/probes.h) upserts its job's row once per
  // interval in a transaction of its own with synchronous_commit on: a write that feels WAL
  // flushes and lock pressure as the application's own commits do. No foreign key to jobs: the
  // probe runs before the job row may exist, and a heartbeat must never wait on a jobs row lock.
  // fillfactor 50 keeps the updates HOT.
  return absl::StrReplaceAll(R"sql(
CREATE TABLE @schema."heartbeat" (
  job_name text PRIMARY KEY,
  beat_at timestamptz NOT NULL
) WITH (fillfactor = 50);
)sql",
                             {{"@schema", Schema()}});
}

std::string StepV5() {
  // What the throttle last decided, for `status` on any host: pace, active workers and the
  // application signals' readings (exec writes it with the progress, once per second).
  return absl::StrReplaceAll(R"sql(
ALTER TABLE @schema."jobs" ADD COLUMN throttle_state jsonb
  CHECK (pg_catalog.jsonb_typeof(throttle_state) = 'object');
)sql",
                             {{"@schema", Schema()}});
}

std::string StepV6() {
  // A move that follows its source's changes (follow phase): the slot it reads, the publication
  // the slot decodes through, and the source commit position applied last, written in the same
  // target transaction as the changes it covers (exactly once across a crash). Control `cutover`
  // asks the follow phase to finish.
  return absl::StrReplaceAll(R"sql(
CREATE TABLE @schema."follows" (
  job_name text PRIMARY KEY REFERENCES @schema."jobs" (name) ON DELETE CASCADE,
  slot text NOT NULL,
  publication text NOT NULL,
  start_lsn pg_lsn NOT NULL,
  applied_lsn pg_lsn NOT NULL,
  changes bigint NOT NULL DEFAULT 0,
  applied_at timestamptz
) WITH (fillfactor = 50);
ALTER TABLE @schema."jobs" DROP CONSTRAINT "jobs_control_check";
ALTER TABLE @schema."jobs" ADD CONSTRAINT "jobs_control_check"
  CHECK (control IN ('run', 'pause', 'abort', 'cutover'));
)sql",
                             {{"@schema", Schema()}});
}

std::string StepV7() {
  // Leases instead of a session lock (a session's advisory lock stays behind in a pooled server
  // connection): each process working on a job registers a row and renews `lease_until` with its
  // heartbeat; a range belongs to the runner in `owner` while that runner's lease lasts. No
  // foreign key: a phase registers before `expand` creates the job row, and a heartbeat must not
  // wait on a jobs row lock. fillfactor 50 keeps the heartbeat's updates HOT.
  return absl::StrReplaceAll(R"sql(
CREATE TABLE @schema."runners" (
  job_name text NOT NULL,
  runner_id text NOT NULL,
  kind text NOT NULL DEFAULT 'run',
  host text,
  pid int,
  started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  heartbeat_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  lease_until timestamptz NOT NULL,
  PRIMARY KEY (job_name, runner_id)
) WITH (fillfactor = 50);
ALTER TABLE @schema."ranges" ADD COLUMN owner text;
)sql",
                             {{"@schema", Schema()}});
}

absl::Status TooNew(int version, int known) {
  return absl::FailedPreconditionError(absl::StrCat("job store version ", version,
                                                    " is newer than this pgbackfill (knows ", known,
                                                    "): upgrade pgbackfill"));
}

}  // namespace

const std::vector<SchemaStep>& SchemaSteps() {
  static const std::vector<SchemaStep>* const steps =
      new std::vector<SchemaStep>{{1, StepV1()}, {2, StepV2()}, {3, StepV3()}, {4, StepV4()},
                                  {5, StepV5()}, {6, StepV6()}, {7, StepV7()}};
  return *steps;
}

int JobStore::KnownVersion() const { return steps_.empty() ? 0 : steps_.back().version; }

absl::StatusOr<int> JobStore::Version() {
  // A query of pg_class rather than to_regclass(): to_regclass answers from the backend's
  // catalog cache, which keeps "no such schema" from before the advisory lock wait until
  // something makes it accept invalidations. A scan reads with the statement's snapshot, and
  // locking pg_class for it (first time in the transaction) also refreshes the cache for the
  // statements that follow.
  ASSIGN_OR_RETURN(pg::Result table,
                   conn_.Exec("SELECT EXISTS (SELECT FROM pg_catalog.pg_class c"
                              " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE n.nspname = $1::text AND c.relname = 'store_version')",
                              {sql::kJobStoreSchema}));
  if (table.Get(0, 0) != "t") return 0;
  ASSIGN_OR_RETURN(
      pg::Result version,
      conn_.Exec(absl::StrCat("SELECT pg_catalog.max(version) FROM ", VersionTable())));
  if (version.IsNull(0, 0)) {
    return absl::FailedPreconditionError(absl::StrCat("the job store is damaged: ", VersionTable(),
                                                      " has no row; restore it, or drop schema ",
                                                      Schema(), " to start over (loses all jobs)"));
  }
  const std::string_view text = version.Get(0, 0);
  int value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  seen_version_ = std::max(seen_version_, value);
  return value;
}

absl::StatusOr<bool> JobStore::Exists() {
  ASSIGN_OR_RETURN(int version, Version());
  return version > 0;
}

absl::Status JobStore::EnsureSchema() {
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (steps_[i].version != static_cast<int>(i) + 1) {
      return absl::InternalError(absl::StrCat("job store schema step ", i, " has version ",
                                              steps_[i].version, ", expected ", i + 1));
    }
  }
  const int known = KnownVersion();
  // The common case, a current store, takes no lock and changes nothing.
  ASSIGN_OR_RETURN(int version, Version());
  if (version == known) return absl::OkStatus();
  if (version > known) return TooNew(version, known);

  const absl::Status migrated = InTransaction([&]() -> absl::Status {
    // DDL takes ACCESS EXCLUSIVE locks; never queue behind (and in front of) other sessions for
    // long. The advisory lock wait is bounded by the same timeout.
    RETURN_IF_ERROR(conn_.Exec("SET LOCAL lock_timeout = '5s'").status());
    RETURN_IF_ERROR(conn_
                        .Exec("SELECT pg_catalog.pg_advisory_xact_lock($1::bigint)",
                              {std::to_string(kSchemaLockKey)})
                        .status());
    // Another process may have migrated while we waited; each statement sees what committed
    // before it began (READ COMMITTED), so this read is current.
    ASSIGN_OR_RETURN(int locked_version, Version());
    if (locked_version > known) return TooNew(locked_version, known);
    for (const SchemaStep& step : steps_) {
      if (step.version <= locked_version) continue;
      absl::Status applied = conn_.ExecScript(step.sql);
      if (!applied.ok()) {
        // Keep the SQLSTATE payload (pg::Classify) while saying which step failed.
        return WithMessage(applied, absl::StrCat("creating job store schema version ",
                                                 step.version, " in ", Schema(), ": ",
                                                 applied.message()));
      }
      RETURN_IF_ERROR(conn_
                          .Exec(absl::StrCat("UPDATE ", VersionTable(), " SET version = $1::int"),
                                {std::to_string(step.version)})
                          .status());
    }
    return absl::OkStatus();
  });
  if (migrated.ok()) seen_version_ = std::max(seen_version_, known);
  return migrated;
}

}  // namespace pgbackfill::checkpoint
