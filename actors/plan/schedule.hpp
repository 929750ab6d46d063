#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::actors {

/// One step of a device's schedule: run forward, backward or weight-gradient
/// of a micro-batch through one of the device's chunks. Sends and receives
/// are implied: a forward consumes the previous virtual stage's activation
/// (or the input) and sends to the next one; a backward consumes the next
/// virtual stage's gradient (or the loss) and sends to the previous one.
///
/// Schedules that split the backward (splits_backward(): the zero-bubble
/// ones) have a `weight` action per backward: `backward` (B) then computes
/// only the input gradient, the critical path, and `weight` (W) the
/// parameter gradients, off it, whenever the schedule has room. Elsewhere
/// `backward` does both and there is no `weight`.
///
/// Virtual stages: with V chunks per device and P devices, which global
/// virtual stage chunk v of device d is depends on the layout (virtual_stage()).
/// Without virtual stages V = 1 and chunk is always 0.
struct action {
  enum class kind : std::uint8_t { forward, backward, weight };
  kind what = kind::forward;
  std::int32_t mb = 0;
  std::int32_t chunk = 0; ///< virtual stage index on this device
  friend bool operator==(const action&, const action&) = default;
};

enum class schedule_kind : std::uint8_t { gpipe, one_f_one_b, interleaved, zb1, zbv };

std::string_view to_string(schedule_kind k);
/// "gpipe", "1f1b", "interleaved", "zb1" or "zbv"; throws runtime::input_error
/// for anything else.
schedule_kind parse_schedule_kind(std::string_view s);

/// The schedule has separate backward (input gradient) and weight actions.
bool splits_backward(schedule_kind k);

/// How a device's chunks map to global virtual stages.
///  looped:  chunk v of device d is virtual stage v * P + d (interleaved):
///           the last device's chunk v feeds device 0's chunk v + 1.
///  v_shape: two chunks, chunk 0 of device d is virtual stage d and chunk 1
///           virtual stage 2P - 1 - d (zbv): the activations go down the
///           devices and back up, the last device's chunk 0 feeding its own
///           chunk 1, and device 0 holds both the first and the last stage.
enum class chunk_layout : std::uint8_t { looped, v_shape };

chunk_layout layout_of(schedule_kind k);
/// The global virtual stage of chunk `chunk` of device `stage` of `stages`.
int virtual_stage(chunk_layout l, int stages, int stage, int chunk);

/// Where a global virtual stage lives: the device and its chunk there.
struct stage_position {
  int stage = 0;
  int chunk = 0;
  friend bool operator==(const stage_position&, const stage_position&) = default;
};
/// The inverse of virtual_stage().
stage_position position_of(chunk_layout l, int stages, int virtual_stage);
/// The stage holding the last virtual stage (the loss, the labels): the
/// last one, or stage 0 in the V layout.
int loss_stage(schedule_kind k, int stages);
/// Chunks per device a schedule needs: 2 for zbv, else `virtual_stages`.
int chunks_for(schedule_kind k, int virtual_stages);

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
///  zb1:         ZB-H1 (arXiv:2401.10241): 1f1b's forwards and backwards
///               (B, input gradient only), with device d holding back the W
///               of its last d backwards; those fill the cool-down, where
///               1f1b waits. Bubble (P-1)(F+B-W) per device instead of
///               (P-1)(F+B+W). Counting a micro-batch until its W, no
///               device holds more than 1f1b's first device: min(P, M).
///  zbv:         ZB-V: two chunks per device in the v_shape layout; warm-up
///               forwards of chunk 0, then of both chunks, then steady
///               F B W rounds alternating the chunks, the cool-down
///               deferring W's. Run on the schedule of max(M, 2P - 1)
///               micro-batches with the missing ones left out (as
///               interleaved). At most 2 min(P, M) chunk micro-batches held
///               (1f1b's memory: a chunk is half a device's layers).
/// Every schedule runs each chunk's backwards, and weights, in micro-batch
/// order, so a layer's gradient is the same sum, bit for bit, under every
/// schedule. gpipe, 1f1b and zb1 take virtual_stages == 1 only, zbv 2. Throws std::invalid_argument
/// for impossible arguments (train_options::validate reports user errors).
std::vector<action> make_schedule(schedule_kind k, int stages, int stage, int microbatches,
                                  int virtual_stages = 1);

/// Forward-only schedule (evaluation): every (micro-batch, chunk) once, in the
/// interleaved forward order (chunk 0 only when virtual_stages == 1).
std::vector<action> forward_only_schedule(int microbatches, int stages = 1, int virtual_stages = 1);

/// "F0 F1 B1 B0" for printing and tests; "F0.0 F0.1 ..." (micro-batch.chunk)
/// when any action is for a chunk other than 0.
std::string to_string(const std::vector<action>& actions);

/// The most micro-batch-chunks whose activations a device holds at once
/// (forwards done whose backward, or with split backwards whose weight
/// action, has not run yet: the weight gradient needs the layer inputs).
int peak_in_flight(const std::vector<action>& actions);

} // namespace troupe::actors
