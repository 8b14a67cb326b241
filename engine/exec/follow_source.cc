// The source's side of a move that follows it: the publication and slot made before the copy,
// and their removal.
#include <cctype>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "follow_internal.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::exec::internal {
namespace {

// SQLSTATE duplicate_object: CREATE_REPLICATION_SLOT of a name that exists.
constexpr char kDuplicateObject[] = "42710";

// "pgbackfill_<job in the slot alphabet, at most 32>_<hash of the job>": readable in
// pg_replication_slots, and two jobs whose names fold alike still differ.
std::string SourceName(const std::string& job, std::string_view suffix) {
  std::string readable;
  for (char c : job) {
    if (readable.size() == 32) break;
    const auto u = static_cast<unsigned char>(c);
    readable.push_back(std::isalnum(u) != 0 ? static_cast<char>(std::tolower(u)) : '_');
  }
  return absl::StrFormat("pgbackfill_%s_%08x%s", readable, Fnv1a32(job), suffix);
}

absl::Status EnsurePublication(pg::Connection& source, const std::string& name,
                               const plan::QualifiedName& table) {
  ASSIGN_OR_RETURN(
      pg::Result found,
      source.Exec("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", {name}));
  if (found.Rows() > 0) return absl::OkStatus();
  return source.ExecScript(absl::StrCat("CREATE PUBLICATION ", pg::QuoteIdent(name), " FOR TABLE ",
                                        plan::QuoteQualified(table)));
}

// Drops the slot `name` when it exists, ending the walsender that streams from it first (a run
// that died leaves its walsender until the server notices).
absl::Status DropSlot(pg::Connection& source, const std::string& name) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    ASSIGN_OR_RETURN(
        pg::Result slot,
        source.Exec("SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                    {name}));
    if (slot.Rows() == 0) return absl::OkStatus();
    if (slot.IsNull(0, 0)) {
      absl::StatusOr<pg::Result> dropped =
          source.Exec("SELECT pg_catalog.pg_drop_replication_slot($1)", {name});
      if (dropped.ok()) return absl::OkStatus();
      // Taken again between the two statements: end that walsender too.
    } else {
      RETURN_IF_ERROR(source
                          .Exec("SELECT pg_catalog.pg_terminate_backend($1::int)",
                                {std::string(slot.Get(0, 0))})
                          .status());
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(
      absl::StrCat("replication slot ", name, " stayed in use; drop it by hand"));
}

}  // namespace

std::string FollowSlotName(const std::string& job) { return SourceName(job, ""); }
std::string FollowPublicationName(const std::string& job) { return SourceName(job, ""); }
std::string MovedTriggerName(const std::string& job) { return SourceName(job, "_moved"); }

follow::ApplySpec ApplySpecFor(const preflight::PreflightReport& report) {
  follow::ApplySpec spec;
  spec.target = report.target->name;
  spec.columns = report.copy_columns;
  spec.target_key = report.target_key;
  spec.target_key_types = report.target_key_types;
  for (const catalog::Column& column : report.key->columns) spec.source_key.push_back(column.name);
  for (const catalog::Column& column : report.table->columns) {
    spec.source_types[column.name] = column.type;
  }
  return spec;
}

absl::StatusOr<MadeSlot> MakeFollowSlot(const plan::Plan& plan, const std::string& source_dsn,
                                        const preflight::PreflightReport& report,
                                        pg::Connection& target) {
  // The changes' transform runs on the target: it must compile there before any slot holds WAL.
  const follow::ApplySpec spec = ApplySpecFor(report);
  const std::string probe = follow::UpsertProbeSql(spec);
  std::vector<pg::Param> nulls(spec.source_types.size());
  RETURN_IF_ERROR(target.ExecScript("BEGIN"));
  absl::Status compiled = target
                              .Exec(absl::StrCat("SELECT pg_catalog.set_config('search_path', $1, "
                                                 "true)"),
                                    {report.user_search_path})
                              .status();
  if (compiled.ok()) compiled = target.Exec(absl::StrCat("EXPLAIN ", probe), nulls).status();
  (void)target.ExecScript("ROLLBACK");
  if (!compiled.ok()) {
    return WithMessage(compiled,
                       absl::StrCat("follow: the source's changes cannot be applied on the "
                                    "target (the columns' expressions, over the source's column "
                                    "types, are compiled there): ",
                                    compiled.message()));
  }

  ASSIGN_OR_RETURN(pg::Connection source, pg::Connection::Connect(source_dsn));
  source.TagStatements();
  RETURN_IF_ERROR(EnsurePublication(source, FollowPublicationName(plan.name), report.table->name));
  const std::string slot_name = FollowSlotName(plan.name);
  for (int attempt = 0;; ++attempt) {
    ASSIGN_OR_RETURN(pg::ReplicationConnection session,
                     pg::ReplicationConnection::Connect(source_dsn));
    absl::StatusOr<pg::ReplicationConnection::Slot> slot =
        session.CreateLogicalSlot(slot_name, "pgoutput");
    if (slot.ok()) return MadeSlot{std::move(session), *std::move(slot)};
    if (attempt > 0 || pg::SqlStateOf(slot.status()) != kDuplicateObject) return slot.status();
    RETURN_IF_ERROR(DropSlot(source, slot_name));
  }
}

absl::Status DropFollowObjects(pg::Connection& source, const std::string& job,
                               const plan::QualifiedName& table) {
  const std::string moved = MovedTriggerName(job);
  const std::string function =
      absl::StrCat(pg::QuoteIdent(table.schema), ".", pg::QuoteIdent(moved));
  RETURN_IF_ERROR(source.ExecScript(absl::StrCat("DROP TRIGGER IF EXISTS ", pg::QuoteIdent(moved),
                                                 " ON ", plan::QuoteQualified(table),
                                                 "; DROP FUNCTION IF EXISTS ", function, "()")));
  RETURN_IF_ERROR(DropSlot(source, FollowSlotName(job)));
  return source.ExecScript(
      absl::StrCat("DROP PUBLICATION IF EXISTS ", pg::QuoteIdent(FollowPublicationName(job))));
}

}  // namespace pgbackfill::exec::internal
