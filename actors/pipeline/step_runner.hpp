#pragma once

// The device side of a layer shard's step: the step's actions walked on the
// device thread in schedule order as their inputs arrive, each forward or
// backward run on the chunks and its output sent on. Change it when how an
// action runs changes.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <caf/actor.hpp>

#include "actors/pipeline/shard_compute.hpp"
#include "actors/pipeline/shard_trace.hpp"
#include "actors/plan/schedule.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors {

/// One step's action list, walked by the device thread (run_actions): each
/// action runs as soon as its inputs are in the inbox, in schedule order (the
/// schedule stays the flow control), then `tail`. The shard makes it at the
/// step_msg and hands it over; from then on only the device thread touches
/// it (the inbox's mutex orders a park and the shard's resume).
struct step_run {
  actors::step_msg step;
  std::vector<action> actions;
  /// Per chunk: the index of the action that completes its gradients (the
  /// last backward, or with a split schedule the last weight action).
  std::vector<std::int64_t> final_backward;
  std::vector<device_work> tail; ///< after the last action: optimizer, or bucket flush / norm
  caf::actor shard, prev, next;
  /// The neighbours' compute state when they live in this process: outputs
  /// go straight into their inbox (deliver_local), one thread hand-off
  /// instead of two. Weak: a neighbour torn down is simply not delivered to.
  std::weak_ptr<compute_state> prev_local, next_local;
  float grad_scale = 1; ///< the loss gradient's 1 / predictions of the global batch
  std::size_t pc = 0;   ///< the next action
  std::int32_t in_flight = 0;
  task_done total; ///< sent to the shard once the tail is done
  /// Since when the device has had nothing to run (a wait, for the trace).
  std::optional<std::chrono::steady_clock::time_point> idle_since;
};

/// The run of step `m` with `actions` (its tail is left to the caller).
std::shared_ptr<step_run> make_step_run(const compute_state& c, const actors::step_msg& m,
                                        std::vector<action> actions, caf::actor shard,
                                        caf::actor prev, caf::actor next);

/// Inbox lock held: whether action `a` of `step` can run.
bool inputs_ready(const compute_state& c, std::int64_t step, const action& a);

/// Inbox lock held, after storing an input: the parked run, taken out of the
/// inbox, when that input completed what it waits for; else null. The caller
/// resumes it (resume_device) after releasing the lock.
std::shared_ptr<step_run> take_resumable(compute_state& c);

/// Stores an input in `c`'s inbox (taking its lock), as the shard does for a
/// message and a neighbour's device for a direct delivery; returns the parked
/// run it completes, if any, for the caller to resume (resume_device).
template <class T>
std::shared_ptr<step_run> store_arrived(compute_state& c,
                                        std::map<input_key, arrived<T>> inbox::*slot,
                                        const input_key& k, arrived<T> in) {
  std::lock_guard lock{c.in.mutex};
  (c.in.*slot).insert_or_assign(k, std::move(in));
  return take_resumable(c);
}

/// Hands a parked run back to its device thread (one device_task).
/// `sent` stamps the hand-off for the trace (empty when not tracing).
void resume_device(const std::shared_ptr<compute_state>& c, std::shared_ptr<step_run> r,
                   handoff_stamp sent);

/// A shard's output stored straight into the inbox of a neighbour in the same
/// process, from the sending device thread, and that neighbour's device
/// resumed if the input completes its wait. What the neighbour's shard would
/// do with the message, without the hop through it (a futex wake-up).
void deliver_local(const std::shared_ptr<compute_state>& to, actors::activation_msg m);
void deliver_local(const std::shared_ptr<compute_state>& to, actors::gradient_msg m);

/// The device thread's walk through a step: runs every action whose inputs
/// are here, in schedule order, each sending its output the moment it is
/// done; with nothing ready it parks (returns to its mailbox) until the
/// shard resumes it. After the last action it runs the tail and sends the
/// shard one task_done for the whole step (or a task_failed with the first
/// exception's message).
void run_actions(const std::shared_ptr<compute_state>& cp, const std::shared_ptr<step_run>& rp);

/// Runs `chain` on the device thread in order; `shard` gets one task_done
/// with the summed figures, or a task_failed with the first exception's
/// message (the rest of the chain is skipped).
void run_chain(compute_state& c, std::vector<device_work>& chain, const caf::actor& shard);

} // namespace troupe::actors
