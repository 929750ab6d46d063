#pragma once

// The training loop: a step's batches to the pipelines, the shards' reports,
// a step's bookkeeping, epoch ends and the run's end. Change it when the
// order of a run's phases changes.

#include <cstdint>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Starts training step st.step (or, past the last one, finishes the run).
void start_step(trainer_actor* self);

/// The bookkeeping once training step st.step is done everywhere: losses,
/// replica checks, timing, progress, then the next step, the epoch's end or
/// the end.
void step_completed(trainer_actor* self);

/// A step starts batch `batch` of epoch `epoch`: the first of an epoch (or
/// of this run) starts the epoch's clock and progress bar.
void start_epoch_clock(trainer_state& st, std::int64_t epoch, std::int64_t batch);

/// A shard's report of a step (training or evaluation).
void on_report(trainer_actor* self, actors::stage_report& r);

/// Clipping: shard `stage`'s part of the step's global gradient norm. When
/// every shard has sent its part, each gets the total (added in slot order,
/// so the same on every run) and clips with it.
void on_grad_sumsq(trainer_actor* self, std::int64_t step, std::int32_t stage, double sumsq);

} // namespace troupe::actors::training
