#pragma once

// Starting a step on the pipelines: the step message to every shard of a
// replica, inputs to its first stage and labels to its loss stage. Change it
// when a step needs something new sent to the shards.

#include <cstdint>
#include <vector>

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Starts a step on replica `replica`'s pipeline with its part of the batch
/// (moved out of `b`). The learning rate follows global step `schedule_step`
/// (default: `step`; an async worker's own step ids run ahead or behind).
void send_step(trainer_actor* self, int replica, actors::batch_msg& b, std::int64_t step,
               bool training, std::int64_t schedule_step = -1);

/// Starts a step on every replica, part r on replica r (evaluation: one part,
/// replica 0), and resets st.current to wait for its reports.
void send_steps(trainer_actor* self, std::vector<actors::batch_msg>& parts, std::int64_t step,
                bool training);

} // namespace troupe::actors::training
