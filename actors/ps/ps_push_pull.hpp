#pragma once

// The parameter-server protocol of one shard (ps_shard.hpp): taking in
// workers' gradient pushes (sync: summed per step; async, ssp: one update
// each) and serving pulls once their mode's condition holds. Change it when
// the consistency modes or the push/pull messages change.

#include <cstdint>

#include <caf/actor.hpp>

#include "actors/ps/ps_shard_state.hpp"

namespace troupe::actors::ps_detail {

/// A push; throws runtime::input_error naming what is wrong with it.
void on_push(ps_actor* self, actors::ps_msg& m);

/// A pull: served now or when its condition holds; throws
/// runtime::input_error for a pull that breaks the protocol.
void on_pull(ps_actor* self, std::int32_t stage, std::int32_t worker, std::int64_t step,
             caf::actor reply_to);

} // namespace troupe::actors::ps_detail
