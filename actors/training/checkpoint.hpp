#pragma once

// The trainer's checkpoints: writing one (the model gathered from the
// shards, the trainer's and the loaders' positions) and resuming from one.
// Change it when a checkpoint holds something new.

#include <functional>

#include "actors/training/model_gather.hpp"
#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// A checkpoint of `m` with the trainer's position after `step` steps and
/// the epoch's sums `epoch` (its loader position follows from `step`).
runtime::checkpoint make_checkpoint(const trainer_state& st, model_state m, std::int64_t step,
                                    const epoch_state& epoch);

/// Gathers the model and its optimizer state, writes opts.checkpoint_dir,
/// then runs `then`. Fails the trainer on error.
void write_checkpoint(trainer_actor* self, std::function<void()> then);

/// Loads cfg.resume into the trainer, the shards (layer shards or parameter
/// servers) and the loaders, then runs `then`. The supervisor checked
/// compatibility first (check_resume_compatible). Fails the trainer on error.
void resume(trainer_actor* self, std::function<void()> then);

/// Evaluation of a checkpoint: loads cfg.resume's parameters (no optimizer
/// state, no loader position) into every layer shard, its step into the
/// trainer, then runs `then`. Fails the trainer on error.
void load_params(trainer_actor* self, std::function<void()> then);

} // namespace troupe::actors::training
