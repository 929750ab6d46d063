#pragma once

// --balance auto while a job runs: the trainer knows every step's compute
// time per replica and per stage (their reports); a rebalancer
// (actors/plan/rebalancer.hpp) watches them. Data parallelism: new batch
// shares go to the replicas' loaders at a step boundary (the gradient stays
// the exact batch mean whatever the shares). A single pipeline: the new split
// goes to the supervisor, which moves the layers with their parameters and
// optimizer state by a re-plan that loses nothing. Every rebalance is logged
// and reported.

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// Sets up the rebalancer the job's topology allows: shares for sync data
/// parallelism (no --batch-shares given), a split for one measured pipeline
/// (no --split given); none with --balance off or on one process.
void init_rebalancing(trainer_state& st);

/// After every synchronous training step (st.step already counts it).
void observe_step(trainer_actor* self, double step_seconds);

} // namespace troupe::actors::training
