#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::actors {

/// One step of a device's schedule: run forward or backward of a micro-batch
/// through one of the device's chunks. Sends and receives are implied: a
/// forward consumes the previous virtual stage's activation (or the input)
/// and sends to the next one; a backward consumes the next virtual stage's
/// gradient (or the loss) and sends to the previous one.
///
/// Virtual stages: with V chunks per device and P devices, chunk v of device
/// d is global virtual stage s = v * P + d, so the activation of the last
/// device's chunk v goes to device 0's chunk v + 1. Without interleaving V = 1
/// and chunk is always 0.
struct action {
  enum class kind : std::uint8_t { forward, backward };
  kind what = kind::forward;
  std::int32_t mb = 0;
  std::int32_t chunk = 0;  ///< virtual stage index on this device
  friend bool operator==(const action&, const action&) = default;
};

enum class schedule_kind : std::uint8_t { gpipe, one_f_one_b, interleaved };

std::string_view to_string(schedule_kind k);
/// "gpipe", "1f1b" or "interleaved"; throws runtime::input_error for anything else.
schedule_kind parse_schedule_kind(std::string_view s);

/// The action list of device `stage` (0-based) of a `stages`-deep pipeline
/// over `microbatches` micro-batches of one training step, each device
/// holding `virtual_stages` chunks.
///  gpipe:       all forwards, then all backwards in micro-batch order.
///  1f1b:        (stages - stage - 1) warm-up forwards, then alternate one
///               forward and one backward, then the remaining backwards
///               (PipeDream-flush); a stage never holds more than
///               stages - stage micro-batches.
///  interleaved: Megatron's interleaved 1F1B. Forwards walk micro-batches in
///               groups of `stages`: each group through chunk 0, then chunk
///               1, ...; backwards walk the same order with the chunks
///               reversed. Warm-up of (stages - stage - 1) * 2 +
///               (virtual_stages - 1) * stages forwards, then 1F1B, then
///               cool-down. Megatron needs microbatches % stages == 0; any
///               other count gets the schedule of the next multiple with the
///               missing micro-batches left out (still deadlock-free; the last
///               group's bubble is that of a full group). With
///               virtual_stages == 1 it is exactly 1f1b.
/// Every schedule runs each chunk's backwards in micro-batch order, so a
/// layer's gradient is the same sum, bit for bit, under every schedule.
/// gpipe and 1f1b take virtual_stages == 1 only. Throws std::invalid_argument
/// for impossible arguments (train_options::validate reports user errors).
std::vector<action> make_schedule(schedule_kind k, int stages, int stage, int microbatches,
                                  int virtual_stages = 1);

/// Forward-only schedule (evaluation): every (micro-batch, chunk) once, in the
/// interleaved forward order (chunk 0 only when virtual_stages == 1).
std::vector<action> forward_only_schedule(int microbatches, int stages = 1,
                                          int virtual_stages = 1);

/// "F0 F1 B1 B0" for printing and tests; "F0.0 F0.1 ..." (micro-batch.chunk)
/// when any action is for a chunk other than 0.
std::string to_string(const std::vector<action>& actions);

/// The most micro-batch-chunks whose activations a device holds at once
/// (forwards done whose backward has not run yet).
int peak_in_flight(const std::vector<action>& actions);

} // namespace troupe::actors
