// The phases of an expand-contract migration around one backfill:
//
//   expand    the plan's `expand:` DDL (safe steps, expand/ddl.h), then the job's triggers: the
//             dual-write trigger (`dual_write: true`, UPDATE mode) or the copy sync trigger (copy
//             mode), installed before any batch so no application write is missed
//   backfill  the batches (runner.h)
//   follow    a move with `follow: true`: the source's changes since the copy's snapshot,
//             applied to the target until `pgbackfill cutover` (exec/follow_phase.cc)
//   verify    rows whose `set` columns differ from their expressions, under one snapshot
//   contract  `not_null:` columns, the plan's `contract:` DDL, and the job's triggers dropped in
//             the same transaction as the last contract statement (a table swap and the trigger
//             removal are one atomic step)
//   rollback  from any phase: the job's triggers dropped, the plan's `rollback:` DDL, the job
//             marked rolled_back
//
// Every phase is idempotent: its steps are recorded in the job store (checkpoint/job_store.h,
// table steps), each DDL step in the same transaction as the DDL, and a finished phase run again
// says so and does nothing. Phases take a lease on the job (job store: runners), so a phase never
// runs beside another phase of the same job, and contract and rollback not beside a backfill.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/exec/hooks.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/preflight/preflight.h"

namespace pgbackfill::exec {

enum class Phase { kExpand, kBackfill, kFollow, kVerify, kContract, kRollback };

const char* PhaseName(Phase phase);

// `pgbackfill run`: expand, backfill, follow (a move with `follow: true`), verify (unless the plan
// says `verify: false`), and contract when asked. `pgbackfill verify` run by hand verifies
// whatever the plan says.
std::vector<Phase> RunPhases(bool contract, bool verify, bool follow = false);

// Runs `phases` in order, stopping at the first that does not end kDone. The summary is the
// backfill's when it ran (rows, batches, ...), with the outcome and message of the phase that
// ended the run; `phase` names it. With `hooks`, each phase runs its before_ hook first (one that
// fails with `on_failure: stop` ends the run as refused, the phase not started) and queues its
// after_ hook when done; `events` is then usually `hooks` itself.
absl::StatusOr<RunSummary> RunPhaseList(const std::vector<Phase>& phases, const plan::Plan& plan,
                                        const RunOptions& options, events::EventSink& events,
                                        Hooks* hooks = nullptr);

// The job row a phase creates for a job seen the first time (state pending).
checkpoint::JobRecord NewJobRecord(const plan::Plan& plan, const preflight::PreflightReport& report,
                                   const std::string& phase);

// Whether the plan needs `expand` before its first batch: it has `expand:` statements, a
// dual-write trigger, or copies into another table (the sync trigger).
bool NeedsExpand(const plan::Plan& plan);

}  // namespace pgbackfill::exec
