#pragma once

// The layer shard's data-parallel handlers: joining its stage's collective
// group (and, all in this process, its shared reduction), each gradient
// bucket's all-reduce through the group, and the parameter broadcast that
// starts a job. Internal to the shard (shard_state.hpp).

#include <caf/actor.hpp>
#include <caf/result.hpp>

#include "actors/pipeline/shard_state.hpp"

namespace troupe::actors::detail {

/// (dp_group_atom, rank, devices_own): see the definition for the shared
/// reduction's conditions.
caf::result<bool> join_dp_group(shard_actor* self, caf::actor group, bool devices_own);

/// A bucket's gradients are complete on the device: its all-reduce runs in
/// the stage's collective group while backward goes on.
void start_allreduce(shard_actor* self, bucket_ready& b);

/// (sync_params_atom): replica 0 broadcasts its parameters, the others load them.
caf::result<bool> sync_params(shard_actor* self);

} // namespace troupe::actors::detail
