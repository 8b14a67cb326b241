// A move that follows its source (plan key `follow`): the source's objects the job owns (its
// publication, its logical slot, after cutover the trigger that refuses writes) and the follow
// phase, which applies the slot's changes to the target until `pgbackfill cutover`.
#pragma once

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/follow/apply.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/replication.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/preflight/preflight.h"

namespace pgbackfill::exec::internal {

// The job step recorded once the source refuses writes and the target has every change.
inline constexpr char kCutOverStep[] = "follow:cutover";

// The job's names on the source: slot and publication ("pgbackfill_<job>_<hash>", in the slot
// alphabet), and the function and trigger that refuse writes after cutover.
std::string FollowSlotName(const std::string& job);
std::string FollowPublicationName(const std::string& job);
std::string MovedTriggerName(const std::string& job);

follow::ApplySpec ApplySpecFor(const preflight::PreflightReport& report);

// Before the copy's first batch: the publication (unless there is one by its name), then the
// slot, whose exported snapshot the copy reads while the returned session idles. A slot of that
// name the job has no record of (a run that died between making and recording it) is dropped
// first. The transform is compiled on the target (`target`) before anything is made.
struct MadeSlot {
  pg::ReplicationConnection session;
  pg::ReplicationConnection::Slot slot;
};
absl::StatusOr<MadeSlot> MakeFollowSlot(const plan::Plan& plan, const std::string& source_dsn,
                                        const preflight::PreflightReport& report,
                                        pg::Connection& target);

// Drops what the job made on the source: the refusing trigger and its function (rollback's, not
// cutover's), the slot (its walsender ended first; an error when it stays in use), the
// publication. Each only when there.
absl::Status DropFollowObjects(pg::Connection& source, const std::string& job,
                               const plan::QualifiedName& table, bool with_trigger = true);

// Before the job's publication: the source must be able to follow the table (wal_level logical,
// a replica identity that covers the move's key), or a publication would make the application's
// UPDATEs and DELETEs fail, or the follow stop at its first DELETE.
absl::Status CheckSourceCanFollow(pg::Connection& source, const preflight::PreflightReport& report);

// The follow phase, after the phase's checks (`store` is its job store; the phase opens sessions
// of its own, so that it can open them again after a lost one): from the job's applied position
// to cutover, or until a signal or an abort stops it (then resumable).
struct FollowInputs {
  const plan::Plan& plan;
  const RunOptions& options;
  events::EventSink& events;
  checkpoint::JobStore& store;
  const preflight::PreflightReport& report;
};
absl::StatusOr<RunSummary> FollowChanges(const FollowInputs& in);

}  // namespace pgbackfill::exec::internal
