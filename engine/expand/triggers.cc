#include "pgbackfill/expand/triggers.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::expand {
namespace {

// PostgreSQL's NAMEDATALEN - 1.
constexpr char kNamePrefix[] = "pgbackfill_";


std::string Quoted(const TriggerNames& names) {
  return absl::StrCat(pg::QuoteIdent(names.function_schema), ".", pg::QuoteIdent(names.function));
}

// A dollar-quote tag that does not occur in `body` (plan expressions are SQL text of their own).
std::string DollarTag(const std::string& body) {
  std::string tag = "$pgbackfill$";
  for (int i = 1; body.find(tag) != std::string::npos; ++i) {
    tag = absl::StrCat("$pgbackfill_", i, "$");
  }
  return tag;
}

// The CREATE OR REPLACE FUNCTION statement. `#variable_conflict use_column` first: a plan
// expression names the row's columns, and a column called like a PL/pgSQL variable (`found`,
// `tg_op`, `new`) must still mean the column. Our own references to NEW/OLD/variables stand
// where no table is in scope, so they always mean the variable.
// `definer`: only the copy trigger needs SECURITY DEFINER (it writes `into`, which application
// roles need no rights on). The dual-write trigger only changes NEW, so it runs as the writing
// role: a function or operator overload someone planted in a schema of the search_path then runs
// with that role's rights, not pgbackfill's.
std::string CreateFunction(const TriggerNames& names, std::string_view search_path,
                           const std::string& body, bool definer) {
  const std::string full = absl::StrCat("\n#variable_conflict use_column\n", body);
  const std::string tag = DollarTag(full);
  return absl::StrCat("CREATE OR REPLACE FUNCTION ", Quoted(names),
                      "() RETURNS trigger LANGUAGE plpgsql SECURITY ",
                      definer ? "DEFINER" : "INVOKER", FunctionSearchPath(search_path), "\nAS ",
                      tag, full, tag);
}

std::string CommentOn(const TriggerNames& names, const std::string& text) {
  return absl::StrCat("COMMENT ON FUNCTION ", Quoted(names), "() IS ", pg::QuoteLiteral(text));
}

std::string CreateTrigger(const TriggerNames& names, const plan::QualifiedName& table,
                          const char* timing_and_events) {
  return absl::StrCat("CREATE OR REPLACE TRIGGER ", pg::QuoteIdent(names.trigger), " ",
                      timing_and_events, " ON ", plan::QuoteQualified(table),
                      " FOR EACH ROW EXECUTE FUNCTION ", Quoted(names), "()");
}

// `(a), (b)`: each expression parenthesised, so operator precedence stays the operator's.
std::string ExpressionList(const std::vector<plan::Assignment>& assignments) {
  std::vector<std::string> parts;
  for (const plan::Assignment& assignment : assignments) {
    parts.push_back(absl::StrCat("(", assignment.expression, ")"));
  }
  return absl::StrJoin(parts, ", ");
}

// `prefix."a", prefix."b"`
std::string ColumnList(const std::vector<std::string>& columns, const std::string& prefix = "") {
  std::vector<std::string> parts;
  for (const std::string& column : columns) {
    parts.push_back(absl::StrCat(prefix, pg::QuoteIdent(column)));
  }
  return absl::StrJoin(parts, ", ");
}

// The row as the plan's expressions see it: one row, alias `t`, the same alias the batches give
// the table. A sub-SELECT without FROM, so NEW/OLD can only mean the trigger's records.
std::string RowOf(const char* record) { return absl::StrCat("(SELECT ", record, ".*) AS t"); }

}  // namespace

TriggerNames NamesFor(std::string_view job, std::string_view kind) {
  const std::string hash = absl::StrFormat("%08x", Fnv1a32(job));
  const size_t fixed = sizeof(kNamePrefix) - 1 + kind.size() + 1 + 1 + hash.size();
  const size_t room = fixed < pg::kMaxIdentifierBytes ? pg::kMaxIdentifierBytes - fixed : 0;
  // Job names are ASCII ([A-Za-z0-9_.-]), so cutting bytes cannot split a character.
  const std::string name =
      absl::StrCat(kNamePrefix, ToAbsl(kind), "_", ToAbsl(job.substr(0, room)), "_", hash);
  return TriggerNames{sql::kJobStoreSchema, name, name};
}

std::string FunctionSearchPath(std::string_view search_path) {
  std::vector<std::string> elements = sql::SplitIdentifierList(search_path);
  if (std::find(elements.begin(), elements.end(), "pg_temp") == elements.end()) {
    elements.emplace_back("pg_temp");
  }
  std::vector<std::string> literals;
  for (const std::string& element : elements) literals.push_back(pg::QuoteLiteral(element));
  return absl::StrCat(" SET search_path TO ", absl::StrJoin(literals, ", "));
}

std::vector<std::string> DualWriteInstallSql(const DualWriteSpec& spec) {
  const TriggerNames names = NamesFor(spec.job, "dw");
  std::vector<std::string> targets;
  for (const plan::Assignment& assignment : spec.set) {
    targets.push_back(absl::StrCat("NEW.", pg::QuoteIdent(assignment.column)));
  }
  // SELECT ... INTO sets its targets to NULL when no row comes back, so `where` guards the
  // assignment instead of filtering the SELECT.
  const std::string compute = absl::StrCat(
      "SELECT ", ExpressionList(spec.set), "\n    INTO ", absl::StrJoin(targets, ", "),
      "\n    FROM ", RowOf("NEW"), ";\n");
  std::string body = absl::StrCat(
      "BEGIN\n"
      "  -- A backfill batch has computed the row from its old values already.\n"
      "  IF pg_catalog.current_setting(", pg::QuoteLiteral(sql::kInBatchSetting),
      ", true) = 'on' THEN\n"
      "    RETURN NEW;\n"
      "  END IF;\n");
  if (spec.where.empty()) {
    absl::StrAppend(&body, "  ", compute);
  } else {
    absl::StrAppend(&body, "  IF EXISTS (SELECT FROM ", RowOf("NEW"), " WHERE (", spec.where,
                    ")) THEN\n    ", compute, "  END IF;\n");
  }
  absl::StrAppend(&body, "  RETURN NEW;\nEND\n");
  return {
      CreateFunction(names, spec.search_path, body, /*definer=*/false),
      CommentOn(names, absl::StrCat("pgbackfill job ", spec.job, ": dual-write trigger on ",
                                    plan::QuoteQualified(spec.table))),
      CreateTrigger(names, spec.table, "BEFORE INSERT OR UPDATE"),
  };
}

std::vector<std::string> CopyTriggerInstallSql(const CopySpec& spec) {
  const TriggerNames names = NamesFor(spec.job, "copy");
  const std::string target = plan::QuoteQualified(spec.target);

  std::vector<std::string> columns;
  std::vector<std::string> updates;
  for (const plan::Assignment& assignment : spec.columns) {
    columns.push_back(assignment.column);
    if (std::find(spec.target_key.begin(), spec.target_key.end(), assignment.column) ==
        spec.target_key.end()) {
      updates.push_back(absl::StrCat(pg::QuoteIdent(assignment.column), " = EXCLUDED.",
                                     pg::QuoteIdent(assignment.column)));
    }
  }
  std::vector<std::string> key_matches;
  for (size_t i = 0; i < spec.target_key.size() && i < spec.source_key.size(); ++i) {
    key_matches.push_back(absl::StrCat("dst.", pg::QuoteIdent(spec.target_key[i]), " = t.",
                                       pg::QuoteIdent(spec.source_key[i])));
  }

  std::string body = absl::StrCat(
      "DECLARE\n"
      "  pgbackfill_new_matches boolean := false;\n"
      "BEGIN\n"
      "  IF TG_OP <> 'DELETE' THEN\n"
      "    pgbackfill_new_matches := ",
      spec.where.empty()
          ? std::string("true")
          : absl::StrCat("EXISTS (SELECT FROM ", RowOf("NEW"), " WHERE (", spec.where, "))"),
      ";\n"
      "  END IF;\n"
      // The old target row goes when the source row went, moved to another key, or left `where`.
      "  IF TG_OP <> 'INSERT' THEN\n"
      "    IF TG_OP = 'DELETE' OR NOT pgbackfill_new_matches\n"
      "       OR ROW(", ColumnList(spec.source_key, "OLD."), ") IS DISTINCT FROM ROW(",
      ColumnList(spec.source_key, "NEW."), ") THEN\n"
      "      DELETE FROM ", target, " AS dst USING ", RowOf("OLD"), "\n"
      "       WHERE ", absl::StrJoin(key_matches, " AND "), ";\n"
      "    END IF;\n"
      "  END IF;\n"
      // The application's write is the newest truth: upsert, whatever on_conflict says. Batches
      // lock the source rows they copy (batch::BuildCopyBatch), so a batch never writes an older
      // version of a row over what this wrote.
      "  IF pgbackfill_new_matches THEN\n"
      "    INSERT INTO ", target, " AS dst (", ColumnList(columns), ") OVERRIDING SYSTEM VALUE\n"
      "    SELECT ", ExpressionList(spec.columns), "\n"
      "      FROM ", RowOf("NEW"), "\n"
      "    ON CONFLICT (", ColumnList(spec.target_key), ") DO ",
      updates.empty() ? std::string("NOTHING")
                      : absl::StrCat("UPDATE SET ", absl::StrJoin(updates, ", ")),
      ";\n"
      "  END IF;\n"
      "  RETURN NULL;\n"
      "END\n");
  return {
      CreateFunction(names, spec.search_path, body, /*definer=*/true),
      CommentOn(names, absl::StrCat("pgbackfill job ", spec.job, ": copies writes on ",
                                    plan::QuoteQualified(spec.source), " into ", target)),
      CreateTrigger(names, spec.source, "AFTER INSERT OR UPDATE OR DELETE"),
  };
}

std::vector<std::string> DropTriggerSql(const plan::QualifiedName& table,
                                        const TriggerNames& names) {
  // CASCADE: the function's only dependents are triggers executing it, which are ours wherever
  // they are now. A contract that renamed the table (swapped in the copy) leaves the trigger on
  // a table no longer called `table`; the function still finds it.
  return {
      absl::StrCat("DROP TRIGGER IF EXISTS ", pg::QuoteIdent(names.trigger), " ON ",
                   plan::QuoteQualified(table)),
      absl::StrCat("DROP FUNCTION IF EXISTS ", Quoted(names), "() CASCADE"),
  };
}

}  // namespace pgbackfill::expand
