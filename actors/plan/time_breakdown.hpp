#pragma once

// Where a training step's time goes, as `troupe bench train` and `bench
// pipeline` print it: named parts (compute, optimizer, copies, waits,
// hand-offs, exposed all-reduce) that sum to the measured step, the rest
// named "other" instead of dropped. Built from a step's trace
// (step_timeline.hpp); the arithmetic is here, CAF-free, so it is tested.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/plan/step_timeline.hpp"

namespace troupe::actors {

/// One part of a step: seconds, or nullopt when the trace does not measure it
/// (its time is then in unaccounted(), and it prints as "n/a").
struct time_part {
  std::string name; ///< "compute", "hand-offs", ...: the printed name
  std::string key;  ///< "compute", "handoffs", ...: the JSON name stem (key_ms, key_percent)
  std::optional<double> seconds;
};

/// A step of `step` seconds and its measured parts.
struct time_breakdown {
  double step = 0;
  std::vector<time_part> parts;

  /// The measured parts' sum.
  double accounted() const;
  /// The step less the measured parts: "other" (negative when parts overlap).
  double unaccounted() const { return step - accounted(); }
  /// `seconds` in percent of the step (0 for an empty step).
  double percent(double seconds) const;
};

/// The mean of breakdowns with the same parts (the timed steps of a run); a
/// part is measured in the mean only if it is in every step. Throws
/// std::invalid_argument when the parts differ.
time_breakdown mean_breakdown(const std::vector<time_breakdown>& steps);

/// Stage `k`'s view of step `t`, against the trainer's step (the measured
/// step time) or, without a trainer track, the stages' union T:
///   compute    its forward + backward events, less the copies inside them
///   optimizer  its optimizer and gradient-norm events, less their copies
///   copies     tensor copies inside those events (n/a when not traced)
///   waits      the trainer's wait for the batch, the stage's waits for an
///              input, and the time after its report while other stages run
///   hand-offs  trainer -> stage (step_msg sent .. handled), shard <-> device
///              thread (device task, task done), last report -> trainer
///   all-reduce data parallelism only: after its last backward, until the
///              last all-reduce came back
/// The rest, unaccounted(), is the shard's own bookkeeping inside its span.
time_breakdown stage_breakdown(const step_timeline& t, std::size_t k);

/// "compute 3.10 ms 55.8% | ... | other 0.12 ms 2.2%" (n/a parts say so).
std::string to_text(const time_breakdown& b);

/// {"step_ms", KEY_ms and KEY_percent per part (null when n/a), "other_ms",
/// "other_percent"}.
nlohmann::json to_json(const time_breakdown& b);

} // namespace troupe::actors
