#pragma once

#include <cstddef>
#include <cstdint>

#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/schedule.hpp"
#include "models/model_spec.hpp"

namespace troupe::runtime::transport {
class courier;
}

namespace troupe::actors {

/// What a layer shard holds and how it runs.
struct shard_config {
  int stage = 0;                 ///< position in the pipeline
  int stages = 1;
  models::model_spec model;      ///< the whole model; the shard builds its range
  std::size_t layer_begin = 0;
  std::size_t layer_end = 0;
  nlohmann::json optimizer;      ///< models::make_optimizer config
  std::uint64_t seed = 0;
  schedule_kind schedule = schedule_kind::gpipe;
  std::int64_t fault_step = -1;  ///< fault injection: forward of this step throws
  /// How activations and gradients leave this process (large tensors to other
  /// processes over the data plane); null in a single-process job. Not part of
  /// the JSON form: the node agent that spawns the shard supplies its own.
  std::shared_ptr<runtime::transport::courier> courier;
  bool first() const { return stage == 0; }
  bool last() const { return stage + 1 == stages; }
};

/// The JSON form a supervisor sends to a node agent (everything but the courier).
nlohmann::json to_json(const shard_config& c);
/// Throws runtime::input_error for a malformed config.
shard_config shard_config_from_json(const nlohmann::json& j);

/// A layer-shard actor: holds layers [layer_begin, layer_end) of the model and
/// their optimizer state, and runs forward/backward for them on its device
/// actor, following its schedule (runtime/messages.hpp protocol):
///
///   (wire_atom, device, prev, next) -> bool  peers; prev/next null at the ends
///   step_msg        begin a step: the schedule for (stages, stage, microbatches);
///                   its sender (the trainer) gets the stage_report
///   activation_msg  input of a micro-batch (from prev, or the trainer for stage 0)
///   gradient_msg    gradient of a micro-batch's output (from next)
///   labels_msg      labels of a micro-batch (last stage only; it owns the loss)
///   (get_params_atom) -> named_tensors        between steps only
///   (set_params_atom, named_tensors)          load parameters (resume, broadcast)
///   (get_state_atom) -> named_tensors         optimizer state (checkpoints)
///   (set_state_atom, named_tensors)
///
/// After the last action of a training step it applies the optimizer once and
/// sends a stage_report to the trainer. Messages of a step may arrive before
/// its step_msg (different senders); they wait in the shard's buffers. Any
/// failure (bad labels, a kernel exception, an unexpected message) ends the
/// shard with an error that names it, which its supervisor turns into a job
/// failure.
caf::actor spawn_layer_shard(caf::actor_system& sys, shard_config cfg);

} // namespace troupe::actors
