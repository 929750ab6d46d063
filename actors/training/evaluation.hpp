#pragma once

// Evaluation on the held-out set: its batches through replica 0, and the
// accuracy, loss or bits per character they add up to; during training (at
// epoch ends, every opts.eval_every steps, at the run's end) and alone on a
// checkpoint (`troupe evaluate` / `predict`). Change it when evaluation
// measures something new.

#include <functional>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Evaluates every batch of the test loader on replica 0, then runs `then`
/// with st.eval's results set (and an entry added to st.eval.log).
void start_eval(trainer_actor* self, std::function<void()> then);

/// The reports of an evaluation step are all in: adds its losses and starts
/// the next batch (or ends the evaluation).
void eval_step_done(trainer_actor* self);

/// The loss stage's outputs of an evaluation step (opts.predict) into
/// st.eval.predictions, at their samples' places in the test set.
void store_outputs(trainer_state& st, const actors::stage_report& r);

/// An evaluation between epoch ends: at the end of a run that --steps ends
/// inside an epoch, or every opts.eval_every steps. Prints a progress line,
/// then runs `then`.
void final_eval(trainer_actor* self, std::function<void()> then);

/// Whether the training step just completed is followed by an evaluation
/// that is not an epoch end's: the run's end, or opts.eval_every.
bool eval_due(const trainer_state& st);

/// opts.evaluate_only: loads the checkpoint's parameters into every shard,
/// evaluates the test set once, sends (job_done_atom, report, predictions)
/// to report_to (predictions named "predictions", or none) and quits.
void evaluate_checkpoint(trainer_actor* self);

} // namespace troupe::actors::training
