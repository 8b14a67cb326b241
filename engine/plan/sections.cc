// The plan's top level: what the job is (version, name, dsn, table, key), what it does (update
// in place with `set`, or copy with `into` and the keys that only make sense in one of them), and
// its DDL (expand, contract, rollback, not_null, ddl). The tuning sections are in tuning.cc.
#include "sections.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::plan::internal {
namespace {

constexpr size_t kMaxNameLength = 63;

bool IsValidJobName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

absl::Status ParseVersion(const Reader& reader, const std::vector<Entry>& entries, int root_line,
                          Plan& plan) {
  const Entry* version = Find(entries, "version");
  if (version == nullptr) {
    return reader.Error(root_line, "version", "missing; plans start with version: 1");
  }
  int64_t version_number = 0;
  if (!version->value.IsScalar() || !absl::SimpleAtoi(version->value.Scalar(), &version_number)) {
    return reader.Error(*version, absl::StrCat("must be 1, got ", Describe(version->value)));
  }
  if (version_number != 1) {
    return reader.Error(*version, absl::StrFormat("unsupported version %d; this pgbackfill reads "
                                                  "version 1",
                                                  version_number));
  }
  plan.version = 1;
  return absl::OkStatus();
}

// version, name, dsn and table: which job this is, on which database and table.
absl::Status ParseIdentity(const Reader& reader, const std::vector<Entry>& entries, int root_line,
                           Plan& plan) {
  RETURN_IF_ERROR(ParseVersion(reader, entries, root_line, plan));

  const Entry* name = Find(entries, "name");
  if (name == nullptr) {
    return reader.Error(root_line, "name",
                        "missing; name the job, e.g. name: users-split-name (unique per database)");
  }
  ASSIGN_OR_RETURN(plan.name, reader.Text(*name));
  if (!IsValidJobName(plan.name)) {
    return reader.Error(*name, absl::StrFormat("must be 1 to %d characters from A-Z a-z 0-9 _ . -, "
                                               "got %s",
                                               kMaxNameLength, Describe(name->value)));
  }

  if (const Entry* dsn = Find(entries, "dsn")) {
    ASSIGN_OR_RETURN(plan.dsn, reader.Dsn(*dsn));
  }

  const Entry* table = Find(entries, "table");
  if (table == nullptr) {
    return reader.Error(root_line, "table",
                        "missing; name the table to backfill, e.g. "
                        "table: public.users");
  }
  ASSIGN_OR_RETURN(plan.table, reader.Relation(*table));
  return absl::OkStatus();
}

absl::Status ParseKey(const Reader& reader, const Entry& entry, Plan& plan) {
  if (entry.value.IsSequence() && entry.value.size() == 0) {
    return reader.Error(entry,
                        "is an empty list; name at least one column, or remove key to use "
                        "the primary key");
  }
  ASSIGN_OR_RETURN(auto columns, reader.ColumnList(entry, "key"));
  for (auto& [column, line] : columns) plan.key.push_back(std::move(column));
  return absl::OkStatus();
}

// `table` as written, to name it in messages before it was checked.
std::string TableText(const std::vector<Entry>& entries) {
  const Entry* table = Find(entries, "table");
  if (table == nullptr || !table->value.IsScalar()) return "table";
  return table->value.Scalar();
}

// Update mode: `set`, and none of the copy-only keys.
absl::Status ParseUpdateMode(Reader& reader, const std::vector<Entry>& entries, const Entry& set,
                             Plan& plan) {
  plan.mode = Mode::kUpdate;
  for (std::string_view copy_only :
       {"columns", "on_conflict", "source_dsn", "target_dsn", "follow"}) {
    if (const Entry* entry = Find(entries, copy_only)) {
      return reader.Error(*entry,
                          absl::StrFormat("only applies with into (copy mode); this plan updates "
                                          "%s in place with set (line %d)%s",
                                          TableText(entries), set.line,
                                          copy_only.ends_with("dsn") ? "; use dsn" : ""));
    }
  }
  ASSIGN_OR_RETURN(plan.set, reader.Assignments(set));
  if (const Entry* dual_write = Find(entries, "dual_write")) {
    ASSIGN_OR_RETURN(plan.dual_write, reader.Bool(*dual_write));
  }
  return absl::OkStatus();
}

absl::Status ParseOnConflict(const Reader& reader, const Entry& entry, Plan& plan) {
  ASSIGN_OR_RETURN(std::string text, reader.Text(entry));
  if (text == "error") {
    plan.on_conflict = OnConflict::kError;
  } else if (text == "skip") {
    plan.on_conflict = OnConflict::kSkip;
  } else if (text == "update") {
    plan.on_conflict = OnConflict::kUpdate;
  } else {
    return reader.Error(entry,
                        absl::StrCat("must be error, skip or update, got ", Describe(entry.value)));
  }
  return absl::OkStatus();
}

absl::Status ParseTriggers(const Reader& reader, const Entry& entry, Plan& plan) {
  // A StatusOr, not ASSIGN_OR_RETURN: GCC 12 warns of a maybe-uninitialized string there.
  const absl::StatusOr<std::string> text = reader.Text(entry);
  if (!text.ok()) return text.status();
  if (*text == "fire") {
    plan.triggers = Triggers::kFire;
  } else if (*text == "skip") {
    plan.triggers = Triggers::kSkip;
  } else {
    return reader.Error(entry, absl::StrCat("must be fire or skip, got ", Describe(entry.value)));
  }
  return absl::OkStatus();
}

// `follow: true`, or `follow: { warn_slot_wal: 1GB, max_slot_wal: 16GB }`.
absl::Status ParseFollow(Reader& reader, const Entry& section, Plan& plan) {
  if (section.value.IsScalar()) {
    ASSIGN_OR_RETURN(plan.follow, reader.Bool(section));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   reader.SectionEntries(section, kFollowSection,
                                         "true, or { warn_slot_wal: 1GB, max_slot_wal: 16GB }"));
  plan.follow = true;
  for (const Entry& entry : entries) {
    if (entry.name == "warn_slot_wal") {
      ASSIGN_OR_RETURN(plan.follow_limits.warn_slot_wal, reader.ByteSize(entry));
    } else if (entry.name == "max_slot_wal") {
      ASSIGN_OR_RETURN(plan.follow_limits.max_slot_wal, reader.ByteSize(entry));
    }
  }
  if (plan.follow_limits.max_slot_wal < plan.follow_limits.warn_slot_wal) {
    return reader.Error(section, "max_slot_wal must not be smaller than warn_slot_wal");
  }
  return absl::OkStatus();
}

// Copy mode: `into`, its `columns`, `on_conflict`, and the databases of a move between them.
absl::Status ParseCopyMode(Reader& reader, const std::vector<Entry>& entries, const Entry& into,
                           Plan& plan) {
  plan.mode = Mode::kCopy;
  if (const Entry* dual_write = Find(entries, "dual_write")) {
    return reader.Error(*dual_write,
                        "only applies with set (update mode); copy mode always installs the "
                        "trigger that carries concurrent writes into the into table, so remove "
                        "dual_write");
  }
  ASSIGN_OR_RETURN(plan.into, reader.Relation(into));
  if (const Entry* columns = Find(entries, "columns")) {
    ASSIGN_OR_RETURN(plan.columns, reader.Assignments(*columns));
  }
  if (const Entry* on_conflict = Find(entries, "on_conflict")) {
    RETURN_IF_ERROR(ParseOnConflict(reader, *on_conflict, plan));
  }
  if (const Entry* source_dsn = Find(entries, "source_dsn")) {
    ASSIGN_OR_RETURN(plan.source_dsn, reader.Dsn(*source_dsn));
  }
  if (const Entry* target_dsn = Find(entries, "target_dsn")) {
    ASSIGN_OR_RETURN(plan.target_dsn, reader.Dsn(*target_dsn));
  }
  // Between databases the same name is two tables (the data mover).
  if (*plan.into == plan.table && !MovesBetweenDatabases(plan)) {
    return reader.Error(into,
                        "names the same table as table; copy mode needs another table (or "
                        "source_dsn/target_dsn, to copy it to another database)");
  }
  if (const Entry* follow = Find(entries, "follow")) {
    RETURN_IF_ERROR(ParseFollow(reader, *follow, plan));
    if (plan.follow && !MovesBetweenDatabases(plan)) {
      return reader.Error(*follow,
                          "only applies to a copy between databases (source_dsn/target_dsn); "
                          "within one database the copy trigger already carries every change");
    }
    // A change moves a row in or out of a filter, which a row image alone cannot tell apart.
    if (const Entry* where = Find(entries, "where"); plan.follow && where != nullptr) {
      return reader.Error(*follow, absl::StrFormat("cannot be combined with where (line %d): "
                                                   "following carries every change of the "
                                                   "whole table; filter on the target after",
                                                   where->line));
    }
  }
  return absl::OkStatus();
}

// Update mode (`set`) or copy mode (`into`), and the keys that only make sense in one.
absl::Status ParseMode(Reader& reader, const std::vector<Entry>& entries, int root_line,
                       Plan& plan) {
  const Entry* set = Find(entries, "set");
  const Entry* into = Find(entries, "into");
  if (set != nullptr && into != nullptr) {
    return reader.Error(*into,
                        absl::StrFormat("cannot be combined with set (line %d): set updates "
                                        "table in place, into copies it to another table; use "
                                        "one of them",
                                        set->line));
  }
  if (set == nullptr && into == nullptr) {
    return reader.Error(root_line, "set",
                        "missing; give set (update columns of table in place) or into (copy "
                        "table into another table)");
  }
  if (set != nullptr) return ParseUpdateMode(reader, entries, *set, plan);
  return ParseCopyMode(reader, entries, *into, plan);
}

// Column names of `table`, folded like `key`; an empty list is no list.
absl::Status ParseNotNull(Reader& reader, const Entry& entry, Plan& plan) {
  if (entry.value.IsSequence() && entry.value.size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto columns, reader.ColumnList(entry, "not_null"));
  for (auto& [column, line] : columns) {
    reader.NoteKeyLine(absl::StrFormat("%s.%s", entry.path, column), line);
    plan.not_null.push_back(std::move(column));
  }
  return absl::OkStatus();
}

absl::Status ParseDdl(Reader& reader, const Entry& section, Plan::Ddl& ddl) {
  ASSIGN_OR_RETURN(
      std::vector<Entry> entries,
      reader.SectionEntries(section, kDdlSection, "{ lock_timeout: 1s, retry_for: 10m }"));
  for (const Entry& entry : entries) {
    if (entry.name == "lock_timeout") {
      // As for throttle.lock_timeout: PostgreSQL reads 0 as "wait forever".
      ASSIGN_OR_RETURN(ddl.lock_timeout,
                       reader.Duration(entry, absl::Milliseconds(1),
                                       " (0 would turn PostgreSQL's timeout off)"));
    } else if (entry.name == "retry_for") {
      ASSIGN_OR_RETURN(ddl.retry_for, reader.Duration(entry));
    }
  }
  return absl::OkStatus();
}

// The DDL around the backfill: expand, contract and rollback statements, the not_null
// contract, and how DDL waits for its locks.
absl::Status ParseDdlSteps(Reader& reader, const std::vector<Entry>& entries, Plan& plan) {
  for (auto [field, list] :
       {std::pair{"expand", &plan.expand}, std::pair{"contract", &plan.contract},
        std::pair{"rollback", &plan.rollback}}) {
    if (const Entry* entry = Find(entries, field)) {
      ASSIGN_OR_RETURN(auto statements, reader.StringList(*entry));
      for (auto& [statement, line] : statements) list->push_back(std::move(statement));
    }
  }
  if (const Entry* not_null = Find(entries, "not_null")) {
    RETURN_IF_ERROR(ParseNotNull(reader, *not_null, plan));
  }
  if (const Entry* ddl = Find(entries, "ddl")) RETURN_IF_ERROR(ParseDdl(reader, *ddl, plan.ddl));
  return absl::OkStatus();
}

// One hook: a command, or { command, timeout, on_failure: warn | stop }.
absl::StatusOr<Plan::Hook> ParseHook(Reader& reader, const Entry& entry) {
  Plan::Hook hook;
  hook.line = entry.line;
  if (entry.value.IsScalar() || entry.value.IsNull()) {
    ASSIGN_OR_RETURN(hook.command, reader.Text(entry));
  } else {
    const Section section{entry.path, kHookKeys};
    ASSIGN_OR_RETURN(
        std::vector<Entry> keys,
        reader.SectionEntries(entry, section,
                              "{ command: \"curl ...\", timeout: 10s, on_failure: stop }"));
    const Entry* command = Find(keys, "command");
    if (command == nullptr) return reader.Error(entry, "has no `command`");
    ASSIGN_OR_RETURN(hook.command, reader.Text(*command));
    if (const Entry* timeout = Find(keys, "timeout")) {
      ASSIGN_OR_RETURN(hook.timeout, reader.Duration(*timeout, absl::Milliseconds(1)));
    }
    if (const Entry* on_failure = Find(keys, "on_failure")) {
      absl::StatusOr<std::string> value = reader.Text(*on_failure);
      if (!value.ok()) return value.status();
      if (*value != "warn" && *value != "stop") {
        return reader.Error(*on_failure, absl::StrCat("must be warn or stop, got ", *value));
      }
      // Only a hook that runs before a phase can keep it from changing anything.
      if (*value == "stop" && !absl::StartsWith(entry.name, "before_")) {
        return reader.Error(*on_failure,
                            "stop applies to before_<phase> hooks only: this hook runs after "
                            "the fact, so it can only warn");
      }
      hook.stop_on_failure = *value == "stop";
    }
  }
  if (Trim(hook.command).empty()) return reader.Error(entry, "the command is empty");
  return hook;
}

absl::Status ParseHooks(Reader& reader, const Entry& section, Plan& plan) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   reader.SectionEntries(section, kHooksSection,
                                         "{ on_done: \"notify.sh\", before_contract: { command: "
                                         "\"ok-to-contract.sh\", on_failure: stop } }"));
  for (const Entry& entry : entries) {
    ASSIGN_OR_RETURN(plan.hooks[entry.name], ParseHook(reader, entry));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Plan> ParsePlanEntries(Reader& reader, const std::vector<Entry>& entries,
                                      int root_line) {
  Plan plan;
  plan.file = reader.file();
  RETURN_IF_ERROR(ParseIdentity(reader, entries, root_line, plan));
  if (const Entry* key = Find(entries, "key")) RETURN_IF_ERROR(ParseKey(reader, *key, plan));
  RETURN_IF_ERROR(ParseMode(reader, entries, root_line, plan));
  if (const Entry* where = Find(entries, "where")) {
    ASSIGN_OR_RETURN(plan.where, reader.Sql(*where));
  }
  RETURN_IF_ERROR(ParseDdlSteps(reader, entries, plan));

  if (const Entry* batch = Find(entries, "batch")) {
    RETURN_IF_ERROR(ParseBatch(reader, *batch, plan.batch));
  }
  if (const Entry* workers = Find(entries, "workers")) {
    RETURN_IF_ERROR(ApplyWorkers(reader, *workers, plan));
  }
  if (const Entry* throttle = Find(entries, "throttle")) {
    RETURN_IF_ERROR(ParseThrottle(reader, *throttle, plan.throttle));
  }
  if (const Entry* verify = Find(entries, "verify")) {
    ASSIGN_OR_RETURN(plan.verify, reader.Bool(*verify));
  }
  if (const Entry* vacuum_every = Find(entries, "vacuum_every")) {
    RETURN_IF_ERROR(ApplyVacuumEvery(reader, *vacuum_every, plan));
  }
  if (const Entry* lease = Find(entries, "lease_timeout")) {
    ASSIGN_OR_RETURN(plan.lease_timeout,
                     reader.Duration(*lease, absl::Seconds(1),
                                     "(a runner renews its lease several times per timeout)"));
  }
  if (const Entry* hooks = Find(entries, "hooks"))
    RETURN_IF_ERROR(ParseHooks(reader, *hooks, plan));
  if (const Entry* triggers = Find(entries, "triggers")) {
    RETURN_IF_ERROR(ParseTriggers(reader, *triggers, plan));
  }
  plan.key_lines = reader.TakeKeyLines();
  return plan;
}

}  // namespace pgbackfill::plan::internal
