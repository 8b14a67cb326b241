#include "pgbackfill/checkpoint/job_store.h"

#include <charconv>
#include <map>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::checkpoint {
namespace {

// Wall-clock time, as the batch statement stamps ranges.updated_at (now() would be the start of a
// transaction that may have waited).
constexpr char kNow[] = "pg_catalog.clock_timestamp()";

std::string Table(std::string_view name) {
  return absl::StrCat(pg::QuoteIdent(sql::kJobStoreSchema), ".", pg::QuoteIdent(name));
}

// A timestamptz column as RFC 3339 in UTC, independent of the session's DateStyle and TimeZone.
std::string Timestamp(std::string_view column) {
  return absl::StrCat("pg_catalog.to_char(", ToAbsl(column),
                      " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
}

int64_t ToInt64(std::string_view text) {
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

pg::Param NullIfEmpty(const std::string& text) {
  if (text.empty()) return std::nullopt;
  return text;
}

// A text[] literal whose elements may be NULL: the outer array of CreateJob's unnest, each
// element itself a text[] literal (or NULL for an open end).
std::string NullableArrayLiteral(const std::vector<std::optional<std::string>>& elements) {
  std::string literal = "{";
  for (size_t i = 0; i < elements.size(); ++i) {
    if (i > 0) literal.push_back(',');
    if (!elements[i].has_value()) {
      literal += "NULL";
      continue;
    }
    literal.push_back('"');
    for (char c : *elements[i]) {
      if (c == '"' || c == '\\') literal.push_back('\\');
      literal.push_back(c);
    }
    literal.push_back('"');
  }
  literal.push_back('}');
  return literal;
}

// The first store version with the control columns.
constexpr int kControlVersion = 2;
constexpr int kThrottleStateVersion = 5;
constexpr int kLeaseVersion = 7;

// A lease length as the server's interval: seconds as a float8 parameter.
std::string LeaseSeconds(absl::Duration lease) {
  return absl::StrCat(absl::ToDoubleSeconds(lease));
}

// The control columns as JobFromRow/ControlFromRow read them, from `pgbackfill.jobs`.
std::string ControlColumns() {
  return absl::StrCat("control, control_by, ", Timestamp("control_at"), ", settings::text");
}

// The settings object as stored. Values are text as the operator wrote it; anything else (a hand
// edit) is kept in its JSON spelling rather than dropped, so ApplySetting can report it.
std::map<std::string, std::string> SettingsFromJson(std::string_view text) {
  std::map<std::string, std::string> settings;
  const nlohmann::json object = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return settings;
  for (const auto& [key, value] : object.items()) {
    settings[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return settings;
}

JobControl ControlFromRow(const pg::Result& result, int row, int first_column) {
  JobControl control;
  control.control = std::string(result.Get(row, first_column));
  control.control_by = std::string(result.Get(row, first_column + 1));
  control.control_at = std::string(result.Get(row, first_column + 2));
  control.settings = SettingsFromJson(result.Get(row, first_column + 3));
  return control;
}

JobRecord JobFromRow(const pg::Result& result, int row) {
  auto text = [&](int column) { return std::string(result.Get(row, column)); };
  JobRecord job;
  job.name = text(0);
  job.plan_hash = text(1);
  job.plan_text = text(2);
  job.plan_file = text(3);
  job.state = text(4);
  job.phase = text(5);
  job.last_error = text(6);
  job.throttle_reason = text(7);
  job.host = text(8);
  job.estimated_rows = ToInt64(result.Get(row, 9));
  job.rows_done = ToInt64(result.Get(row, 10));
  job.retries = ToInt64(result.Get(row, 11));
  job.errors = ToInt64(result.Get(row, 12));
  job.pid = static_cast<int>(ToInt64(result.Get(row, 13)));
  job.created_at = text(14);
  job.started_at = text(15);
  job.updated_at = text(16);
  job.finished_at = text(17);
  JobControl control = ControlFromRow(result, row, 18);
  job.control = std::move(control.control);
  job.control_by = std::move(control.control_by);
  job.control_at = std::move(control.control_at);
  job.settings = std::move(control.settings);
  job.throttle_state = text(22);
  return job;
}

// rows_done of the job as the sum over its ranges, for `UPDATE jobs j`.
std::string RangesRowsDone() {
  return absl::StrCat("(SELECT COALESCE(pg_catalog.sum(r.rows_done), 0) FROM ", Table("ranges"),
                      " r WHERE r.job_name = j.name)");
}

absl::Status NoSuchJob(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("no job ", pg::QuoteLiteral(name), " in the job store ",
                                          pg::QuoteIdent(sql::kJobStoreSchema)));
}

absl::Status CheckControl(const std::string& name, const std::string& control) {
  if (control == "run" || control == "pause" || control == "abort" || control == "cutover") {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cannot set control of job ", pg::QuoteLiteral(name), " to ",
                   pg::QuoteLiteral(control), ": expected run, pause, abort or cutover"));
}

}  // namespace

JobStore::JobStore(pg::Connection& conn) : JobStore(conn, SchemaSteps()) {}

JobStore::JobStore(pg::Connection& conn, std::vector<SchemaStep> steps)
    : conn_(conn), steps_(std::move(steps)) {}

absl::Status JobStore::InTransaction(const std::function<absl::Status()>& body) {
  RETURN_IF_ERROR(conn_.ExecScript("BEGIN"));
  absl::Status status = body();
  if (!status.ok()) {
    // Best effort: on a broken connection there is nothing to roll back, and the body's error is
    // the one worth reporting.
    (void)conn_.ExecScript("ROLLBACK");
    return status;
  }
  return conn_.ExecScript("COMMIT");
}

absl::StatusOr<bool> JobStore::HasControlColumns() {
  if (seen_version_ < kControlVersion) RETURN_IF_ERROR(Version().status());
  return seen_version_ >= kControlVersion;
}

absl::Status JobStore::RequireControlColumns() {
  ASSIGN_OR_RETURN(bool has, HasControlColumns());
  if (has) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the job store ", pg::QuoteIdent(sql::kJobStoreSchema), " is version ", seen_version_,
      ", older than live control (version ", kControlVersion,
      "); any pgbackfill pause, resume, abort, set or run of this version upgrades it"));
}

absl::StatusOr<std::string> JobStore::JobColumns() {
  ASSIGN_OR_RETURN(bool has_control, HasControlColumns());
  // A v1 store written by an older pgbackfill still shows in `status`, which creates nothing.
  const std::string control =
      has_control ? ControlColumns() : "'run'::text, NULL::text, NULL::text, '{}'::text";
  const std::string throttle_state =
      seen_version_ >= kThrottleStateVersion ? "throttle_state::text" : "NULL::text";
  return absl::StrCat(
      "name, plan_hash, plan_text, plan_file, state, phase, last_error, throttle_reason, host, "
      "estimated_rows, rows_done, retries, errors, pid, ",
      Timestamp("created_at"), ", ", Timestamp("started_at"), ", ", Timestamp("updated_at"), ", ",
      Timestamp("finished_at"), ", ", control, ", ", throttle_state);
}

absl::StatusOr<std::optional<JobRecord>> JobStore::LoadJob(const std::string& name) {
  ASSIGN_OR_RETURN(const std::string columns, JobColumns());
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("SELECT ", columns, " FROM ", Table("jobs"),
                                           " WHERE name = $1::text"),
                              {name}));
  if (result.Rows() == 0) return std::nullopt;
  return JobFromRow(result, 0);
}

absl::StatusOr<std::vector<JobRecord>> JobStore::ListJobs() {
  ASSIGN_OR_RETURN(const std::string columns, JobColumns());
  ASSIGN_OR_RETURN(pg::Result result, conn_.Exec(absl::StrCat("SELECT ", columns, " FROM ",
                                                              Table("jobs"), " ORDER BY name")));
  std::vector<JobRecord> jobs;
  jobs.reserve(static_cast<size_t>(result.Rows()));
  for (int row = 0; row < result.Rows(); ++row) jobs.push_back(JobFromRow(result, row));
  return jobs;
}

absl::Status JobStore::InsertRanges(const std::string& name,
                                    const std::vector<ranges::KeyRange>& ranges) {
  if (ranges.empty()) return absl::OkStatus();
  // All ranges travel in one statement as three parallel arrays, so a job of thousands of ranges
  // costs one round trip: ids, and text[] literals of the bounds nested as elements of a text[].
  std::vector<std::optional<std::string>> ids;
  std::vector<std::optional<std::string>> lowers;
  std::vector<std::optional<std::string>> uppers;
  for (const ranges::KeyRange& range : ranges) {
    ids.push_back(std::to_string(range.id));
    lowers.push_back(TextArrayLiteral(range.lower));
    uppers.push_back(TextArrayLiteral(range.upper));
  }
  return conn_
      .Exec(absl::StrCat("INSERT INTO ", Table("ranges"),
                         " (job_name, range_id, lower, upper, state, updated_at)"
                         " SELECT $1::text, r.id, r.lower::text[], r.upper::text[], 'pending', ",
                         kNow,
                         " FROM ROWS FROM (pg_catalog.unnest($2::int[]),"
                         " pg_catalog.unnest($3::text[]), pg_catalog.unnest($4::text[]))"
                         " AS r(id, lower, upper)"),
            {name, NullableArrayLiteral(ids), NullableArrayLiteral(lowers),
             NullableArrayLiteral(uppers)})
      .status();
}

absl::Status JobStore::CreateJob(const JobRecord& job,
                                 const std::vector<ranges::KeyRange>& ranges) {
  return InTransaction([&]() -> absl::Status {
    // ON CONFLICT DO NOTHING rather than catching 23505: a concurrent creator's insert is waited
    // for, and the loser sees no row instead of an aborted transaction.
    ASSIGN_OR_RETURN(
        pg::Result inserted,
        conn_.Exec(
            absl::StrCat("INSERT INTO ", Table("jobs"),
                         " (name, plan_hash, plan_text, plan_file, state, phase,"
                         " estimated_rows, created_at, updated_at)"
                         " SELECT $1::text, $2::text, $3::text, $4::text, $5::text,"
                         " $6::text, $7::bigint, now.t, now.t FROM (SELECT ",
                         kNow, " AS t) now ON CONFLICT (name) DO NOTHING RETURNING name"),
            {job.name, job.plan_hash, job.plan_text, NullIfEmpty(job.plan_file),
             job.state.empty() ? "pending" : job.state, job.phase.empty() ? "backfill" : job.phase,
             std::to_string(job.estimated_rows)}));
    if (inserted.Rows() == 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          "job ", pg::QuoteLiteral(job.name), " already exists in the job store ",
          pg::QuoteIdent(sql::kJobStoreSchema),
          ": resume it with the same plan, or remove it (pgbackfill rollback) to start over"));
    }
    return InsertRanges(job.name, ranges);
  });
}

absl::Status JobStore::AddRanges(const std::string& name,
                                 const std::vector<ranges::KeyRange>& ranges) {
  return InTransaction([&]() -> absl::Status {
    // The job row locked first: two processes adding ranges at once would otherwise both see
    // none and both insert. The look at the ranges is a statement of its own: one that waited
    // for the lock still reads with the snapshot it started with, from before the other's commit.
    ASSIGN_OR_RETURN(pg::Result job, conn_.Exec(absl::StrCat("SELECT FROM ", Table("jobs"),
                                                             " WHERE name = $1::text FOR UPDATE"),
                                                {name}));
    if (job.Rows() == 0) return NoSuchJob(name);
    ASSIGN_OR_RETURN(pg::Result any,
                     conn_.Exec(absl::StrCat("SELECT EXISTS (SELECT FROM ", Table("ranges"),
                                             " WHERE job_name = $1::text)"),
                                {name}));
    if (any.Get(0, 0) == "t") {
      return absl::AlreadyExistsError(
          absl::StrCat("job ", pg::QuoteLiteral(name), " already has ranges"));
    }
    return InsertRanges(name, ranges);
  });
}

absl::StatusOr<std::set<std::string>> JobStore::StepsDone(const std::string& name) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("SELECT step FROM ", Table("steps"),
                                           " WHERE job_name = $1::text"),
                              {name}));
  std::set<std::string> steps;
  for (int row = 0; row < result.Rows(); ++row) steps.insert(std::string(result.Get(row, 0)));
  return steps;
}

// Both run inside DDL transactions, under the operator's search_path: every type and operator is
// spelled with pg_catalog.
std::string JobStore::MarkStepSql() {
  return absl::StrCat("INSERT INTO ", Table("steps"),
                      " (job_name, step) VALUES ($1::pg_catalog.text, $2::pg_catalog.text)"
                      " ON CONFLICT DO NOTHING");
}

std::string JobStore::ForgetStepSql() {
  return absl::StrCat("DELETE FROM ", Table("steps"),
                      " WHERE job_name OPERATOR(pg_catalog.=) $1::pg_catalog.text"
                      " AND step OPERATOR(pg_catalog.=) $2::pg_catalog.text");
}

absl::Status JobStore::MarkStep(const std::string& name, const std::string& step) {
  return conn_.Exec(MarkStepSql(), {name, step}).status();
}

absl::Status JobStore::ClearSteps(const std::string& name, const std::string& prefix) {
  return conn_
      .Exec(absl::StrCat("DELETE FROM ", Table("steps"),
                         " WHERE job_name = $1::text AND pg_catalog.starts_with(step, $2::text)"),
            {name, prefix})
      .status();
}

absl::Status JobStore::SetPhase(const std::string& name, const std::string& phase) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"), " SET phase = $2::text,"
                                           " updated_at = ", kNow, " WHERE name = $1::text"),
                              {name, phase}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::MarkRolledBack(const std::string& name, const std::string& by) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                                           " SET state = 'rolled_back', phase = 'rollback',"
                                           " last_error = $2::text, throttle_reason = NULL,"
                                           " finished_at = ",
                                           kNow, ", updated_at = ", kNow, " WHERE name = $1::text"),
                              {name, absl::StrCat("rolled back by ", by)}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::DeleteJob(const std::string& name) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("DELETE FROM ", Table("jobs"), " WHERE name = $1::text"), {name}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RangeRecord>> JobStore::LoadRanges(const std::string& name) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("SELECT range_id, lower, upper, done_upto, rows_done, state, ",
                              seen_version_ >= kLeaseVersion ? "owner" : "NULL::text", " FROM ",
                              Table("ranges"), " WHERE job_name = $1::text ORDER BY range_id"),
                 {name}));
  std::vector<RangeRecord> records;
  records.reserve(static_cast<size_t>(result.Rows()));
  for (int row = 0; row < result.Rows(); ++row) {
    RangeRecord record;
    record.id = static_cast<int>(ToInt64(result.Get(row, 0)));
    ASSIGN_OR_RETURN(record.lower, ParseTextArray(result.GetOptional(row, 1)));
    ASSIGN_OR_RETURN(record.upper, ParseTextArray(result.GetOptional(row, 2)));
    ASSIGN_OR_RETURN(record.done_upto, ParseTextArray(result.GetOptional(row, 3)));
    record.rows_done = ToInt64(result.Get(row, 4));
    record.state = std::string(result.Get(row, 5));
    record.owner = std::string(result.Get(row, 6));
    records.push_back(std::move(record));
  }
  return records;
}

absl::StatusOr<bool> JobStore::FinishRangeAt(const std::string& name, int range_id,
                                             const std::optional<ranges::KeyValue>& done_upto) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("UPDATE ", Table("ranges"),
                              " SET state = 'done', updated_at = pg_catalog.clock_timestamp()"
                              " WHERE job_name = $1::text AND range_id = $2::int"
                              " AND done_upto IS NOT DISTINCT FROM $3::text[]"
                              " AND state <> 'done' RETURNING 1"),
                 {name, std::to_string(range_id), TextArrayLiteral(done_upto)}));
  return result.Rows() == 1;
}

absl::Status JobStore::MarkStarted(const std::string& name, int pid, const std::string& host) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                                           " SET state = 'running', pid = $2::int, host = $3::text,"
                                           " started_at = COALESCE(started_at, ",
                                           kNow, "), finished_at = NULL, updated_at = ", kNow,
                                           " WHERE name = $1::text"),
                              {name, pid != 0 ? pg::Param(std::to_string(pid)) : std::nullopt,
                               NullIfEmpty(host)}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::FinishJob(const std::string& name, const std::string& state,
                                 const std::string& error) {
  if (state != "done" && state != "failed" && state != "interrupted" && state != "aborted") {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot finish job ", pg::QuoteLiteral(name), " as ", pg::QuoteLiteral(state),
                     ": expected done, failed, interrupted or aborted"));
  }
  // An interrupted job is not finished: the next run resumes it.
  const bool finished = state != "interrupted";
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                              " j SET state = $2::text,"
                              " last_error = COALESCE($3::text, j.last_error),"
                              " throttle_reason = NULL, rows_done = ",
                              RangesRowsDone(), ", finished_at = CASE WHEN $4::bool THEN ", kNow,
                              " END, updated_at = ", kNow, " WHERE j.name = $1::text"),
                 {name, state, NullIfEmpty(error), finished ? "true" : "false"}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::RecordProgress(const std::string& name, int64_t retries_delta,
                                      int64_t errors_delta, const std::string& throttle_reason,
                                      const std::string& throttle_state) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(
          absl::StrCat("UPDATE ", Table("jobs"),
                       " j SET retries = j.retries + $2::bigint,"
                       " errors = j.errors + $3::bigint, throttle_reason = $4::text,"
                       " throttle_state = $5::jsonb, rows_done = ",
                       RangesRowsDone(), ", updated_at = ", kNow, " WHERE j.name = $1::text"),
          {name, std::to_string(retries_delta), std::to_string(errors_delta),
           NullIfEmpty(throttle_reason), NullIfEmpty(throttle_state)}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<FollowRecord>> JobStore::LoadFollow(const std::string& name) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("SELECT slot, publication, start_lsn::text,"
                                           " applied_lsn::text, changes FROM ",
                                           Table("follows"), " WHERE job_name = $1::text"),
                              {name}));
  if (result.Rows() == 0) return std::optional<FollowRecord>();
  FollowRecord follow;
  follow.slot = std::string(result.Get(0, 0));
  follow.publication = std::string(result.Get(0, 1));
  ASSIGN_OR_RETURN(follow.start_lsn, pg::ParseLsn(result.Get(0, 2)));
  ASSIGN_OR_RETURN(follow.applied_lsn, pg::ParseLsn(result.Get(0, 3)));
  follow.changes = std::stoll(std::string(result.Get(0, 4)));
  return std::optional<FollowRecord>(std::move(follow));
}

absl::Status JobStore::StartFollow(const std::string& name, const FollowRecord& follow) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("INSERT INTO ", Table("follows"),
                              " (job_name, slot, publication, start_lsn, applied_lsn, applied_at)"
                              " VALUES ($1::text, $2::text, $3::text, $4::pg_lsn, $4::pg_lsn, ",
                              kNow, ") ON CONFLICT (job_name) DO NOTHING RETURNING 1"),
                 {name, follow.slot, follow.publication, pg::FormatLsn(follow.start_lsn)}));
  if (result.Rows() == 0) {
    return absl::AlreadyExistsError(absl::StrCat("job ", name, " follows its source already"));
  }
  return absl::OkStatus();
}

std::string JobStore::AdvanceFollowSql() {
  return absl::StrCat("UPDATE ", Table("follows"),
                      " SET applied_lsn = $2::pg_lsn, changes = changes + $3::bigint,"
                      " applied_at = ",
                      kNow, " WHERE job_name = $1::text AND applied_lsn < $2::pg_lsn RETURNING 1");
}

absl::StatusOr<JobControl> JobStore::LoadControl(const std::string& name) {
  RETURN_IF_ERROR(RequireControlColumns());
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("SELECT ", ControlColumns(), " FROM ", Table("jobs"),
                                           " WHERE name = $1::text"),
                              {name}));
  if (result.Rows() == 0) return NoSuchJob(name);
  return ControlFromRow(result, 0, 0);
}

absl::Status JobStore::SetControl(const std::string& name, const std::string& control,
                                  const std::string& by) {
  RETURN_IF_ERROR(CheckControl(name, control));
  RETURN_IF_ERROR(RequireControlColumns());
  // In the SET list `control` is the old value, so one statement both keeps a standing abort and
  // reports it.
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                              " SET control = CASE WHEN control = 'abort' THEN control"
                              " ELSE $2::text END,"
                              " control_by = CASE WHEN control = 'abort' THEN control_by"
                              " ELSE $3::text END,"
                              " control_at = CASE WHEN control = 'abort' THEN control_at ELSE ",
                              kNow, " END WHERE name = $1::text RETURNING control, control_by"),
                 {name, control, NullIfEmpty(by)}));
  if (result.Rows() == 0) return NoSuchJob(name);
  if (control != "abort" && result.Get(0, 0) == "abort") {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", name, " was aborted by ",
        result.IsNull(0, 1) ? "an operator" : std::string(result.Get(0, 1)),
        "; the abort stands until the job is run again"));
  }
  return absl::OkStatus();
}

absl::Status JobStore::MergeSettings(const std::string& name,
                                     const std::map<std::string, std::string>& settings,
                                     const std::string& by) {
  RETURN_IF_ERROR(RequireControlColumns());
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [key, value] : settings) object[key] = value;
  // One statement: `||` merges on the server, so two operators setting different keys at once
  // both keep theirs.
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                              " SET settings = settings || $2::jsonb, control_by = $3::text,"
                              " control_at = ",
                              kNow, " WHERE name = $1::text"),
                 {name, object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  NullIfEmpty(by)}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::ClearAbort(const std::string& name, const std::string& requested_before) {
  RETURN_IF_ERROR(RequireControlColumns());
  // CASE rather than `AND control = 'abort'` in the WHERE clause: a job that is not aborted
  // still matches, so no row means no job.
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("UPDATE ", Table("jobs"),
                              " SET control = CASE WHEN control = 'abort' AND ($2::timestamptz"
                              " IS NULL OR control_at IS NULL OR control_at < $2::timestamptz)"
                              " THEN 'run' ELSE control END WHERE name = $1::text"),
                 {name, NullIfEmpty(requested_before)}));
  if (result.AffectedRows() == 0) return NoSuchJob(name);
  return absl::OkStatus();
}

absl::Status JobStore::RegisterRunner(const std::string& name, const RunnerRecord& runner,
                                      absl::Duration lease) {
  // One registration of a job at a time, and each one's started_at after every earlier one's
  // (later than the last even when the server's clock stepped back): the phases tell which of two
  // processes came first by that order (oldest first, ListRunners), so both must see it alike. The
  // insert's snapshot is taken after the lock, so it sees every registration before it.
  return InTransaction([&]() -> absl::Status {
    RETURN_IF_ERROR(conn_
                        .Exec("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog."
                              "hashtextextended('pgbackfill runners ' || $1::text, 0))",
                              {name})
                        .status());
    // Rows of runners that died long ago would only clutter `status`; recent ones stay to show
    // who stopped renewing.
    RETURN_IF_ERROR(conn_
                        .Exec(absl::StrCat("DELETE FROM ", Table("runners"),
                                           " WHERE job_name = $1::text AND lease_until < ", kNow,
                                           " - interval '1 hour'"),
                              {name})
                        .status());
    return conn_
        .Exec(absl::StrCat("INSERT INTO ", Table("runners"),
                           " (job_name, runner_id, kind, host, pid, started_at, heartbeat_at,"
                           " lease_until) SELECT $1::text, $2::text, $3::text, $4::text, $5::int,"
                           " GREATEST(",
                           kNow,
                           ", (SELECT pg_catalog.max(started_at) + interval '1 microsecond'"
                           " FROM ",
                           Table("runners"), " WHERE job_name = $1::text)), ", kNow, ", ", kNow,
                           " + $6::float8 * interval '1 second'"),
              {name, runner.id, runner.kind, NullIfEmpty(runner.host),
               runner.pid != 0 ? pg::Param(std::to_string(runner.pid)) : std::nullopt,
               LeaseSeconds(lease)})
        .status();
  });
}

absl::StatusOr<bool> JobStore::RenewRunner(const std::string& name, const std::string& runner_id,
                                           absl::Duration lease) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec(absl::StrCat("UPDATE ", Table("runners"),
                                           " SET heartbeat_at = ", kNow, ", lease_until = ", kNow,
                                           " + $3::float8 * interval '1 second'"
                                           " WHERE job_name = $1::text AND runner_id = $2::text"
                                           " AND lease_until > ",
                                           kNow),
                              {name, runner_id, LeaseSeconds(lease)}));
  return result.AffectedRows() == 1;
}

absl::Status JobStore::ExpireRunner(const std::string& name, const std::string& runner_id) {
  return conn_
      .Exec(absl::StrCat("UPDATE ", Table("runners"), " SET lease_until = ", kNow,
                         " WHERE job_name = $1::text AND runner_id = $2::text AND lease_until > ",
                         kNow),
            {name, runner_id})
      .status();
}

absl::Status JobStore::UnregisterRunner(const std::string& name, const std::string& runner_id) {
  // One statement: the ranges go back and the row goes together.
  return conn_
      .Exec(absl::StrCat("WITH released AS (UPDATE ", Table("ranges"),
                         " SET owner = NULL WHERE job_name = $1::text AND owner = $2::text)"
                         " DELETE FROM ",
                         Table("runners"), " WHERE job_name = $1::text AND runner_id = $2::text"),
            {name, runner_id})
      .status();
}

absl::StatusOr<std::vector<RunnerRecord>> JobStore::ListRunners(const std::string& name) {
  if (seen_version_ < kLeaseVersion) RETURN_IF_ERROR(Version().status());
  if (seen_version_ < kLeaseVersion) return std::vector<RunnerRecord>{};
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec(absl::StrCat("SELECT runner_id, kind, host, pid, ", Timestamp("started_at"), ", ",
                              Timestamp("heartbeat_at"), ", ", Timestamp("lease_until"),
                              ", lease_until > ", kNow, " FROM ", Table("runners"),
                              " WHERE job_name = $1::text ORDER BY started_at, runner_id"),
                 {name}));
  std::vector<RunnerRecord> runners;
  for (int row = 0; row < result.Rows(); ++row) {
    RunnerRecord runner;
    runner.id = std::string(result.Get(row, 0));
    runner.kind = std::string(result.Get(row, 1));
    runner.host = std::string(result.Get(row, 2));
    runner.pid = static_cast<int>(ToInt64(result.Get(row, 3)));
    runner.started_at = std::string(result.Get(row, 4));
    runner.heartbeat_at = std::string(result.Get(row, 5));
    runner.lease_until = std::string(result.Get(row, 6));
    runner.live = result.Get(row, 7) == "t";
    runners.push_back(std::move(runner));
  }
  return runners;
}

std::string TakeRangeSql() {
  return absl::StrReplaceAll(
      R"sql(WITH candidate AS (
  SELECT r.range_id FROM @ranges r
   WHERE r.job_name = $1::text AND r.state <> 'done'
     AND (r.owner IS NULL
          OR r.owner <> $2::text AND NOT EXISTS (
               SELECT FROM @runners w
                WHERE w.job_name = r.job_name AND w.runner_id = r.owner
                  AND w.lease_until > pg_catalog.clock_timestamp()))
   ORDER BY r.range_id
   LIMIT 1 FOR UPDATE OF r SKIP LOCKED)
UPDATE @ranges r SET owner = $2::text FROM candidate c
 WHERE r.job_name = $1::text AND r.range_id = c.range_id
RETURNING r.range_id, r.lower, r.upper, r.done_upto, r.rows_done, r.state)sql",
      {{"@ranges", Table("ranges")}, {"@runners", Table("runners")}});
}

std::string OthersUnfinishedSql() {
  return absl::StrCat("SELECT pg_catalog.count(*) FROM ", Table("ranges"),
                      " WHERE job_name = $1::text AND state <> 'done'"
                      " AND owner IS DISTINCT FROM $2::text");
}

std::string ForeignRangesSql() {
  return absl::StrCat("SELECT range_id, lower, upper, done_upto FROM ", Table("ranges"),
                      " WHERE job_name = $1::text AND state <> 'done'"
                      " AND owner IS NOT NULL AND owner <> $2::text ORDER BY range_id");
}

std::string SplitLockSql() {
  return "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended("
         "'pgbackfill split ' || $1::text, 0))";
}

std::string LockRangeSql() {
  return absl::StrCat(
      "SELECT lower, upper, done_upto FROM ", pg::QuoteIdent(sql::kJobStoreSchema),
      ".\"ranges\" WHERE job_name = $1::text AND range_id = $2::int AND state <> 'done'"
      " FOR UPDATE");
}

std::string SplitRangeSql() {
  return absl::StrReplaceAll(
      R"sql(WITH donor AS (
  UPDATE @ranges AS r SET upper = $3::text[], updated_at = pg_catalog.clock_timestamp()
   WHERE r.job_name = $1::text AND r.range_id = $2::int AND r.state <> 'done'
     AND r.upper IS NOT DISTINCT FROM $4::text[] AND r.done_upto IS NOT DISTINCT FROM $5::text[]
  RETURNING r.job_name
)
INSERT INTO @ranges (job_name, range_id, lower, upper, done_upto, rows_done, state, updated_at,
                     owner)
SELECT d.job_name, (SELECT pg_catalog.max(range_id) + 1 FROM @ranges WHERE job_name = $1::text),
       $3::text[], $4::text[], NULL, 0, 'pending', pg_catalog.clock_timestamp(), $6::text
  FROM donor d
RETURNING range_id)sql",
      {{"@ranges", absl::StrCat(pg::QuoteIdent(sql::kJobStoreSchema), ".\"ranges\"")}});
}

}  // namespace pgbackfill::checkpoint
