#pragma once

// A layer shard's timeline (cfg.trace, runtime/telemetry/trace_recorder.hpp):
// step spans, input arrivals and the waits after a step's actions
// (all-reduce, clip), recorded on the shard's thread. The device records its
// own work into compute_state::trace, absorbed on task_done. Every method is
// one branch when tracing is off.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "actors/pipeline/shard_compute.hpp"
#include "actors/protocol/messages.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors {

/// When a task was sent to the device thread (traced runs; else empty): the
/// device records the hand-off, sent .. started, as the task starts.
struct handoff_stamp {
  std::chrono::steady_clock::time_point sent{};
  std::int64_t step = 0;
  /// On the device thread: the "device task" hand-off event (category "handoff").
  void done(runtime::trace_recorder& device_trace) const;
};

struct shard_trace {
  using time_point = std::chrono::steady_clock::time_point;

  runtime::trace_recorder recorder;
  time_point step_began;
  /// Since when the shard has waited for an input after its actions.
  std::optional<time_point> idle_since;
  const char* last_input = ""; ///< the last input that arrived, and when
  std::int32_t last_input_mb = 0;
  time_point last_input_at;

  bool enabled() const { return recorder.enabled(); }
  /// An input arrived (recorded before it is stored): an instant on the track.
  void input(const char* what, std::int64_t step, std::int32_t mb, std::int32_t chunk = 0);
  /// A step_msg arrived: the step's span begins.
  void step_begin();
  /// After the shard advanced: inside a step with nothing on its device
  /// (`waiting`), it waits for an input from `since` (default: now) on.
  void idle(bool waiting, std::optional<time_point> since = {});
  /// Work is submitted: a wait, if the shard was waiting, ended when the
  /// last input arrived.
  void wait_end(std::int64_t step);
  /// The step's report is about to be sent: the step's span, from its step_msg on.
  void step_end(const actors::step_msg& m);
  /// A task for the device thread of step `m` is about to be sent.
  handoff_stamp handoff_begins(const actors::step_msg& m) const;
  /// A task_done the device sent at `sent_at` is handled: the "task done"
  /// hand-off event (nothing when the device did not stamp it).
  void task_done(time_point sent_at, std::int64_t step);
};

/// Wraps update work (no action: the optimizer, the gradient norm) so that
/// the device thread records when it ran, as `name`; `work` itself when
/// tracing is off.
device_work traced_update(std::shared_ptr<compute_state> c, device_work work, const char* name,
                          const actors::step_msg& m);

} // namespace troupe::actors
