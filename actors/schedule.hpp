#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::actors {

/// One step of a stage's schedule: run forward or backward of a micro-batch.
/// Sends and receives are implied: a forward consumes the previous stage's
/// activation (or the input) and sends to the next stage; a backward consumes
/// the next stage's gradient (or the loss) and sends to the previous stage.
struct action {
  enum class kind : std::uint8_t { forward, backward };
  kind what = kind::forward;
  std::int32_t mb = 0;
  friend bool operator==(const action&, const action&) = default;
};

enum class schedule_kind : std::uint8_t { gpipe, one_f_one_b };

std::string_view to_string(schedule_kind k);
/// "gpipe" or "1f1b"; throws runtime::input_error for anything else.
schedule_kind parse_schedule_kind(std::string_view s);

/// The action list of `stage` (0-based) of a `stages`-deep pipeline over
/// `microbatches` micro-batches of one training step.
///  gpipe: all forwards, then all backwards in reverse order.
///  1f1b:  (stages - stage - 1) warm-up forwards, then alternate one forward
///         and one backward, then the remaining backwards (PipeDream-flush);
///         a stage never holds more than stages - stage micro-batches.
std::vector<action> make_schedule(schedule_kind k, int stages, int stage, int microbatches);

/// Forward-only schedule (evaluation).
std::vector<action> forward_only_schedule(int microbatches);

/// "F0 F1 B1 B0" for printing and tests.
std::string to_string(const std::vector<action>& actions);

/// The most micro-batches whose activations a stage holds at once.
int peak_in_flight(const std::vector<action>& actions);

} // namespace troupe::actors
