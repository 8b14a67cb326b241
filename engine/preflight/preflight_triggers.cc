// Preflight of the written table's own triggers: which ones the batches' writes fire, and what
// `triggers: skip` (session_replication_role = replica in each batch transaction) needs and
// leaves out. A backfill that fires an updated_at touch or an audit trigger for every row it
// writes is a surprise worth a warning, not a refusal: some triggers are meant to run.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/expand/triggers.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "preflighter.h"

namespace pgbackfill::preflight {
namespace {

constexpr char kReplicaRole[] = "session_replication_role";

// This job's dual-write and copy triggers: they know about the batches already (in_batch, or
// they sit on the table the batch only reads).
bool IsOwnTrigger(const catalog::Trigger& trigger, const std::string& job) {
  if (trigger.function_schema != sql::kJobStoreSchema) return false;
  for (const char* kind : {"dw", "copy"}) {
    if (trigger.name == expand::NamesFor(job, kind).trigger) return true;
  }
  return false;
}

std::string EnabledName(char enabled) {
  switch (enabled) {
    case 'A':
      return "always";
    case 'R':
      return "replica";
    default:
      return "origin";
  }
}

std::string QuotedNames(const std::vector<WriteTrigger>& triggers) {
  std::vector<std::string> names;
  for (const WriteTrigger& trigger : triggers) names.push_back(pg::QuoteIdent(trigger.name));
  return absl::StrJoin(names, ", ");
}

std::vector<int> AttnumsOf(const catalog::Table& table, const std::vector<std::string>& columns) {
  std::vector<int> attnums;
  for (const std::string& name : columns) {
    if (const catalog::Column* column = table.FindColumn(name)) attnums.push_back(column->attnum);
  }
  return attnums;
}

bool Intersect(const std::vector<int>& a, const std::vector<int>& b) {
  return std::any_of(a.begin(), a.end(),
                     [&](int x) { return std::find(b.begin(), b.end(), x) != b.end(); });
}

}  // namespace

std::vector<std::string> Preflighter::WrittenColumns() const {
  std::vector<std::string> columns;
  const std::vector<plan::Assignment>& written =
      plan_.mode == plan::Mode::kUpdate ? plan_.set : report_.copy_columns;
  for (const plan::Assignment& assignment : written) columns.push_back(assignment.column);
  return columns;
}

bool Preflighter::WriteMeets(const catalog::Trigger& trigger, const Table& written) const {
  // UPDATE OF fires only when one of its columns is a target of the UPDATE (or of ON CONFLICT
  // DO UPDATE, which sets every copied column).
  const bool update =
      trigger.OnUpdate() && (trigger.update_of.empty() ||
                             Intersect(trigger.update_of, AttnumsOf(written, WrittenColumns())));
  if (plan_.mode == plan::Mode::kUpdate) return update;
  return trigger.OnInsert() || update;
}

absl::Status Preflighter::CheckUserTriggers() {
  // Update mode writes `table`; copy mode writes `into` (on the target, when moving).
  const bool copy = plan_.mode == plan::Mode::kCopy;
  if (copy && !target_.has_value()) return absl::OkStatus();
  const Table& written = copy ? *target_ : table();
  Catalog& catalog = copy ? target_catalog_ : catalog_;
  const bool skip = plan_.triggers == plan::Triggers::kSkip;
  ASSIGN_OR_RETURN(std::vector<catalog::Trigger> triggers, catalog.Triggers(written));
  for (const catalog::Trigger& trigger : triggers) {
    if (trigger.enabled == 'D' || IsOwnTrigger(trigger, plan_.name)) continue;
    if (!WriteMeets(trigger, written)) continue;
    report_.triggers.push_back(WriteTrigger{trigger.table, trigger.name, trigger.definition,
                                            EnabledName(trigger.enabled), trigger.FiresAs(skip)});
  }
  WarnAboutTriggers(plan::QuoteQualified(written.name));
  if (!skip) return absl::OkStatus();
  RETURN_IF_ERROR(CheckSkipPrivilege());
  return WarnAboutForeignKeys(catalog, written);
}

void Preflighter::WarnAboutTriggers(const std::string& written_name) {
  std::vector<WriteTrigger> firing;
  std::vector<WriteTrigger> skipped;
  for (const WriteTrigger& trigger : report_.triggers) {
    (trigger.fires ? firing : skipped).push_back(trigger);
  }
  const char* writes = plan_.mode == plan::Mode::kUpdate ? "UPDATE" : "INSERT (or UPDATE)";
  if (plan_.triggers == plan::Triggers::kFire) {
    if (firing.empty()) return;
    Warn(absl::StrCat(
        At(plan_, "triggers"), "every row the batches ", writes, " in ", written_name,
        " fires its trigger(s) ", QuotedNames(firing),
        ", as an application's write would (an updated_at touch rewrites every timestamp, an "
        "audit trigger logs every row); give triggers: skip to leave them out (needs a superuser "
        "or GRANT SET ON PARAMETER session_replication_role), or let each trigger leave the "
        "backfill's writes alone: WHEN (current_setting('",
        sql::kInBatchSetting, "', true) IS DISTINCT FROM 'on')"));
    return;
  }
  if (!skipped.empty()) {
    Note(absl::StrCat(At(plan_, "triggers"), "the batches' writes to ", written_name,
                      " do not fire ", QuotedNames(skipped),
                      " (session_replication_role = replica in each batch transaction)"));
  }
  if (!firing.empty()) {
    Warn(absl::StrCat(
        At(plan_, "triggers"), "skip leaves out only triggers enabled as usual: ",
        QuotedNames(firing), " on ", written_name,
        " still fire for every row the batches write (ENABLE ALWAYS fires in every role, ENABLE "
        "REPLICA only in replica mode, so only because of skip)"));
  }
}

absl::Status Preflighter::CheckSkipPrivilege() {
  // has_parameter_privilege is new in 15; an older server is a problem already.
  if (!server_supported_) return absl::OkStatus();
  ASSIGN_OR_RETURN(bool may, target_catalog_.MaySetParameter(kReplicaRole));
  if (may) return absl::OkStatus();
  Problem(absl::StrCat(
      At(plan_, "triggers"),
      "skip sets session_replication_role = replica in each batch "
      "transaction, which role ",
      pg::QuoteIdent(target_user_),
      " may not: only a superuser or a role granted it may (GRANT SET ON PARAMETER "
      "session_replication_role TO ",
      pg::QuoteIdent(target_user_),
      "); grant it, run as a superuser, or remove triggers: skip and let the triggers test ",
      sql::kInBatchSetting, " instead (README)"));
  return absl::OkStatus();
}

absl::Status Preflighter::WarnAboutForeignKeys(Catalog& catalog, const Table& written) {
  ASSIGN_OR_RETURN(std::vector<catalog::ForeignKey> keys, catalog.ForeignKeys(written));
  const std::vector<int> columns = AttnumsOf(written, WrittenColumns());
  std::vector<std::string> unchecked;
  for (const catalog::ForeignKey& key : keys) {
    // An UPDATE meets a key only through its columns; an INSERT meets every key it references.
    const bool inserts = plan_.mode == plan::Mode::kCopy && key.table_references;
    if (!inserts && !Intersect(key.columns, columns)) continue;
    std::string entry =
        absl::StrCat(pg::QuoteIdent(key.name), " (", key.referencing, " -> ", key.referenced, ")");
    if (std::find(unchecked.begin(), unchecked.end(), entry) == unchecked.end()) {
      unchecked.push_back(std::move(entry));
    }
  }
  if (unchecked.empty()) return absl::OkStatus();
  Warn(absl::StrCat(
      At(plan_, "triggers"), "skip also skips the foreign keys ", absl::StrJoin(unchecked, ", "),
      " for the rows the batches write: PostgreSQL checks them (and runs their ON UPDATE "
      "actions) with triggers that do not fire under session_replication_role = replica, so a "
      "batch may write a value the key would refuse and nothing reports it; make sure the "
      "values are valid, or remove triggers: skip"));
  return absl::OkStatus();
}

}  // namespace pgbackfill::preflight
