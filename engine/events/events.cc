#include "pgbackfill/events/events.h"

#include <array>
#include <exception>
#include <utility>

#include "absl/time/clock.h"
#include "absl/time/time.h"

// nlohmann/json 3.11 has no conversion for std::optional: null stands for nullopt.
namespace nlohmann {
template <typename T>
struct adl_serializer<std::optional<T>> {
  static void to_json(json& out, const std::optional<T>& value) {
    if (value.has_value()) {
      out = *value;
    } else {
      out = nullptr;
    }
  }
  static void from_json(const json& in, std::optional<T>& value) {
    if (in.is_null()) {
      value.reset();
    } else {
      value = in.get<T>();
    }
  }
};
}  // namespace nlohmann

namespace pgbackfill::events {

// Field lists: the JSON keys are these names (README "Output"). A missing key reads as the
// field's default.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(JobStarted, job, table, key, estimated_rows,
                                                ranges_total, ranges_pending, workers, resumed,
                                                rows_done_before, moves_between_databases,
                                                copy_format, through_stage)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ThrottleSignal, name, value, baseline, limit)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ThrottleLimit, name, object, value, limit)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Progress, job, rows_done, estimated_rows, percent,
                                                rows_per_second, eta_seconds, workers, batch_rows,
                                                ranges_done, ranges_total, retries, throttle,
                                                pace_rows_per_second, signals, limits)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Batch, worker, range, rows, seconds)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RangeDone, range, rows)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RangeSplit, worker, range, new_range, at,
                                                estimated_rows)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Retry, worker, range, sqlstate, error, wait_ms,
                                                batch_rows)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Reconnect, worker, range, sqlstate, error)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Reconnected, worker)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Signal, signal, action)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Throttle, state, reason)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Concurrency, active_workers, max_workers,
                                                pace_rows_per_second, pressure)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Control, control, by, at)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Settings, settings, workers)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Vacuum, table, seconds, every_rows, table_bytes)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Snapshot, id, generation)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Warning, message)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PhaseStarted, job, phase)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PhaseDone, job, phase, skipped, message)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Ddl, step, sql)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DdlRetry, step, attempt, sql, sqlstate, error,
                                                wait_ms)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RangeRowsDiff, range, rows, first_keys)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Verified, job, differing_rows, ranges_checked,
                                                first_keys, ranges)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RangeCountDiff, range, source_rows, target_rows,
                                                repaired)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Following, job, applied_lsn, source_lsn, lag_bytes,
                                                lag_seconds, changes, transactions, spool_bytes,
                                                spool_records)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(CutOver, job, applied_lsn, write_block_ms,
                                                lock_attempts, sequences)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MoveVerified, job, ranges_checked,
                                                differing_ranges, repaired_ranges, ranges)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(JobFinished, job, phase, outcome, exit_code,
                                                message, rows, total_rows, batches, retries,
                                                reconnects, vacuums, bytes, seconds,
                                                rows_per_second, resumed)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(BatchMillis, p50, p95, p99, max)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(BenchFinished, table, scratch_table, scratch_rows,
                                                whole_table, copy_seconds, outcome, message, rows,
                                                seconds, rows_per_second, batches, batch_ms,
                                                retries, reconnects, held_seconds, vacuums,
                                                production_rows, production_rows_source,
                                                production_seconds)

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ThrottleState, active_workers, pace_rows_per_second,
                                                signals)

namespace {

// Reads `object` as the alternative with index I of Event.
template <size_t I>
Event Read(const nlohmann::json& object) {
  return object.get<std::variant_alternative_t<I, Event>>();
}

// One reader per alternative, by index.
template <size_t... I>
constexpr auto Readers(std::index_sequence<I...>) {
  return std::array<Event (*)(const nlohmann::json&), sizeof...(I)>{&Read<I>...};
}

template <size_t... I>
constexpr auto Names(std::index_sequence<I...>) {
  return std::array<std::string_view, sizeof...(I)>{
      std::string_view(std::variant_alternative_t<I, Event>::kType)...};
}

constexpr auto kIndices = std::make_index_sequence<std::variant_size_v<Event>>();

}  // namespace

std::string_view TypeName(const Event& event) {
  return std::visit([](const auto& e) { return std::string_view(e.kType); }, event);
}

std::string NowText() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
}

nlohmann::json ToJson(const Event& event, std::string_view time) {
  nlohmann::json object = std::visit([](const auto& e) { return nlohmann::json(e); }, event);
  object["event"] = TypeName(event);
  object["time"] = time;
  return object;
}

std::optional<Event> FromJson(const nlohmann::json& object) {
  if (!object.is_object() || !object.contains("event") || !object["event"].is_string()) {
    return std::nullopt;
  }
  const std::string type = object["event"].get<std::string>();
  static constexpr auto kNames = Names(kIndices);
  static constexpr auto kReaders = Readers(kIndices);
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] != type) continue;
    try {
      // Both verify events are "verify"; the one between databases counts ranges.
      if (type == Verified::kType && object.contains("differing_ranges")) {
        return object.get<MoveVerified>();
      }
      return kReaders[i](object);
    } catch (const nlohmann::json::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

nlohmann::json ToJson(const ThrottleState& state) { return state; }

std::optional<ThrottleState> ThrottleStateFromJson(const nlohmann::json& object) {
  if (!object.is_object()) return std::nullopt;
  try {
    return object.get<ThrottleState>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace pgbackfill::events
