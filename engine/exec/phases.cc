#include "pgbackfill/exec/phases.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "follow_internal.h"
#include "lease.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/expand/ddl.h"
#include "pgbackfill/expand/triggers.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/preflight/preflight.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "pgbackfill/verify/move_verify.h"
#include "pgbackfill/verify/verify.h"

namespace pgbackfill::exec {
namespace {

// How often a phase looks again at the job's leases, and how long `rollback` waits for a running
// backfill to stop after asking it to abort.
constexpr absl::Duration kLockRetry = absl::Milliseconds(200);
constexpr absl::Duration kAbortWait = absl::Minutes(2);

constexpr char kExpandDone[] = "phase:expand";
constexpr char kVerifyDone[] = "phase:verify";
constexpr char kContractDone[] = "phase:contract";
constexpr char kTriggersInstalled[] = "triggers";
constexpr char kTriggersDropped[] = "triggers_dropped";

std::string Requester() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  const char* user = getenv("USER");
  return absl::StrCat(user != nullptr ? user : "unknown", "@", host.data(), " pid ", getpid());
}

RunSummary Ended(Outcome outcome, Phase phase, std::string message) {
  RunSummary summary;
  summary.outcome = outcome;
  summary.phase = PhaseName(phase);
  summary.message = std::move(message);
  return summary;
}

// The trigger kind a plan installs in expand, "" when none.
std::string TriggerKind(const plan::Plan& plan) {
  // Between databases no trigger can reach the target: the copy is of the source's snapshot.
  if (plan::MovesBetweenDatabases(plan)) return "";
  if (plan.mode == plan::Mode::kCopy) return "copy";
  return plan.dual_write ? "dw" : "";
}

// One phase of one job on its own session: preflight, the job store, a lease on the job.
class PhaseRunner {
 public:
  PhaseRunner(Phase phase, const plan::Plan& plan, const RunOptions& options, events::EventSink& events)
      : phase_(phase),
        plan_(plan),
        options_(options),
        events_(events),
        dsn_(plan::HomeDsn(plan, options.dsn)) {}

  absl::StatusOr<RunSummary> Run() {
    events_.Emit(events::PhaseStarted{.job = plan_.name, .phase = PhaseName(phase_)});
    absl::StatusOr<RunSummary> summary = RunPhase();
    if (summary.ok() && summary->outcome == Outcome::kDone) {
      events_.Emit(events::PhaseDone{.job = plan_.name,
                                     .phase = PhaseName(phase_),
                                     .skipped = skipped_,
                                     .message = summary->message});
    }
    return summary;
  }

 private:
  absl::StatusOr<RunSummary> RunPhase() {
    switch (phase_) {
      case Phase::kExpand:
        return Expand();
      case Phase::kVerify:
        return Verify();
      case Phase::kFollow:
        return Follow();
      case Phase::kContract:
        return Contract();
      case Phase::kRollback:
        return Rollback();
      case Phase::kBackfill:
        break;
    }
    return absl::InternalError("the backfill phase runs through RunBackfill");
  }

  RunSummary Refuse(std::string message) {
    return Ended(Outcome::kRefused, phase_, std::move(message));
  }
  RunSummary Skip(std::string message) {
    skipped_ = true;
    return Ended(Outcome::kDone, phase_, std::move(message));
  }

  // Connects, runs preflight, makes sure the job store is current and takes a lease on the job.
  // nullopt when the phase may go on. Preflight problems do not refuse here: a phase that already
  // ran says so even when its own work made the plan stale (contract dropped a column the `set`
  // reads, a swap renamed `into`); a phase with work to do calls RequirePreflight().
  absl::StatusOr<std::optional<RunSummary>> Open() {
    ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn_));
    conn.TagStatements();
    conn_.emplace(std::move(conn));
    ASSIGN_OR_RETURN(report_, preflight::PreflightPlan(*conn_, plan_, options_.dsn));
    store_.emplace(*conn_);
    if (!report_.ok()) {
      // Without a job store no phase can have run: refuse before creating anything.
      ASSIGN_OR_RETURN(bool store_exists, store_->Exists());
      if (!store_exists) return RequirePreflight();
    }
    RETURN_IF_ERROR(store_->EnsureSchema());
    // The phase's own lease first, then a look at the others' (WaitForOthers): of two processes
    // starting the same phase at once, the one registered first goes on, the other waits.
    ASSIGN_OR_RETURN(
        lease_, internal::Lease::Take(dsn_, plan_.name, PhaseName(phase_), plan_.lease_timeout));
    ASSIGN_OR_RETURN(std::string busy, WaitForOthers());
    if (!busy.empty()) {
      return std::optional<RunSummary>(Refuse(
          absl::StrCat("job ", plan_.name, " is being worked on by another pgbackfill process (",
                       busy, "); wait for it, or stop it first (`pgbackfill abort ", plan_.name,
                       "`). A process that was killed holds the job until its lease expires")));
    }
    if (job_.has_value() && options_.restart && phase_ == Phase::kExpand) {
      // Starting over: the job's record goes, its objects stay (the triggers are replaced in
      // place, and `expand` statements are expected to be idempotent: IF NOT EXISTS).
      RETURN_IF_ERROR(store_->DeleteJob(plan_.name));
      job_.reset();
      steps_.clear();
    }
    if (job_.has_value()) {
      if (job_->plan_hash != report_.plan_hash && phase_ != Phase::kRollback) {
        return std::optional<RunSummary>(Refuse(absl::StrCat(
            "the plan of job ", plan_.name, " changed since the job started (plan hash ",
            job_->plan_hash, ", now ", report_.plan_hash,
            "); run its phases with the original plan, or give --restart to start this job over "
            "(rows already filled keep their values)")));
      }
    }
    return std::optional<RunSummary>();
  }

  std::optional<RunSummary> RequirePreflight() {
    if (report_.ok() && report_.table.has_value() &&
        (plan_.mode != plan::Mode::kCopy || report_.target.has_value())) {
      return std::nullopt;
    }
    std::vector<std::string> problems = report_.problems;
    if (problems.empty()) {
      problems.push_back(absl::StrCat("the copy target ", plan::QuoteQualified(*plan_.into),
                                      " does not exist"));
    }
    return Refuse(absl::StrCat("preflight found ", problems.size(), " problem(s):\n  ",
                               absl::StrJoin(problems, "\n  ")));
  }

  // Which other processes this phase must not run beside: every other phase, except that a
  // phase that only reads (verify, or an expand already recorded as `phase:expand`, which only
  // says so) runs beside a backfill (`pgbackfill run`, on any host) and beside verify: the `run`s
  // of one job each verify at their end.
  bool Excludes(const std::string& kind) const {
    const bool reads_only =
        phase_ == Phase::kVerify ||
        (phase_ == Phase::kExpand && !options_.restart && steps_.contains("phase:expand"));
    return !reads_only || (kind != "run" && kind != "verify");
  }

  // The live leases of the processes this phase must not run beside, as a text; "" once there
  // are none. Of two in the same phase, only the one registered later waits: of several `run`s
  // started at once, the first runs expand and the others then find it done and join the
  // backfill (two different phases started at once both wait, and both refuse if neither ends).
  // A process's next phase registers anew, so seniority counts within one phase only. Waits up
  // to a lease timeout (a killed process's lease expires within it); rollback first asks a
  // running backfill to abort (it stops after the batches in flight) and waits for it to end.
  // Loads the job and its steps as they are when it returns.
  absl::StatusOr<std::string> WaitForOthers() {
    const absl::Time deadline =
        absl::Now() + (phase_ == Phase::kRollback ? kAbortWait : plan_.lease_timeout + kLockRetry);
    bool asked = false;
    while (true) {
      // The runners first, then the job: a runner not listed had recorded its steps before its
      // lease went, so the steps read after the list hold everything it did.
      ASSIGN_OR_RETURN(std::vector<checkpoint::RunnerRecord> runners,
                       store_->ListRunners(plan_.name));
      RETURN_IF_ERROR(LoadJobState());
      std::string busy;
      bool backfill = false;
      bool later = false;  // oldest first: past this one's own row, the later ones
      for (const checkpoint::RunnerRecord& other : runners) {
        if (other.id == lease_->id()) {
          later = true;
          continue;
        }
        if (!other.live || !Excludes(other.kind)) continue;
        if (later && other.kind == PhaseName(phase_)) continue;
        backfill = backfill || other.kind == "run" || other.kind == "follow";
        absl::StrAppend(&busy, busy.empty() ? "" : "; ", other.kind, " pid ", other.pid,
                        " on host ", other.host, ", lease until ", other.lease_until);
      }
      if (busy.empty() || absl::Now() >= deadline) return busy;
      if (backfill && phase_ == Phase::kRollback && !asked) {
        absl::Status abort = store_->SetControl(plan_.name, "abort", Requester());
        if (!abort.ok() && abort.code() != absl::StatusCode::kFailedPrecondition) return abort;
        events_.Emit(events::Warning{absl::StrCat(
            "job ", plan_.name, " is running; asked it to abort and waiting for it to stop")});
        asked = true;
      }
      absl::SleepFor(kLockRetry);
    }
  }

  absl::Status LoadJobState() {
    ASSIGN_OR_RETURN(job_, store_->LoadJob(plan_.name));
    steps_.clear();
    if (job_.has_value()) {
      ASSIGN_OR_RETURN(steps_, store_->StepsDone(plan_.name));
    }
    return absl::OkStatus();
  }

  // The session runs DDL (and the user's trigger functions are created) under the user's own
  // search_path, as the statements were written for it; Harden() puts the pinned one back.
  absl::Status UseUserSearchPath() {
    conn_->Pin("search_path", report_.user_search_path);
    return absl::OkStatus();
  }
  absl::Status Harden() { return catalog::Catalog(*conn_).Harden().status(); }

  // A session on a move's source for the job's objects there (the follow's slot, publication
  // and trigger): tagged and hardened as the engine's own sessions are.
  absl::StatusOr<pg::Connection> ConnectSource() {
    ASSIGN_OR_RETURN(pg::Connection source,
                     pg::Connection::Connect(plan::SourceDsn(plan_, options_.dsn)));
    source.TagStatements();
    RETURN_IF_ERROR(catalog::Catalog(source).Harden().status());
    return source;
  }

  // Runs one DDL step unless the job store says it is done; records it (and `also_done`) in the
  // step's own transaction (for steps that cannot run in one, right after it).
  absl::Status Step(const std::string& step, const std::string& sql,
                    const std::vector<std::string>& also_done = {},
                    const std::vector<std::string>& also_forgotten = {}) {
    if (steps_.contains(step)) return absl::OkStatus();
    const expand::DdlOptions options = DdlOptions();
    const std::string job = plan_.name;
    auto record = [&](pg::Connection& conn) -> absl::Status {
      for (const std::string& done : also_done) {
        RETURN_IF_ERROR(conn.Exec(checkpoint::JobStore::MarkStepSql(), {job, done}).status());
      }
      for (const std::string& forgotten : also_forgotten) {
        RETURN_IF_ERROR(
            conn.Exec(checkpoint::JobStore::ForgetStepSql(), {job, forgotten}).status());
      }
      return conn.Exec(checkpoint::JobStore::MarkStepSql(), {job, step}).status();
    };
    auto on_retry = [&](const expand::DdlAttempt& attempt) {
      events_.Emit(events::DdlRetry{.step = step,
                                    .attempt = attempt.attempt,
                                    .sql = attempt.sql.substr(0, 300),
                                    .sqlstate = attempt.sqlstate,
                                    .error = attempt.error.substr(0, 300),
                                    .wait_ms = absl::ToInt64Milliseconds(attempt.wait)});
    };
    if (absl::Status ran = expand::RunDdlStep(*conn_, sql, options, record, on_retry); !ran.ok()) {
      return WithMessage(ran, absl::StrCat(step, " failed: ", ran.message()));
    }
    steps_.insert(step);
    steps_.insert(also_done.begin(), also_done.end());
    for (const std::string& forgotten : also_forgotten) steps_.erase(forgotten);
    events_.Emit(events::Ddl{.step = step, .sql = sql.substr(0, 300)});
    return absl::OkStatus();
  }

  // A failed step ends the phase as failed, with what the server said.
  RunSummary StepFailed(const absl::Status& status) {
    (void)Harden();
    return Ended(Outcome::kFailed, phase_, std::string(status.message()));
  }

  absl::Status Mark(const char* step, const char* phase) {
    RETURN_IF_ERROR(store_->MarkStep(plan_.name, step));
    return store_->SetPhase(plan_.name, phase);
  }

  std::vector<std::string> DropTriggerStatements() const {
    const std::string kind = TriggerKind(plan_);
    if (kind.empty()) return {};
    return expand::DropTriggerSql(report_.table->name, expand::NamesFor(plan_.name, kind));
  }

  absl::StatusOr<RunSummary> Expand() {
    ASSIGN_OR_RETURN(std::optional<RunSummary> early, Open());
    if (early.has_value()) return *early;
    if (job_.has_value() && job_->state == "rolled_back") {
      return Refuse(absl::StrCat("job ", plan_.name,
                                 " was rolled back; give --restart to start it over"));
    }
    if (steps_.contains(kExpandDone)) return Skip("expand had already run; nothing to do");
    // Copy mode may wait for `expand` to create `into`; everything else must be in place.
    if (!report_.ok() || !report_.table.has_value()) {
      if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
    }
    if (!job_.has_value()) {
      RETURN_IF_ERROR(store_->CreateJob(NewJobRecord(plan_, report_, "expand"), {}));
    }
    RETURN_IF_ERROR(UseUserSearchPath());
    for (size_t i = 0; i < plan_.expand.size(); ++i) {
      if (absl::Status ran = Step(absl::StrCat("expand[", i, "]"), plan_.expand[i]); !ran.ok()) {
        return StepFailed(ran);
      }
    }
    const std::string kind = TriggerKind(plan_);
    if (!kind.empty() && !steps_.contains(kTriggersInstalled)) {
      // Copy mode: `expand` may have just created the target; preflight again to know its key.
      if (plan_.mode == plan::Mode::kCopy && !report_.target.has_value()) {
        ASSIGN_OR_RETURN(report_, preflight::PreflightPlan(*conn_, plan_, options_.dsn));
        if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
        RETURN_IF_ERROR(UseUserSearchPath());
      }
      std::vector<std::string> install;
      if (kind == "dw") {
        expand::DualWriteSpec spec;
        spec.job = plan_.name;
        spec.table = report_.table->name;
        spec.set = plan_.set;
        spec.where = plan_.where;
        spec.search_path = report_.user_search_path;
        install = expand::DualWriteInstallSql(spec);
      } else {
        expand::CopySpec spec;
        spec.job = plan_.name;
        spec.source = report_.table->name;
        for (const catalog::Column& column : report_.key->columns) {
          spec.source_key.push_back(column.name);
        }
        spec.target = report_.target->name;
        spec.columns = report_.copy_columns;
        spec.target_key = report_.target_key;
        spec.on_conflict = plan_.on_conflict;
        spec.where = plan_.where;
        spec.search_path = report_.user_search_path;
        install = expand::CopyTriggerInstallSql(spec);
      }
      if (absl::Status ran = Step(kTriggersInstalled, absl::StrJoin(install, ";\n")); !ran.ok()) {
        return StepFailed(ran);
      }
    }
    RETURN_IF_ERROR(Harden());
    RETURN_IF_ERROR(Mark(kExpandDone, "expand"));
    return Ended(Outcome::kDone, phase_,
                 kind.empty() ? "expanded" : "expanded; the job's trigger keeps new writes in step");
  }

  // A move with `follow: true`, after its copy: the source's changes until cutover.
  absl::StatusOr<RunSummary> Follow() {
    ASSIGN_OR_RETURN(std::optional<RunSummary> early, Open());
    if (early.has_value()) return *early;
    if (!plan_.follow) return Skip("the plan does not follow its source (follow: true)");
    if (steps_.contains(internal::kCutOverStep)) {
      // A run that stopped between the record and the drop leaves the slot holding WAL.
      ASSIGN_OR_RETURN(pg::Connection source, ConnectSource());
      RETURN_IF_ERROR(internal::DropFollowObjects(source, plan_.name, report_.table->name,
                                                  /*with_trigger=*/false));
      return Skip("cut over already; nothing to do");
    }
    if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
    if (!job_.has_value() || job_->state != "done") {
      return Refuse(absl::StrCat("the copy of job ", plan_.name, " has not finished (state ",
                                 job_.has_value() ? job_->state : "none",
                                 "); run `pgbackfill backfill` first"));
    }
    // An abort asked of an earlier run is not one of this run (as for the backfill).
    ASSIGN_OR_RETURN(pg::Result now, conn_->Exec("SELECT pg_catalog.clock_timestamp()::text"));
    RETURN_IF_ERROR(store_->ClearAbort(plan_.name, std::string(now.Get(0, 0))));
    RETURN_IF_ERROR(store_->SetPhase(plan_.name, "follow"));
    return internal::FollowChanges(internal::FollowInputs{
        .plan = plan_,
        .options = options_,
        .events = events_,
        .store = *store_,
        .report = report_,
    });
  }

  absl::StatusOr<RunSummary> Verify() {
    ASSIGN_OR_RETURN(std::optional<RunSummary> early, Open());
    if (early.has_value()) return *early;
    if (steps_.contains(kContractDone)) {
      return Skip("the job was contracted after its verify; nothing left to compare");
    }
    if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
    if (!job_.has_value() || job_->state != "done") {
      return Refuse(absl::StrCat("the backfill of job ", plan_.name, " has not finished (state ",
                                 job_.has_value() ? job_->state : "none",
                                 "); run `pgbackfill backfill` first"));
    }
    if (std::optional<std::string> why = verify::WhyNotVerifiable(plan_)) {
      return Skip(absl::StrCat("not verified: ", *why));
    }
    ASSIGN_OR_RETURN(std::vector<checkpoint::RangeRecord> ranges, store_->LoadRanges(plan_.name));
    if (plan::MovesBetweenDatabases(plan_)) return VerifyMove(ranges);
    std::vector<sql::KeyColumn> key;
    for (const catalog::Column& column : report_.key->columns) {
      key.push_back(sql::KeyColumn{column.name, column.type});
    }
    absl::StatusOr<verify::Report> checked;
    if (plan_.mode == plan::Mode::kCopy) {
      verify::CopyCheck check;
      check.source = report_.table->name;
      check.key = key;
      check.target = report_.target->name;
      check.columns = report_.copy_columns;
      for (const plan::Assignment& assignment : check.columns) {
        const catalog::Column* column = report_.target->FindColumn(assignment.column);
        check.column_types.push_back(column != nullptr ? column->type : "");
      }
      check.target_key = report_.target_key;
      check.where = plan_.where;
      checked = verify::Verify(*conn_, check, ranges, report_.user_search_path);
    } else {
      batch::UpdateBatchSpec spec;
      spec.table = report_.table->name;
      spec.key = key;
      spec.set = plan_.set;
      spec.where = plan_.where;
      std::vector<std::string> types;
      for (const plan::Assignment& assignment : spec.set) {
        const catalog::Column* column = report_.table->FindColumn(assignment.column);
        types.push_back(column != nullptr ? column->type : "");
      }
      checked = verify::Verify(*conn_, spec, types, ranges, report_.user_search_path);
    }
    RETURN_IF_ERROR(checked.status());
    const verify::Report& found = *checked;
    events::Verified event;
    event.job = plan_.name;
    event.differing_rows = found.differing;
    event.ranges_checked = found.ranges_checked;
    event.first_keys = found.first_keys;
    for (const verify::RangeDiff& diff : found.ranges) {
      event.ranges.push_back({.range = diff.range, .rows = diff.rows, .first_keys = diff.first_keys});
    }
    events_.Emit(event);
    if (found.differing > 0) {
      // A verify that passed earlier no longer vouches for the data: contract needs a new one.
      RETURN_IF_ERROR(store_->ClearSteps(plan_.name, kVerifyDone));
      return Ended(Outcome::kVerifyFailed, phase_,
                   absl::StrCat(found.differing, " row(s) differ from what the plan computes, in ",
                                found.ranges.size(), " range(s); first keys: ",
                                absl::StrJoin(found.first_keys, " ")));
    }
    RETURN_IF_ERROR(Mark(kVerifyDone, "verify"));
    return Ended(Outcome::kDone, phase_,
                 absl::StrCat("every row matches (", found.ranges_checked, " range(s))"));
  }

  // Between databases: counts and row hashes per range on both sides, and with --repair each
  // differing range copied again.
  absl::StatusOr<RunSummary> VerifyMove(const std::vector<checkpoint::RangeRecord>& ranges) {
    if (options_.repair && !steps_.contains(move::kTargetWasEmptyStep)) {
      // Repair deletes a span's target rows before copying it again: only sound when every row
      // of `into` came from the source.
      return Refuse(absl::StrCat(
          "verify --repair: ", plan::QuoteQualified(*plan_.into),
          " had rows before job ", plan_.name, " started, which a repair would delete with the "
          "rows it copies again; verify without --repair lists the differing ranges"));
    }
    ASSIGN_OR_RETURN(pg::Connection source,
                     pg::Connection::Connect(plan::SourceDsn(plan_, options_.dsn)));
    RETURN_IF_ERROR(catalog::Catalog(source).Harden().status());
    ASSIGN_OR_RETURN(verify::MoveReport found,
                     verify::VerifyMove(source, *conn_, preflight::MoveSpecFor(report_, plan_),
                                        ranges, report_.user_search_path, options_.repair));
    (void)Harden();  // the verify session's output settings stay; its search_path is ours again
    events::MoveVerified event;
    event.job = plan_.name;
    event.ranges_checked = found.ranges_checked;
    event.differing_ranges = static_cast<int>(found.ranges.size());
    event.repaired_ranges = found.repaired;
    std::vector<std::string> unrepaired;
    for (const verify::MoveRangeDiff& diff : found.ranges) {
      event.ranges.push_back({.range = diff.range,
                              .source_rows = diff.source_rows,
                              .target_rows = diff.target_rows,
                              .repaired = diff.repaired});
      if (!diff.repaired) {
        unrepaired.push_back(absl::StrCat(diff.range, " (source ", diff.source_rows,
                                          " rows, target ", diff.target_rows, ")"));
      }
    }
    events_.Emit(event);
    if (!unrepaired.empty()) {
      RETURN_IF_ERROR(store_->ClearSteps(plan_.name, kVerifyDone));
      return Ended(Outcome::kVerifyFailed, phase_,
                   absl::StrCat(unrepaired.size(), " range(s) differ between source and target: ",
                                absl::StrJoin(unrepaired, ", "),
                                options_.repair ? ""
                                : steps_.contains(move::kTargetWasEmptyStep)
                                    ? "; `pgbackfill verify --repair` copies them again"
                                    : "; the target had rows before the job, which the source "
                                      "does not explain: compare those ranges by hand"));
    }
    RETURN_IF_ERROR(Mark(kVerifyDone, "verify"));
    return Ended(Outcome::kDone, phase_,
                 found.repaired > 0
                     ? absl::StrCat(found.repaired, " differing range(s) copied again; now every "
                                    "range matches (", found.ranges_checked, " range(s))")
                     : absl::StrCat("every range matches (", found.ranges_checked, " range(s))"));
  }

  expand::DdlOptions DdlOptions() const {
    expand::DdlOptions options;
    options.lock_timeout = plan_.ddl.lock_timeout;
    options.retry_for = plan_.ddl.retry_for;
    return options;
  }

  // A NOT NULL step that failed (VALIDATE found a NULL: 23514) leaves its NOT VALID check behind,
  // which already rejects new NULLs. Drop it, and forget the column's steps, so that a re-run
  // after the data is fixed starts the column over.
  absl::Status CleanUpNotNull(const std::string& failed_step) {
    for (const std::string& column : plan_.not_null) {
      const std::string prefix = absl::StrCat("not_null.", column, "[");
      if (!failed_step.starts_with(prefix)) continue;
      RETURN_IF_ERROR(expand::RunDdlStep(
          *conn_, expand::NotNullCleanupStep(report_.table->name, column, plan_.name),
          DdlOptions(), nullptr, nullptr));
      for (auto it = steps_.begin(); it != steps_.end();) {
        it = it->starts_with(prefix) ? steps_.erase(it) : std::next(it);
      }
      return store_->ClearSteps(plan_.name, prefix);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<RunSummary> Contract() {
    ASSIGN_OR_RETURN(std::optional<RunSummary> early, Open());
    if (early.has_value()) return *early;
    if (steps_.contains(kContractDone)) return Skip("contract had already run; nothing to do");
    // Half a contract may have dropped what the plan reads; its remaining steps still run.
    const bool contract_started = std::any_of(steps_.begin(), steps_.end(), [](const std::string& step) {
      return step.starts_with("contract[") || step.starts_with("not_null.");
    });
    if (!contract_started) {
      if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
    } else if (!report_.table.has_value()) {
      if (std::optional<RunSummary> refused = RequirePreflight()) return *refused;
    }
    if (!job_.has_value() || job_->state != "done") {
      return Refuse(absl::StrCat("the backfill of job ", plan_.name, " has not finished (state ",
                                 job_.has_value() ? job_->state : "none",
                                 "); contracting now would drop the triggers before every row is "
                                 "filled"));
    }
    if (plan_.verify && !verify::WhyNotVerifiable(plan_).has_value() &&
        !steps_.contains(kVerifyDone)) {
      return Refuse(absl::StrCat("job ", plan_.name,
                                 " has not passed verify; run `pgbackfill verify` first (or set "
                                 "`verify: false` in the plan)"));
    }
    std::vector<std::pair<std::string, std::string>> steps;
    for (const std::string& column : plan_.not_null) {
      std::vector<std::string> sql = expand::NotNullSteps(report_.table->name, column, plan_.name);
      for (size_t j = 0; j < sql.size(); ++j) {
        steps.emplace_back(absl::StrCat("not_null.", column, "[", j, "]"), std::move(sql[j]));
      }
    }
    for (size_t i = 0; i < plan_.contract.size(); ++i) {
      steps.emplace_back(absl::StrCat("contract[", i, "]"), plan_.contract[i]);
    }
    // Where the trigger goes: in copy mode in the transaction of the last contract statement,
    // just before it (typically the swap of the tables: writes between a separate trigger drop
    // and the swap would be lost, and after the swap the table's name is another table's). In
    // update mode with the first contract statement, after the NOT NULL steps (which need the
    // trigger filling new rows): a later statement may drop a column the trigger reads. A
    // statement that cannot run in a transaction gets the drop as its own step just before it.
    const std::vector<std::string> drop = DropTriggerStatements();
    bool drop_pending = !drop.empty() && !steps_.contains(kTriggersDropped);
    const size_t first_contract = steps.size() - plan_.contract.size();
    const size_t drop_at = plan_.contract.empty() ? steps.size()
                           : plan_.mode == plan::Mode::kCopy ? steps.size() - 1
                                                             : first_contract;
    RETURN_IF_ERROR(UseUserSearchPath());
    for (size_t k = 0; k < steps.size(); ++k) {
      bool with_drop = k == drop_at && drop_pending && !steps_.contains(steps[k].first);
      if (with_drop && expand::NeedsNoTransaction(steps[k].second)) {
        if (absl::Status ran = Step(kTriggersDropped, absl::StrJoin(drop, ";\n")); !ran.ok()) {
          return StepFailed(ran);
        }
        with_drop = false;
        drop_pending = false;
      }
      const std::string sql =
          with_drop ? absl::StrCat(absl::StrJoin(drop, ";\n"), ";\n", steps[k].second)
                    : steps[k].second;
      absl::Status ran =
          Step(steps[k].first, sql,
               with_drop ? std::vector<std::string>{kTriggersDropped} : std::vector<std::string>{});
      if (!ran.ok()) {
        RETURN_IF_ERROR(CleanUpNotNull(steps[k].first));
        return StepFailed(ran);
      }
    }
    if (drop_pending && !steps_.contains(kTriggersDropped)) {
      if (absl::Status ran = Step(kTriggersDropped, absl::StrJoin(drop, ";\n")); !ran.ok()) {
        return StepFailed(ran);
      }
    }
    RETURN_IF_ERROR(Harden());
    RETURN_IF_ERROR(Mark(kContractDone, "contract"));
    return Ended(Outcome::kDone, phase_, "contracted");
  }

  absl::StatusOr<RunSummary> Rollback() {
    ASSIGN_OR_RETURN(std::optional<RunSummary> early, Open());
    if (early.has_value()) return *early;
    if (!job_.has_value()) return Skip(absl::StrCat("job ", plan_.name, " does not exist; nothing to roll back"));
    if (job_->state == "rolled_back") return Skip("the job had already been rolled back");
    if (steps_.contains(kContractDone) && !plan_.rollback.empty()) {
      // After contract the old shape is gone (a dropped column, swapped tables): `rollback:`
      // statements written for an expanded schema could destroy the only copy of the data. With
      // none (the caller owns the DDL, as a migration tool's downgrade does) rollback only
      // cleans up after pgbackfill and records it.
      return Refuse(absl::StrCat("job ", plan_.name, " was contracted; rolling it back would run "
                                 "`rollback:` against the contracted schema. Write a new migration "
                                 "instead"));
    }
    if (!report_.table.has_value()) {
      return Refuse(absl::StrCat("cannot resolve the table of job ", plan_.name,
                                 " to drop its triggers: ",
                                 absl::StrJoin(report_.problems, "; ")));
    }
    RETURN_IF_ERROR(UseUserSearchPath());
    // Both kinds: dropping what is not there is a no-op, and a plan edited between expand and
    // rollback must not leave the other kind behind.
    std::vector<std::string> drop =
        expand::DropTriggerSql(report_.table->name, expand::NamesFor(plan_.name, "dw"));
    for (std::string& sql :
         expand::DropTriggerSql(report_.table->name, expand::NamesFor(plan_.name, "copy"))) {
      drop.push_back(std::move(sql));
    }
    // And any NOT VALID check a failed NOT NULL step left (IF EXISTS: a no-op otherwise).
    for (const std::string& column : plan_.not_null) {
      drop.push_back(expand::NotNullCleanupStep(report_.table->name, column, plan_.name));
    }
    // Forgetting expand in the same transaction: a rollback that stops half way must not leave a
    // job that a `backfill` would run without its trigger.
    if (absl::Status ran =
            Step("rollback.triggers", absl::StrJoin(drop, ";\n"), {}, {kExpandDone, kTriggersInstalled});
        !ran.ok()) {
      return StepFailed(ran);
    }
    for (size_t i = 0; i < plan_.rollback.size(); ++i) {
      if (absl::Status ran = Step(absl::StrCat("rollback[", i, "]"), plan_.rollback[i]);
          !ran.ok()) {
        return StepFailed(ran);
      }
    }
    RETURN_IF_ERROR(Harden());
    if (plan_.follow) {
      // The slot holds WAL on the source for as long as it exists: it goes with the job.
      ASSIGN_OR_RETURN(pg::Connection source, ConnectSource());
      if (absl::Status dropped =
              internal::DropFollowObjects(source, plan_.name, report_.table->name);
          !dropped.ok()) {
        return StepFailed(dropped);
      }
    }
    RETURN_IF_ERROR(store_->MarkRolledBack(plan_.name, Requester()));
    return Ended(Outcome::kDone, phase_, "rolled back; nothing of the job remains but its record");
  }

  const Phase phase_;
  const plan::Plan& plan_;
  const RunOptions& options_;
  events::EventSink& events_;
  std::string dsn_;
  std::optional<pg::Connection> conn_;
  std::optional<checkpoint::JobStore> store_;
  preflight::PreflightReport report_;
  std::optional<checkpoint::JobRecord> job_;
  std::set<std::string> steps_;
  std::unique_ptr<internal::Lease> lease_;  // while the phase works on the job
  bool skipped_ = false;
};

}  // namespace

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kExpand:
      return "expand";
    case Phase::kBackfill:
      return "backfill";
    case Phase::kFollow:
      return "follow";
    case Phase::kVerify:
      return "verify";
    case Phase::kContract:
      return "contract";
    case Phase::kRollback:
      return "rollback";
  }
  return "unknown";
}

std::vector<Phase> RunPhases(bool contract, bool verify, bool follow) {
  std::vector<Phase> phases = {Phase::kExpand, Phase::kBackfill};
  if (follow) phases.push_back(Phase::kFollow);
  if (verify) phases.push_back(Phase::kVerify);
  if (contract) phases.push_back(Phase::kContract);
  return phases;
}

checkpoint::JobRecord NewJobRecord(const plan::Plan& plan, const preflight::PreflightReport& report,
                                   const std::string& phase) {
  checkpoint::JobRecord record;
  record.name = plan.name;
  record.plan_hash = report.plan_hash;
  record.plan_text = plan.text;
  record.plan_file = plan.file;
  record.state = "pending";
  record.phase = phase;
  record.estimated_rows = report.estimate.has_value() ? report.estimate->rows : 0;
  return record;
}

bool NeedsExpand(const plan::Plan& plan) {
  return !plan.expand.empty() || plan.dual_write ||
         (plan.mode == plan::Mode::kCopy && !plan::MovesBetweenDatabases(plan));
}

absl::StatusOr<RunSummary> RunPhaseList(const std::vector<Phase>& phases, const plan::Plan& plan,
                                        const RunOptions& options, events::EventSink& events,
                                        Hooks* hooks) {
  RunSummary summary;
  summary.outcome = Outcome::kDone;
  RunOptions phase_options = options;
  for (const Phase phase : phases) {
    if (hooks != nullptr) {
      if (absl::Status before = hooks->BeforePhase(PhaseName(phase)); !before.ok()) {
        summary.outcome = Outcome::kRefused;
        summary.phase = PhaseName(phase);
        summary.message = std::string(before.message());
        break;
      }
    }
    if (phase == Phase::kBackfill) {
      ASSIGN_OR_RETURN(RunSummary backfill, RunBackfill(plan, phase_options, events));
      summary = backfill;
      summary.phase = PhaseName(phase);
    } else {
      PhaseRunner runner(phase, plan, phase_options, events);
      ASSIGN_OR_RETURN(RunSummary ended, runner.Run());
      summary.outcome = ended.outcome;
      summary.phase = ended.phase;
      if (ended.outcome != Outcome::kDone || phases.size() == 1) summary.message = ended.message;
    }
    // --restart applies to the first phase that starts the job over, not to every phase after.
    phase_options.restart = false;
    if (summary.outcome != Outcome::kDone) break;
    if (hooks != nullptr) hooks->AfterPhase(PhaseName(phase));
  }
  return summary;
}

}  // namespace pgbackfill::exec
