#pragma once

// Evaluation on the held-out set: its batches through replica 0, and the
// accuracy, loss or bits per character they add up to. Change it when
// evaluation measures something new.

#include <functional>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Evaluates every batch of the test loader on replica 0, then runs `then`
/// with st.eval's results set.
void start_eval(trainer_actor* self, std::function<void()> then);

/// The reports of an evaluation step are all in: adds its losses and starts
/// the next batch (or ends the evaluation).
void eval_step_done(trainer_actor* self);

/// A language model's epoch is long (a pass over the text): a run that
/// --steps ends inside one still reports the held-out loss at its end, then
/// runs `then`. (Classifiers evaluate at epoch ends only.)
void final_eval(trainer_actor* self, std::function<void()> then);

} // namespace troupe::actors::training
