#pragma once

// Running an operation's plan (collective_algorithms.hpp): laying out its
// blocks and segments, sending what each step sends, and taking in received
// pieces in the plan's order, whatever order they arrive in. Change it when
// the plan format or the checks on received messages change.

#include <cstdint>

#include "actors/collectives/collective_rank_state.hpp"

namespace troupe::actors::collective_detail {

/// Sets up the blocks, segments and per-step bookkeeping of `op`, whose kind,
/// plan and input are set.
void lay_out(rank_actor* self, op_state& op);

/// Gives `op` the result buffer that final blocks are written into as they
/// arrive, where the op's result is more than one piece.
void add_result_buffer(rank_actor* self, op_state& op);

/// Runs every segment of op `id` as far as the messages received allow.
void run_plan(rank_actor* self, std::int64_t id);

/// A message of a plan step from a peer: keeps it until its step comes and
/// runs its segment; fails the rank for a message outside the plan.
void on_plan_message(rank_actor* self, collective_msg& m);

} // namespace troupe::actors::collective_detail
