#pragma once

// What a layer shard's device thread works on: the model chunks, their
// optimizer, the inbox of step inputs, and reading or replacing parameters
// and optimizer state. Change it when the shard's model-side state changes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>

#include "actors/collectives/tp_group_client.hpp"
#include "actors/pipeline/gradient_buckets.hpp"
#include "actors/pipeline/shard_config.hpp"
#include "actors/protocol/messages.hpp"
#include "models/layers/sequential.hpp"
#include "models/train/optimizer.hpp"
#include "runtime/telemetry/trace_recorder.hpp"

namespace troupe::actors {

struct step_run;

/// (step, micro-batch, chunk): what a step input belongs to.
using input_key = std::tuple<std::int64_t, std::int32_t, std::int32_t>;

/// An input as the shard stored it, and when it arrived (tracing: the wait
/// for it ends there).
template <class T>
struct arrived {
  T value;
  std::chrono::steady_clock::time_point at;
  /// Stored by a neighbour's device thread (deliver_local), not by the shard:
  /// the device that takes it records its arrival in the trace.
  bool direct = false;
};

/// Inputs of the shard's steps. The shard stores them as they arrive (on a
/// CAF worker); the device thread takes them when their action runs. Sharing
/// them, instead of sending the device one task per ready action and getting
/// a task_done back, lets the device go straight on to the next action whose
/// inputs are here: no thread hand-off between actions (each one is a futex
/// wake-up, tens of microseconds).
struct inbox {
  std::mutex mutex; ///< guards everything below
  std::map<input_key, arrived<actors::activation_msg>> activations;
  std::map<input_key, arrived<runtime::tensor>> grads;
  std::map<input_key, arrived<runtime::tensor>> labels;
  /// The run the device parked: it found `waiting_for` not ready and went
  /// back to its mailbox. Whoever stores the input that completes it (the
  /// shard, or a neighbour's device thread in this process) takes the run and
  /// resumes the device with one device_task. Empty while the device runs.
  /// Weak: the shard owns the run (its tail holds this compute state).
  std::weak_ptr<step_run> parked_run;
  action waiting_for;
  /// This shard's device (set at wiring), for resuming from another thread.
  caf::actor device;
};

/// A device task finished (sent from the device thread to the shard).
struct task_done {
  double loss_sum = 0;
  std::int64_t correct = 0;
  std::int64_t samples = 0;
  double seconds = 0;
  std::uint64_t peak_saved_bytes = 0;  ///< most saved activations seen between its actions
  std::int32_t peak_in_flight = 0;     ///< most micro-batches with saved activations
  std::uint64_t messages_sent = 0;     ///< activations and gradients sent to peers
  std::uint64_t bytes_sent = 0;        ///< their tensor payload bytes
  std::int64_t tokens = 0;             ///< predictions the loss covers
  double abs_error_sum = 0;            ///< regression: sum of the samples' mean |y - t|
  std::optional<double> grad_sumsq;    ///< clipping: the gradients' sum of squares
  std::optional<std::uint64_t> digest; ///< --check-replicas: the parameters' digest
  std::int64_t forward_samples = 0;    ///< training samples through chunk 0 (ps scale)
  /// step_msg::outputs: the loss chunk's outputs and their first samples.
  std::vector<runtime::tensor> outputs;
  std::vector<std::int64_t> output_offsets;
  /// Traced runs: when the device sent it (the shard records the hand-off).
  std::chrono::steady_clock::time_point sent_at{};
  /// Data parallelism on a shared reduction (the device thread all-reduces):
  /// the buckets it reduced, their bytes, and the seconds from the first
  /// bucket's launch to the last sum (stage_report's fields of those names).
  std::int32_t buckets = 0;
  std::uint64_t allreduce_bytes = 0;
  std::optional<double> allreduce_seconds;
  std::int32_t updates_in_reduction = 0; ///< the update was made in the reduction
};

/// One piece of work on the device thread (an action, the optimizer, ...),
/// touching only the compute state and sending its own outputs.
using device_work = std::function<task_done()>;

/// A device task threw; the shard fails with this message. `collective`:
/// the step's shared reduction was aborted (a replica ended), which fails
/// the step but not the shard, as a failed all-reduce does.
struct task_failed {
  std::string what;
  bool collective = false;
};

/// Model and optimizer of a shard. Only the device thread touches it while a
/// task runs; the shard touches it only when no task is running (the task's
/// completion message orders the two). The inbox is the exception: both
/// threads use it, under its mutex.
struct compute_state {
  shard_config cfg;           ///< a copy, for the device thread (never changed)
  bool sequence_loss = false; ///< a language model: per-token loss
  inbox in;
  std::vector<models::sequential> chunks; ///< one per shard_config::chunks entry
  gradient_buckets buckets;               ///< data parallelism only
  std::unique_ptr<models::optimizer> opt; ///< over the parameters of every chunk
  /// Tensor parallelism: the group the split layers all-reduce through, and
  /// the parameters every rank holds whole (only rank 0 counts them in the
  /// global gradient norm).
  std::shared_ptr<tp_group_client> tp;
  std::set<std::string> replicated;
  std::map<std::int32_t, runtime::tensor> dlogits; ///< loss stage: gradient saved by forward
  runtime::trace_recorder trace; ///< device-thread events; the shard absorbs them on task_done
  /// Held by the device thread while it updates the parameters
  /// (optimizer_work): a salvage may read them mid-step while the device
  /// waits in a shared reduction (gradient_buckets::gathering), before the
  /// update.
  std::mutex update_mutex;

  std::vector<models::parameter*> parameters();
  /// This shard's part of the global gradient norm: its parameters, less the
  /// replicated ones on tensor-parallel ranks other than 0.
  double grad_sum_of_squares();
  std::size_t saved_bytes() const;
};

/// Builds the chunks (tensor-parallel ones with cfg.tp > 1), the buckets
/// and the optimizer; throws what building them throws.
std::shared_ptr<compute_state> make_compute_state(caf::actor_system& sys, const shard_config& cfg);

/// After step `step`'s update, with the parameters in place: the injected
/// perturbation (cfg.perturb_step), then the parameters' digest when
/// --check-replicas asks for one at this step.
std::optional<std::uint64_t> after_update(compute_state& c, std::int64_t step);

runtime::named_tensors collect_params(compute_state& c);
/// Throws runtime::input_error for a missing parameter or a wrong shape.
void load_params(compute_state& c, const runtime::named_tensors& in);

/// Every parameter's value, flattened in parameters() order (broadcasts).
runtime::tensor flatten_values(compute_state& c);
/// The inverse of flatten_values; throws runtime::input_error for a tensor
/// of the wrong size or type.
void load_flat_values(compute_state& c, const runtime::tensor& all);

/// Optimizer state with its step count (meta "steps"), for checkpoints.
runtime::named_tensors collect_optimizer_state(compute_state& c);
/// Throws runtime::input_error for state without a step count.
void load_optimizer_state(compute_state& c, const runtime::named_tensors& in);

/// (inbox_atom) -> local_inbox: a shard's compute state, asked at wiring by
/// a neighbour shard in the same process so that its device can deliver
/// straight into this shard's inbox. Never leaves the process.
using inbox_atom = caf::atom_constant<caf::atom("inbox")>;
struct local_inbox {
  std::weak_ptr<compute_state> state;
};

} // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::local_inbox)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::task_done)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::task_failed)
