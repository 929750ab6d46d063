#pragma once

// Async and ssp parameter servers: each worker (replica) runs its own steps
// on parts of the epoch's global batches; the trainer completes the global
// steps in order as their parts finish. Change it for how workers take work.

#include "actors/training/trainer_state.hpp"

namespace troupe::actors::training {

/// start_step with independent workers: completes global step st.step when
/// all its parts are done, else sets every idle worker going.
void async_start_step(trainer_actor* self);

/// Worker `replica` reported its running step from one shard; once every
/// shard has, it takes its next part.
void worker_step_done(trainer_actor* self, int replica);

/// Where the losses of a report from `replica`'s loss stage add up: the
/// global step its running part belongs to.
actors::stage_report& worker_loss(trainer_state& st, int replica);

} // namespace troupe::actors::training
