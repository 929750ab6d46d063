#pragma once

// Gathering the model's parameters and optimizer state as whole tensors from
// the layer shards or the parameter servers (checkpoints, the final
// parameters). Change it when the model is held somewhere new.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/protocol/messages.hpp"
#include "actors/training/trainer_state.hpp"

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

/// Whole tensors from one reply per (stage, tensor-parallel rank) slot of a
/// replica, in slot order: each stage's tensor-parallel slices merged.
runtime::named_tensor_list whole_tensors(const trainer_state& st,
                                         const std::vector<runtime::named_tensors>& replies);

/// The value of metadata `key` in `t`, or empty.
std::string meta_value(const runtime::named_tensors& t, const std::string& key);

/// The optimizer step count every one of `parts` holds (its "steps"
/// metadata); throws std::runtime_error when they differ or one has none.
std::int64_t common_steps(const std::vector<runtime::named_tensors>& parts);

/// The parts' entries, in order.
runtime::named_tensor_list merge(const std::vector<runtime::named_tensors>& parts);

runtime::named_tensors to_named(const runtime::named_tensor_list& list);

} // namespace troupe::actors::training
