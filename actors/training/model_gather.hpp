#pragma once

// Gathering the model's parameters and optimizer state as whole tensors from
// the layer shards or the parameter servers (checkpoints, the final
// parameters). Change it when the model is held somewhere new.

#include <functional>
#include <string>
#include <vector>

#include "actors/training/trainer_state.hpp"
#include "actors/protocol/messages.hpp"

namespace troupe::actors::training {

/// What a checkpoint holds of the model: whole parameters, optimizer state
/// and the optimizer's step count.
struct model_state {
  runtime::named_tensor_list params, state;
  std::string steps = "0";
};

/// The model's parameters (and with `with_state` the optimizer state) as
/// whole tensors: from replica 0's layer shards (tensor-parallel slices
/// merged), or with parameter servers from the ps shards, which hold both
/// (the workers only tell the shapes; with async workers replica 0's last
/// pull may predate other workers' later pushes). Fails the trainer on error.
void collect_model(trainer_actor* self, bool with_state, std::function<void(model_state)> done);

/// The parts' entries, in order.
runtime::named_tensor_list merge(const std::vector<runtime::named_tensors>& parts);

runtime::named_tensors to_named(const runtime::named_tensor_list& list);

} // namespace troupe::actors::training
