#include "pgbackfill/plan/plan.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::plan {
namespace {

// FNV-1a, 64 bit. Not a cryptographic hash: it detects an operator changing a plan under a job
// name, it does not defend against someone forging a collision (whoever can edit the plan can
// also rename the job). Unlike std::hash and absl::Hash it is fixed by its definition, so the
// value stored in the job store by one build stays comparable with the next.
class Fnv1a64 {
 public:
  // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
  void String(std::string_view text) {
    Uint64(text.size());
    for (char c : text) Byte(static_cast<unsigned char>(c));
  }
  void Uint64(uint64_t value) {
    for (int i = 0; i < 8; ++i) Byte(static_cast<unsigned char>(value >> (8 * i)));
  }
  void Name(const QualifiedName& name) {
    String(name.schema);
    String(name.name);
  }
  void Assignments(const std::vector<Assignment>& assignments) {
    Uint64(assignments.size());
    for (const Assignment& assignment : assignments) {
      // `line` is left out on purpose: moving text in the file changes nothing.
      String(assignment.column);
      String(assignment.expression);
    }
  }
  uint64_t value() const { return state_; }

 private:
  void Byte(unsigned char byte) {
    state_ ^= byte;
    state_ *= 0x100000001b3ULL;
  }
  uint64_t state_ = 0xcbf29ce484222325ULL;
};

}  // namespace

std::string PlanHash(const Plan& plan) {
  // The fields that decide which rows are written and with what values. A resumed job trusts its
  // checkpoints, which are only meaningful for the plan they were made with. Left out, because a
  // run may change them between resumptions without touching the result: name (it is the job
  // key itself), connection strings (a failover or a new password), batch, workers, throttle,
  // verify, and the expand/contract/rollback DDL (those phases are idempotent and run around the
  // backfill, not inside it). Values come from the parsed Plan, so YAML layout, quoting style,
  // comments and key order outside `set`/`columns` cannot change the hash.
  Fnv1a64 hash;
  hash.String("pgbackfill.plan.v1");  // bump when the serialization below changes
  hash.Uint64(static_cast<uint64_t>(plan.version));
  hash.Name(plan.table);
  hash.Uint64(plan.key.size());
  for (const std::string& column : plan.key) hash.String(column);
  hash.Uint64(plan.mode == Mode::kUpdate ? 0 : 1);
  hash.Assignments(plan.set);
  hash.String(plan.where);
  hash.Uint64(plan.dual_write ? 1 : 0);
  hash.Uint64(plan.into.has_value() ? 1 : 0);
  if (plan.into.has_value()) hash.Name(*plan.into);
  hash.Assignments(plan.columns);
  // Spelled out rather than cast so reordering the enum cannot change stored hashes.
  switch (plan.on_conflict) {
    case OnConflict::kError:
      hash.Uint64(0);
      break;
    case OnConflict::kSkip:
      hash.Uint64(1);
      break;
    case OnConflict::kUpdate:
      hash.Uint64(2);
      break;
  }
  // Only when set, so that the hashes of jobs stored before the data mover stay what they were.
  if (MovesBetweenDatabases(plan)) hash.String("moves between databases");
  if (plan.follow) hash.String("follow");
  return absl::StrFormat("%016x", hash.value());
}

bool MovesBetweenDatabases(const Plan& plan) {
  return plan.mode == Mode::kCopy && (!plan.source_dsn.empty() || !plan.target_dsn.empty());
}

std::string HomeDsn(const Plan& plan, const std::string& dsn) {
  const std::string& base = dsn.empty() ? plan.dsn : dsn;
  return MovesBetweenDatabases(plan) && !plan.target_dsn.empty() ? plan.target_dsn : base;
}

std::string SourceDsn(const Plan& plan, const std::string& dsn) {
  const std::string& base = dsn.empty() ? plan.dsn : dsn;
  return MovesBetweenDatabases(plan) && !plan.source_dsn.empty() ? plan.source_dsn : base;
}

std::string QuoteQualified(const QualifiedName& name) {
  if (name.schema.empty()) return pg::QuoteIdent(name.name);
  return absl::StrCat(pg::QuoteIdent(name.schema), ".", pg::QuoteIdent(name.name));
}

}  // namespace pgbackfill::plan
